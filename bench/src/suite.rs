//! The whole comparison in one run: for each proxy mode, each scenario over the same
//! backends, each protocol: closed-loop latency, fixed-rate latency with CPU per request,
//! maximum throughput with CPU per request; then per scenario the proxies' memory and the new
//! connection rate; finally the tracing overhead.

use std::collections::BTreeMap;

use anyhow::Context as _;
use strait_tests::otlp;

use crate::clients::Protocol;
use crate::handshakes;
use crate::latency;
use crate::resources::{self, PeakSampler};
use crate::results::{Cell, ConnectionRow, Memory, ModeResults, TracingRow};
use crate::settings::Settings;
use crate::throughput::{self, Load};
use crate::world::{Backends, Scenario, World};

fn mode_name(threads: usize) -> String {
    match threads {
        0 => "default".into(),
        n => format!("threads-{n}"),
    }
}

fn load(settings: &Settings) -> Load {
    Load {
        concurrency: settings.concurrency,
        h2_connections: settings.h2_connections,
        generator_threads: settings.generator_threads,
    }
}

/// A scenario's world, started off the async workers (starting waits for processes).
fn start_world(
    scenario: Scenario,
    backends: &Backends,
    flags: &[(&str, String)],
) -> anyhow::Result<World> {
    tokio::task::block_in_place(|| World::start(scenario, backends, flags))
        .with_context(|| format!("starting {}", scenario.label()))
}

/// Whether `scenario` runs in the mode with `threads` proxy workers: the peers run one worker
/// per side, so they stand beside the one-thread mode only, and only when asked for.
fn runs_in_mode(scenario: Scenario, threads: usize, settings: &Settings) -> bool {
    match scenario.peer() {
        Some(peer) => threads == 1 && !settings.no_peers && settings.peers.contains(&peer),
        None => true,
    }
}

/// Measures one protocol through one world.
async fn cell(world: &World, protocol: Protocol, settings: &Settings) -> anyhow::Result<Cell> {
    measure_cell(world, protocol, settings)
        .await
        .map_err(|error| error.context(world.recent_logs(20)))
}

async fn measure_cell(
    world: &World,
    protocol: Protocol,
    settings: &Settings,
) -> anyhow::Result<Cell> {
    let target = world.target(protocol);
    let what = format!("{} through {}", protocol.label(), world.scenario.label());
    let closed_loop = latency::closed_loop(protocol, &target, settings.closed_loop)
        .await
        .with_context(|| format!("closed-loop latency, {what}"))?;
    let before = resources::cpu_mark(&world.proxies)?;
    let fixed_rate = latency::fixed_rate(
        protocol,
        &target,
        settings.rate,
        settings.rate_duration,
        settings.rate_connections,
    )
    .await
    .with_context(|| format!("fixed-rate latency, {what}"))?;
    let fixed_rate_cpu_us = resources::cpu_per(&world.proxies, &before, fixed_rate.latency.count)?;
    let before = resources::cpu_mark(&world.proxies)?;
    let throughput = throughput::measure(
        protocol,
        &target,
        load(settings),
        settings.throughput_duration,
    )
    .await
    .with_context(|| format!("throughput, {what}"))?;
    let units = match protocol {
        // A byte stream has no requests: CPU per MiB carried.
        Protocol::Tcp => throughput.completed >> 20,
        _ => throughput.completed,
    };
    let throughput_cpu_us = resources::cpu_per(&world.proxies, &before, units)?;
    eprintln!(
        "  {:<9} {:<10} closed p50 {:>7.1} µs | {:.0} rps p50 {:>7.1} µs p99 {:>8.1} µs | max {:>10.0}/s ({} errors)",
        protocol.label(),
        world.scenario.label(),
        closed_loop.p50_us,
        settings.rate,
        fixed_rate.latency.p50_us,
        fixed_rate.latency.p99_us,
        throughput.per_second,
        throughput.errors + fixed_rate.latency.errors + closed_loop.errors,
    );
    Ok(Cell {
        protocol,
        scenario: world.scenario,
        closed_loop,
        fixed_rate,
        fixed_rate_cpu_us,
        throughput,
        throughput_cpu_us,
    })
}

/// KiB each proxy holds per idle `protocol` client connection.
async fn idle_kib(
    world: &World,
    protocol: Protocol,
    settings: &Settings,
) -> anyhow::Result<BTreeMap<String, f64>> {
    resources::idle_connection_kib(
        &world.proxies,
        &world.target(protocol),
        protocol,
        settings.held_connections,
    )
    .await
    .with_context(|| {
        format!(
            "idle {} connections through {}",
            protocol.label(),
            world.scenario.label()
        )
    })
}

