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
    /// endpoint failed, ejecting it when the breaker says so.
    pub fn record(&self, index: usize, failed: bool, rtt: Duration) {
        let Some(endpoint) = self.endpoints.get(index) else {
            return;
        };
        let now = now_ms();
        let health = &endpoint.health;
        health.observe(rtt, now);
        if !failed {
            health.failures.store(0, Ordering::Relaxed);
            health.ejections.store(0, Ordering::Relaxed);
            return;
        }
        let consecutive = health.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let ejections = health.ejections.load(Ordering::Acquire);
        let Some(duration) = breaker::ejection(consecutive, ejections, &self.settings.breaker)
        else {
            return;
        };
        if health.is_ejected(now) {
            return;
        }
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| e.health.is_ejected(now))
            .count();
        if !breaker::may_eject(
            ejected,
            self.endpoints.len(),
            self.settings.breaker.max_ejected_percent,
        ) {
            return;
        }
        health
            .ejected_until_ms
            .store(now + duration.as_millis() as u64, Ordering::Release);
        health.ejections.fetch_add(1, Ordering::AcqRel);
        self.state.metrics.ejections.increment(1);
        tracing::info!(
            backend = %self.name,
            endpoint = %endpoint.addr,
            consecutive_failures = consecutive,
            ejected_for = ?duration,
            "endpoint ejected by the circuit breaker"
        );
    }
}
