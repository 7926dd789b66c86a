//! Maximum throughput at a fixed concurrency: `wrk` for HTTP/1.1 and `h2load` for HTTP/2
//! (well-kept generators, run as processes, their summaries parsed), a small closed-loop
//! driver for gRPC unary calls, and one long TCP stream into the sink for bytes per second.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::clients::{Conn, PATH, Protocol, Target, open_tcp};
use crate::tcp_backend;

/// What one throughput measurement achieved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Throughput {
    /// The generator: `wrk`, `h2load`, `strait-bench`.
    pub tool: String,
    /// How the load was shaped, e.g. `64 connections` or `4 connections × 16 streams`.
    pub shape: String,
    /// Calls completed (for TCP: bytes received by the sink).
    pub completed: u64,
    /// Failed calls (non-2xx answers, socket errors).
    pub errors: u64,
    /// `completed` per second.
    pub per_second: f64,
}

/// How much concurrency the throughput runs use.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Load {
    /// Requests in flight at once (HTTP/1.1: connections; HTTP/2 and gRPC: streams).
    pub concurrency: usize,
    /// Connections the HTTP/2 and gRPC streams share.
    pub h2_connections: usize,
    /// `wrk`/`h2load` threads.
    pub generator_threads: usize,
}

/// Measures `protocol`'s throughput at `target` for `duration`.
pub async fn measure(
    protocol: Protocol,
    target: &Target,
    load: Load,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    match protocol {
        Protocol::Http1 => wrk(target, load, duration).await,
        Protocol::Http2 => h2load(target, load, duration).await,
        Protocol::Grpc => grpc(target, load, duration).await,
        Protocol::Tcp => tcp_stream(target, duration).await,
    }
}

async fn run_tool(command: &mut Command, name: &str) -> anyhow::Result<String> {
    let output = command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {name} (scripts/bench installs it)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{name} exited with {}: {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

fn number_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let at = text.find(prefix)? + prefix.len();
    text[at..].split_whitespace().next()
}

/// The figures of a `wrk` summary: requests, errors, requests per second.
fn parse_wrk(out: &str) -> anyhow::Result<(u64, u64, f64)> {
    let requests = out
        .lines()
        .find_map(|l| {
            let (n, _) = l.trim().split_once(" requests in ")?;
            n.parse().ok()
        })
        .with_context(|| format!("no request count in wrk's output:\n{out}"))?;
    let rate = number_after(out, "Requests/sec:")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{out}"))?;
    let non_2xx: u64 = number_after(out, "Non-2xx or 3xx responses:")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let socket: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|rest| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok((requests, non_2xx + socket, rate))
}

async fn wrk(target: &Target, load: Load, duration: Duration) -> anyhow::Result<Throughput> {
    let out = run_tool(
        Command::new("wrk")
            .arg(format!("-t{}", load.generator_threads))
            .arg(format!("-c{}", load.concurrency))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg("-H")
            .arg(format!("Host: {}", target.authority))
            .arg(format!("http://{}{PATH}", target.addr)),
        "wrk",
    )
    .await?;
    let (completed, errors, per_second) = parse_wrk(&out)?;
    Ok(Throughput {
        tool: "wrk".into(),
        shape: format!(
            "{} connections, {} thread(s)",
            load.concurrency, load.generator_threads
        ),
        completed,
        errors,
        per_second,
    })
}

/// The figures of an `h2load` summary: succeeded, failed + errored, requests per second.
fn parse_h2load(out: &str) -> anyhow::Result<(u64, u64, f64)> {
    let rate = out
        .lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix("finished in ")?;
            let (_, rate) = rest.split_once(", ")?;
            rate.split_whitespace().next()?.parse().ok()
        })
        .with_context(|| format!("no req/s in h2load's output:\n{out}"))?;
    let requests = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("requests:"))
        .with_context(|| format!("no requests line in h2load's output:\n{out}"))?;
    let field = |name: &str| -> u64 {
        requests
            .split(',')
            .find_map(|part| {
                let part = part.trim();
                part.strip_suffix(name)?.trim().parse().ok()
            })
            .unwrap_or(0)
    };
    Ok((
        field("succeeded"),
        field("failed") + field("errored") + field("timeout"),
        rate,
    ))
}

