//! Strait (`mesh-mtls`) against the peers measured in the same run (`nginx`, `haproxy`): one
//! row per figure users compare, each with every peer's value, the best peer and Strait's
//! ratio to it. Pure: computed from a mode's results, rendered by `markdown`, judged by
//! `results::targets`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clients::Protocol;
use crate::results::{Cell, Memory, ModeResults};
use crate::world::Scenario;

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Better {
    /// More is better (throughput, connections per second).
    Higher,
    /// Less is better (CPU, latency, memory).
    Lower,
}

/// One figure, Strait beside the peers.
#[derive(Clone, Debug, Serialize)]
pub struct PeerRow {
    /// What is compared, with its unit.
    pub figure: String,
    /// The protocol, when the figure is per protocol.
    pub protocol: Option<Protocol>,
    /// Which way is better.
    pub better: Better,
    /// Strait's `mesh-mtls` value.
    pub strait: f64,
    /// Each peer's value, by scenario label.
    pub peers: BTreeMap<String, f64>,
    /// The best peer's label.
    pub best_peer: Option<String>,
    /// Strait's value divided by the best peer's.
    pub ratio_to_best: Option<f64>,
    /// Whether Strait is at least as good as the best peer.
    pub leads: Option<bool>,
}

/// Whether `a` is at least as good as `b`.
fn at_least_as_good(better: Better, a: f64, b: f64) -> bool {
    match better {
        Better::Higher => a >= b,
        Better::Lower => a <= b,
    }
}

/// Builds a row from Strait's value and the peers' (absent peers are left out).
fn row(
    figure: String,
    protocol: Option<Protocol>,
    better: Better,
    strait: f64,
    peers: BTreeMap<String, f64>,
) -> PeerRow {
    let best = peers
        .iter()
        .reduce(|best, candidate| {
            if at_least_as_good(better, *candidate.1, *best.1) {
                candidate
            } else {
                best
            }
        })
        .map(|(label, value)| (label.clone(), *value));
    PeerRow {
        figure,
        protocol,
        better,
        strait,
        ratio_to_best: best
            .as_ref()
            .filter(|(_, value)| *value > 0.0 && strait >= 0.0)
            .map(|(_, value)| strait / value),
        leads: best
            .as_ref()
            .map(|(_, value)| at_least_as_good(better, strait, *value)),
        best_peer: best.map(|(label, _)| label),
        peers,
    }
}

const PEERS: [Scenario; 2] = [Scenario::Nginx, Scenario::Haproxy];

fn sum(map: &BTreeMap<String, f64>) -> f64 {
    map.values().sum()
}

fn largest(map: &BTreeMap<String, f64>) -> f64 {
    map.values().copied().fold(0.0, f64::max)
}

/// A figure's name, which way is better, and its value.
type Figure = (String, Better, f64);

