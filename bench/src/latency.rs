//! Latency: closed-loop on one connection, and at a fixed request rate measured from each
//! request's intended start time.
//!
//! The fixed rate is paced by a thread of its own that sleeps with the kernel's
//! high-resolution timers (timer slack set to 1 ns): tokio's timer wheel ticks in whole
//! milliseconds, which would send a 2 000 rps load in bursts and add up to a millisecond of
//! the driver's own lateness to every measurement. A request whose connection is still busy
//! waits, and the wait counts (wrk2's model): a stall of the system under test shows in
//! every request it delays, not only in the one it hit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::clients::{Conn, Protocol, Target};

/// Calls made before measuring, so connections, pools and caches are warm.
const WARMUP_CALLS: usize = 200;

/// Most calls one closed-loop measurement makes, whatever its duration.
const MAX_CALLS: u64 = 2_000_000;

/// Percentiles of one measurement, in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Calls that succeeded (and were measured).
    pub count: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s at 3 significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("static bounds are valid")
}

fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
    histogram.saturating_record(ns);
}

fn summarise(histogram: &Histogram<u64>, errors: u64) -> Summary {
    let us = |ns: u64| ns as f64 / 1000.0;
    Summary {
        count: histogram.len(),
        errors,
        p50_us: us(histogram.value_at_quantile(0.5)),
        p90_us: us(histogram.value_at_quantile(0.9)),
        p99_us: us(histogram.value_at_quantile(0.99)),
        p999_us: us(histogram.value_at_quantile(0.999)),
        max_us: us(histogram.max()),
        mean_us: histogram.mean() / 1000.0,
    }
}

/// Opens a connection and makes `calls` unmeasured calls on it. A failed call opens the
/// connection afresh (the failure shows again, counted, in the measurement that follows);
/// only a connection that fails every call is an error.
async fn warm(protocol: Protocol, target: &Target, calls: usize) -> anyhow::Result<Conn> {
    let mut conn = Conn::open(protocol, target).await?;
    let mut last_error = None;
    let mut succeeded = 0;
    for _ in 0..calls {
        match conn.call().await {
            Ok(()) => succeeded += 1,
            Err(error) => {
                last_error = Some(error);
                conn = Conn::open(protocol, target).await?;
            }
        }
    }
    match last_error {
        Some(error) if succeeded == 0 => Err(error.context(format!(
            "every one of {calls} {} warm-up calls failed",
            protocol.label()
        ))),
        _ => Ok(conn),
    }
}

/// One call after another on one connection for `duration`.
pub async fn closed_loop(
    protocol: Protocol,
    target: &Target,
    duration: Duration,
) -> anyhow::Result<Summary> {
    let mut conn = warm(protocol, target, WARMUP_CALLS).await?;
    let mut histogram = histogram();
    let mut errors = 0;
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && histogram.len() + errors < MAX_CALLS {
        let start = Instant::now();
        match conn.call().await {
            Ok(()) => record(&mut histogram, start.elapsed()),
            Err(_) => {
                errors += 1;
                conn = Conn::open(protocol, target).await?;
            }
        }
    }
    Ok(summarise(&histogram, errors))
}

/// A fixed-rate measurement: latency and the rate actually achieved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rated {
    /// Latency from each request's intended start.
    pub latency: Summary,
    /// Requests the schedule held.
    pub scheduled: u64,
    /// Completed requests per second of the measurement.
    pub achieved_rps: f64,
}

/// Requests at `rate` per second for `duration`, each measured from its intended start.
/// HTTP/1.1 and TCP spread them over `connections` connections in turn (request `i` on
/// connection `i mod connections`); HTTP/2 and gRPC multiplex them on one.
pub async fn fixed_rate(
    protocol: Protocol,
    target: &Target,
    rate: f64,
    duration: Duration,
    connections: usize,
) -> anyhow::Result<Rated> {
    let lanes = if protocol.multiplexed() {
        1
    } else {
        connections.max(1)
    };
    let mut conns = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        conns.push(warm(protocol, target, WARMUP_CALLS / lanes + 1).await?);
    }
    let scheduled = (rate * duration.as_secs_f64()).round() as u64;
    let histogram = Arc::new(Mutex::new(histogram()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::with_capacity(lanes);
    let mut workers = tokio::task::JoinSet::new();
    for conn in conns {
        let (tx, rx) = mpsc::unbounded_channel::<Instant>();
        senders.push(tx);
        workers.spawn(lane(
            conn,
            target.clone(),
            protocol,
            rx,
            histogram.clone(),
            errors.clone(),
        ));
    }
    // Leave the pacer a moment to start before the first intended time.
    let start = Instant::now() + Duration::from_millis(20);
    let pacer = std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || pace(start, rate, scheduled, senders))
        .context("starting the pacer thread")?;
    while let Some(joined) = workers.join_next().await {
        joined.context("a fixed-rate lane panicked")?;
    }
    let elapsed = start.elapsed();
    pacer
        .join()
        .map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
    let histogram = histogram.lock().expect("histogram lock poisoned");
    let errors = errors.load(Ordering::SeqCst);
    Ok(Rated {
        latency: summarise(&histogram, errors),
        scheduled,
        achieved_rps: histogram.len() as f64 / elapsed.as_secs_f64(),
    })
}

/// Hands out intended start times: request `i` at `start + i / rate`, to lane `i mod lanes`.
fn pace(start: Instant, rate: f64, scheduled: u64, lanes: Vec<mpsc::UnboundedSender<Instant>>) {
    // Sleep to the microsecond instead of the default 50 µs slack.
    let _ = nix::sys::prctl::set_timerslack(1);
    for i in 0..scheduled {
        let intended = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        // A lane that is gone has failed; its requests are not made and so not measured.
        let _ = lanes[(i % lanes.len() as u64) as usize].send(intended);
    }
}

fn outcome(
    result: anyhow::Result<()>,
    start: Instant,
    histogram: &Mutex<Histogram<u64>>,
    errors: &AtomicU64,
) {
    match result {
        Ok(()) => record(
            &mut histogram.lock().expect("histogram lock poisoned"),
            start.elapsed(),
        ),
        Err(_) => {
            errors.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Makes the calls one lane is handed: side by side on a multiplexed connection, else one
/// after another (a failed connection is opened afresh for the next call).
async fn lane(
    mut conn: Conn,
    target: Target,
    protocol: Protocol,
    mut intended: mpsc::UnboundedReceiver<Instant>,
    histogram: Arc<Mutex<Histogram<u64>>>,
    errors: Arc<AtomicU64>,
) {
    let mut in_flight = tokio::task::JoinSet::new();
    while let Some(start) = intended.recv().await {
        match conn.share() {
            Some(mut shared) => {
                let (histogram, errors) = (histogram.clone(), errors.clone());
                in_flight.spawn(async move {
                    outcome(shared.call().await, start, &histogram, &errors);
                });
                // Reap finished calls as we go so the set stays small.
                while in_flight.try_join_next().is_some() {}
            }
            None => {
                let result = conn.call().await;
                let failed = result.is_err();
                outcome(result, start, &histogram, &errors);
                if failed && let Ok(fresh) = Conn::open(protocol, &target).await {
                    conn = fresh;
                }
            }
        }
    }
    while in_flight.join_next().await.is_some() {}
}
