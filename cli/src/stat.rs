//! Golden signals from proxies' `/metrics`: two scrapes a few seconds apart, and the rates,
//! success rates, latency quantiles and traffic shares between them, per service, route and
//! backend (what callers see, outbound), and per workload (what each app receives, inbound).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use serde::Serialize;
use tokio::time::Instant;

use crate::http_get::{GetError, get_from};
use crate::target::Endpoint;

/// One proxy's metrics at one moment.
pub struct Snapshot {
    at: Instant,
    samples: Vec<Sample>,
}

/// Scrapes `admin`'s `/metrics`.
pub async fn scrape(admin: SocketAddr) -> Result<Snapshot, GetError> {
    scrape_endpoint(&Endpoint::from(admin)).await
}

/// Scrapes `/metrics` of `admin`, directly or through a port-forward.
pub async fn scrape_endpoint(admin: &Endpoint) -> Result<Snapshot, GetError> {
    let text = get_from(admin, "/metrics", Duration::from_secs(5)).await?;
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).map_err(|e| {
        GetError::Unreachable {
            addr: admin.to_string(),
            reason: format!("its /metrics does not parse: {e}"),
        }
    })?;
    Ok(Snapshot {
        at: Instant::now(),
        samples: scrape.samples,
    })
}

/// Golden signals of one stream of requests.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Signals {
    /// Requests per second.
    pub rps: f64,
    /// Share of responses the proxies classified as successes (`classification`: not 5xx,
    /// and for gRPC not a server-fault `grpc-status`); `None` without responses.
    pub success: Option<f64>,
    /// Median latency in seconds.
    pub p50: Option<f64>,
    /// 99th percentile latency in seconds.
    pub p99: Option<f64>,
}

/// Callers' view of one (service, route, backend).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct OutboundRow {
    /// `namespace/name:port`.
    pub service: String,
    /// The route.
    pub route: String,
    /// The backend.
    pub backend: String,
    /// Share of the route's requests this backend got.
    pub share: Option<f64>,
    /// Retries per second.
    pub retries_per_second: f64,
    /// The signals.
    #[serde(flatten)]
    pub signals: Signals,
}

/// One workload's view of what it receives.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InboundRow {
    /// The proxy's admin address.
    pub proxy: String,
    /// The Service that received the most requests (each request is counted under the one
    /// Service it was addressed to).
    pub service: String,
    /// The signals.
    #[serde(flatten)]
    pub signals: Signals,
    /// Callers seen over mTLS, by identity.
    pub mtls_identities: Vec<String>,
    /// Share of requests that arrived over mTLS.
    pub mtls_share: Option<f64>,
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        _ => 0.0,
    }
}

fn label<'a>(sample: &'a Sample, name: &str) -> &'a str {
    sample.labels.get(name).unwrap_or("")
}

/// Whether a response sample counts as a success: the proxy's own `classification`, which
/// judges gRPC by its `grpc-status` (trailers included); a proxy from before that label is
/// judged by status class.
fn succeeded(sample: &Sample) -> bool {
    match sample.labels.get("classification") {
        Some(classification) => classification != "failure",
        None => label(sample, "status_class") != "5xx",
    }
}

/// Per-key sums of a counter's increase between two snapshots.
fn deltas(
    before: &Snapshot,
    after: &Snapshot,
    metric: &str,
    key: impl Fn(&Sample) -> Option<String>,
) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for (snapshot, sign) in [(after, 1.0), (before, -1.0)] {
        for sample in snapshot.samples.iter().filter(|s| s.metric == metric) {
            if let Some(k) = key(sample) {
                *sums.entry(k).or_default() += sign * value(sample);
            }
        }
    }
    sums.retain(|_, v| *v > 0.0);
    sums
}

