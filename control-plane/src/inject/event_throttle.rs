//! How often the injector may post an Event about a skipped pod: a pure decision, given the
//! object the Event regards and the time.
//!
//! Whoever can create pods decides how many reviews the injector sees, and can forge a new
//! owner (or name) on each; Events cost the API server a write each. So two limits hold
//! together: one Event per regarded object per [`PER_OBJECT_INTERVAL`] (a DaemonSet rolling out
//! on a thousand nodes is one Event, repeated as the same series by kube's recorder at most
//! once a minute), and a token bucket over all objects ([`BURST`] at once, one more every
//! [`REFILL`]), so forged owners buy at most ten Events a minute for the whole cluster. What is
//! held back is only counted; the admission warning and the log line still say it for every
//! pod. The table of recently reported objects holds at most [`MAX_TRACKED`] entries (the bucket
//! keeps it far smaller), so its memory is bounded whatever the traffic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// At most one Event per regarded object within this interval.
pub const PER_OBJECT_INTERVAL: Duration = Duration::from_secs(60);
/// Events that may be posted at once, over all objects.
pub const BURST: u32 = 10;
/// One more Event may be posted after each interval of this length.
pub const REFILL: Duration = Duration::from_secs(6);
/// Most objects remembered at once.
pub const MAX_TRACKED: usize = 1024;

/// What to do with one skipped pod's Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Post it.
    Post,
    /// The same object had one within [`PER_OBJECT_INTERVAL`]: hold it back.
    Repeat,
    /// The cluster-wide budget is spent: hold it back.
    OverBudget,
}

impl Verdict {
    /// The `result` label of `strait_injector_events_total`.
    pub fn result(self) -> &'static str {
        match self {
            Verdict::Post => "posted",
            Verdict::Repeat => "repeat",
            Verdict::OverBudget => "over-budget",
        }
    }
}

/// The throttle's state: when each object last had an Event, and the bucket.
#[derive(Debug)]
pub struct EventThrottle {
    last: HashMap<String, Instant>,
    tokens: u32,
    refilled_at: Instant,
}

impl EventThrottle {
    /// A full bucket at `now`, no object reported yet.
    pub fn new(now: Instant) -> Self {
        Self {
            last: HashMap::new(),
            tokens: BURST,
            refilled_at: now,
        }
    }

    /// Decides for an Event regarding `object` (any key naming the object) at `now`, and
    /// records a [`Verdict::Post`].
    pub fn admit(&mut self, object: &str, now: Instant) -> Verdict {
        if self
            .last
            .get(object)
            .is_some_and(|at| now.saturating_duration_since(*at) < PER_OBJECT_INTERVAL)
        {
            return Verdict::Repeat;
        }
        self.refill(now);
        if self.tokens == 0 {
            return Verdict::OverBudget;
        }
        if self.last.len() >= MAX_TRACKED {
            self.last
                .retain(|_, at| now.saturating_duration_since(*at) < PER_OBJECT_INTERVAL);
            if self.last.len() >= MAX_TRACKED {
                return Verdict::OverBudget;
            }
        }
        self.tokens -= 1;
        self.last.insert(object.to_owned(), now);
        Verdict::Post
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let earned = elapsed.as_nanos() / REFILL.as_nanos();
        if earned == 0 {
            return;
        }
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        self.tokens = self.tokens.saturating_add(earned).min(BURST);
        self.refilled_at = if self.tokens == BURST {
            now
        } else {
            self.refilled_at + REFILL * earned
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_gets_one_event_per_interval() {
        let start = Instant::now();
        let mut throttle = EventThrottle::new(start);
        assert_eq!(throttle.admit("ns/DaemonSet/agent", start), Verdict::Post);
        for second in [0, 1, 30, 59] {
            let at = start + Duration::from_secs(second);
            assert_eq!(throttle.admit("ns/DaemonSet/agent", at), Verdict::Repeat);
        }
        let later = start + PER_OBJECT_INTERVAL;
        assert_eq!(throttle.admit("ns/DaemonSet/agent", later), Verdict::Post);
    }

    #[test]
    fn repeats_spend_no_budget() {
        let start = Instant::now();
        let mut throttle = EventThrottle::new(start);
        assert_eq!(throttle.admit("a", start), Verdict::Post);
        for _ in 0..1000 {
            assert_eq!(throttle.admit("a", start), Verdict::Repeat);
        }
        for i in 1..BURST {
            assert_eq!(throttle.admit(&format!("b{i}"), start), Verdict::Post);
        }
    }

    #[test]
    fn many_objects_get_the_burst_then_one_per_refill() {
        let start = Instant::now();
        let mut throttle = EventThrottle::new(start);
        let posted = (0..1000)
            .filter(|i| throttle.admit(&format!("forged-{i}"), start) == Verdict::Post)
            .count();
        assert_eq!(posted, BURST as usize);
        assert_eq!(throttle.admit("next", start), Verdict::OverBudget);
        let almost = start + REFILL - Duration::from_millis(1);
        assert_eq!(throttle.admit("next", almost), Verdict::OverBudget);
        assert_eq!(throttle.admit("next", start + REFILL), Verdict::Post);
        assert_eq!(throttle.admit("after", start + REFILL), Verdict::OverBudget);
        // A minute of forged owners, one every 100 ms: ten refills.
        let posted = (1..=600)
            .filter(|i| {
                let at = start + REFILL + Duration::from_millis(100 * i);
                throttle.admit(&format!("minute-{i}"), at) == Verdict::Post
            })
            .count();
        assert_eq!(posted, 10);
    }

    #[test]
    fn a_quiet_spell_refills_to_the_burst_and_no_more() {
        let start = Instant::now();
        let mut throttle = EventThrottle::new(start);
        for i in 0..BURST {
            throttle.admit(&format!("a{i}"), start);
        }
        let later = start + REFILL * 1000;
        let posted = (0..100)
            .filter(|i| throttle.admit(&format!("b{i}"), later) == Verdict::Post)
            .count();
        assert_eq!(posted, BURST as usize);
    }

    #[test]
    fn the_table_stays_bounded() {
        let start = Instant::now();
        let mut throttle = EventThrottle::new(start);
        for i in 0..(MAX_TRACKED as u64 * 20) {
            let at = start + REFILL * u32::try_from(i).unwrap();
            throttle.admit(&format!("o{i}"), at);
            assert!(throttle.last.len() <= MAX_TRACKED);
        }
        // Old entries are forgotten once the table fills, so reports continue.
        let at = start + REFILL * u32::try_from(MAX_TRACKED * 20 + 1).unwrap();
        assert_eq!(throttle.admit("fresh", at), Verdict::Post);
    }
}
