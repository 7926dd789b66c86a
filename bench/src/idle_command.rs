//! `strait-bench idle`: what one idle client connection costs each proxy, on fresh meshes
//! (mesh-plain and mesh-mtls), for HTTP/1.1 and HTTP/2 — the figure `run` reports in its
//! memory table, measured alone so it can be checked in a minute, on any build.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::clients::Protocol;
use crate::resources;
use crate::settings::IdleArgs;
use crate::world::{Backends, Scenario, World};

/// One round's figures for one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct IdleRow {
    /// Which mesh.
    pub scenario: Scenario,
    /// Which round (from 1).
    pub round: usize,
    /// Each proxy's RSS before the connections, MiB.
    pub idle_mib: BTreeMap<String, f64>,
    /// KiB per idle HTTP/1.1 client connection, per proxy.
    pub http1_kib: BTreeMap<String, f64>,
    /// KiB per idle HTTP/2 client connection, per proxy.
    pub http2_kib: BTreeMap<String, f64>,
    /// HTTP/1 connections parked per proxy when the HTTP/1.1 figure was read.
    pub http1_parked: BTreeMap<String, f64>,
}

/// Measures every round.
pub async fn run(args: &IdleArgs) -> anyhow::Result<Vec<IdleRow>> {
    let backends = Backends::start().await?;
    let flags = [("--threads", args.threads.to_string())];
    let mut rows = Vec::new();
    for round in 1..=args.rounds {
        for scenario in [Scenario::MeshPlain, Scenario::MeshMtls] {
            let world = tokio::task::block_in_place(|| World::start(scenario, &backends, &flags))
                .with_context(|| format!("starting {}", scenario.label()))?;
            // As `run` does: let the proxies finish starting before "idle".
            tokio::time::sleep(Duration::from_millis(500)).await;
            let idle_mib = resources::rss_mib(&world.proxies)?;
            let http1 = measure(&world, Protocol::Http1, args).await?;
            let http2 = measure(&world, Protocol::Http2, args).await?;
            let (http1_kib, http1_parked, http2_kib) = (http1.kib, http1.parked, http2.kib);
            eprintln!(
                "round {round} {:<10} HTTP/1.1 {} (parked {}) | HTTP/2 {}",
                scenario.label(),
                pair(&http1_kib),
                pair(&http1_parked),
                pair(&http2_kib)
            );
            rows.push(IdleRow {
                scenario,
                round,
                idle_mib,
                http1_kib,
                http2_kib,
                http1_parked,
            });
        }
    }
    Ok(rows)
}

/// KiB per idle `protocol` connection, if it is among those asked for.
async fn measure(
    world: &World,
    protocol: Protocol,
    args: &IdleArgs,
) -> anyhow::Result<resources::IdleReading> {
    if !args.protocols.contains(&protocol) {
        return Ok(resources::IdleReading {
            kib: BTreeMap::new(),
            parked: BTreeMap::new(),
        });
    }
    let target = world.target(protocol);
    resources::idle_connections(&world.proxies, &target, protocol, args.connections).await
}

/// `outbound / inbound`, one decimal.
fn pair(by_role: &BTreeMap<String, f64>) -> String {
    let get = |role: &str| by_role.get(role).map_or("–".into(), |v| format!("{v:.1}"));
    format!("{} / {}", get("outbound"), get("inbound"))
}

/// The rounds as markdown.
pub fn render(rows: &[IdleRow], args: &IdleArgs, machine: &str, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "- Machine: {machine}");
    let _ = writeln!(out, "- Command: `{command}`");
    let _ = writeln!(
        out,
        "- Binaries: {}",
        args.output
            .bin_dir
            .as_ref()
            .map_or("beside strait-bench".into(), |d| d.display().to_string())
    );
    let _ = writeln!(
        out,
        "- Setup: fresh proxies (`--threads {}`), {} client connections each carrying one request (50 at a time) and then idle; RSS growth ÷ connections, outbound / inbound proxy\n",
        args.threads, args.connections
    );
    let _ = writeln!(
        out,
        "| round | scenario | idle RSS (MiB) | KiB per idle HTTP/1.1 connection | HTTP/1.1 connections parked | KiB per idle HTTP/2 connection |\n|---|---|---|---|---|---|"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.round,
            row.scenario.label(),
            pair(&row.idle_mib),
            pair(&row.http1_kib),
            pair(&row.http1_parked),
            pair(&row.http2_kib)
        );
    }
    out
}