/// Per-key histogram bucket increases: upper bound → count.
fn bucket_deltas(
    before: &Snapshot,
    after: &Snapshot,
    metric: &str,
    key: impl Fn(&Sample) -> Option<String>,
) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut sums: BTreeMap<String, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
    for (snapshot, sign) in [(after, 1.0), (before, -1.0)] {
        for sample in snapshot.samples.iter().filter(|s| s.metric == metric) {
            let (Some(k), Value::Histogram(buckets)) = (key(sample), &sample.value) else {
                continue;
            };
            let entry = sums.entry(k).or_default();
            for bucket in buckets {
                let slot = entry
                    .entry(bucket.less_than.to_bits())
                    .or_insert((bucket.less_than, 0.0));
                slot.1 += sign * bucket.count;
            }
        }
    }
    sums.into_iter()
        .map(|(k, buckets)| {
            let mut list: Vec<(f64, f64)> = buckets.into_values().collect();
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
            (k, list)
        })
        .collect()
}

/// The `q` quantile of cumulative buckets `(upper bound, count)`, interpolated linearly within
/// the bucket it falls in, as Prometheus's `histogram_quantile` does.
///
/// ```
/// use strait_cli::stat::quantile;
/// let buckets = [(0.001, 50.0), (0.01, 100.0), (f64::INFINITY, 100.0)];
/// assert_eq!(quantile(0.5, &buckets), Some(0.001));
/// assert!((quantile(0.75, &buckets).unwrap() - 0.0055).abs() < 1e-9);
/// assert_eq!(quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
/// ```
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let fraction = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (bound - lower.0) * fraction);
        }
        lower = (bound, count);
    }
    Some(lower.0)
}

fn signals(
    requests: f64,
    ok: f64,
    responses: f64,
    buckets: Option<&Vec<(f64, f64)>>,
    seconds: f64,
) -> Signals {
    Signals {
        rps: requests / seconds,
        success: (responses > 0.0).then(|| ok / responses),
        p50: buckets.and_then(|b| quantile(0.5, b)),
        p99: buckets.and_then(|b| quantile(0.99, b)),
    }
}

/// The outbound rows between `before` and `after` (one snapshot per proxy, in the same order),
/// keeping services whose name contains `filter`.
pub fn outbound(
    before: &[&Snapshot],
    after: &[&Snapshot],
    filter: Option<&str>,
) -> Vec<OutboundRow> {
    let key = |s: &Sample| -> Option<String> {
        (label(s, "direction") == "outbound").then(|| {
            format!(
                "{}\t{}\t{}",
                label(s, "service"),
                label(s, "route"),
                label(s, "backend")
            )
        })
    };
    let ok_key = |s: &Sample| key(s).filter(|_| succeeded(s));
    let mut requests = BTreeMap::new();
    let mut ok = BTreeMap::new();
    let mut responses = BTreeMap::new();
    let mut retries = BTreeMap::new();
    let mut buckets = BTreeMap::new();
    let mut seconds = 0.0f64;
    for (b, a) in before.iter().zip(after) {
        seconds = seconds.max(a.at.duration_since(b.at).as_secs_f64());
        for (target, metric, key) in [
            (
                &mut requests,
                "strait_http_requests_total",
                &key as &dyn Fn(&Sample) -> Option<String>,
            ),
            (&mut ok, "strait_http_responses_total", &ok_key),
            (&mut responses, "strait_http_responses_total", &key),
            (&mut retries, "strait_http_retries_total", &key),
        ] {
            for (k, v) in deltas(b, a, metric, key) {
                *target.entry(k).or_insert(0.0) += v;
            }
        }
        for (k, list) in bucket_deltas(b, a, "strait_http_response_duration_seconds", key) {
            let merged: &mut Vec<(f64, f64)> = buckets.entry(k).or_default();
            merge_buckets(merged, &list);
        }
    }
    let seconds = seconds.max(0.001);
    let mut route_totals: BTreeMap<String, f64> = BTreeMap::new();
    for (k, v) in &requests {
        let route_key = k
            .rsplit_once('\t')
            .map(|(r, _)| r.to_owned())
            .unwrap_or_default();
        *route_totals.entry(route_key).or_default() += v;
    }
    requests
        .iter()
        .filter_map(|(k, n)| {
            let mut parts = k.split('\t');
            let (service, route, backend) = (parts.next()?, parts.next()?, parts.next()?);
            if filter.is_some_and(|f| !service.contains(f)) {
                return None;
            }
            let route_total = route_totals
                .get(&format!("{service}\t{route}"))
                .copied()
                .unwrap_or(0.0);
            Some(OutboundRow {
                service: service.to_owned(),
                route: route.to_owned(),
                backend: backend.to_owned(),
                share: (route_total > 0.0).then(|| n / route_total),
                retries_per_second: retries.get(k).copied().unwrap_or(0.0) / seconds,
                signals: signals(
                    *n,
                    ok.get(k).copied().unwrap_or(0.0),
                    responses.get(k).copied().unwrap_or(0.0),
                    buckets.get(k),
                    seconds,
                ),
            })
        })
        .collect()
}

