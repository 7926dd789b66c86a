//! Load balancing within a backend: power of two choices over peak-EWMA latency.
//!
//! Each endpoint's cost is its latency estimate times its outstanding requests plus one. The
//! estimate jumps to any slower sample at once (the "peak") and decays towards faster ones
//! with a time constant, so a slowing endpoint loses traffic immediately and wins it back
//! gradually. Between samples the estimate also decays towards zero, so an endpoint that lost
//! all its traffic to a latency spike is eventually tried again rather than shunned forever.
//! Picking the cheaper of two random endpoints spreads load almost as well as picking the
//! cheapest, without herding every proxy onto the same one.
//!
//! The balancer judges latency only, as Linkerd's does: failures are the circuit breaker's
//! business ([`super::breaker`]), and retries go to a different endpoint.

use std::time::Duration;

/// Latency assumed for an endpoint with no samples yet.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// How fast a latency estimate forgets (the EWMA's time constant).
pub const DECAY: Duration = Duration::from_secs(10);

/// The next latency estimate after observing `sample`, `elapsed` after the previous update.
///
/// ```
/// use std::time::Duration;
/// use strait_proxy::resilience::balance::peak_ewma;
/// let ms = |n| Duration::from_millis(n).as_secs_f64();
/// // A slower sample replaces the estimate at once.
/// assert_eq!(peak_ewma(ms(10), ms(100), Duration::from_millis(1)), ms(100));
/// // A faster one pulls it down gradually.
/// let next = peak_ewma(ms(100), ms(10), Duration::from_secs(1));
/// assert!(next < ms(100) && next > ms(10));
/// ```
pub fn peak_ewma(estimate: f64, sample: f64, elapsed: Duration) -> f64 {
    if sample > estimate {
        return sample;
    }
    let weight = (-elapsed.as_secs_f64() / DECAY.as_secs_f64()).exp();
    estimate * weight + sample * (1.0 - weight)
}

/// The estimate `elapsed` after its last sample, decayed towards zero.
///
/// ```
/// use std::time::Duration;
/// use strait_proxy::resilience::balance::{decayed, DECAY};
/// assert_eq!(decayed(0.5, Duration::ZERO), 0.5);
/// assert!((decayed(1.0, DECAY) - (-1.0f64).exp()).abs() < 1e-12);
/// ```
pub fn decayed(estimate: f64, elapsed: Duration) -> f64 {
    estimate * (-elapsed.as_secs_f64() / DECAY.as_secs_f64()).exp()
}

/// An endpoint's cost: expected latency times the queue it would join.
pub fn cost(estimate: f64, pending: u32) -> f64 {
    estimate * f64::from(pending + 1)
}

/// Power of two choices: of two candidates picked by the random `a` and `b` (in `[0, 1)`),
/// the cheaper. `None` when there is no candidate.
///
/// ```
/// use strait_proxy::resilience::balance::p2c;
/// assert_eq!(p2c(&[5.0, 1.0, 9.0], 0.0, 0.4), Some(1));
/// assert_eq!(p2c(&[5.0], 0.7, 0.2), Some(0));
/// assert_eq!(p2c(&[], 0.7, 0.2), None);
/// ```
pub fn p2c(costs: &[f64], a: f64, b: f64) -> Option<usize> {
    p2c_by(costs.len(), |i| costs[i], a, b)
}

/// [`p2c`] over `n` candidates whose costs `cost` computes on demand (only two are asked).
pub fn p2c_by(n: usize, cost: impl Fn(usize) -> f64, a: f64, b: f64) -> Option<usize> {
    match n {
        0 => None,
        1 => Some(0),
        n => {
            let first = ((a * n as f64) as usize).min(n - 1);
            // The second pick is among the others, so the two always differ.
            let mut second = ((b * (n - 1) as f64) as usize).min(n - 2);
            if second >= first {
                second += 1;
            }
            Some(if cost(second) < cost(first) {
                second
            } else {
                first
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_forgets_a_spike_with_the_time_constant() {
        let spike = 1.0;
        let after_one_decay = peak_ewma(spike, 0.0, DECAY);
        assert!((after_one_decay - (-1.0f64).exp()).abs() < 1e-9);
        assert!(
            peak_ewma(spike, 0.0, Duration::ZERO) == spike,
            "no time, no decay"
        );
    }

    #[test]
    fn pending_requests_raise_the_cost() {
        assert_eq!(cost(0.01, 0), 0.01);
        assert_eq!(cost(0.01, 9), 0.1);
    }

    #[test]
    fn the_two_choices_always_differ_and_the_cheaper_wins() {
        let costs = [3.0, 2.0, 1.0];
        for a in 0..10 {
            for b in 0..10 {
                let (a, b) = (f64::from(a) / 10.0, f64::from(b) / 10.0);
                let first = ((a * 3.0) as usize).min(2);
                let picked = p2c(&costs, a, b).unwrap();
                assert!(costs[picked] <= costs[first]);
            }
        }
    }

    #[test]
    fn a_ten_times_slower_endpoint_gets_a_small_share() {
        // Three endpoints, one ten times slower; simulate picks with fresh randomness.
        let costs = [0.01, 0.01, 0.1];
        let mut picks = [0u32; 3];
        for _ in 0..30_000 {
            picks[p2c(&costs, fastrand::f64(), fastrand::f64()).unwrap()] += 1;
        }
        // The slow one is picked only when both choices land on it, which they never do
        // since the two choices differ: it is never the cheaper of a pair.
        assert_eq!(picks[2], 0, "{picks:?}");
    }
}
