//! The soak: many concurrent keep-alive connections through one real proxy (outbound → an
//! HTTP backend) under a steady request rate for a long time, sampling the proxy's resident
//! memory, its open file descriptors and the client-visible errors, then judging whether they
//! stayed flat once warmed up.
//!
//! `strait-bench soak` runs it for as long as asked (30 minutes, 10 000 connections); the test
//! suite runs a short version through this same code.
//!
//! Longer than 500 lines: the soak runner, its verdict and the verdict's unit tests belong together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt as _;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backend::HttpBackend;
use crate::client::{Body, empty};
use crate::process::Proxy;
use crate::procstat;
use crate::snapshot::{Endpoint, TempDir, service, snapshot};

/// The authority the soak's requests name: the one service in the proxy's snapshot.
const AUTHORITY: &str = "soak.demo";

/// How a soak runs.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Client connections held open through the proxy for the whole run.
    pub connections: usize,
    /// The whole run, warm-up included.
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    /// The start of the run that is not judged: connections opening, buffers and pools
    /// growing to their working size.
    #[serde(serialize_with = "seconds")]
    pub warmup: Duration,
    /// Requests per second over all connections, spread evenly among them.
    pub rate: f64,
    /// How often the proxy is sampled.
    #[serde(serialize_with = "seconds")]
    pub sample_every: Duration,
    /// The proxy's `--threads` (0: one per core).
    pub threads: usize,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One reading of the proxy and the load.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub at_secs: f64,
    /// The proxy's resident memory.
    pub rss_bytes: u64,
    /// The proxy's open file descriptors.
    pub fds: usize,
    /// Client connections open at this moment.
    pub connections_open: u64,
    /// Requests answered with 200 so far.
    pub requests: u64,
    /// Client-visible failures so far: connect errors, send errors, non-200 answers.
    pub errors: u64,
}

/// One judged property.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What is judged: `rss`, `fds`, `errors`, `load`.
    pub name: &'static str,
    /// Whether it held.
    pub pass: bool,
    /// The numbers behind the judgement.
    pub detail: String,
}

/// Every check of a soak.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// The checks, in the order of [`CRITERION`].
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Whether every check held.
    pub fn pass(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

/// A finished soak.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// How it ran.
    pub settings: Settings,
    /// Every sample, in time order.
    pub samples: Vec<Sample>,
    /// The judgement.
    pub verdict: Verdict,
    /// The first client-visible error, if any, as the client saw it.
    pub first_error: Option<String>,
}

/// Growth of resident memory tolerated after warm-up: this share of the early level…
const RSS_SHARE: f64 = 0.05;
/// …or this many bytes, whichever is larger (allocators hold memory in coarse chunks).
const RSS_FLOOR: f64 = 2.0 * 1024.0 * 1024.0;
/// Growth of open descriptors tolerated after warm-up: this share…
const FD_SHARE: f64 = 0.01;
/// …or this many, whichever is larger (pooled upstream connections come and go).
const FD_FLOOR: f64 = 8.0;
/// The load must reach this share of the configured rate after warm-up.
const RATE_SHARE: f64 = 0.9;

/// The rules [`judge`] applies, as printed with every soak result.
pub const CRITERION: &str = "Samples taken after the warm-up are split in thirds. \
rss: flat when the mean RSS of the last third exceeds the mean of the first third by at most \
max(5 %, 2 MiB). fds: flat when the mean open-descriptor count of the last third exceeds the \
first third's by at most max(1 %, 8). errors: no client-visible error (connect, send, non-200) \
after the warm-up. load: every connection open at every sample after the warm-up, and at \
least 90 % of the configured request rate achieved after it.";

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Growth between the first and the last third of `values`, and the tolerance for it.
fn drift(values: &[f64], share: f64, floor: f64) -> (f64, f64, f64, f64) {
    let third = (values.len() / 3).max(1);
    let early = mean(values[..third].iter().copied());
    let late = mean(values[values.len() - third..].iter().copied());
    (early, late, late - early, (early * share).max(floor))
}

