//! Hot reload: the configuration directory is polled for changes; a valid change replaces the
//! model at once, an invalid one is reported (file, document, field, reason), logged, counted,
//! and the last good model stays in force.
//!
//! The directory's files are listed and compared by modification time and size at every
//! period (`strait_identity::file_poll`, the mesh's one file-change poller), so files added or
//! removed count too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use strait_identity::file_poll::FilePoll;
use tokio::sync::watch;

use crate::config::load::ParsedFiles;
use crate::discovery::service::ModelState;
use crate::tokens::LocalTokens;

/// The files a configuration directory's model is read from: its YAML files, and the files
/// in its subdirectories (token files referenced by workloads live there).
fn config_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = crate::config::load::files(dir).unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir()
                && let Ok(inner) = std::fs::read_dir(&path)
            {
                files.extend(inner.flatten().map(|file| file.path()));
            }
        }
    }
    files
}

/// Watches `dir` and publishes every valid change.
pub async fn watch_dir(
    dir: PathBuf,
    models: watch::Sender<Arc<ModelState>>,
    tokens: Arc<LocalTokens>,
    period: Duration,
) {
    let listed = dir.clone();
    let mut files = FilePoll::listing(move || config_files(&listed), period);
    let mut parsed = ParsedFiles::default();
    loop {
        files.changed().await;
        match crate::config::load_with(&dir, &mut parsed) {
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
