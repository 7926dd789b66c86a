//! What the proxies spend: on-CPU time around a measurement (per request served), resident
//! memory idle, under load (sampled while a measurement runs) and with many client
//! connections held open.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use strait_tests::procstat;

use crate::clients::{Conn, Protocol, Target};
use crate::world::ProxyProcess;

/// On-CPU time of each proxy at one moment.
pub struct CpuMark(Vec<(&'static str, Duration)>);

/// Reads every proxy's on-CPU time.
pub fn cpu_mark(proxies: &[ProxyProcess]) -> anyhow::Result<CpuMark> {
    proxies
        .iter()
        .map(|p| {
            procstat::cpu_time(p.pid)
                .map(|t| (p.role, t))
                .with_context(|| format!("reading the {} proxy's CPU time", p.role))
        })
        .collect::<anyhow::Result<_>>()
        .map(CpuMark)
}

/// Microseconds of CPU each proxy spent per unit of work between `before` and now.
pub fn cpu_per(
    proxies: &[ProxyProcess],
    before: &CpuMark,
    units: u64,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let after = cpu_mark(proxies)?;
    Ok(before
        .0
        .iter()
        .zip(after.0)
        .map(|((role, then), (_, now))| {
            let us = (now - *then).as_secs_f64() * 1e6 / units.max(1) as f64;
            ((*role).to_owned(), us)
        })
        .collect())
}

/// Each proxy's resident memory now, in MiB.
pub fn rss_mib(proxies: &[ProxyProcess]) -> anyhow::Result<BTreeMap<String, f64>> {
    proxies
        .iter()
        .map(|p| {
            procstat::rss_bytes(p.pid)
                .map(|b| (p.role.to_owned(), b as f64 / (1024.0 * 1024.0)))
                .with_context(|| format!("reading the {} proxy's RSS", p.role))
        })
        .collect()
}

/// Samples the proxies' RSS every 100 ms while running, keeping each one's peak.
pub struct PeakSampler {
    task: tokio::task::JoinHandle<BTreeMap<String, f64>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl PeakSampler {
    /// Starts sampling.
    pub fn start(proxies: &[ProxyProcess]) -> Self {
        let proxies = proxies.to_vec();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peaks: BTreeMap<String, f64> = BTreeMap::new();
            loop {
                if let Ok(now) = rss_mib(&proxies) {
                    for (role, mib) in now {
                        let peak = peaks.entry(role).or_default();
                        *peak = peak.max(mib);
                    }
                }
                tokio::select! {
                    _ = &mut stopped => return peaks,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        });
        Self { task, stop }
    }

    /// Stops sampling and returns the peaks.
    pub async fn finish(self) -> BTreeMap<String, f64> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// The proxies' memory with many client connections open at once.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ManyConnections {
    /// Client connections opened and held (of the number asked for).
    pub connections: usize,
    /// Of which answered their request.
    pub answered: usize,
    /// Each proxy's RSS (MiB) with all of them open and each having carried a request.
    pub rss_mib: BTreeMap<String, f64>,
}

/// Opens `n` HTTP/1.1 connections to `target`, sends one request on each with all of them
/// in flight together (so the proxies hold a connection upstream for each too), and reads
/// the proxies' RSS while every connection is still open.
pub async fn many_connections(
    proxies: &[ProxyProcess],
    target: &Target,
    n: usize,
) -> anyhow::Result<ManyConnections> {
    // Open at most this many at a time, so the listen backlog never overflows.
    let opening = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (target, opening) = (target.clone(), opening.clone());
        opens.spawn(async move {
            let _permit = opening.acquire_owned().await;
            Conn::open(Protocol::Http1, &target).await
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(opened) = opens.join_next().await {
        if let Ok(conn) = opened.context("a connection task panicked")? {
            conns.push(conn);
        }
    }
    let opened = conns.len();
    let calls = futures_util::future::join_all(conns.iter_mut().map(|c| c.call())).await;
    let answered = calls.iter().filter(|r| r.is_ok()).count();
    // Let the proxies settle (pool bookkeeping, freed buffers) before reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_mib = rss_mib(proxies)?;
    drop(conns);
    Ok(ManyConnections {
        connections: opened,
        answered,
        rss_mib,
    })
}

/// What one idle client connection costs each proxy, in KiB: the growth of each proxy's RSS
/// with `n` connections open, each having carried one request and then gone quiet, divided
/// by `n`. Requests go 50 at a time, so the proxies' upstream connections stay few and the
/// figure is the client side's (issue 15's budget: ≤ 10 KiB).
pub async fn idle_connection_kib(
    proxies: &[ProxyProcess],
    target: &Target,
    protocol: Protocol,
    n: usize,
) -> anyhow::Result<BTreeMap<String, f64>> {
    Ok(idle_connections(proxies, target, protocol, n).await?.kib)
}

/// What [`idle_connections`] read.
pub struct IdleReading {
    /// KiB per idle connection, per proxy.
    pub kib: BTreeMap<String, f64>,
    /// HTTP/1 connections each Strait proxy had parked (`strait_http1_connections_parked`)
    /// when its RSS was read.
    pub parked: BTreeMap<String, f64>,
}

/// [`idle_connection_kib`], with the count of parked connections read at the same moment.
pub async fn idle_connections(
    proxies: &[ProxyProcess],
    target: &Target,
    protocol: Protocol,
    n: usize,
) -> anyhow::Result<IdleReading> {
    const BATCH: usize = 50;
    let before = rss_mib(proxies)?;
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = BATCH.min(n - conns.len());
        let opened =
            futures_util::future::join_all((0..batch).map(|_| Conn::open(protocol, target))).await;
        let mut batch: Vec<Conn> = opened
            .into_iter()
            .collect::<anyhow::Result<_>>()
            .context("opening idle connections")?;
        for result in futures_util::future::join_all(batch.iter_mut().map(Conn::call)).await {
            result.context("a request on a connection about to idle")?;
        }
        conns.extend(batch);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_mib(proxies)?;
    let mut parked = BTreeMap::new();
    for proxy in proxies {
        if let Some(admin) = proxy.admin {
            let metrics = strait_tests::metrics::Metrics::fetch(admin).await;
            parked.insert(
                proxy.role.to_owned(),
                metrics.sum("strait_http1_connections_parked", &[]),
            );
        }
    }
    drop(conns);
    let kib = after
        .into_iter()
        .map(|(role, mib)| {
            let grown = mib - before.get(&role).copied().unwrap_or(mib);
            (role, grown * 1024.0 / n as f64)
        })
        .collect();
    Ok(IdleReading { kib, parked })
}
