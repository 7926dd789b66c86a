//! When to renew a certificate: the one rule every holder of a mesh certificate follows.
//!
//! Renewal happens after about 70 % of the lifetime still ahead (measured from receipt, since
//! the CA backdates `notBefore` for clock skew), minus up to 10 % of jitter so a fleet of
//! proxies started together does not renew together. The proxy renews its workload
//! certificate by this rule, the control plane its own serving certificate (with no jitter:
//! there is one of it).

use std::time::Duration;

/// Shortest wait between renewals, so a certificate that is already (nearly) expired does not
/// cause a tight loop.
pub const MIN_REFRESH: Duration = Duration::from_millis(500);

/// When, counted from now, to renew a certificate with `remaining` lifetime: 70 % of it,
/// less up to 10 % for a uniform random `jitter` in `[0, 1)` (clamped to `[0, 1]`).
///
/// No floor: for a caller whose loop already paces itself. A loop that waits for exactly this
/// long uses [`refresh_after`].
///
/// ```
/// use std::time::Duration;
/// use strait_identity::renewal::renew_after;
/// let day = Duration::from_secs(86_400);
/// assert_eq!(renew_after(day, 0.0), day.mul_f64(0.7));
/// assert_eq!(renew_after(day, 1.0), day.mul_f64(0.6));
/// ```
pub fn renew_after(remaining: Duration, jitter: f64) -> Duration {
    let share = 0.7 - 0.1 * jitter.clamp(0.0, 1.0);
    remaining.mul_f64(share)
}

/// How long to wait before renewing a certificate with `remaining` lifetime, given a uniform
/// random `jitter` in `[0, 1)`: [`renew_after`], but never less than [`MIN_REFRESH`].
///
/// ```
/// use std::time::Duration;
/// use strait_identity::renewal::{MIN_REFRESH, refresh_after};
/// let day = Duration::from_secs(86_400);
/// assert_eq!(refresh_after(day, 0.0), day.mul_f64(0.7));
/// assert_eq!(refresh_after(day, 1.0), day.mul_f64(0.6));
/// assert_eq!(refresh_after(Duration::ZERO, 0.0), MIN_REFRESH);
/// ```
pub fn refresh_after(remaining: Duration, jitter: f64) -> Duration {
    renew_after(remaining, jitter).max(MIN_REFRESH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_lands_between_60_and_70_percent_of_the_remaining_lifetime() {
        let remaining = Duration::from_secs(1000);
        for i in 0..=10 {
            let wait = refresh_after(remaining, f64::from(i) / 10.0);
            assert!(
                wait >= Duration::from_secs(600) && wait <= Duration::from_secs(700),
                "{wait:?}"
            );
        }
    }

    #[test]
    fn an_expired_certificate_is_renewed_soon_but_not_in_a_tight_loop() {
        assert_eq!(refresh_after(Duration::ZERO, 0.5), MIN_REFRESH);
        assert_eq!(refresh_after(Duration::from_millis(100), 0.0), MIN_REFRESH);
    }

    #[test]
    fn without_jitter_renewal_is_at_exactly_70_percent() {
        let ttl = Duration::from_secs(3);
        assert_eq!(renew_after(ttl, 0.0), Duration::from_millis(2100));
        assert_eq!(renew_after(ttl, 0.0), ttl.mul_f64(0.7));
    }

    #[test]
    fn jitter_outside_its_range_is_clamped() {
        let ttl = Duration::from_secs(1000);
        assert_eq!(renew_after(ttl, -3.0), renew_after(ttl, 0.0));
        assert_eq!(renew_after(ttl, 7.0), renew_after(ttl, 1.0));
        assert_eq!(renew_after(ttl, 7.0), Duration::from_secs(600));
    }

    #[test]
    fn without_a_floor_a_short_lifetime_keeps_its_70_percent() {
        assert_eq!(
            renew_after(Duration::from_millis(100), 0.0),
            Duration::from_millis(70)
        );
    }
}
