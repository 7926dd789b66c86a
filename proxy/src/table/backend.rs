//! A backend: the endpoints of one service port, the policy for calling them, and the state
//! that policy keeps (retry budget, outstanding requests), which survives snapshots.
//!
//! Picking an endpoint skips ejected ones and, for a retry, ones already tried; recording an
//! outcome feeds the latency estimate and the circuit breaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use strait_proto::defaults;

use crate::resilience::balance;
use crate::resilience::breaker::{self, BreakerPolicy};
use crate::resilience::budget::{BudgetPolicy, RetryBudget};
use crate::resilience::clock::now_ms;
use crate::table::endpoint::Endpoint;
use crate::telemetry::http::BackendMetrics;
use crate::telemetry::workload::WorkloadLabel;

/// Default limit of outstanding requests per backend ([`defaults::MAX_PENDING_REQUESTS`]).
pub const DEFAULT_MAX_PENDING: u32 = defaults::MAX_PENDING_REQUESTS;
/// Default base of the retry backoff ([`defaults::RETRY_BACKOFF_BASE`]).
pub const DEFAULT_BACKOFF_BASE: Duration = defaults::RETRY_BACKOFF_BASE;
/// Default cap of the retry backoff ([`defaults::RETRY_BACKOFF_MAX`]).
pub const DEFAULT_BACKOFF_MAX: Duration = defaults::RETRY_BACKOFF_MAX;

/// How endpoints are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadBalancer {
    /// Power of two choices over peak-EWMA latency.
    PeakEwma,
    /// In turn.
    RoundRobin,
}

/// A backend's policy, defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendSettings {
    /// Circuit breaking.
    pub breaker: BreakerPolicy,
    /// Outstanding requests allowed before failing fast.
    pub max_pending: u32,
    /// Retry budget.
    pub budget: BudgetPolicy,
    /// Load balancer.
    pub load_balancer: LoadBalancer,
    /// Retry backoff base (unless the route sets its own).
    pub backoff_base: Duration,
    /// Retry backoff cap.
    pub backoff_max: Duration,
}