async fn h2load(target: &Target, load: Load, duration: Duration) -> anyhow::Result<Throughput> {
    let connections = load.h2_connections.clamp(1, load.concurrency.max(1));
    let streams = (load.concurrency / connections).max(1);
    let out = run_tool(
        Command::new("h2load")
            .arg(format!("--threads={}", load.generator_threads))
            .arg(format!("--clients={connections}"))
            .arg(format!("--max-concurrent-streams={streams}"))
            .arg(format!("--duration={}", duration.as_secs().max(1)))
            .arg("--warm-up-time=1")
            .arg(format!("--header=:authority: {}", target.authority))
            .arg(format!("http://{}{PATH}", target.addr)),
        "h2load",
    )
    .await?;
    let (completed, errors, per_second) = parse_h2load(&out)?;
    Ok(Throughput {
        tool: "h2load".into(),
        shape: format!(
            "{connections} connections × {streams} streams, {} thread(s)",
            load.generator_threads
        ),
        completed,
        errors,
        per_second,
    })
}

async fn grpc(target: &Target, load: Load, duration: Duration) -> anyhow::Result<Throughput> {
    let connections = load.h2_connections.clamp(1, load.concurrency.max(1));
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(Conn::open(Protocol::Grpc, target).await?);
    }
    let completed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut callers = tokio::task::JoinSet::new();
    for i in 0..load.concurrency.max(1) {
        let mut conn = channels[i % connections]
            .share()
            .expect("gRPC channels are shared");
        let (completed, errors) = (completed.clone(), errors.clone());
        callers.spawn(async move {
            while Instant::now() < deadline {
                match conn.call().await {
                    Ok(()) => completed.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while callers.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let completed = completed.load(Ordering::SeqCst);
    Ok(Throughput {
        tool: "strait-bench".into(),
        shape: format!(
            "{connections} connections × {} calls",
            load.concurrency / connections
        ),
        completed,
        errors: errors.load(Ordering::SeqCst),
        per_second: completed as f64 / elapsed,
    })
}

/// Writes into the sink as fast as the path takes for `duration`, then half-closes and
/// reads the sink's count: bytes per second are bytes that arrived.
async fn tcp_stream(target: &Target, duration: Duration) -> anyhow::Result<Throughput> {
    let mut stream = open_tcp(target, tcp_backend::SINK).await?;
    let chunk = vec![0x5au8; 256 * 1024];
    let start = Instant::now();
    while start.elapsed() < duration {
        stream.write_all(&chunk).await.context("streaming")?;
    }
    stream.shutdown().await.context("half-closing the stream")?;
    let received = stream
        .read_u64()
        .await
        .context("reading the sink's count")?;
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Throughput {
        tool: "strait-bench".into(),
        shape: "1 connection, 256 KiB writes".into(),
        completed: received,
        errors: 0,
        per_second: received as f64 / elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summary_is_read_with_its_errors() {
        let out = "Running 5s test @ http://127.0.0.1:1/status?code=200
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.81ms  444.85us  10.05ms   87.26%
    Req/Sec    22.86k     1.05k   24.27k    80.00%
  113743 requests in 5.00s, 10.52MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 4
Requests/sec:  22747.34
Transfer/sec:      2.10MB
";
        assert_eq!(parse_wrk(out).unwrap(), (113743, 7, 22747.34));
        assert!(parse_wrk("nothing").is_err());
    }

    #[test]
    fn h2load_summary_is_read_with_its_failures() {
        let out = "starting benchmark...
finished in 5.00s, 41234.60 req/s, 1.38MB/s
requests: 206173 total, 206237 started, 206173 done, 206170 succeeded, 3 failed, 0 errored, 0 timeout
status codes: 206170 2xx, 0 3xx, 0 4xx, 3 5xx
";
        assert_eq!(parse_h2load(out).unwrap(), (206170, 3, 41234.60));
        assert!(parse_h2load("finished in").is_err());
    }
}
