//! The route status writer: takes the latest plan of status writes ([`super::route_status`])
//! and carries it out through the `status` subresource, off the configuration path.
//!
//! A plan replaces the one before it (a `watch` channel), so writes are coalesced per route and
//! the configuration source never waits for the API. At most [`MAX_IN_FLIGHT`] writes run at
//! once, each route is written at most once per [`MIN_INTERVAL`], and a route whose write fails
//! waits with its own doubling backoff (up to [`MAX_RETRY`]) and a logged warning, so one
//! route the API keeps refusing neither floods the API nor holds up the others. A route written
//! from version V is not written again until the watch shows a newer version (the plan made
//! before the write lands still says V). Writes are conditional on the version read: a status
//! changed meanwhile (another replica, another controller) answers 409 and the next plan, made
//! from the newer object, decides again.
//!
//! There is no leader election: every replica writes, but only what differs from what the
//! object says, conditionally, and replicas of one version decide the same, so they converge
//! on one write per change.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use tokio::sync::watch;
use tokio::time::Instant;

use super::route_status::{RouteId, StatusWrite};

/// Writes in flight at once.
pub const MAX_IN_FLIGHT: usize = 4;
/// The shortest time between two writes of one route.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The first wait after a route's write fails; it doubles on each failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between retries of one route.
pub const MAX_RETRY: Duration = Duration::from_secs(30);
/// How long one write may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The handle the configuration source gives plans to.
pub struct StatusWriter {
    plans: watch::Sender<Arc<Vec<StatusWrite>>>,
}

impl StatusWriter {
    /// Starts the writer's task on `client`.
    pub fn start(client: kube::Client) -> Self {
        let (plans, receiver) = watch::channel(Arc::new(Vec::new()));
        tokio::spawn(run(client, receiver));
        Self { plans }
    }

    /// Replaces the plan (never waits).
    pub fn submit(&self, plan: Vec<StatusWrite>) {
        self.plans.send_if_modified(|current| {
            if **current == plan {
                return false;
            }
            *current = Arc::new(plan);
            true
        });
    }
}

/// What the writer remembers of each route between plans.
#[derive(Debug, Default)]
pub struct Pacing {
    /// The version each route was last written from.
    written_from: HashMap<RouteId, String>,
    /// When each route may next be written.
    not_before: HashMap<RouteId, Instant>,
    /// Each failing route's next backoff.
    backoff: HashMap<RouteId, Duration>,
}

/// How one write ended.
#[derive(Debug)]
pub enum Outcome {
    /// Written.
    Written,
    /// The object changed since it was read (409) or is gone (404): the next plan decides.
    Stale,
    /// Failed; retried after the route's backoff.
    Failed(String),
}

impl Pacing {
    /// The writes of `plan` due at `now`, and when the next deferred one falls due.
    pub fn due(
        &mut self,
        plan: &[StatusWrite],
        now: Instant,
    ) -> (Vec<StatusWrite>, Option<Instant>) {
        let planned: HashSet<&RouteId> = plan.iter().map(|w| &w.route).collect();
        self.written_from.retain(|route, _| planned.contains(route));
        self.backoff.retain(|route, _| planned.contains(route));
        self.not_before
            .retain(|route, at| planned.contains(route) && *at > now);
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for write in plan {
            if self.written_from.get(&write.route) == Some(&write.resource_version) {
                continue;
            }
            match self.not_before.get(&write.route) {
                Some(at) => next = Some(next.map_or(*at, |n| n.min(*at))),
                None => due.push(write.clone()),
            }
        }
        (due, next)
    }

    /// Records how a write ended at `now`.
    pub fn record(&mut self, write: &StatusWrite, outcome: &Outcome, now: Instant) {
        let route = write.route.clone();
        match outcome {
            Outcome::Written => {
                self.written_from
                    .insert(route.clone(), write.resource_version.clone());
                self.backoff.remove(&route);
                self.not_before.insert(route, now + MIN_INTERVAL);
            }
            Outcome::Stale => {
                self.not_before.insert(route, now + MIN_INTERVAL);
            }
            Outcome::Failed(_) => {
                let wait = self.backoff.get(&route).copied().unwrap_or(FIRST_RETRY);
                self.backoff
                    .insert(route.clone(), (wait * 2).min(MAX_RETRY));
                self.not_before.insert(route, now + wait);
            }
        }
    }
}

