//! Circuit breaking per endpoint: after `consecutive_failures` failures in a row the endpoint
//! is ejected for a backoff that doubles with each ejection in a row (capped), then probed by
//! real traffic; one success returns it to rotation for good. At most `max_ejected_percent` of
//! a backend's endpoints are ejected at once, and never all of them.
//!
//! The decisions are pure functions of counters; the caller keeps the counters in atomics.

use std::time::Duration;

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
}
