//! Request-level metrics: the golden signals (requests, responses by status, latency) and the
//! resilience counters (retries, skipped retries, timeouts), per direction, service, route,
//! backend, peer identity, TLS and the workloads on both sides (`super::workload`).
//!
//! Handles are resolved when a snapshot is compiled (outbound) or a connection is accepted
//! (inbound); the request path only increments. Responses are counted by status, which is
//! only known per response, through a small lock-free cache of handles per label set.
//!
//! A response is counted once its outcome is known ([`super::outcome`]): at its headers for
//! HTTP and trailers-only gRPC, when its trailers pass for other gRPC responses. Latency is
//! always measured to the headers.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Response;
use metrics::{Counter, Histogram, Label, counter, histogram};

use super::access_log::{Ending, Entry};
use super::outcome::{Classification, classify_outcome, grpc_status, watch_end};
use super::workload::WorkloadLabel;
use crate::body::Body;

/// Why a retry was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The backend's retry budget was spent.
    Budget,
    /// The request is not idempotent.
    NotIdempotent,
    /// The body outgrew the retry buffer.
    BodyTooLarge,
    /// No retries left.
    AttemptsExhausted,
}

impl SkipReason {
    const ALL: [SkipReason; 4] = [
        SkipReason::Budget,
        SkipReason::NotIdempotent,
        SkipReason::BodyTooLarge,
        SkipReason::AttemptsExhausted,
    ];

    fn label(self) -> &'static str {
        match self {
            SkipReason::Budget => "budget",
            SkipReason::NotIdempotent => "not-idempotent",
            SkipReason::BodyTooLarge => "body-too-large",
            SkipReason::AttemptsExhausted => "attempts-exhausted",
        }
    }
}

/// Which timeout fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// The whole request (`timeouts.request` or `grpc-timeout`).
    Request,
    /// One attempt (`timeouts.backendRequest`).
    BackendRequest,
    /// Establishing a connection.
    Connect,
}

impl TimeoutKind {
    const ALL: [TimeoutKind; 3] = [
        TimeoutKind::Request,
        TimeoutKind::BackendRequest,
        TimeoutKind::Connect,
    ];

    /// The name used in metrics and the `strait-proxy-error` header.
    pub fn label(self) -> &'static str {
        match self {
            TimeoutKind::Request => "request-timeout",
            TimeoutKind::BackendRequest => "backend-request-timeout",
            TimeoutKind::Connect => "connect-timeout",
        }
    }
}

/// The labels identifying one stream of requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RequestLabels {
    /// `inbound` or `outbound`.
    pub direction: &'static str,
    /// `namespace/name:port` of the service.
    pub service: String,
    /// The route's name (outbound).
    pub route: String,
    /// `namespace/service:port` of the backend (outbound).
    pub backend: String,
    /// The identity on the other side of the mesh hop (the caller inbound, the destination
    /// outbound), or empty.
    pub peer_identity: String,
    /// Whether the mesh hop is mTLS.
    pub tls: bool,
    /// The calling side's workload: this proxy's own outbound, the proven caller's inbound.
    pub src_workload: WorkloadLabel,
    /// The called side's workload: the backend's outbound, this proxy's own inbound.
    pub dst_workload: WorkloadLabel,
}

/// The `peer_namespace` and `peer_serviceaccount` values of a peer identity: its SPIFFE ID's
/// parts, or [`UNKNOWN_PEER`] for both when there is no identity (plaintext, an unmeshed
/// endpoint) or it is not a mesh SPIFFE ID. The identity is the one the caller's certificate
/// proved (inbound) or the one the snapshot names (outbound), never a header, so a caller
/// cannot choose these values, and they have no more values than the identities the mesh's
/// CA issues.
pub fn peer_workload_labels(peer_identity: &str) -> (String, String) {
    match peer_identity.parse::<strait_identity::SpiffeId>() {
        Ok(id) => (id.namespace().to_owned(), id.service_account().to_owned()),
        Err(_) => (UNKNOWN_PEER.to_owned(), UNKNOWN_PEER.to_owned()),
    }
}

