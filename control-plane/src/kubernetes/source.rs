//! The Kubernetes configuration source: one kube-rs watcher and reflector per watched kind,
//! and a loop that turns the reflected objects into a new model whenever they change.
//!
//! Changes are coalesced for a moment before a model is built, so a rollout touching a
//! hundred pods costs a few model builds, not a hundred. An object that does not validate is
//! left out of the model, logged, counted and reported as a Kubernetes Event on the object;
//! everything else keeps flowing. A kind whose CRD is not installed (no Gateway API in the
//! cluster, say) counts as empty until it appears.
//!
//! Every round also plans the routes' status writes (`route_status.rs`) from the reflected
//! routes and the translation, and hands the plan to the status writer (`status_writer.rs`),
//! which never holds up the configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use kube::api::{Api, DynamicObject};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::Value;
use tokio::sync::{Notify, watch};

use super::kinds::Kind;
use super::route_status;
use super::status_writer::StatusWriter;
use super::translate::{self, Rejected, Translation, describe};
use crate::config::ConfigErrors;
use crate::discovery::service::ModelState;

/// How long changes are collected before a model is built from them.
const COALESCE: Duration = Duration::from_millis(100);

/// One watched kind: its reflected objects, and whether the API lacks it.
struct Watched {
    kind: Kind,
    store: Store<DynamicObject>,
    absent: Arc<AtomicBool>,
}

/// The reflected cluster, kept current by one watcher task per kind.
pub struct Source {
    watched: Vec<Watched>,
    changed: Arc<Notify>,
    client: kube::Client,
}

impl Source {
    /// Starts watching every kind through `client`.
    pub fn start(client: kube::Client) -> Self {
        let changed = Arc::new(Notify::new());
        let watched = Kind::ALL
            .into_iter()
            .map(|kind| {
                let resource = kind.api_resource();
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
                let mut config = watcher::Config::default();
                if let Some(selector) = kind.label_selector() {
                    config = config.labels(&selector);
                }
                let writer = reflector::store::Writer::new(resource);
                let store = writer.as_reader();
                let absent = Arc::new(AtomicBool::new(false));
                let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
                tokio::spawn(drive(kind, stream, changed.clone(), absent.clone()));
                Watched {
                    kind,
                    store,
                    absent,
                }
            })
            .collect();
        Self {
            watched,
            changed,
            client,
        }
    }

    /// The client the watchers use.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Waits until every kind has been listed once (or found not to exist).
    pub async fn synced(&self) {
        for watched in &self.watched {
            loop {
                if watched.absent.load(Ordering::Acquire) {
                    break;
                }
                tokio::select! {
                    ready = watched.store.wait_until_ready() => {
                        if ready.is_ok() { break; }
                    }
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }

    /// The model the reflected objects make now.
    pub fn translate(&self) -> Result<Translation, ConfigErrors> {
        let objects: Vec<(Kind, Value)> = self
            .watched
            .iter()
            .flat_map(|w| {
                w.store
                    .state()
                    .into_iter()
                    .filter_map(move |o| serde_json::to_value(&*o).ok().map(|v| (w.kind, v)))
            })
            .collect();
        let borrowed: Vec<(Kind, &Value)> = objects.iter().map(|(k, v)| (*k, v)).collect();
        translate::translate(&borrowed)
    }

    /// The reflected HTTPRoutes and GRPCRoutes, status included.
    fn routes(&self) -> Vec<(Kind, Value)> {
        self.watched
            .iter()
            .filter(|w| matches!(w.kind, Kind::HttpRoute | Kind::GrpcRoute))
            .flat_map(|w| {
                w.store
                    .state()
                    .into_iter()
                    .filter_map(move |o| serde_json::to_value(&*o).ok().map(|v| (w.kind, v)))
            })
            .collect()
    }

    /// Publishes a new model on every change, reporting rejected objects and writing the
    /// routes' status, until the receivers are gone.
    pub async fn publish(self, models: watch::Sender<Arc<ModelState>>, reporter: Reporter) {
        let recorder = Recorder::new(self.client.clone(), reporter);
        let status = StatusWriter::start(self.client.clone());
        let mut reported: BTreeMap<String, String> = BTreeMap::new();
        // The first round reports what the initial model left out.
        let mut first = true;
        loop {
            if !first {
                self.changed.notified().await;
                tokio::time::sleep(COALESCE).await;
            }
            first = false;
            let translation = match self.translate() {
                Ok(translation) => translation,
                Err(errors) => {
                    metrics::counter!("strait_config_reloads_total", "result" => "failure")
                        .increment(1);
                    tracing::error!(
                        "the cluster's configuration could not be built; the last good configuration stays in force:\n{errors}"
                    );
                    continue;
                }
            };
            report(&recorder, &translation.rejected, &mut reported).await;
            status.submit(route_status::plan(
                &self.routes(),
                &translation,
                &route_status::now(),
            ));
            if *models.borrow().model == translation.model {
                continue;
            }
            metrics::counter!("strait_config_reloads_total", "result" => "success").increment(1);
            metrics::gauge!("strait_config_last_reload_success_timestamp_seconds")
                .set(crate::reload::unix_now());
            tracing::info!(
                services = translation.model.services.len(),
                workloads = translation.model.workloads.len(),
                rejected = translation.rejected.len(),
                "configuration from the Kubernetes API updated"
            );
            crate::config::warn_refused_rules(&translation.model);
            let state = Arc::new(ModelState {
                model: Arc::new(translation.model),
                applied_at: Instant::now(),
            });
            if models.send(state).is_err() {
                return;
            }
        }
    }
}

/// Drives one kind's reflector, signalling every change.
async fn drive(
    kind: Kind,
    stream: impl futures_util::Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>>,
    changed: Arc<Notify>,
    absent: Arc<AtomicBool>,
) {
    futures_util::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => {
                if absent.swap(false, Ordering::AcqRel) {
                    tracing::info!(kind = kind.name(), "the API now serves this kind");
                }
                changed.notify_one();
            }
            Err(error) => {
                let missing = is_not_found(&error);
                if missing && kind.is_custom() {
                    if !absent.swap(true, Ordering::AcqRel) {
                        tracing::warn!(
                            kind = kind.name(),
                            "the API does not serve this kind (its CRD is not installed); treating it as empty"
                        );
                        changed.notify_one();
                    }
                } else {
                    tracing::warn!(kind = kind.name(), %error, "watching the Kubernetes API failed; retrying");
                }
            }
        }
    }
}

fn is_not_found(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    }
}

/// Logs, counts and reports (as an Event on the object) every rejection not reported in the
/// same words before.
async fn report(
    recorder: &Recorder,
    rejected: &[Rejected],
    reported: &mut BTreeMap<String, String>,
) {
    metrics::gauge!("strait_config_rejected_objects").set(rejected.len() as f64);
    let mut now = BTreeMap::new();
    for rejection in rejected {
        let object = describe(&rejection.reference);
        let errors = ConfigErrors(rejection.errors.clone()).to_string();
        if reported.get(&object) != Some(&errors) {
            tracing::warn!(%object, "object left out of the configuration:\n{errors}");
            let event = Event {
                type_: EventType::Warning,
                reason: "InvalidConfiguration".into(),
                // The Events API caps notes at 1 kB.
                note: Some(truncate(&errors, 1000)),
                action: "Validate".into(),
                secondary: None,
            };
            if let Err(error) = recorder.publish(&event, &rejection.reference).await {
                tracing::warn!(%object, %error, "could not record an Event for a rejected object");
            }
        }
        now.insert(object, errors);
    }
    *reported = now;
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}