/// Carries out each plan until the sender is gone.
async fn run(client: kube::Client, mut plans: watch::Receiver<Arc<Vec<StatusWrite>>>) {
    let mut pacing = Pacing::default();
    loop {
        let plan = plans.borrow_and_update().clone();
        let (due, next) = pacing.due(&plan, Instant::now());
        let outcomes: Vec<(StatusWrite, Outcome)> = futures_util::stream::iter(due)
            .map(|write| {
                let client = client.clone();
                async move {
                    let outcome = write_status(client, &write).await;
                    (write, outcome)
                }
            })
            .buffer_unordered(MAX_IN_FLIGHT)
            .collect()
            .await;
        let now = Instant::now();
        for (write, outcome) in &outcomes {
            match outcome {
                Outcome::Written => {
                    tracing::debug!(route = %write.route, "route status written");
                    metrics::counter!("strait_route_status_writes_total", "result" => "success")
                        .increment(1);
                }
                Outcome::Stale => {
                    tracing::debug!(route = %write.route, "route changed before its status was written; deciding again");
                }
                Outcome::Failed(error) => {
                    tracing::warn!(route = %write.route, %error, "writing a route's status failed; retrying");
                    metrics::counter!("strait_route_status_writes_total", "result" => "failure")
                        .increment(1);
                }
            }
            pacing.record(write, outcome, now);
        }
        // Deferred routes (failing, stale, or changed again within the interval) are looked at
        // again when due.
        let retry = if outcomes.is_empty() {
            next
        } else {
            pacing.due(&plan, now).1
        };
        let changed = match retry {
            Some(at) => tokio::select! {
                changed = plans.changed() => changed,
                () = tokio::time::sleep_until(at) => Ok(()),
            },
            None => plans.changed().await,
        };
        if changed.is_err() {
            return;
        }
    }
}

/// One conditional merge patch of a route's `status` subresource.
async fn write_status(client: kube::Client, write: &StatusWrite) -> Outcome {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client,
        &write.route.namespace,
        &write.route.kind.api_resource(),
    );
    let patch = write.patch();
    let result = tokio::time::timeout(
        WRITE_TIMEOUT,
        api.patch_status(
            &write.route.name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        ),
    )
    .await;
    match result {
        Ok(Ok(_)) => Outcome::Written,
        Ok(Err(kube::Error::Api(status))) if status.code == 409 || status.code == 404 => {
            Outcome::Stale
        }
        Ok(Err(error)) => Outcome::Failed(error.to_string()),
        Err(_) => Outcome::Failed(format!("no answer within {WRITE_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::kinds::Kind;

    fn write(name: &str, version: &str) -> StatusWrite {
        StatusWrite {
            route: RouteId {
                kind: Kind::HttpRoute,
                namespace: "demo".into(),
                name: name.into(),
            },
            resource_version: version.into(),
            parents: Vec::new(),
        }
    }

    fn names(due: &[StatusWrite]) -> Vec<String> {
        due.iter().map(|w| w.route.name.clone()).collect()
    }

    #[test]
    fn a_route_written_from_a_version_is_not_written_again_from_it() {
        let mut pacing = Pacing::default();
        let now = Instant::now();
        let plan = vec![write("a", "1"), write("b", "1")];
        let (due, next) = pacing.due(&plan, now);
        assert_eq!(names(&due), ["a", "b"]);
        assert_eq!(next, None);
        pacing.record(&plan[0], &Outcome::Written, now);
        let later = now + MIN_INTERVAL * 2;
        let (due, _) = pacing.due(&plan, later);
        assert_eq!(names(&due), ["b"]);
        // A newer version of it (someone changed its status) is written again.
        let (due, _) = pacing.due(&[write("a", "2")], later);
        assert_eq!(names(&due), ["a"]);
    }

    #[test]
    fn a_route_is_written_at_most_once_per_interval() {
        let mut pacing = Pacing::default();
        let now = Instant::now();
        pacing.record(&write("a", "1"), &Outcome::Written, now);
        let (due, next) = pacing.due(&[write("a", "2")], now + MIN_INTERVAL / 2);
        assert!(due.is_empty());
        assert_eq!(next, Some(now + MIN_INTERVAL));
    }

    #[test]
    fn a_failing_route_backs_off_doubling_to_a_cap_without_holding_others() {
        let mut pacing = Pacing::default();
        let mut now = Instant::now();
        let failing = write("a", "1");
        let mut waits = Vec::new();
        for _ in 0..8 {
            pacing.record(&failing, &Outcome::Failed("500".into()), now);
            let (due, next) = pacing.due(&[failing.clone(), write("b", "1")], now);
            assert_eq!(names(&due), ["b"]);
            let next = next.unwrap();
            waits.push(next - now);
            now = next;
        }
        assert_eq!(waits[0], FIRST_RETRY);
        assert_eq!(waits[1], FIRST_RETRY * 2);
        assert_eq!(*waits.last().unwrap(), MAX_RETRY);
        let (due, _) = pacing.due(std::slice::from_ref(&failing), now);
        assert_eq!(names(&due), ["a"]);
        pacing.record(&failing, &Outcome::Written, now);
        assert!(pacing.backoff.is_empty());
    }

    #[test]
    fn routes_gone_from_the_plan_are_forgotten() {
        let mut pacing = Pacing::default();
        let now = Instant::now();
        for i in 0..100 {
            pacing.record(
                &write(&i.to_string(), "1"),
                &Outcome::Failed("x".into()),
                now,
            );
        }
        pacing.due(&[], now);
        assert!(pacing.written_from.is_empty());
        assert!(pacing.not_before.is_empty());
        assert!(pacing.backoff.is_empty());
    }
}
