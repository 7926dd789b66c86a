//! Circuit breaking per endpoint: after `consecutive_failures` failures in a row the endpoint
//! is ejected for a backoff that doubles with each ejection in a row (capped), then probed by
//! real traffic; one success returns it to rotation for good. At most `max_ejected_percent` of
//! a backend's endpoints are ejected at once, and never all of them.
//!
//! The decisions are pure functions of counters ([`ejection`], [`may_eject`],
//! [`is_endpoint_failure`]); [`EndpointBreaker`] keeps one endpoint's counters in atomics
//! behind methods, so the state is written only here. The backend that owns the endpoints
//! supplies the one fact an endpoint cannot know alone: whether another may be ejected.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::errors::grpc_code;
use crate::resilience::retry::Outcome;

/// Breaker settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures in a row that eject an endpoint.
    pub consecutive_failures: u32,
    /// First ejection.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most endpoints ejected at once, in percent of the backend.
    pub max_ejected_percent: u32,
}

impl Default for BreakerPolicy {
    /// The API's defaults ([`strait_proto::defaults`]), which the control plane fills in too.
    fn default() -> Self {
        use strait_proto::defaults::*;
        Self {
            consecutive_failures: BREAKER_CONSECUTIVE_FAILURES,
            base_ejection: BREAKER_BASE_EJECTION,
            max_ejection: BREAKER_MAX_EJECTION,
            max_ejected_percent: BREAKER_MAX_EJECTED_PERCENT,
        }
    }
}

/// How long to eject an endpoint that just failed for the `consecutive`th time in a row,
/// having been ejected `ejections` times in a row before; `None` to keep it.
///
/// ```
/// use std::time::Duration;
/// use strait_proxy::resilience::breaker::{ejection, BreakerPolicy};
/// let policy = BreakerPolicy::default();
/// assert_eq!(ejection(6, 0, &policy), None);
/// assert_eq!(ejection(7, 0, &policy), Some(Duration::from_secs(1)));
/// assert_eq!(ejection(8, 1, &policy), Some(Duration::from_secs(2)));
/// ```
pub fn ejection(consecutive: u32, ejections: u32, policy: &BreakerPolicy) -> Option<Duration> {
    if consecutive < policy.consecutive_failures.max(1) {
        return None;
    }
    let factor = 1u32.checked_shl(ejections.min(31)).unwrap_or(u32::MAX);
    Some(
        policy
            .base_ejection
            .checked_mul(factor)
            .unwrap_or(policy.max_ejection)
            .min(policy.max_ejection),
    )
}

/// Whether one more of `total` endpoints may be ejected while `ejected` already are.
///
/// ```
/// use strait_proxy::resilience::breaker::may_eject;
/// assert!(may_eject(0, 3, 50));
/// assert!(!may_eject(1, 3, 50));
/// assert!(!may_eject(0, 1, 100), "never the last endpoint");
/// ```
pub fn may_eject(ejected: usize, total: usize, max_percent: u32) -> bool {
    let limit = (total * max_percent.min(100) as usize) / 100;
    ejected < limit && ejected + 1 < total
}

/// Whether an attempt's outcome counts against the endpoint: a 5xx, a gRPC UNAVAILABLE, or
/// no answer at all (not sent, failed, timed out).
pub fn is_endpoint_failure(outcome: Outcome) -> bool {
    match outcome {
        Outcome::Response { status, grpc } => status >= 500 || grpc == Some(grpc_code::UNAVAILABLE),
        Outcome::NotSent | Outcome::Failed | Outcome::TimedOut => true,
    }
}

/// An ejection the breaker just made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ejection {
    /// Failures in a row that led to it.
    pub consecutive_failures: u32,
    /// How long the endpoint stays out of rotation.
    pub duration: Duration,
}

/// One endpoint's breaker: consecutive failures, ejections in a row and the ejection
/// deadline, in milliseconds of [`crate::resilience::clock`]. Lock-free: read on every pick,
/// written on every outcome.
#[derive(Debug, Default)]
pub struct EndpointBreaker {
    failures: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
}

