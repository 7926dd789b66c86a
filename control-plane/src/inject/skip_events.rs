//! Posts the Events about pods the injector skipped ([`crate::inject::skip_event`]) without ever
//! holding up admission: the review only takes a decision from the throttle
//! ([`crate::inject::event_throttle`]) and a non-blocking send to a bounded queue
//! ([`QUEUE`]); one task posts them, one at a time, each within [`POST_TIMEOUT`], through
//! kube-runtime's event recorder (`events.k8s.io/v1`; the same object's Events within six
//! minutes become one series, patched, not new objects). A full queue, a slow or refusing API
//! server: the Event is dropped and counted in `strait_injector_events_total`, and the pod is
//! admitted as it would be anyway.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use crate::inject::event_throttle::{EventThrottle, Verdict};
use crate::inject::skip_event::{ACTION, REASON, SkippedPod};

/// Events waiting to be posted; past this, new ones are dropped.
pub const QUEUE: usize = 32;
/// How long one Event's post may take before it is given up.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// The handle the injector reports skipped pods through. Cheap to clone.
#[derive(Clone)]
pub struct SkipEvents {
    queue: mpsc::Sender<SkippedPod>,
    throttle: Arc<Mutex<EventThrottle>>,
}

impl SkipEvents {
    /// Starts the task that posts Events through `client` as `reporter`.
    pub fn start(client: kube::Client, reporter: Reporter) -> Self {
        metrics::describe_counter!(
            "strait_injector_events_total",
            "Events about pods the injector skipped (hostNetwork), by result."
        );
        for result in [
            "posted",
            "repeat",
            "over-budget",
            "queue-full",
            "failed",
            "unnamed",
        ] {
            metrics::counter!("strait_injector_events_total", "result" => result).absolute(0);
        }
        let (queue, posts) = mpsc::channel(QUEUE);
        tokio::spawn(post_all(Recorder::new(client, reporter), posts));
        Self {
            queue,
            throttle: Arc::new(Mutex::new(EventThrottle::new(Instant::now()))),
        }
    }

    /// Reports `pod` (`None`: nothing an Event could name), if the throttle allows and the
    /// queue has room. Never waits.
    pub fn report(&self, pod: Option<SkippedPod>) {
        let Some(pod) = pod else {
            count("unnamed");
            return;
        };
        let verdict = match self.throttle.lock() {
            Ok(mut throttle) => throttle.admit(&pod.object_key(), Instant::now()),
            Err(_) => Verdict::OverBudget,
        };
        if verdict != Verdict::Post {
            count(verdict.result());
            return;
        }
        if self.queue.try_send(pod).is_err() {
            count("queue-full");
        }
    }
}

fn count(result: &'static str) {
    metrics::counter!("strait_injector_events_total", "result" => result).increment(1);
}

async fn post_all(recorder: Recorder, mut posts: mpsc::Receiver<SkippedPod>) {
    while let Some(pod) = posts.recv().await {
        let event = Event {
            type_: EventType::Warning,
            reason: REASON.into(),
            note: Some(pod.note),
            action: ACTION.into(),
            secondary: None,
        };
        let object = describe(&pod.regarding);
        match tokio::time::timeout(POST_TIMEOUT, recorder.publish(&event, &pod.regarding)).await {
            Ok(Ok(())) => {
                count("posted");
                tracing::debug!(%object, reason = REASON, "Event posted for a skipped pod");
            }
            Ok(Err(error)) => {
                count("failed");
                tracing::warn!(%object, %error, "could not post an Event for a skipped pod");
            }
            Err(_) => {
                count("failed");
                tracing::warn!(%object, timeout = ?POST_TIMEOUT, "posting an Event for a skipped pod timed out");
            }
        }
    }
}

fn describe(reference: &ObjectReference) -> String {
    format!(
        "{}/{}/{}",
        reference.kind.as_deref().unwrap_or_default(),
        reference.namespace.as_deref().unwrap_or_default(),
        reference.name.as_deref().unwrap_or_default()
    )
}