/// Judges a soak's samples by [`CRITERION`].
pub fn judge(samples: &[Sample], settings: &Settings) -> Verdict {
    let warmup = settings.warmup.as_secs_f64();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at_secs >= warmup).collect();
    if after.len() < 3 {
        let detail = format!(
            "{} samples after the {warmup:.0} s warm-up, at least 3 needed: run longer or sample more often",
            after.len()
        );
        return Verdict {
            checks: ["rss", "fds", "errors", "load"]
                .into_iter()
                .map(|name| Check {
                    name,
                    pass: false,
                    detail: detail.clone(),
                })
                .collect(),
        };
    }
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let rss: Vec<f64> = after.iter().map(|s| s.rss_bytes as f64).collect();
    let (early, late, growth, tolerance) = drift(&rss, RSS_SHARE, RSS_FLOOR);
    let rss = Check {
        name: "rss",
        pass: growth <= tolerance,
        detail: format!(
            "{:.1} MiB → {:.1} MiB ({:+.2} MiB, tolerance {:.2} MiB)",
            mib(early),
            mib(late),
            mib(growth),
            mib(tolerance)
        ),
    };
    let fds: Vec<f64> = after.iter().map(|s| s.fds as f64).collect();
    let (early, late, growth, tolerance) = drift(&fds, FD_SHARE, FD_FLOOR);
    let fds = Check {
        name: "fds",
        pass: growth <= tolerance,
        detail: format!("{early:.0} → {late:.0} ({growth:+.0}, tolerance {tolerance:.0})"),
    };
    let (first, last) = (after[0], after[after.len() - 1]);
    let new_errors = last.errors - first.errors;
    let errors = Check {
        name: "errors",
        pass: new_errors == 0,
        detail: format!(
            "{new_errors} after warm-up, {} in all (warm-up included)",
            last.errors
        ),
    };
    let elapsed = last.at_secs - first.at_secs;
    let achieved = (last.requests - first.requests) as f64 / elapsed.max(f64::EPSILON);
    let fewest_open = after.iter().map(|s| s.connections_open).min().unwrap_or(0);
    let load = Check {
        name: "load",
        pass: fewest_open == settings.connections as u64 && achieved >= settings.rate * RATE_SHARE,
        detail: format!(
            "{achieved:.0} requests/s of {:.0} configured; fewest connections open {fewest_open} of {}",
            settings.rate, settings.connections
        ),
    };
    Verdict {
        checks: vec![rss, fds, errors, load],
    }
}

/// Counters the connections share.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    open: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, error: String) {
        self.errors.fetch_add(1, Ordering::SeqCst);
        let mut first = self.first_error.lock().expect("error lock poisoned");
        first.get_or_insert(error);
    }
}

/// Starts an HTTP backend and one proxy routing `soak.demo` straight to it, runs the soak
/// through the proxy's outbound listener, and judges it. `on_sample` sees every sample as
/// it is taken (the benchmark prints them).
///
/// Raises the open-file limit first: this process holds the client side of every
/// connection and the proxy, which inherits the limit, the other side; each needs one
/// descriptor per connection plus a margin for pools, listeners and files.
pub async fn run(settings: &Settings, mut on_sample: impl FnMut(&Sample)) -> Report {
    let wanted = settings.connections as u64 + 1024;
    let limit = procstat::raise_fd_limit(wanted).expect("raising the open-file limit");
    assert!(
        limit >= wanted,
        "the soak needs {wanted} open files and may have only {limit}"
    );
    let backend = HttpBackend::start("soak-backend").await;
    let dir = TempDir::new("soak");
    let snapshot_file = dir.write_snapshot(
        "snapshot.json",
        &snapshot(
            "1",
            vec![service(
                "soak",
                "demo",
                80,
                &[],
                &[Endpoint {
                    app: backend.addr,
                    proxy_port: None,
                }],
            )],
        ),
    );
    let proxy = Proxy::builder()
        .snapshot(&snapshot_file)
        .flag("--threads", settings.threads)
        .start();
    let pid = proxy.process.pid();

    let counters = Arc::new(Counters::default());
    let start = Instant::now();
    let deadline = start + settings.duration;
    let interval = Duration::from_secs_f64(settings.connections as f64 / settings.rate);
    // Connections open at most this many at a time, so the listen backlog never overflows.
    let opening = Arc::new(tokio::sync::Semaphore::new(256));
    // Connections stay open until the last sample is taken.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..settings.connections {
        let first = start + Duration::from_secs_f64(k as f64 / settings.rate);
        tasks.spawn(connection(
            proxy.outbound,
            first,
            interval,
            deadline,
            counters.clone(),
            opening.clone(),
            stopped.clone(),
        ));
    }

    let mut samples = Vec::new();
    let mut next = start;
    loop {
        let now = Instant::now();
        let sample = Sample {
            at_secs: (now - start).as_secs_f64(),
            rss_bytes: procstat::rss_bytes(pid).expect("sampling the proxy's RSS"),
            fds: procstat::open_fds(pid).expect("counting the proxy's descriptors"),
            connections_open: counters.open.load(Ordering::SeqCst),
            requests: counters.requests.load(Ordering::SeqCst),
            errors: counters.errors.load(Ordering::SeqCst),
        };
        on_sample(&sample);
        samples.push(sample);
        if now >= deadline {
            break;
        }
        next += settings.sample_every;
        tokio::time::sleep_until(next.min(deadline)).await;
    }
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    drop(proxy);
    let verdict = judge(&samples, settings);
    let first_error = counters
        .first_error
        .lock()
        .expect("error lock poisoned")
        .take();
    Report {
        settings: settings.clone(),
        samples,
        verdict,
        first_error,
    }
}

async fn open(addr: SocketAddr) -> Result<http1::SendRequest<Body>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("setting TCP_NODELAY: {e}"))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1 handshake with {addr}: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn request(sender: &mut http1::SendRequest<Body>) -> Result<(), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection closed: {e}"))?;
    let request = Request::get("/status?code=200")
        .header("host", AUTHORITY)
        .body(empty())
        .expect("a static request is valid");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    if status != 200 {
        return Err(format!("answered {status}"));
    }
    Ok(())
}