/// How one memory figure is read from a scenario's memory results.
type MemoryFigure = (&'static str, Better, fn(&Memory) -> f64);

/// The per-protocol figures of a cell, given the direct cell for added latency.
fn cell_figures(cell: &Cell, direct: Option<&Cell>) -> Vec<Figure> {
    let added = |value: f64, base: Option<f64>| (value - base.unwrap_or(0.0)) / 1000.0;
    let (throughput, unit) = match cell.protocol {
        Protocol::Tcp => (cell.throughput.per_second / 1e9, "GB/s"),
        _ => (cell.throughput.per_second, "req/s"),
    };
    let cpu_unit = match cell.protocol {
        Protocol::Tcp => "per MiB",
        _ => "per request",
    };
    vec![
        (
            format!("max throughput ({unit})"),
            Better::Higher,
            throughput,
        ),
        (
            format!("CPU µs {cpu_unit} at max throughput, both sides"),
            Better::Lower,
            sum(&cell.throughput_cpu_us),
        ),
        (
            "added p50 at the fixed rate (ms)".into(),
            Better::Lower,
            added(
                cell.fixed_rate.latency.p50_us,
                direct.map(|d| d.fixed_rate.latency.p50_us),
            ),
        ),
        (
            "added p99 at the fixed rate (ms)".into(),
            Better::Lower,
            added(
                cell.fixed_rate.latency.p99_us,
                direct.map(|d| d.fixed_rate.latency.p99_us),
            ),
        ),
        (
            "added p50 closed loop (ms)".into(),
            Better::Lower,
            added(
                cell.closed_loop.p50_us,
                direct.map(|d| d.closed_loop.p50_us),
            ),
        ),
    ]
}

/// Every figure Strait's `mesh-mtls` and at least one peer were measured on in `mode`.
pub fn against_peers(mode: &ModeResults) -> Vec<PeerRow> {
    let mut rows = Vec::new();
    for protocol in Protocol::ALL {
        let Some(strait) = mode.cell(protocol, Scenario::MeshMtls) else {
            continue;
        };
        let direct = mode.cell(protocol, Scenario::Direct);
        let peers: Vec<(Scenario, Vec<Figure>)> = PEERS
            .iter()
            .filter_map(|&peer| {
                mode.cell(protocol, peer)
                    .map(|c| (peer, cell_figures(c, direct)))
            })
            .collect();
        if peers.is_empty() {
            continue;
        }
        for (index, (figure, better, value)) in cell_figures(strait, direct).into_iter().enumerate()
        {
            let values = peers
                .iter()
                .map(|(peer, figures)| (peer.label().to_owned(), figures[index].2))
                .collect();
            rows.push(row(figure, Some(protocol), better, value, values));
        }
    }
    let memory = |scenario| mode.memory.iter().find(|m| m.scenario == scenario);
    if let Some(strait) = memory(Scenario::MeshMtls) {
        let figures: [MemoryFigure; 4] = [
            ("RSS idle, larger side (MiB)", Better::Lower, |m| {
                largest(&m.idle_mib)
            }),
            (
                "RSS with the held client connections, larger side (MiB)",
                Better::Lower,
                |m| largest(&m.many.rss_mib),
            ),
            (
                "KiB per idle HTTP/1.1 client connection, larger side",
                Better::Lower,
                |m| largest(&m.idle_kib_http1),
            ),
            (
                "KiB per idle HTTP/2 client connection, larger side",
                Better::Lower,
                |m| largest(&m.idle_kib_http2),
            ),
        ];
        for (figure, better, value) in figures {
            let peers: BTreeMap<String, f64> = PEERS
                .iter()
                .filter_map(|&peer| memory(peer).map(|m| (peer.label().to_owned(), value(m))))
                .collect();
            if !peers.is_empty() {
                rows.push(row(figure.into(), None, better, value(strait), peers));
            }
        }
    }
    let connections = |scenario| mode.connections.iter().find(|c| c.scenario == scenario);
    if let Some(strait) = connections(Scenario::MeshMtls) {
        let peers: Vec<_> = PEERS
            .iter()
            .filter_map(|&peer| connections(peer).map(|c| (peer.label().to_owned(), c)))
            .collect();
        if !peers.is_empty() {
            rows.push(row(
                "new mTLS connections per second".into(),
                None,
                Better::Higher,
                strait.result.per_second,
                peers
                    .iter()
                    .map(|(l, c)| (l.clone(), c.result.per_second))
                    .collect(),
            ));
            rows.push(row(
                "CPU µs per new connection, both sides".into(),
                None,
                Better::Lower,
                sum(&strait.cpu_us),
                peers
                    .iter()
                    .map(|(l, c)| (l.clone(), sum(&c.cpu_us)))
                    .collect(),
            ));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(values: &[(&str, f64)]) -> BTreeMap<String, f64> {
        values.iter().map(|(l, v)| ((*l).to_owned(), *v)).collect()
    }

    #[test]
    fn the_best_peer_is_the_highest_where_more_is_better() {
        let row = row(
            "throughput".into(),
            None,
            Better::Higher,
            90.0,
            peers(&[("nginx", 60.0), ("haproxy", 100.0)]),
        );
        assert_eq!(row.best_peer.as_deref(), Some("haproxy"));
        assert_eq!(row.ratio_to_best, Some(0.9));
        assert_eq!(row.leads, Some(false));
    }

    #[test]
    fn the_best_peer_is_the_lowest_where_less_is_better() {
        let row = row(
            "cpu".into(),
            None,
            Better::Lower,
            20.0,
            peers(&[("nginx", 40.0), ("haproxy", 25.0)]),
        );
        assert_eq!(row.best_peer.as_deref(), Some("haproxy"));
        assert_eq!(row.ratio_to_best, Some(0.8));
        assert_eq!(row.leads, Some(true));
    }

    #[test]
    fn no_peer_measured_leaves_the_comparison_empty() {
        let row = row("cpu".into(), None, Better::Lower, 20.0, BTreeMap::new());
        assert_eq!(
            (row.best_peer, row.ratio_to_best, row.leads),
            (None, None, None)
        );
    }

    #[test]
    fn a_negative_added_latency_has_no_ratio_but_still_leads() {
        let row = row(
            "added p50".into(),
            None,
            Better::Lower,
            -0.01,
            peers(&[("nginx", 0.2)]),
        );
        assert_eq!(row.ratio_to_best, None);
        assert_eq!(row.leads, Some(true));
    }
}
