//! The results of one benchmark run as data: what the JSON file holds and the markdown is
//! rendered from, plus the comparison with issue 18's targets.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clients::Protocol;
use crate::comparison::PeerRow;
use crate::handshakes::Handshakes;
use crate::latency::{Rated, Summary};
use crate::machine::Machine;
use crate::resources::ManyConnections;
use crate::settings::Settings;
use crate::throughput::Throughput;
use crate::world::Scenario;

/// One run.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    /// When it ran (UTC).
    pub date: String,
    /// The commit measured (`-dirty` when the tree had changes).
    pub commit: String,
    /// The command as typed.
    pub command: String,
    /// Where it ran.
    pub machine: Machine,
    /// How it ran.
    pub settings: Settings,
    /// One entry per proxy mode.
    pub modes: Vec<ModeResults>,
    /// Metrics + tracing overhead (first mode, `mesh-mtls`, HTTP/1.1).
    pub tracing: Vec<TracingRow>,
    /// Strait against the peers (the one-thread mode).
    pub peers: Vec<PeerRow>,
    /// Issue 18's targets against this run.
    pub targets: Vec<TargetRow>,
}

/// Everything measured with the proxies in one mode.
#[derive(Clone, Debug, Serialize)]
pub struct ModeResults {
    /// `threads-1` or `default`.
    pub mode: String,
    /// The proxies' `--threads` (0: one per core).
    pub threads: usize,
    /// One per protocol and scenario.
    pub cells: Vec<Cell>,
    /// One per scenario with proxies.
    pub memory: Vec<Memory>,
    /// One per scenario.
    pub connections: Vec<ConnectionRow>,
}

/// One protocol through one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    /// The protocol.
    pub protocol: Protocol,
    /// The scenario.
    pub scenario: Scenario,
    /// One call at a time on one connection.
    pub closed_loop: Summary,
    /// At the fixed rate, from intended start times.
    pub fixed_rate: Rated,
    /// Proxies' CPU µs per request during the fixed-rate run, by role.
    pub fixed_rate_cpu_us: BTreeMap<String, f64>,
    /// At the fixed concurrency, as fast as it goes.
    pub throughput: Throughput,
    /// Proxies' CPU µs per request (TCP: per MiB) during the throughput run, by role.
    pub throughput_cpu_us: BTreeMap<String, f64>,
}

/// The proxies' memory in one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    /// The scenario.
    pub scenario: Scenario,
    /// RSS (MiB) by role after start, before any traffic.
    pub idle_mib: BTreeMap<String, f64>,
    /// Peak RSS (MiB) by role over every measurement of the scenario.
    pub load_peak_mib: BTreeMap<String, f64>,
    /// RSS with many client connections open.
    pub many: ManyConnections,
    /// KiB per idle HTTP/1.1 client connection, by role.
    pub idle_kib_http1: BTreeMap<String, f64>,
    /// KiB per idle HTTP/2 client connection, by role.
    pub idle_kib_http2: BTreeMap<String, f64>,
}

/// New connections per second through one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionRow {
    /// The scenario.
    pub scenario: Scenario,
    /// What was achieved.
    pub result: Handshakes,
    /// Proxies' CPU µs per connection, by role.
    pub cpu_us: BTreeMap<String, f64>,
}

/// `mesh-mtls` HTTP/1.1 with one tracing setting.
#[derive(Clone, Debug, Serialize)]
pub struct TracingRow {
    /// `no collector`, `sampling 0`, `sampling 1`.
    pub variant: String,
    /// One call at a time on one connection.
    pub closed_loop: Summary,
    /// At the fixed rate.
    pub fixed_rate: Rated,
    /// Proxies' CPU µs per request during the fixed-rate run.
    pub fixed_rate_cpu_us: BTreeMap<String, f64>,
    /// At the fixed concurrency.
    pub throughput: Throughput,
    /// Proxies' CPU µs per request during the throughput run.
    pub throughput_cpu_us: BTreeMap<String, f64>,
    /// Spans the in-process OTLP sink received.
    pub spans: usize,
}

/// One of issue 18's targets.
#[derive(Clone, Debug, Serialize)]
pub struct TargetRow {
    /// The target as the issue states it.
    pub target: String,
    /// What this run measured.
    pub measured: String,
    /// Whether it is met.
    pub met: bool,
}

impl ModeResults {
    /// The cell of `protocol` through `scenario`.
    pub fn cell(&self, protocol: Protocol, scenario: Scenario) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.protocol == protocol && c.scenario == scenario)
    }
}