impl EndpointBreaker {
    /// Whether the endpoint is out of rotation at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Acquire) > now_ms
    }

    /// A success: the endpoint is healthy again, and its next ejection starts from the base.
    pub fn record_success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
    }

    /// A failure at `now_ms`: ejects the endpoint when `policy` says so, it is not ejected
    /// already and `may_eject` (asked last, as it looks at the sibling endpoints) allows it.
    pub fn record_failure(
        &self,
        policy: &BreakerPolicy,
        now_ms: u64,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Ejection> {
        let consecutive = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let ejections = self.ejections.load(Ordering::Acquire);
        let duration = ejection(consecutive, ejections, policy)?;
        if self.is_ejected(now_ms) || !may_eject() {
            return None;
        }
        self.ejected_until_ms
            .store(now_ms + duration.as_millis() as u64, Ordering::Release);
        self.ejections.fetch_add(1, Ordering::AcqRel);
        Some(Ejection {
            consecutive_failures: consecutive,
            duration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejections_back_off_exponentially_up_to_the_cap() {
        let policy = BreakerPolicy {
            consecutive_failures: 3,
            base_ejection: Duration::from_millis(500),
            max_ejection: Duration::from_secs(3),
            max_ejected_percent: 50,
        };
        let durations: Vec<_> = (0..6)
            .map(|n| ejection(3 + n, n, &policy).unwrap().as_millis())
            .collect();
        assert_eq!(durations, [500, 1000, 2000, 3000, 3000, 3000]);
        assert_eq!(ejection(2, 0, &policy), None);
        assert_eq!(
            ejection(u32::MAX, u32::MAX, &policy),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn the_ejected_share_is_bounded_and_one_endpoint_always_stays() {
        assert!(may_eject(0, 2, 50));
        assert!(!may_eject(1, 2, 100));
        assert!(may_eject(2, 10, 30));
        assert!(!may_eject(3, 10, 30));
        assert!(!may_eject(0, 10, 0));
    }

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(1),
            max_ejection: Duration::from_secs(4),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn an_endpoint_is_ejected_at_the_nth_failure_in_a_row_until_its_deadline() {
        let breaker = EndpointBreaker::default();
        assert_eq!(breaker.record_failure(&policy(), 0, || true), None);
        assert_eq!(breaker.record_failure(&policy(), 0, || true), None);
        assert_eq!(
            breaker.record_failure(&policy(), 0, || true),
            Some(Ejection {
                consecutive_failures: 3,
                duration: Duration::from_secs(1)
            })
        );
        assert!(breaker.is_ejected(999));
        assert!(!breaker.is_ejected(1000));
    }

    #[test]
    fn a_success_resets_the_count_and_the_backoff() {
        let breaker = EndpointBreaker::default();
        for _ in 0..3 {
            breaker.record_failure(&policy(), 0, || true);
        }
        let again = breaker.record_failure(&policy(), 2000, || true);
        assert_eq!(again.map(|e| e.duration), Some(Duration::from_secs(2)));
        breaker.record_success();
        for _ in 0..2 {
            assert_eq!(breaker.record_failure(&policy(), 5000, || true), None);
        }
        let after_success = breaker.record_failure(&policy(), 5000, || true);
        assert_eq!(
            after_success.map(|e| e.duration),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn an_ejected_endpoint_or_one_its_backend_cannot_spare_is_not_ejected_again() {
        let breaker = EndpointBreaker::default();
        for _ in 0..3 {
            breaker.record_failure(&policy(), 0, || true);
        }
        assert_eq!(
            breaker.record_failure(&policy(), 10, || true),
            None,
            "already out"
        );
        let spared = EndpointBreaker::default();
        for _ in 0..5 {
            assert_eq!(spared.record_failure(&policy(), 0, || false), None);
        }
        assert!(!spared.is_ejected(0));
    }

    #[test]
    fn server_errors_unavailable_and_missing_answers_count_against_the_endpoint() {
        let response = |status, grpc| Outcome::Response { status, grpc };
        assert!(is_endpoint_failure(response(503, None)));
        assert!(is_endpoint_failure(response(200, Some(14))));
        assert!(is_endpoint_failure(Outcome::NotSent));
        assert!(is_endpoint_failure(Outcome::Failed));
        assert!(is_endpoint_failure(Outcome::TimedOut));
        assert!(!is_endpoint_failure(response(404, None)));
        assert!(!is_endpoint_failure(response(200, Some(13))));
    }
}
