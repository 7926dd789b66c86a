//! Results as markdown tables: what the terminal shows, the dated results file holds and the
//! history gets appended. Every figure stands next to its ratio to `direct` (latency: the
//! difference) from the same run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::clients::Protocol;
use crate::comparison::PeerRow;
use crate::latency::Summary;
use crate::results::{ModeResults, Results, TracingRow};
use crate::world::Scenario;

fn latency_with_delta(value: f64, direct: Option<f64>) -> String {
    match direct {
        Some(base) if base > 0.0 => format!("{value:.1} ({:+.1})", value - base),
        _ => format!("{value:.1}"),
    }
}

fn with_ratio(value: f64, direct: Option<f64>, format: fn(f64) -> String) -> String {
    match direct {
        Some(base) if base > 0.0 => format!("{} (×{:.2})", format(value), value / base),
        _ => format(value),
    }
}

fn roles(map: &BTreeMap<String, f64>, precision: usize) -> String {
    if map.is_empty() {
        return "–".into();
    }
    ["outbound", "inbound"]
        .iter()
        .filter_map(|role| map.get(*role).map(|v| format!("{v:.precision$}")))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn latency_row(
    out: &mut String,
    label: &str,
    summary: &Summary,
    base: Option<&Summary>,
    extra: &str,
) {
    let _ = writeln!(
        out,
        "| {label} | {} | {} | {} | {} |{extra}",
        latency_with_delta(summary.p50_us, base.map(|b| b.p50_us)),
        latency_with_delta(summary.p90_us, base.map(|b| b.p90_us)),
        latency_with_delta(summary.p99_us, base.map(|b| b.p99_us)),
        latency_with_delta(summary.p999_us, base.map(|b| b.p999_us)),
    );
}

fn rate_unit(protocol: Protocol) -> fn(f64) -> String {
    match protocol {
        Protocol::Tcp => |v| format!("{:.2} GB/s", v / 1e9),
        _ => |v| format!("{v:.0} req/s"),
    }
}

fn mode_tables(out: &mut String, mode: &ModeResults, results: &Results) {
    let settings = &results.settings;
    let _ = writeln!(
        out,
        "### Proxies: {} (`--threads {}`)\n",
        mode.mode, mode.threads
    );
    let direct = |p| mode.cell(p, Scenario::Direct);

    let _ = writeln!(
        out,
        "Closed-loop latency, one connection, one call at a time (µs; in brackets: difference to direct)\n"
    );
    let _ = writeln!(
        out,
        "| protocol | scenario | p50 | p90 | p99 | p99.9 | calls |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for cell in &mode.cells {
        let base = direct(cell.protocol).map(|c| &c.closed_loop);
        latency_row(
            out,
            &format!("{} | {}", cell.protocol.label(), cell.scenario.label()),
            &cell.closed_loop,
            base.filter(|_| cell.scenario != Scenario::Direct),
            &format!(" {} |", cell.closed_loop.count),
        );
    }

    let _ = writeln!(
        out,
        "\nFixed rate, {:.0} requests/s for {:.0} s, from each request's intended start (µs; HTTP/1.1 and TCP over {} connections, HTTP/2 and gRPC multiplexed on one); proxies' CPU per request (outbound / inbound)\n",
        settings.rate,
        settings.rate_duration.as_secs_f64(),
        settings.rate_connections
    );
    let _ = writeln!(
        out,
        "| protocol | scenario | p50 | p90 | p99 | p99.9 | achieved/s | errors | CPU µs/req |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for cell in &mode.cells {
        let base = direct(cell.protocol).map(|c| &c.fixed_rate.latency);
        let rated = &cell.fixed_rate;
        latency_row(
            out,
            &format!("{} | {}", cell.protocol.label(), cell.scenario.label()),
            &rated.latency,
            base.filter(|_| cell.scenario != Scenario::Direct),
            &format!(
                " {:.0} | {} | {} |",
                rated.achieved_rps,
                rated.latency.errors,
                roles(&cell.fixed_rate_cpu_us, 1)
            ),
        );
    }

    let _ = writeln!(
        out,
        "\nMaximum throughput at fixed concurrency ({} in flight, {:.0} s); in brackets: ratio to direct; proxies' CPU per request (TCP: per MiB), outbound / inbound\n",
        settings.concurrency,
        settings.throughput_duration.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| protocol | scenario | throughput | errors | CPU µs/req | generator |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for cell in &mode.cells {
        let base = direct(cell.protocol)
            .filter(|_| cell.scenario != Scenario::Direct)
            .map(|c| c.throughput.per_second);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {}: {} |",
            cell.protocol.label(),
            cell.scenario.label(),
            with_ratio(cell.throughput.per_second, base, rate_unit(cell.protocol)),
            cell.throughput.errors,
            roles(&cell.throughput_cpu_us, 1),
            cell.throughput.tool,
            cell.throughput.shape
        );
    }

    let _ = writeln!(
        out,
        "\nProxies' resident memory, MiB (outbound / inbound)\n"
    );
    let _ = writeln!(
        out,
        "| scenario | idle | peak under load | with N client connections held | N (answered) | KiB per idle client connection, HTTP/1.1 | KiB per idle client connection, HTTP/2 |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for memory in &mode.memory {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} ({}) | {} | {} |",
            memory.scenario.label(),
            roles(&memory.idle_mib, 1),
            roles(&memory.load_peak_mib, 1),
            roles(&memory.many.rss_mib, 1),
            memory.many.connections,
            memory.many.answered,
            roles(&memory.idle_kib_http1, 1),
            roles(&memory.idle_kib_http2, 1)
        );
    }

    let _ = writeln!(
        out,
        "\nNew connections per second ({} concurrent openers, {:.0} s; each: connect, CONNECT tunnel in the meshes, one TCP round trip, close; the peers: straight to their TCP listener); in brackets: ratio to direct\n",
        settings.connection_concurrency,
        settings.connection_duration.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "| scenario | connections/s | errors | inbound mTLS handshakes counted | CPU µs/connection |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let direct_rate = mode
        .connections
        .iter()
        .find(|c| c.scenario == Scenario::Direct)
        .map(|c| c.result.per_second);
    for row in &mode.connections {
        let base = direct_rate.filter(|_| row.scenario != Scenario::Direct);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            row.scenario.label(),
            with_ratio(row.result.per_second, base, |v| format!("{v:.0}")),
            row.result.errors,
            row.result
                .tls_handshakes
                .map(|n| format!("{n} for {} connections", row.result.connections))
                .unwrap_or_else(|| "–".into()),
            roles(&row.cpu_us, 1)
        );
    }
    out.push('\n');
}

