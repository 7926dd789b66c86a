//! Exponential backoff with full jitter (the AWS architecture blog's "full jitter"): the
//! delay before attempt `n` is uniform in `[0, min(cap, base * 2^n)]`. Used for reconnecting
//! to the control plane and for retrying requests.

use std::time::Duration;

/// The delay before retry `attempt` (0-based) given a uniform random `unit` in `[0, 1)`.
///
/// ```
/// use std::time::Duration;
/// use strait_proxy::backoff::full_jitter;
/// let base = Duration::from_millis(100);
/// let cap = Duration::from_secs(1);
/// assert_eq!(full_jitter(base, cap, 0, 0.5), Duration::from_millis(50));
/// assert_eq!(full_jitter(base, cap, 10, 0.999_999), Duration::from_micros(999_999));
/// ```
pub fn full_jitter(base: Duration, cap: Duration, attempt: u32, unit: f64) -> Duration {
    let ceiling = base
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(cap)
        .min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// Successive backoff delays, reset after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays growing from `base` up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let delay = full_jitter(self.base, self.cap, self.attempt, fastrand::f64());
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Starts over from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_until_the_cap() {
        let base = Duration::from_millis(10);
        let cap = Duration::from_millis(100);
        let ceilings: Vec<_> = (0..6).map(|n| full_jitter(base, cap, n, 1.0)).collect();
        let ms: Vec<u128> = ceilings.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 100, 100]);
        assert_eq!(
            full_jitter(base, cap, 1000, 1.0),
            cap,
            "no overflow for huge attempts"
        );
    }

    #[test]
    fn delays_are_jittered_below_the_ceiling() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        for attempt in 0..20u32 {
            let ceiling = full_jitter(
                Duration::from_millis(10),
                Duration::from_secs(1),
                attempt,
                1.0,
            );
            assert!(backoff.next_delay() <= ceiling);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(10));
    }
}