impl Default for BackendSettings {
    /// The API's defaults ([`strait_proto::defaults`]), which the control plane fills in too.
    fn default() -> Self {
        Self {
            breaker: BreakerPolicy::default(),
            max_pending: DEFAULT_MAX_PENDING,
            budget: default_budget(),
            load_balancer: LoadBalancer::PeakEwma,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

/// The retry budget of a backend whose policy sets none ([`strait_proto::defaults`]).
pub fn default_budget() -> BudgetPolicy {
    BudgetPolicy {
        ratio: defaults::retry_budget_ratio(),
        min_per_second: defaults::RETRY_BUDGET_MIN_PER_SECOND,
        window: defaults::RETRY_BUDGET_INTERVAL,
    }
}

/// State kept across snapshots for as long as the backend's policy is unchanged.
pub struct BackendState {
    /// The retry budget.
    pub budget: RetryBudget,
    pending: AtomicU32,
    next: AtomicUsize,
    /// Resilience counters.
    pub metrics: BackendMetrics,
}

impl BackendState {
    /// Fresh state for `name` under `settings`.
    pub fn new(name: &str, settings: &BackendSettings) -> Self {
        Self {
            budget: RetryBudget::new(settings.budget),
            pending: AtomicU32::new(0),
            next: AtomicUsize::new(0),
            metrics: BackendMetrics::new(name),
        }
    }
}

/// A set of endpoints traffic is balanced over.
pub struct Backend {
    /// `namespace/service:port`.
    pub name: String,
    /// The endpoints; may be empty.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The policy.
    pub settings: BackendSettings,
    /// The identity of the endpoints, when they share one (for metric labels).
    pub identity: String,
    /// The workload of the endpoints, when they share one (for metric labels).
    pub workload: WorkloadLabel,
    /// State surviving snapshots.
    pub state: Arc<BackendState>,
}

/// A request counted against the backend's pending limit until dropped.
pub struct Admitted {
    state: Arc<BackendState>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.state.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backend {
    /// Admits a request under the pending-request limit, or `None` to fail fast.
    pub fn admit(&self) -> Option<Admitted> {
        let previous = self.state.pending.fetch_add(1, Ordering::AcqRel);
        if previous >= self.settings.max_pending {
            self.state.pending.fetch_sub(1, Ordering::AcqRel);
            self.state.metrics.fast_fails.increment(1);
            return None;
        }
        Some(Admitted {
            state: self.state.clone(),
        })
    }

    /// Requests admitted and not yet finished.
    pub fn pending(&self) -> u32 {
        self.state.pending.load(Ordering::Relaxed)
    }

    /// Picks an endpoint: not ejected, not in `tried` when another is available.
    pub fn pick(&self, tried: &[usize]) -> Option<(usize, &Arc<Endpoint>)> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let now = now_ms();
        let ejected = |i: usize| self.endpoints[i].health.is_ejected(now);
        let index = if tried.is_empty() && !(0..n).any(ejected) {
            // The common case: every endpoint is a candidate; nothing to collect.
            self.choose(n, now, |i| i)?
        } else {
            let mut candidates: Vec<usize> = (0..n)
                .filter(|i| !ejected(*i) && !tried.contains(i))
                .collect();
            if candidates.is_empty() {
                candidates = (0..n).filter(|i| !ejected(*i)).collect();
            }
            if candidates.is_empty() {
                // The breaker never ejects every endpoint, but a snapshot may shrink a
                // backend to ejected ones only: serve rather than refuse.
                candidates = (0..n).collect();
            }
            self.choose(candidates.len(), now, |i| candidates[i])?
        };
        Some((index, &self.endpoints[index]))
    }

    /// Chooses among `n` candidates, `nth(i)` being the endpoint index of candidate `i`.
    fn choose(&self, n: usize, now: u64, nth: impl Fn(usize) -> usize) -> Option<usize> {
        let candidate = match self.settings.load_balancer {
            LoadBalancer::PeakEwma => balance::p2c_by(
                n,
                |i| self.endpoints[nth(i)].health.cost(now),
                fastrand::f64(),
                fastrand::f64(),
            )?,
            LoadBalancer::RoundRobin => self.state.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        Some(nth(candidate))
    }

    /// Records the outcome of an attempt on endpoint `index`: its latency and whether the
    /// endpoint failed, ejecting it when its breaker says so and the backend can spare it.
    pub fn record(&self, index: usize, failed: bool, rtt: Duration) {
        let Some(endpoint) = self.endpoints.get(index) else {
            return;
        };
        let now = now_ms();
        let health = &endpoint.health;
        health.observe(rtt, now);
        if !failed {
            health.breaker.record_success();
            return;
        }
        let policy = &self.settings.breaker;
        let Some(ejection) = health
            .breaker
            .record_failure(policy, now, || self.may_eject_another(now))
        else {
            return;
        };
        self.state.metrics.ejections.increment(1);
        tracing::info!(
            backend = %self.name,
            endpoint = %endpoint.addr,
            consecutive_failures = ejection.consecutive_failures,
            ejected_for = ?ejection.duration,
            "endpoint ejected by the circuit breaker"
        );
    }

    /// Whether one more endpoint may leave rotation at `now` under the breaker's cap.
    fn may_eject_another(&self, now: u64) -> bool {
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| e.health.is_ejected(now))
            .count();
        breaker::may_eject(
            ejected,
            self.endpoints.len(),
            self.settings.breaker.max_ejected_percent,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::connect::{Connector, Dest};
    use crate::head_limits::HeadLimits;

    fn endpoint(port: u16) -> Arc<Endpoint> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Endpoint::new(
            Dest::Direct(addr),
            addr,
            format!("app-{port}"),
            Connector::new(Duration::from_secs(1), None),
            Duration::from_secs(30),
            HeadLimits {
                max_bytes: 16 * 1024,
                max_fields: 100,
            },
        )
    }

    /// A round-robin backend of `n` endpoints whose breaker ejects after 3 failures in a
    /// row for 1 s, then 2 s, and may take out all but one of them.
    fn backend(n: u16, max_pending: u32) -> Backend {
        let settings = BackendSettings {
            breaker: BreakerPolicy {
                consecutive_failures: 3,
                base_ejection: Duration::from_secs(1),
                max_ejection: Duration::from_secs(60),
                max_ejected_percent: 100,
            },
            max_pending,
            load_balancer: LoadBalancer::RoundRobin,
            ..BackendSettings::default()
        };
        Backend {
            name: "demo/backend:80".into(),
            endpoints: (0..n).map(|i| endpoint(8000 + i)).collect(),
            identity: String::new(),
            workload: WorkloadLabel::unknown(),
            state: Arc::new(BackendState::new("demo/backend:80", &settings)),
            settings,
        }
    }

    const RTT: Duration = Duration::from_millis(1);

    /// Moves the paused clock past the process-wide base of [`now_ms`], which a test running
    /// alongside may have set later than this test's clock reads: below it every reading is
    /// 0 and ejection deadlines would not move.
    async fn clock_past_base() {
        for _ in 0..100_000 {
            if now_ms() > 0 {
                return;
            }
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        panic!("the clock never passed the base of now_ms");
    }

    fn picks(backend: &Backend, tried: &[usize], count: usize) -> Vec<usize> {
        (0..count)
            .map(|_| backend.pick(tried).expect("an endpoint").0)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_failing_n_times_in_a_row_leaves_rotation_until_its_ejection_ends() {
        clock_past_base().await;
        let backend = backend(2, 100);
        for _ in 0..2 {
            backend.record(0, true, RTT);
        }
        assert!(picks(&backend, &[], 4).contains(&0), "two failures keep it");
        backend.record(0, true, RTT);
        assert_eq!(picks(&backend, &[], 4), [1, 1, 1, 1]);

        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(picks(&backend, &[], 2), [1, 1], "still ejected");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(
            picks(&backend, &[], 4).contains(&0),
            "readmitted once its ejection ends"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_fails_again_ejects_for_twice_as_long_and_a_success_resets_it() {
        clock_past_base().await;
        let backend = backend(2, 100);
        for _ in 0..3 {
            backend.record(0, true, RTT);
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        backend.record(0, true, RTT);
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_eq!(
            picks(&backend, &[], 2),
            [1, 1],
            "the second ejection lasts 2 s"
        );
        tokio::time::advance(Duration::from_millis(1)).await;

        backend.record(0, false, RTT);
        for _ in 0..2 {
            backend.record(0, true, RTT);
        }
        assert!(
            picks(&backend, &[], 4).contains(&0),
            "a success restarted the count"
        );
        backend.record(0, true, RTT);
        assert_eq!(picks(&backend, &[], 2), [1, 1]);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            picks(&backend, &[], 4).contains(&0),
            "and the next ejection is back to 1 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_endpoint_in_rotation_is_never_ejected() {
        clock_past_base().await;
        let backend = backend(2, 100);
        for index in [0, 1] {
            for _ in 0..3 {
                backend.record(index, true, RTT);
            }
        }
        assert_eq!(picks(&backend, &[], 4), [1, 1, 1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_goes_to_an_endpoint_not_tried_yet_while_there_is_one() {
        let backend = backend(3, 100);
        for _ in 0..6 {
            let index = backend.pick(&[1]).unwrap().0;
            assert_ne!(index, 1);
        }
        assert_eq!(
            picks(&backend, &[0, 1, 2], 3).len(),
            3,
            "all tried: any will do"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_pending_limit_fail_fast_until_one_finishes() {
        let backend = backend(1, 2);
        let first = backend.admit().expect("under the limit");
        let _second = backend.admit().expect("at the limit");
        assert!(backend.admit().is_none());
        assert_eq!(backend.pending(), 2);
        drop(first);
        assert!(backend.admit().is_some());
    }

    #[test]
    fn an_empty_backend_has_nothing_to_pick() {
        assert!(backend(0, 1).pick(&[]).is_none());
    }
}
