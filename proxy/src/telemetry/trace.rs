//! Distributed tracing: a span per proxied request on each side, W3C `traceparent`
//! propagated with the proxy's span inserted as the parent of the upstream call, exported over
//! OTLP/gRPC.
//!
//! Sampling follows the incoming `traceparent`'s sampled flag; a request that starts in the
//! mesh (no `traceparent`) is sampled at the configured ratio. Exporting never blocks or slows
//! the data path: finished spans go into a bounded queue (dropped, and counted, when it is
//! full) that a background task batches to the collector.
//!
//! Spans are built directly as OTLP messages (opentelemetry-proto) rather than through the
//! OpenTelemetry SDK's tracer: the proxy needs only "start, annotate, finish, export", and
//! doing that itself keeps a request's tracing to a few allocations and guarantees the
//! drop-when-full behaviour and its counter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use metrics::Counter;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use tokio::sync::mpsc;

/// The header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent` (W3C Trace Context, version 00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace.
    pub trace_id: [u8; 16],
    /// The calling span.
    pub parent_id: [u8; 8],
    /// The caller's sampling decision.
    pub sampled: bool,
}

fn hex_into(out: &mut [u8], text: &str) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` when it is malformed or all-zero, in which case
    /// the request is treated as starting a trace.
    ///
    /// ```
    /// use strait_proxy::telemetry::trace::TraceParent;
    /// let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    /// assert!(tp.sampled);
    /// assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
    /// ```
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four fields; later versions may append more.
        if version == "ff" || version.len() != 2 || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        let mut flag = [0u8; 1];
        hex_into(&mut trace_id, trace)?;
        hex_into(&mut parent_id, parent)?;
        hex_into(&mut flag, flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            sampled: flag[0] & 1 == 1,
        })
    }

    /// The header value naming `span_id` as the parent.
    pub fn header(trace_id: &[u8; 16], span_id: &[u8; 8]) -> String {
        format!("00-{}-{}-01", hex(trace_id), hex(span_id))
    }
}

/// Which side of a hop a span describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The outbound proxy calling a service.
    Client,
    /// The inbound proxy receiving a call.
    Server,
}

/// Tracing settings.
#[derive(Clone, Debug)]
pub struct TraceSettings {
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; `None` disables tracing.
    pub collector: Option<String>,
    /// Share of requests that start in the mesh to sample, 0.0 to 1.0.
    pub sample_ratio: f64,
    /// Finished spans waiting for export; past this, spans are dropped.
    pub queue: usize,
    /// `service.name` and other resource attributes.
    pub resource: Vec<(String, String)>,
}

/// Starts spans and queues them for export.
#[derive(Clone)]
pub struct Tracer {
    queue: Option<mpsc::Sender<Span>>,
    ratio: f64,
    dropped: Counter,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer")
            .field("enabled", &self.queue.is_some())
            .field("ratio", &self.ratio)
            .finish()
    }
}

impl Tracer {
    /// A tracer that traces nothing.
    pub fn disabled() -> Self {
        Self {
            queue: None,
            ratio: 0.0,
            dropped: metrics::counter!("strait_trace_spans_dropped_total"),
        }
    }

    /// A tracer exporting to `settings.collector` (and its exporter task), or a disabled one.
    pub fn start(settings: &TraceSettings) -> Self {
        let Some(collector) = settings.collector.clone() else {
            return Self::disabled();
        };
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        tokio::spawn(export(collector, rx, resource(&settings.resource)));
        Self {
            queue: Some(tx),
            ratio: settings.sample_ratio.clamp(0.0, 1.0),
            dropped: metrics::counter!("strait_trace_spans_dropped_total"),
        }
    }

    /// Starts a span for a request with `headers`, if it is sampled; the span's context is
    /// written into `headers` as the new `traceparent` for the next hop.
    pub fn begin(&self, side: Side, name: &str, headers: &mut HeaderMap) -> Option<ActiveSpan> {
        self.queue.as_ref()?;
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        let sampled = match parent {
            Some(parent) => parent.sampled,
            None => self.ratio > 0.0 && fastrand::f64() < self.ratio,
        };
        if !sampled {
            return None;
        }
        let trace_id = parent
            .map(|p| p.trace_id)
            .unwrap_or_else(|| fastrand::u128(1..).to_be_bytes());
        let span_id = fastrand::u64(1..).to_be_bytes();
        if let Ok(value) = HeaderValue::from_str(&TraceParent::header(&trace_id, &span_id)) {
            headers.insert(TRACEPARENT, value);
        }
        Some(ActiveSpan {
            span: Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                trace_state: headers
                    .get("tracestate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                parent_span_id: parent.map(|p| p.parent_id.to_vec()).unwrap_or_default(),
                flags: 1,
                name: name.to_owned(),
                kind: match side {
                    Side::Client => span::SpanKind::Client,
                    Side::Server => span::SpanKind::Server,
                } as i32,
                start_time_unix_nano: unix_nanos(SystemTime::now()),
                ..Default::default()
            },
            queue: self.queue.clone(),
            dropped: self.dropped.clone(),
        })
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A span in progress. Finish it with [`ActiveSpan::finish`]; dropping it unfinished
/// discards it.
pub struct ActiveSpan {
    span: Span,
    queue: Option<mpsc::Sender<Span>>,
    dropped: Counter,
}

impl ActiveSpan {
    /// Adds a string attribute.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.span
            .attributes
            .push(attribute(key, any_value::Value::StringValue(value.into())));
    }

    /// Adds an integer attribute.
    pub fn set_int(&mut self, key: &str, value: i64) {
        self.span
            .attributes
            .push(attribute(key, any_value::Value::IntValue(value)));
    }

    /// Ends the span with the response's status and queues it for export, never waiting.
    pub fn finish(mut self, status: u16) {
        self.span.end_time_unix_nano = unix_nanos(SystemTime::now());
        self.set_int("http.response.status_code", i64::from(status));
        if status >= 500 {
            self.span.status = Some(Status {
                message: String::new(),
                code: status::StatusCode::Error as i32,
            });
        }
        if let Some(queue) = self.queue.take()
            && queue.try_send(std::mem::take(&mut self.span)).is_err()
        {
            self.dropped.increment(1);
        }
    }
}

/// Finishes a span when dropped: held by a response body so the span covers the whole
/// response.
pub struct FinishOnDrop {
    span: Option<ActiveSpan>,
    status: u16,
}

impl FinishOnDrop {
    /// Finishes `span` with `status` when dropped.
    pub fn new(span: ActiveSpan, status: u16) -> Self {
        Self {
            span: Some(span),
            status,
        }
    }
}

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        if let Some(span) = self.span.take() {
            span.finish(self.status);
        }
    }
}

