//! A monotonic millisecond clock for state kept in atomics (ejection deadlines, latency
//! estimate ages). It follows tokio's clock, so tests with a paused clock control it.

use std::sync::OnceLock;

use tokio::time::Instant;

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Milliseconds since the first call in this process.
pub fn now_ms() -> u64 {
    Instant::now().duration_since(base()).as_millis() as u64
}