fn merge_buckets(into: &mut Vec<(f64, f64)>, add: &[(f64, f64)]) {
    for &(bound, count) in add {
        match into.iter_mut().find(|(b, _)| *b == bound) {
            Some(slot) => slot.1 += count,
            None => into.push((bound, count)),
        }
    }
    into.sort_by(|a, b| a.0.total_cmp(&b.0));
}

/// One inbound row per proxy: what its app received between the two snapshots.
pub fn inbound(
    proxies: &[SocketAddr],
    before: &[&Snapshot],
    after: &[&Snapshot],
) -> Vec<InboundRow> {
    let key =
        |s: &Sample| (label(s, "direction") == "inbound").then(|| label(s, "service").to_owned());
    let ok_key = |s: &Sample| key(s).filter(|_| succeeded(s));
    let mtls_key = |s: &Sample| {
        key(s)
            .filter(|_| label(s, "tls") == "true")
            .map(|_| label(s, "peer_identity").to_owned())
    };
    proxies
        .iter()
        .zip(before.iter().zip(after))
        .filter_map(|(proxy, (b, a))| {
            let seconds = a.at.duration_since(b.at).as_secs_f64().max(0.001);
            let requests = deltas(b, a, "strait_http_requests_total", key);
            let (service, n) = requests.iter().max_by(|x, y| x.1.total_cmp(y.1))?;
            let ok: f64 = deltas(b, a, "strait_http_responses_total", ok_key)
                .values()
                .sum();
            let responses: f64 = deltas(b, a, "strait_http_responses_total", key)
                .values()
                .sum();
            // One stream per Service of the port: latency over all of them.
            let buckets = bucket_deltas(b, a, "strait_http_response_duration_seconds", key)
                .into_values()
                .reduce(|mut all, one| {
                    merge_buckets(&mut all, &one);
                    all
                });
            let mtls = deltas(b, a, "strait_http_requests_total", mtls_key);
            let total: f64 = requests.values().sum();
            Some(InboundRow {
                proxy: proxy.to_string(),
                service: service.clone(),
                signals: signals(total, ok, responses, buckets.as_ref(), seconds),
                mtls_share: (total > 0.0).then(|| mtls.values().sum::<f64>() / total),
                mtls_identities: mtls.keys().filter(|id| !id.is_empty()).cloned().collect(),
            })
            .filter(|_| *n > 0.0)
        })
        .collect()
}

/// A percentage for tables.
pub fn percent(value: Option<f64>) -> String {
    value
        .map(|v| format!("{:.2}%", v * 100.0))
        .unwrap_or_else(|| "-".into())
}

