//! Request-level metrics: the golden signals (requests, responses by status, latency) and the
//! resilience counters (retries, skipped retries, timeouts), per direction, service, route,
//! backend, peer identity and TLS.
//!
//! Handles are resolved when a snapshot is compiled (outbound) or a connection is accepted
//! (inbound); the request path only increments. Responses are counted by status, which is
//! only known per response, through a small lock-free cache of handles per label set.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use metrics::{Counter, Histogram, Label, counter, histogram};

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
}

impl RequestLabels {
    fn to_labels(&self) -> Vec<Label> {
        vec![
            Label::new("direction", self.direction),
            Label::new("service", self.service.clone()),
            Label::new("route", self.route.clone()),
            Label::new("backend", self.backend.clone()),
            Label::new("peer_identity", self.peer_identity.clone()),
            Label::new("tls", if self.tls { "true" } else { "false" }),
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

    /// Counts a response and its latency. `error` names the proxy error behind a response
    /// the proxy generated itself, empty otherwise.
    pub fn response(&self, status: u16, grpc: Option<u32>, error: &'static str, elapsed: Duration) {
        self.inner.duration.record(elapsed.as_secs_f64());
        let key = ResponseKey {
            status,
            grpc,
            error,
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
        let labels = [("backend", backend.to_owned())];
        Self {
            ejections: counter!("strait_endpoint_ejections_total", &labels),
            fast_fails: counter!("strait_breaker_fast_fails_total", &labels),
        }
    }
}