/// Every measurement of one proxy mode.
async fn mode(
    threads: usize,
    backends: &Backends,
    settings: &Settings,
) -> anyhow::Result<ModeResults> {
    let flags = [("--threads", threads.to_string())];
    let mut results = ModeResults {
        mode: mode_name(threads),
        threads,
        cells: Vec::new(),
        memory: Vec::new(),
        connections: Vec::new(),
    };
    for scenario in Scenario::ALL {
        if !runs_in_mode(scenario, threads, settings) {
            continue;
        }
        eprintln!("{} · {}", results.mode, scenario.label());
        let world = start_world(scenario, backends, &flags)?;
        // Let the proxies finish starting (snapshot applied, tasks parked) before "idle".
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let idle_mib = resources::rss_mib(&world.proxies)?;
        // Per idle connection on fresh proxies, before any load: afterwards the allocator
        // hands memory freed by the load to new connections without growing RSS, and the
        // figure would understate what a connection costs.
        let (idle_kib_http1, idle_kib_http2) = if world.proxies.is_empty() {
            (BTreeMap::new(), BTreeMap::new())
        } else {
            (
                idle_kib(&world, Protocol::Http1, settings).await?,
                idle_kib(&world, Protocol::Http2, settings).await?,
            )
        };
        let sampler = PeakSampler::start(&world.proxies);
        for &protocol in &settings.protocols {
            results.cells.push(cell(&world, protocol, settings).await?);
        }
        let before = resources::cpu_mark(&world.proxies)?;
        let target = world.target(Protocol::Tcp);
        let result = handshakes::measure(
            &world,
            &target,
            settings.connection_concurrency,
            settings.connection_duration,
        )
        .await
        .with_context(|| format!("new connections through {}", scenario.label()))?;
        let cpu_us = resources::cpu_per(&world.proxies, &before, result.connections)?;
        eprintln!(
            "  new connections {:>8.0}/s{}",
            result.per_second,
            result
                .tls_handshakes
                .map(|n| format!(" ({n} inbound mTLS handshakes)"))
                .unwrap_or_default()
        );
        results.connections.push(ConnectionRow {
            scenario,
            result,
            cpu_us,
        });
        let load_peak_mib = sampler.finish().await;
        if !world.proxies.is_empty() {
            let many = resources::many_connections(
                &world.proxies,
                &world.target(Protocol::Http1),
                settings.held_connections,
            )
            .await
            .with_context(|| format!("holding connections through {}", scenario.label()))?;
            results.memory.push(Memory {
                scenario,
                idle_mib,
                load_peak_mib,
                many,
                idle_kib_http1,
                idle_kib_http2,
            });
        }
    }
    Ok(results)
}

/// `mesh-mtls` HTTP/1.1 with an OTLP collector at sampling 0 and 1.
async fn tracing_overhead(
    threads: usize,
    backends: &Backends,
    settings: &Settings,
    baseline: Option<&Cell>,
) -> anyhow::Result<Vec<TracingRow>> {
    let mut rows = Vec::new();
    if let Some(base) = baseline {
        rows.push(TracingRow {
            variant: "no collector".into(),
            closed_loop: base.closed_loop.clone(),
            fixed_rate: base.fixed_rate.clone(),
            fixed_rate_cpu_us: base.fixed_rate_cpu_us.clone(),
            throughput: base.throughput.clone(),
            throughput_cpu_us: base.throughput_cpu_us.clone(),
            spans: 0,
        });
    }
    for ratio in ["0", "1"] {
        let sink = otlp::Receiver::start().await;
        let flags = [
            ("--threads", threads.to_string()),
            ("--trace-collector", sink.url()),
            ("--trace-sample-ratio", ratio.to_owned()),
        ];
        eprintln!(
            "{} · mesh-mtls · tracing, sampling {ratio}",
            mode_name(threads)
        );
        let world = start_world(Scenario::MeshMtls, backends, &flags)?;
        let cell = cell(&world, Protocol::Http1, settings).await?;
        drop(world);
        rows.push(TracingRow {
            variant: format!("sampling {ratio}"),
            closed_loop: cell.closed_loop,
            fixed_rate: cell.fixed_rate,
            fixed_rate_cpu_us: cell.fixed_rate_cpu_us,
            throughput: cell.throughput,
            throughput_cpu_us: cell.throughput_cpu_us,
            spans: sink.spans().len(),
        });
    }
    Ok(rows)
}

/// Runs every mode, then the tracing overhead in the first mode.
pub async fn run(settings: &Settings) -> anyhow::Result<(Vec<ModeResults>, Vec<TracingRow>)> {
    let backends = Backends::start().await?;
    let mut modes = Vec::new();
    for &threads in &settings.threads {
        modes.push(mode(threads, &backends, settings).await?);
    }
    let tracing = match (settings.no_tracing, settings.threads.first()) {
        (false, Some(&threads)) => {
            let baseline = modes
                .first()
                .and_then(|m| m.cell(Protocol::Http1, Scenario::MeshMtls));
            tracing_overhead(threads, &backends, settings, baseline).await?
        }
        _ => Vec::new(),
    };
    Ok((modes, tracing))
}