fn max_value(map: &BTreeMap<String, f64>) -> f64 {
    map.values().copied().fold(0.0, f64::max)
}

/// Issue 18's targets, judged on `mode` (the one-thread mode, beside the peers, as the issue
/// asks), with `peers` the comparison rows of the same mode.
pub fn targets(mode: &ModeResults, peers: &[PeerRow]) -> Vec<TargetRow> {
    let mut rows = Vec::new();
    let mtls = |p| mode.cell(p, Scenario::MeshMtls);
    let direct = |p| mode.cell(p, Scenario::Direct);
    for (protocol, cpu_target, share_target) in
        [(Protocol::Http1, 15.0, 0.25), (Protocol::Http2, 8.0, 0.75)]
    {
        if let Some(cell) = mtls(protocol) {
            let cpu = max_value(&cell.throughput_cpu_us);
            rows.push(TargetRow {
                target: format!(
                    "CPU ≤ {cpu_target} µs per request per proxy at max throughput, {} mTLS",
                    protocol.label()
                ),
                measured: format!(
                    "{cpu:.1} µs (busiest proxy); {:.1} µs at the fixed rate",
                    max_value(&cell.fixed_rate_cpu_us)
                ),
                met: cpu <= cpu_target,
            });
        }
        if let (Some(cell), Some(base)) = (mtls(protocol), direct(protocol)) {
            let share = cell.throughput.per_second / base.throughput.per_second.max(f64::EPSILON);
            rows.push(TargetRow {
                target: format!(
                    "max throughput of mesh-mtls ≥ {share_target:.2} of direct, {}",
                    protocol.label()
                ),
                measured: format!("{share:.2}"),
                met: share >= share_target,
            });
        }
    }
    for protocol in [Protocol::Http1, Protocol::Http2, Protocol::Grpc] {
        let compared: Vec<&PeerRow> = peers
            .iter()
            .filter(|r| r.protocol == Some(protocol) && r.leads.is_some())
            .collect();
        if compared.is_empty() {
            continue;
        }
        let behind: Vec<String> = compared
            .iter()
            .filter(|r| r.leads == Some(false))
            .map(|r| {
                format!(
                    "{} ({:.3} vs {} {:.3})",
                    r.figure,
                    r.strait,
                    r.best_peer.as_deref().unwrap_or("?"),
                    r.best_peer
                        .as_ref()
                        .and_then(|p| r.peers.get(p))
                        .copied()
                        .unwrap_or_default()
                )
            })
            .collect();
        rows.push(TargetRow {
            target: format!(
                "leads the best peer on throughput, CPU and added latency, {}",
                protocol.label()
            ),
            measured: if behind.is_empty() {
                format!("ahead on all {} figures", compared.len())
            } else {
                format!("behind on {}", behind.join("; "))
            },
            met: behind.is_empty(),
        });
    }
    if let Some(memory) = mode
        .memory
        .iter()
        .find(|m| m.scenario == Scenario::MeshMtls)
    {
        let idle = max_value(&memory.idle_mib);
        let many = max_value(&memory.many.rss_mib);
        rows.push(TargetRow {
            target: "proxy RSS ≤ 5 MiB idle".into(),
            measured: format!("{idle:.1} MiB (larger proxy)"),
            met: idle <= 5.0,
        });
        rows.push(TargetRow {
            target: format!(
                "proxy RSS ≤ 20 MiB with {} client connections",
                memory.many.connections
            ),
            measured: format!("{many:.1} MiB (larger proxy)"),
            met: many <= 20.0,
        });
    }
    if let Some(cell) = mtls(Protocol::Tcp) {
        let gbs = cell.throughput.per_second / 1e9;
        rows.push(TargetRow {
            target: "long TCP stream through two mTLS hops ≥ 1 GB/s".into(),
            measured: format!("{gbs:.2} GB/s"),
            met: gbs >= 1.0,
        });
    }
    let rate = |scenario| {
        mode.connections
            .iter()
            .find(|c| c.scenario == scenario)
            .map(|c| c.result.per_second)
    };
    if let (Some(strait), Some(haproxy)) = (rate(Scenario::MeshMtls), rate(Scenario::Haproxy)) {
        rows.push(TargetRow {
            target: "new mTLS connections per second within 20 % of HAProxy's".into(),
            measured: format!("{strait:.0}/s vs {haproxy:.0}/s"),
            met: strait >= 0.8 * haproxy,
        });
    }
    rows
}