/// The peer namespace and service account of a peer without a (mesh) identity.
pub const UNKNOWN_PEER: &str = "unknown";

impl RequestLabels {
    fn to_labels(&self) -> Vec<Label> {
        let (namespace, service_account) = peer_workload_labels(&self.peer_identity);
        vec![
            Label::new("direction", self.direction),
            Label::new("service", self.service.clone()),
            Label::new("route", self.route.clone()),
            Label::new("backend", backend_label(&self.backend).to_owned()),
            Label::new("peer_identity", self.peer_identity.clone()),
            Label::new("peer_namespace", namespace),
            Label::new("peer_serviceaccount", service_account),
            Label::new("tls", if self.tls { "true" } else { "false" }),
            Label::new("src_workload", self.src_workload.name.clone()),
            Label::new(
                "src_workload_namespace",
                self.src_workload.namespace.clone(),
            ),
            Label::new("dst_workload", self.dst_workload.name.clone()),
            Label::new(
                "dst_workload_namespace",
                self.dst_workload.namespace.clone(),
            ),
        ]
    }
}

/// The metric handles of one stream of requests.
#[derive(Clone)]
pub struct RequestMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    labels: Vec<Label>,
    requests: Counter,
    duration: Histogram,
    retries: Counter,
    skipped: [Counter; 4],
    timeouts: [Counter; 3],
    responses: ArcSwap<Vec<(ResponseKey, Counter)>>,
}

/// What a response counter is labelled by, beyond the stream's labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ResponseKey {
    status: u16,
    grpc: Option<u32>,
    error: &'static str,
    classification: Classification,
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl RequestMetrics {
    /// Resolves the handles for `labels`.
    pub fn new(labels: &RequestLabels) -> Self {
        let base = labels.to_labels();
        let with = |key: &'static str, value: &'static str| {
            let mut l = base.clone();
            l.push(Label::new(key, value));
            l
        };
        Self {
            inner: Arc::new(Inner {
                requests: counter!("strait_http_requests_total", base.clone()),
                duration: histogram!("strait_http_response_duration_seconds", base.clone()),
                retries: counter!("strait_http_retries_total", base.clone()),
                skipped: SkipReason::ALL.map(|r| {
                    counter!(
                        "strait_http_retries_skipped_total",
                        with("reason", r.label())
                    )
                }),
                timeouts: TimeoutKind::ALL
                    .map(|k| counter!("strait_http_timeouts_total", with("kind", k.label()))),
                responses: ArcSwap::from_pointee(Vec::new()),
                labels: base,
            }),
        }
    }

    /// Counts a request.
    pub fn request(&self) {
        self.inner.requests.increment(1);
    }

    /// Counts a retry.
    pub fn retry(&self) {
        self.inner.retries.increment(1);
    }

    /// Counts a retry not made.
    pub fn skipped(&self, reason: SkipReason) {
        self.inner.skipped[reason as usize].increment(1);
    }

    /// Counts a timeout.
    pub fn timeout(&self, kind: TimeoutKind) {
        self.inner.timeouts[kind as usize].increment(1);
    }

    /// Records the latency of `response` (its headers are leaving now) and counts it once its
    /// outcome is known: now, or for a gRPC response without a status in its headers, when
    /// its trailers pass (the body is wrapped, never buffered). `grpc_call` says whether the
    /// request was gRPC; `error` names the proxy error behind a response the proxy generated
    /// itself, empty otherwise. An access-log `entry` is written when the body ends.
    pub fn respond(
        &self,
        response: Response<Body>,
        grpc_call: bool,
        error: &'static str,
        elapsed: Duration,
        entry: Option<Entry>,
    ) -> Response<Body> {
        self.inner.duration.record(elapsed.as_secs_f64());
        let status = response.status().as_u16();
        let in_headers = grpc_status(response.headers());
        let deferred = grpc_call && in_headers.is_none() && response.status().is_success();
        if !deferred {
            self.count_response(status, in_headers, error, grpc_call);
            if entry.is_none() {
                return response;
            }
        }
        let metrics = deferred.then(|| self.clone());
        response.map(|body| {
            watch_end(body, move |end| {
                let grpc = in_headers.or(end.grpc.status().filter(|_| grpc_call));
                if let Some(metrics) = metrics {
                    metrics.count_response(status, grpc, error, true);
                }
                if let Some(entry) = entry {
                    entry.finish(Ending {
                        status,
                        grpc_status: grpc,
                        response_bytes: end.bytes,
                        error,
                    });
                }
            })
        })
    }

    /// Counts a response whose outcome is known.
    fn count_response(&self, status: u16, grpc: Option<u32>, error: &'static str, grpc_call: bool) {
        let classification = classify_outcome(status, grpc, grpc_call);
        let key = ResponseKey {
            status,
            grpc,
            error,
            classification,
        };
        if let Some((_, counter)) = self.inner.responses.load().iter().find(|(k, _)| *k == key) {
            counter.increment(1);
            return;
        }
        let mut labels = self.inner.labels.clone();
        labels.push(Label::new("status_code", status.to_string()));
        labels.push(Label::new("status_class", status_class(status)));
        labels.push(Label::new(
            "grpc_status",
            grpc.map(|c| c.to_string()).unwrap_or_default(),
        ));
        labels.push(Label::new("error", error));
        labels.push(Label::new("classification", classification.as_str()));
        let counter = counter!("strait_http_responses_total", labels);
        counter.increment(1);
        self.inner.responses.rcu(|cache| {
            let mut cache = Vec::clone(cache);
            if !cache.iter().any(|(k, _)| *k == key) {
                cache.push((key, counter.clone()));
            }
            cache
        });
    }
}

