//! When to renew a certificate: a pure function of what is left of its lifetime.
//!
//! Renewal happens after about 70 % of the remaining lifetime (measured from receipt, since
//! the CA backdates `notBefore` for clock skew), minus up to 10 % of jitter so a fleet of
//! proxies started together does not renew together.

use std::time::Duration;

/// Shortest wait between renewals, so a certificate that is already (nearly) expired does not
/// cause a tight loop.
pub const MIN_REFRESH: Duration = Duration::from_millis(500);

/// How long to wait before renewing a certificate with `remaining` lifetime, given a uniform
/// random `jitter` in `[0, 1)`.
///
/// ```
/// use std::time::Duration;
/// use strait_proxy::identity::refresh::refresh_after;
/// let day = Duration::from_secs(86_400);
/// assert_eq!(refresh_after(day, 0.0), day.mul_f64(0.7));
/// assert_eq!(refresh_after(day, 1.0), day.mul_f64(0.6));
/// ```
pub fn refresh_after(remaining: Duration, jitter: f64) -> Duration {
    let share = 0.7 - 0.1 * jitter.clamp(0.0, 1.0);
    remaining.mul_f64(share).max(MIN_REFRESH)
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
}
