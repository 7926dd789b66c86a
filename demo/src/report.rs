//! What the demo prints: a banner with every admin URL and how to change the canary, then a
//! report every few seconds of what the client sees and what the proxies measure.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use strait_cli::render::table;
use strait_cli::stat::{self, millis, percent};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::DemoWorkload;
use crate::apps::Driver;
use crate::output::say;
use crate::processes::{Children, Scratch};

/// Prints where everything is and what to try.
pub fn banner(
    workloads: &[DemoWorkload],
    control_plane: SocketAddr,
    admin: SocketAddr,
    config: &Path,
    scratch: &Scratch,
) {
    say!();
    say!(
        "Strait local mesh is up: control plane {control_plane} (admin http://{admin}), {} proxies.",
        workloads.len()
    );
    say!("Proxy admin endpoints (/metrics, /config, /status, /ready):");
    for w in workloads {
        say!(
            "  {:<14} http://{}   app {}  identity spiffe://cluster.local/ns/demo/sa/{}",
            w.name,
            w.admin,
            w.app,
            w.service_account
        );
    }
    say!(
        "Try: change the canary weights (90/10) in {} — the proxies follow within a second.",
        crate::display(&config.join("routes.yaml"))
    );
    say!(
        "     curl -s http://{}/config | head    # a proxy's routing snapshot",
        workloads[0].admin
    );
    say!(
        "Logs: {}   Ctrl-C stops everything and removes them.",
        scratch.path().join("logs").display()
    );
    say!();
}

fn p(latencies: &mut [f64], q: f64) -> Option<f64> {
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_by(f64::total_cmp);
    let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
    latencies.get(index).copied()
}

/// Reports every `refresh` until Ctrl-C, SIGTERM, `duration`, or a process dying.
pub async fn run(
    workloads: &[DemoWorkload],
    frontend: &DemoWorkload,
    driver: &Driver,
    refresh: Duration,
    duration: Option<Duration>,
    children: &mut Children,
) -> anyhow::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let started = Instant::now();
    let admins: Vec<SocketAddr> = workloads.iter().map(|w| w.admin).collect();
    let backend_admins: Vec<SocketAddr> = workloads
        .iter()
        .filter(|w| w.name != frontend.name)
        .map(|w| w.admin)
        .collect();
    let mut before = scrape_all(&admins).await;
    let _ = driver.take();
    loop {
        let stop = tokio::select! {
            _ = interrupt.recv() => Some("Ctrl-C"),
            _ = terminate.recv() => Some("SIGTERM"),
            () = tokio::time::sleep(refresh) => None,
        };
        if let Some(reason) = stop {
            say!("strait-demo: {reason}: stopping");
            return Ok(());
        }
        if crate::output::closed() {
            eprintln!("strait-demo: standard output closed: stopping");
            return Ok(());
        }
        let exited = children.exited();
        anyhow::ensure!(
            exited.is_empty(),
            "{} exited unexpectedly; see the logs",
            exited.join(", ")
        );
        let after = scrape_all(&admins).await;
        let mut window = driver.take();
        let (total, total_ok) = driver.totals();
        let elapsed = started.elapsed().as_secs();
        say!("── {elapsed}s ────────────────────────────────────────────────────────────────");
        let seconds = refresh.as_secs_f64();
        say!(
            "client → frontend   rps {:.1}  success {}  p50 {}  p99 {}   (since start: {total} requests, {} ok)",
            window.requests as f64 / seconds,
            percent((window.requests > 0).then(|| window.ok as f64 / window.requests as f64)),
            millis(p(&mut window.latencies, 0.5)),
            millis(p(&mut window.latencies, 0.99)),
            percent((total > 0).then(|| total_ok as f64 / total as f64)),
        );
        if let (Some(before), Some(after)) = (&before, &after) {
            let frontend_index = workloads
                .iter()
                .position(|w| w.name == frontend.name)
                .unwrap_or(0);
            let rows = stat::outbound(&[&before[frontend_index]], &[&after[frontend_index]], None);
            say!("frontend's proxy → backend, per backend (after retries):");
            crate::output::write(&stat::outbound_table(&rows));
            let inbound = stat::inbound(
                &backend_admins,
                &backend_indexes(workloads, frontend)
                    .map(|i| &before[i])
                    .collect::<Vec<_>>(),
                &backend_indexes(workloads, frontend)
                    .map(|i| &after[i])
                    .collect::<Vec<_>>(),
            );
            say!("each backend replica, as its own proxy sees it (before retries):");
            let names: Vec<&str> = workloads
                .iter()
                .filter(|w| w.name != frontend.name)
                .map(|w| w.name.as_str())
                .collect();
            crate::output::write(&table(
                &[
                    "REPLICA",
                    "SERVICE",
                    "RPS",
                    "SUCCESS",
                    "P50",
                    "P99",
                    "MTLS",
                    "CALLERS (mTLS identities)",
                ],
                &inbound
                    .iter()
                    .map(|row| {
                        let replica = names
                            .iter()
                            .zip(&backend_admins)
                            .find(|(_, a)| a.to_string() == row.proxy)
                            .map(|(n, _)| n.to_string())
                            .unwrap_or_else(|| row.proxy.clone());
                        vec![
                            replica,
                            row.service.clone(),
                            format!("{:.1}", row.signals.rps),
                            percent(row.signals.success),
                            millis(row.signals.p50),
                            millis(row.signals.p99),
                            percent(row.mtls_share),
                            row.mtls_identities.join(" "),
                        ]
                    })
                    .collect::<Vec<_>>(),
            ));
        }
        before = after;
        if let Some(limit) = duration
            && started.elapsed() >= limit
        {
            say!("strait-demo: ran for {limit:?}: stopping");
            return Ok(());
        }
    }
}

fn backend_indexes<'a>(
    workloads: &'a [DemoWorkload],
    frontend: &'a DemoWorkload,
) -> impl Iterator<Item = usize> + 'a {
    workloads
        .iter()
        .enumerate()
        .filter(move |(_, w)| w.name != frontend.name)
        .map(|(i, _)| i)
}

async fn scrape_all(admins: &[SocketAddr]) -> Option<Vec<stat::Snapshot>> {
    let mut out = Vec::new();
    for admin in admins {
        out.push(stat::scrape(*admin).await.ok()?);
    }
    Some(out)
}