/// Milliseconds for tables.
pub fn millis(value: Option<f64>) -> String {
    value
        .map(|v| format!("{:.2}ms", v * 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// The outbound rows as an aligned table.
pub fn outbound_table(rows: &[OutboundRow]) -> String {
    crate::render::table(
        &[
            "SERVICE",
            "ROUTE",
            "BACKEND",
            "SHARE",
            "RPS",
            "SUCCESS",
            "P50",
            "P99",
            "RETRIES/S",
        ],
        &rows
            .iter()
            .map(|r| {
                vec![
                    r.service.clone(),
                    r.route.clone(),
                    r.backend.clone(),
                    percent(r.share),
                    format!("{:.1}", r.signals.rps),
                    percent(r.signals.success),
                    millis(r.signals.p50),
                    millis(r.signals.p99),
                    format!("{:.1}", r.retries_per_second),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(text: &str, at: Instant) -> Snapshot {
        Snapshot {
            at,
            samples: Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
                .unwrap()
                .samples,
        }
    }

    #[test]
    fn rates_shares_and_success_come_from_the_deltas() {
        let start = Instant::now();
        let before = snapshot(
            "# TYPE strait_http_requests_total counter\n\
             strait_http_requests_total{direction=\"outbound\",service=\"s\",route=\"r\",backend=\"v1\"} 100\n\
             strait_http_requests_total{direction=\"outbound\",service=\"s\",route=\"r\",backend=\"v2\"} 10\n\
             # TYPE strait_http_responses_total counter\n\
             strait_http_responses_total{direction=\"outbound\",service=\"s\",route=\"r\",backend=\"v1\",status_class=\"2xx\"} 100\n\
             strait_http_responses_total{direction=\"outbound\",service=\"s\",route=\"r\",backend=\"v2\",status_class=\"2xx\"} 10\n",
            start,
        );
        let after = snapshot(
            "# TYPE strait_http_requests_total counter\n\
             strait_http_requests_total{direction=\"outbound\",service=\"s\",route=\"r\",backend=\"v1\"} 190\n\
             strait_http_requests_total{direction=\"outbound\",service=\"s\",route=\"r\",backend=\"v2\"} 20\n\
             # TYPE strait_http_responses_total counter\n\
             strait_http_responses_total{direction=\"outbound\",service=\"s\",route=\"r\",backend=\"v1\",status_class=\"2xx\"} 190\n\
             strait_http_responses_total{direction=\"outbound\",service=\"s\",route=\"r\",backend=\"v2\",status_class=\"2xx\"} 15\n\
             strait_http_responses_total{direction=\"outbound\",service=\"s\",route=\"r\",backend=\"v2\",status_class=\"5xx\"} 5\n",
            start + Duration::from_secs(10),
        );
        let rows = outbound(&[&before], &[&after], None);
        assert_eq!(rows.len(), 2);
        let v2 = rows.iter().find(|r| r.backend == "v2").unwrap();
        assert_eq!(v2.share, Some(0.1));
        assert_eq!(v2.signals.rps, 1.0);
        assert_eq!(v2.signals.success, Some(0.5));
        let v1 = rows.iter().find(|r| r.backend == "v1").unwrap();
        assert_eq!(v1.signals.rps, 9.0);
        assert_eq!(v1.signals.success, Some(1.0));
    }

    #[test]
    fn a_grpc_failure_answered_http_200_counts_against_the_success_rate() {
        let start = Instant::now();
        let before = snapshot(
            "# TYPE strait_http_requests_total counter\n\
             strait_http_requests_total{direction=\"outbound\",service=\"g\",route=\"r\",backend=\"b\"} 0\n",
            start,
        );
        let after = snapshot(
            "# TYPE strait_http_requests_total counter\n\
             strait_http_requests_total{direction=\"outbound\",service=\"g\",route=\"r\",backend=\"b\"} 4\n\
             # TYPE strait_http_responses_total counter\n\
             strait_http_responses_total{direction=\"outbound\",service=\"g\",route=\"r\",backend=\"b\",status_class=\"2xx\",grpc_status=\"0\",classification=\"success\"} 1\n\
             strait_http_responses_total{direction=\"outbound\",service=\"g\",route=\"r\",backend=\"b\",status_class=\"2xx\",grpc_status=\"5\",classification=\"success\"} 1\n\
             strait_http_responses_total{direction=\"outbound\",service=\"g\",route=\"r\",backend=\"b\",status_class=\"2xx\",grpc_status=\"14\",classification=\"failure\"} 2\n",
            start + Duration::from_secs(1),
        );
        let rows = outbound(&[&before], &[&after], None);
        assert_eq!(rows[0].signals.success, Some(0.5));
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let buckets = [(0.1, 10.0), (0.2, 90.0), (f64::INFINITY, 100.0)];
        assert!((quantile(0.5, &buckets).unwrap() - 0.15).abs() < 1e-9);
        assert_eq!(
            quantile(0.99, &buckets),
            Some(0.2),
            "past the last finite bucket: its bound"
        );
    }
}