/// One client connection: opened once, then a request every `interval` from `first` until
/// `deadline`, then held open until `stopped`. A failed request is counted and the
/// connection opened afresh, at most once per interval, so a broken proxy cannot turn the
/// soak into a reconnect storm.
async fn connection(
    addr: SocketAddr,
    first: Instant,
    interval: Duration,
    deadline: Instant,
    counters: Arc<Counters>,
    opening: Arc<tokio::sync::Semaphore>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut sender = None;
    let mut next = first;
    while next < deadline {
        if sender.is_none() {
            let permit = opening
                .acquire()
                .await
                .expect("the semaphore is never closed");
            match open(addr).await {
                Ok(s) => {
                    counters.open.fetch_add(1, Ordering::SeqCst);
                    sender = Some(s);
                }
                Err(error) => counters.error(error),
            }
            drop(permit);
        }
        tokio::time::sleep_until(next).await;
        next += interval;
        let Some(s) = sender.as_mut() else { continue };
        match request(s).await {
            Ok(()) => {
                counters.requests.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => {
                counters.error(error);
                counters.open.fetch_sub(1, Ordering::SeqCst);
                sender = None;
            }
        }
    }
    let _ = stopped.wait_for(|stop| *stop).await;
    if sender.is_some() {
        counters.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            connections: 100,
            duration: Duration::from_secs(40),
            warmup: Duration::from_secs(10),
            rate: 100.0,
            sample_every: Duration::from_secs(5),
            threads: 1,
        }
    }

    /// Samples every 5 s whose RSS, fds and errors follow the given functions of time.
    fn series(rss: impl Fn(f64) -> u64, fds: impl Fn(f64) -> usize, errors: u64) -> Vec<Sample> {
        (0..=8)
            .map(|i| {
                let t = f64::from(i) * 5.0;
                Sample {
                    at_secs: t,
                    rss_bytes: rss(t),
                    fds: fds(t),
                    connections_open: 100,
                    requests: (t * 100.0) as u64,
                    errors: if t > 20.0 { errors } else { 0 },
                }
            })
            .collect()
    }

    const MIB: u64 = 1024 * 1024;

    fn failed(verdict: &Verdict) -> Vec<&'static str> {
        verdict
            .checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn steady_memory_and_descriptors_with_noise_pass() {
        let samples = series(
            |t| {
                20 * MIB
                    + if (t as u64 / 5).is_multiple_of(2) {
                        MIB
                    } else {
                        0
                    }
            },
            |t| 110 + (t as usize / 5) % 3,
            0,
        );
        let verdict = judge(&samples, &settings());
        assert!(verdict.pass(), "{verdict:?}");
    }

    #[test]
    fn growth_during_warmup_is_not_judged() {
        let samples = series(|t| if t < 10.0 { 5 * MIB } else { 30 * MIB }, |_| 100, 0);
        assert!(judge(&samples, &settings()).pass());
    }

    #[test]
    fn memory_growing_after_warmup_fails_rss() {
        // 0.5 MiB more every 5 s: about 3 MiB between the first and last thirds.
        let samples = series(|t| 20 * MIB + (t as u64 / 5) * MIB / 2, |_| 100, 0);
        assert_eq!(failed(&judge(&samples, &settings())), ["rss"]);
    }

    #[test]
    fn descriptors_growing_after_warmup_fail_fds() {
        let samples = series(|_| 20 * MIB, |t| 100 + 3 * t as usize, 0);
        assert_eq!(failed(&judge(&samples, &settings())), ["fds"]);
    }

    #[test]
    fn any_error_after_warmup_fails_errors() {
        let samples = series(|_| 20 * MIB, |_| 100, 1);
        assert_eq!(failed(&judge(&samples, &settings())), ["errors"]);
    }

    #[test]
    fn a_lost_connection_or_a_short_rate_fails_load() {
        let mut samples = series(|_| 20 * MIB, |_| 100, 0);
        samples[5].connections_open = 99;
        assert_eq!(failed(&judge(&samples, &settings())), ["load"]);
        let slow = Settings {
            rate: 200.0,
            ..settings()
        };
        let samples = series(|_| 20 * MIB, |_| 100, 0);
        assert_eq!(failed(&judge(&samples, &slow)), ["load"]);
    }

    #[test]
    fn too_few_samples_after_warmup_fail_everything() {
        let samples = series(|_| 20 * MIB, |_| 100, 0);
        let late = Settings {
            warmup: Duration::from_secs(36),
            ..settings()
        };
        let verdict = judge(&samples, &late);
        assert_eq!(failed(&verdict), ["rss", "fds", "errors", "load"]);
        assert!(
            verdict.checks[0].detail.contains("at least 3"),
            "{verdict:?}"
        );
    }
}
