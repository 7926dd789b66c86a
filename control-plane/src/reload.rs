//! Hot reload: the configuration directory is polled for changes; a valid change replaces the
//! model at once, an invalid one is reported (file, document, field, reason), logged, counted,
//! and the last good model stays in force.
//!
//! Polling a file list with modification times and sizes, four times a second, is cheap for a
//! configuration directory, needs no inotify, and follows Kubernetes ConfigMap mounts, which
//! swap a symlinked directory rather than write files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::discovery::service::ModelState;
use crate::tokens::LocalTokens;

type Stamp = Vec<(PathBuf, Option<SystemTime>, u64)>;

fn stamp(dir: &Path) -> Stamp {
    let mut out: Stamp = crate::config::load::files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let modified = meta.as_ref().and_then(|m| m.modified().ok());
            let len = meta.map(|m| m.len()).unwrap_or(0);
            (path, modified, len)
        })
        .collect();
    // Token files referenced by workloads live in subdirectories; a change there matters too.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir()
                && let Ok(inner) = std::fs::read_dir(&path)
            {
                for file in inner.flatten() {
                    let meta = file.metadata().ok();
                    out.push((
                        file.path(),
                        meta.as_ref().and_then(|m| m.modified().ok()),
                        meta.map(|m| m.len()).unwrap_or(0),
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

/// Watches `dir` and publishes every valid change.
pub async fn watch_dir(
    dir: PathBuf,
    models: watch::Sender<Arc<ModelState>>,
    tokens: Arc<LocalTokens>,
    period: Duration,
) {
    let mut last = stamp(&dir);
    loop {
        tokio::time::sleep(period).await;
        let now = stamp(&dir);
        if now == last {
            continue;
        }
        last = now;
        match crate::config::load(&dir) {
            Ok(model) => {
                if *models.borrow().model == model {
                    continue;
                }
                tokens.update(&model);
                metrics::counter!("strait_config_reloads_total", "result" => "success")
                    .increment(1);
                metrics::gauge!("strait_config_last_reload_success_timestamp_seconds")
                    .set(unix_now());
                tracing::info!(
                    dir = %dir.display(),
                    services = model.services.len(),
                    workloads = model.workloads.len(),
                    "configuration reloaded"
                );
                models.send_replace(Arc::new(ModelState {
                    model: Arc::new(model),
                    applied_at: Instant::now(),
                }));
            }
            Err(errors) => {
                metrics::counter!("strait_config_reloads_total", "result" => "failure")
                    .increment(1);
                tracing::error!(
                    dir = %dir.display(),
                    errors = errors.0.len(),
                    "configuration change rejected; the last good configuration stays in force:\n{errors}"
                );
            }
        }
    }
}

/// Now, as Unix seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
