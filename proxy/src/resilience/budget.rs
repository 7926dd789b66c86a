//! The retry budget of a backend: retries may add at most `ratio` of recent requests plus
//! `min_per_second` per second, over a sliding window. When it is spent, the original failure
//! is returned instead of a retry, so a failing backend never sees a retry storm.
//!
//! Lock-free: the window is a ring of per-slice counters, each tagged with the slice it counts;
//! a slice found stale is reset by whoever touches it first. Counts are approximate at slice
//! boundaries, which a budget tolerates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

const SLICES: usize = 10;

/// Budget settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetPolicy {
    /// Retries as a share of recent requests.
    pub ratio: f64,
    /// Retries allowed per second regardless of traffic.
    pub min_per_second: u32,
    /// How far back "recent" reaches.
    pub window: Duration,
}

impl Default for BudgetPolicy {
    /// The API's defaults ([`strait_proto::defaults`]), which the control plane fills in too.
    fn default() -> Self {
        use strait_proto::defaults::*;
        Self {
            ratio: f64::from(RETRY_BUDGET_PERCENT) / 100.0,
            min_per_second: RETRY_BUDGET_MIN_PER_SECOND,
            window: RETRY_BUDGET_INTERVAL,
        }
    }
}

#[derive(Default)]
struct Slice {
    epoch: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// A backend's retry budget.
pub struct RetryBudget {
    policy: BudgetPolicy,
    start: Instant,
    slice_ms: u64,
    slices: [Slice; SLICES],
}

impl RetryBudget {
    /// An empty budget.
    pub fn new(policy: BudgetPolicy) -> Self {
        let slice_ms = (policy.window.as_millis() as u64 / SLICES as u64).max(1);
        Self {
            policy,
            start: Instant::now(),
            slice_ms,
            slices: Default::default(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> BudgetPolicy {
        self.policy
    }

    fn epoch(&self, now: Instant) -> u64 {
        // Epochs start at 1 so a zeroed slice never looks current.
        now.duration_since(self.start).as_millis() as u64 / self.slice_ms + 1
    }

    fn current(&self, now: Instant) -> &Slice {
        let epoch = self.epoch(now);
        let slice = &self.slices[(epoch as usize) % SLICES];
        let seen = slice.epoch.load(Ordering::Acquire);
        if seen != epoch
            && slice
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slice.requests.store(0, Ordering::Release);
            slice.retries.store(0, Ordering::Release);
        }
        slice
    }

    /// Counts a request (first attempts only).
    pub fn deposit(&self, now: Instant) {
        self.current(now).requests.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn withdraw(&self, now: Instant) -> bool {
        let epoch = self.epoch(now);
        let (mut requests, mut retries) = (0u64, 0u64);
        for slice in &self.slices {
            let slice_epoch = slice.epoch.load(Ordering::Acquire);
            if slice_epoch + (SLICES as u64) > epoch && slice_epoch <= epoch {
                requests += slice.requests.load(Ordering::Acquire);
                retries += slice.retries.load(Ordering::Acquire);
            }
        }
        let allowed = self.policy.ratio * requests as f64
            + f64::from(self.policy.min_per_second) * self.policy.window.as_secs_f64();
        if (retries as f64) < allowed {
            self.current(now).retries.fetch_add(1, Ordering::AcqRel);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
        RetryBudget::new(BudgetPolicy {
            ratio,
            min_per_second,
            window: Duration::from_secs(10),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_capped_at_the_ratio_of_requests_plus_the_floor() {
        let budget = budget(0.2, 1);
        let now = Instant::now();
        for _ in 0..100 {
            budget.deposit(now);
        }
        // 20 % of 100 requests plus 1/s over 10 s.
        let granted = (0..100).filter(|_| budget.withdraw(now)).count();
        assert_eq!(granted, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_retries_without_traffic() {
        let budget = budget(0.0, 2);
        let granted = (0..100).filter(|_| budget.withdraw(Instant::now())).count();
        assert_eq!(granted, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides_so_old_retries_stop_counting() {
        let budget = budget(0.0, 1);
        let start = Instant::now();
        assert_eq!((0..50).filter(|_| budget.withdraw(start)).count(), 10);
        assert!(
            !budget.withdraw(start + Duration::from_secs(5)),
            "still within the window"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            budget.withdraw(Instant::now()),
            "the spent retries left the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_requests_stop_earning_retries() {
        let budget = budget(0.5, 0);
        let start = Instant::now();
        for _ in 0..100 {
            budget.deposit(start);
        }
        assert!(budget.withdraw(start));
        assert!(
            !budget.withdraw(start + Duration::from_secs(11)),
            "requests from 11 s ago no longer count"
        );
    }
}