fn resource(attributes: &[(String, String)]) -> Resource {
    Resource {
        attributes: attributes
            .iter()
            .map(|(k, v)| attribute(k, any_value::Value::StringValue(v.clone())))
            .collect(),
        ..Default::default()
    }
}

/// Batches queued spans to the collector: up to 512 spans or one second, whichever first.
/// Export failures drop the batch (counted) rather than hold memory.
async fn export(collector: String, mut queue: mpsc::Receiver<Span>, resource: Resource) {
    let channel = match tonic::transport::Endpoint::from_shared(collector.clone()) {
        Ok(endpoint) => endpoint
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy(),
        Err(error) => {
            tracing::error!(%collector, %error, "invalid trace collector address; tracing is off");
            return;
        }
    };
    let mut client = TraceServiceClient::new(channel);
    let failed = metrics::counter!("strait_trace_export_failures_total");
    let exported = metrics::counter!("strait_trace_spans_exported_total");
    let mut batch = Vec::with_capacity(512);
    loop {
        let first = match queue.recv().await {
            Some(span) => span,
            None => return,
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while batch.len() < 512 {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let count = batch.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "strait-proxy".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: std::mem::take(&mut batch),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        match tokio::time::timeout(Duration::from_secs(5), client.export(request)).await {
            Ok(Ok(_)) => exported.increment(count),
            Ok(Err(status)) => {
                failed.increment(1);
                tracing::debug!(%collector, %status, spans = count, "trace export failed; spans dropped");
            }
            Err(_) => {
                failed.increment(1);
                tracing::debug!(%collector, spans = count, "trace export timed out; spans dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_and_malformed_ones_do_not() {
        let tp =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!tp.sampled);
        assert_eq!(hex(&tp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&tp.parent_id), "00f067aa0ba902b7");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A future version may carry more fields.
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz")
                .is_some()
        );
    }

    #[test]
    fn headers_round_trip() {
        let trace = [7u8; 16];
        let span = [9u8; 8];
        let tp = TraceParent::parse(&TraceParent::header(&trace, &span)).unwrap();
        assert_eq!((tp.trace_id, tp.parent_id, tp.sampled), (trace, span, true));
    }

    #[tokio::test]
    async fn unsampled_requests_get_no_span_and_keep_their_header() {
        let (tx, _rx) = mpsc::channel(8);
        let tracer = Tracer {
            queue: Some(tx),
            ratio: 0.0,
            dropped: metrics::counter!("test"),
        };
        let mut headers = HeaderMap::new();
        let original = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        headers.insert(TRACEPARENT, original.parse().unwrap());
        assert!(tracer.begin(Side::Client, "GET", &mut headers).is_none());
        assert_eq!(headers[TRACEPARENT], original);
        let mut fresh = HeaderMap::new();
        assert!(
            tracer.begin(Side::Client, "GET", &mut fresh).is_none(),
            "ratio 0 samples nothing new"
        );
    }

    #[tokio::test]
    async fn a_sampled_request_becomes_the_parent_of_the_next_hop_and_a_full_queue_drops() {
        let (tx, mut rx) = mpsc::channel(1);
        let tracer = Tracer {
            queue: Some(tx),
            ratio: 1.0,
            dropped: metrics::counter!("test"),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let span = tracer.begin(Side::Server, "GET", &mut headers).unwrap();
        let next = TraceParent::parse(headers[TRACEPARENT].to_str().unwrap()).unwrap();
        assert_eq!(hex(&next.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(next.parent_id.to_vec(), span.span.span_id);
        span.finish(200);
        let exported = rx.recv().await.unwrap();
        assert_eq!(hex(&exported.parent_span_id), "00f067aa0ba902b7");
        // The queue holds one span; a second one is dropped without waiting.
        let a = tracer
            .begin(Side::Client, "GET", &mut HeaderMap::new())
            .unwrap();
        let b = tracer
            .begin(Side::Client, "GET", &mut HeaderMap::new())
            .unwrap();
        a.finish(200);
        b.finish(200);
        assert!(rx.recv().await.is_some());
        assert!(rx.try_recv().is_err(), "the second span was dropped");
    }
}