fn tracing_table(out: &mut String, rows: &[TracingRow], mode: &str) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "### Metrics + tracing overhead (mesh-mtls, HTTP/1.1, proxies {mode}; in brackets: difference to no collector)\n"
    );
    let _ = writeln!(
        out,
        "| tracing | closed p50 µs | fixed-rate p50 µs | fixed-rate p99 µs | max req/s | CPU µs/req at max | CPU µs/req at fixed rate | spans received |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let base = rows.iter().find(|r| r.variant == "no collector");
    for row in rows {
        let base = base.filter(|b| b.variant != row.variant);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.variant,
            latency_with_delta(row.closed_loop.p50_us, base.map(|b| b.closed_loop.p50_us)),
            latency_with_delta(
                row.fixed_rate.latency.p50_us,
                base.map(|b| b.fixed_rate.latency.p50_us)
            ),
            latency_with_delta(
                row.fixed_rate.latency.p99_us,
                base.map(|b| b.fixed_rate.latency.p99_us)
            ),
            with_ratio(
                row.throughput.per_second,
                base.map(|b| b.throughput.per_second),
                |v| format!("{v:.0}")
            ),
            roles(&row.throughput_cpu_us, 1),
            roles(&row.fixed_rate_cpu_us, 1),
            row.spans
        );
    }
    out.push('\n');
}

fn figure(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

/// Strait against the best peer, one figure per row.
fn peers_table(out: &mut String, rows: &[PeerRow]) {
    if rows.is_empty() {
        return;
    }
    let labels: Vec<String> = rows
        .iter()
        .flat_map(|r| r.peers.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let _ = writeln!(
        out,
        "### Strait (mesh-mtls) against the peers, one worker per side, same run\n"
    );
    let _ = writeln!(
        out,
        "| protocol | figure | mesh-mtls | {} | best peer | ratio to best | leads |",
        labels.join(" | ")
    );
    let _ = writeln!(
        out,
        "|---|---|---|{}---|---|---|",
        "---|".repeat(labels.len())
    );
    for row in rows {
        let peers: Vec<String> = labels
            .iter()
            .map(|l| row.peers.get(l).map_or_else(|| "–".into(), |v| figure(*v)))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.protocol.map_or("–", Protocol::label),
            row.figure,
            figure(row.strait),
            peers.join(" | "),
            row.best_peer.as_deref().unwrap_or("–"),
            row.ratio_to_best
                .map_or_else(|| "–".into(), |r| format!("×{r:.2}")),
            match row.leads {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            }
        );
    }
    out.push('\n');
}

/// The whole run as markdown (without the history's heading).
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "- Machine: {}", results.machine.describe());
    let _ = writeln!(out, "- Commit: `{}`", results.commit);
    let _ = writeln!(out, "- Command: `{}`\n", results.command);
    if let Some(first) = results.modes.first() {
        let _ = writeln!(
            out,
            "### Targets (issue 18), proxies {}, mesh-mtls\n",
            first.mode
        );
        let _ = writeln!(out, "| target | measured | met |");
        let _ = writeln!(out, "|---|---|---|");
        for row in &results.targets {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                row.target,
                row.measured,
                if row.met { "yes" } else { "**no**" }
            );
        }
        out.push('\n');
    }
    peers_table(&mut out, &results.peers);
    for mode in &results.modes {
        mode_tables(&mut out, mode, results);
    }
    let tracing_mode = results.modes.first().map(|m| m.mode.as_str()).unwrap_or("");
    tracing_table(&mut out, &results.tracing, tracing_mode);
    out
}