/// The `backend` label value of backend `name`: `namespace/service:port`, without the
/// `/<workload>` the control plane appends to the backend of a call to one pod's own address
/// (route `direct`), so no label names a pod; such calls are told apart by `route`.
pub fn backend_label(name: &str) -> &str {
    match name.match_indices('/').nth(1) {
        Some((at, _)) => &name[..at],
        None => name,
    }
}

/// Backend-level resilience counters.
#[derive(Clone)]
pub struct BackendMetrics {
    /// Endpoint ejections by the circuit breaker.
    pub ejections: Counter,
    /// Requests failed fast because the pending-request limit was reached.
    pub fast_fails: Counter,
}

impl BackendMetrics {
    /// Resolves the handles for `backend`.
    pub fn new(backend: &str) -> Self {
        let labels = [("backend", backend_label(backend).to_owned())];
        Self {
            ejections: counter!("strait_endpoint_ejections_total", &labels),
            fast_fails: counter!("strait_breaker_fast_fails_total", &labels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_label_never_names_the_pod_of_a_direct_call() {
        assert_eq!(backend_label("demo/web:80"), "demo/web:80");
        assert_eq!(
            backend_label("demo/web:80/web-7d9f8b6c5-x2x9z"),
            "demo/web:80"
        );
        assert_eq!(backend_label("web"), "web");
        assert_eq!(backend_label(""), "");
    }

    #[test]
    fn peer_workload_labels_come_from_the_spiffe_id_or_are_unknown() {
        assert_eq!(
            peer_workload_labels("spiffe://cluster.local/ns/shop/sa/web"),
            ("shop".to_owned(), "web".to_owned())
        );
        for not_an_identity in [
            "",
            "spiffe://cluster.local/ns/shop",
            "web",
            "https://x/ns/a/sa/b",
        ] {
            assert_eq!(
                peer_workload_labels(not_an_identity),
                (UNKNOWN_PEER.to_owned(), UNKNOWN_PEER.to_owned()),
                "{not_an_identity:?}"
            );
        }
    }
}
