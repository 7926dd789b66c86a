//! The opt-in access log (`--access-log json`): one JSON line per HTTP request, written to
//! stdout when the response ends, with Linkerd/Envoy-style fields.
//!
//! Off (the default) it costs one branch per request: [`AccessLog::begin`] returns `None`
//! before reading or allocating anything. On, a request's line is formatted by serde_json —
//! which escapes every quote, backslash and control character, so a caller's path or header
//! with a newline cannot forge a line — and handed to a bounded queue drained by one
//! thread of its own; a full queue (stdout slower than the traffic) drops the line and counts
//! it in `strait_access_log_dropped_total`, so a slow stdout never stalls a request.
//! Caller-controlled fields are cut at [`MAX_FIELD_BYTES`], so the queue's memory is bounded
//! whatever callers send.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use metrics::Counter;
use serde::Serialize;

/// Lines waiting for stdout; past this, lines are dropped and counted.
pub const QUEUE_LINES: usize = 1024;

/// Longest caller-controlled field kept (authority, path, user agent, request id), in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;

/// The access log's output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogFormat {
    /// No access log.
    #[default]
    Off,
    /// One JSON object per line.
    Json,
}

/// The access log, or its absence. Cheap to clone.
#[derive(Clone, Default)]
pub struct AccessLog {
    writer: Option<Arc<Writer>>,
}

struct Writer {
    lines: SyncSender<String>,
    dropped: Counter,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("on", &self.is_on())
            .finish()
    }
}

impl AccessLog {
    /// Starts the access log in `format` (for `Json`, its writer thread).
    pub fn start(format: AccessLogFormat) -> std::io::Result<Self> {
        if format == AccessLogFormat::Off {
            return Ok(Self::default());
        }
        let (lines, queue) = mpsc::sync_channel::<String>(QUEUE_LINES);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                for line in queue {
                    // One write under stdout's lock: the process's other log lines never
                    // interleave with it. A failed write loses the line, nothing else.
                    let _ = stdout.lock().write_all(line.as_bytes());
                }
            })?;
        Ok(Self {
            writer: Some(Arc::new(Writer {
                lines,
                dropped: metrics::counter!("strait_access_log_dropped_total"),
            })),
        })
    }

    /// Whether lines are written.
    pub fn is_on(&self) -> bool {
        self.writer.is_some()
    }

    /// Begins a request's entry from its head; `None` when the log is off (nothing read,
    /// nothing allocated).
    pub fn begin(&self, head: &Parts, direction: &'static str) -> Option<Entry> {
        let writer = self.writer.as_ref()?;
        let header = |name: &str| {
            head.headers
                .get(name)
                .map(|v| bounded(&String::from_utf8_lossy(v.as_bytes())))
        };
        Some(Entry {
            writer: writer.clone(),
            at: SystemTime::now(),
            started: tokio::time::Instant::now(),
            direction,
            method: head.method.as_str().to_owned(),
            authority: head
                .uri
                .authority()
                .map(|a| bounded(a.as_str()))
                .or_else(|| header("host")),
            path: bounded(head.uri.path()),
            user_agent: header("user-agent"),
            request_id: header("x-request-id"),
            client_addr: None,
            client_identity: None,
            server_identity: None,
            route: None,
            upstream: None,
        })
    }
}

/// `value` cut to [`MAX_FIELD_BYTES`] at a character boundary.
fn bounded(value: &str) -> String {
    if value.len() <= MAX_FIELD_BYTES {
        return value.to_owned();
    }
    let mut end = MAX_FIELD_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

/// One request's entry, filled in as the request goes and written when its response ends.
pub struct Entry {
    writer: Arc<Writer>,
    at: SystemTime,
    started: tokio::time::Instant,
    direction: &'static str,
    method: String,
    authority: Option<String>,
    path: String,
    user_agent: Option<String>,
    request_id: Option<String>,
    client_addr: Option<SocketAddr>,
    client_identity: Option<String>,
    server_identity: Option<String>,
    route: Option<String>,
    upstream: Option<SocketAddr>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("direction", &self.direction)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What is known when a response ends.
#[derive(Clone, Copy, Debug)]
pub struct Ending {
    /// The HTTP status.
    pub status: u16,
    /// The gRPC status, from headers or trailers.
    pub grpc_status: Option<u32>,
    /// Response body bytes passed to the client.
    pub response_bytes: u64,
    /// The proxy error behind a response the proxy made itself, or "".
    pub error: &'static str,
}

/// The line as written: field names as Linkerd's and Envoy's access logs have them.
#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    direction: &'static str,
    client_addr: Option<String>,
    client_identity: Option<&'a str>,
    server_identity: Option<&'a str>,
    method: &'a str,
    authority: Option<&'a str>,
    path: &'a str,
    status: u16,
    grpc_status: Option<u32>,
    error: Option<&'static str>,
    duration_ms: f64,
    response_bytes: u64,
    upstream: Option<String>,
    route: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_id: Option<&'a str>,
}

impl Entry {
    /// The client's address.
    pub fn client_addr(&mut self, addr: SocketAddr) {
        self.client_addr = Some(addr);
    }

    /// The identities on both sides of the mesh hop, where known.
    pub fn identities(&mut self, client: Option<String>, server: Option<String>) {
        self.client_identity = client.filter(|id| !id.is_empty());
        self.server_identity = server.filter(|id| !id.is_empty());
    }

    /// The route taken (outbound).
    pub fn route(&mut self, route: &str) {
        self.route = Some(route.to_owned());
    }

    /// Where the request was sent: the endpoint (outbound) or the app (inbound).
    pub fn upstream(&mut self, addr: SocketAddr) {
        self.upstream = Some(addr);
    }

    /// Formats the line and queues it, or drops and counts it when the queue is full.
    pub fn finish(self, ending: Ending) {
        let line = self.line(ending);
        match self.writer.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.writer.dropped.increment(1);
            }
        }
    }

    fn line(&self, ending: Ending) -> String {
        let line = Line {
            timestamp: rfc3339(self.at),
            direction: self.direction,
            client_addr: self.client_addr.map(|a| a.to_string()),
            client_identity: self.client_identity.as_deref(),
            server_identity: self.server_identity.as_deref(),
            method: &self.method,
            authority: self.authority.as_deref(),
            path: &self.path,
            status: ending.status,
            grpc_status: ending.grpc_status,
            error: (!ending.error.is_empty()).then_some(ending.error),
            duration_ms: duration_ms(self.started.elapsed()),
            response_bytes: ending.response_bytes,
            upstream: self.upstream.map(|a| a.to_string()),
            route: self.route.as_deref(),
            user_agent: self.user_agent.as_deref(),
            request_id: self.request_id.as_deref(),
        };
        // Serializing plain strings and numbers cannot fail.
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn duration_ms(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// `at` as RFC 3339 UTC with milliseconds. Written here (Howard Hinnant's days-to-civil
/// algorithm) because the proxy carries no date crate for one timestamp format.
fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_733_580_000_123);
        assert_eq!(rfc3339(at), "2024-12-07T14:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn an_off_log_begins_nothing() {
        let head = http::Request::new(()).into_parts().0;
        assert!(AccessLog::default().begin(&head, "inbound").is_none());
    }

    #[test]
    fn long_fields_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_FIELD_BYTES);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_FIELD_BYTES && cut.len() >= MAX_FIELD_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn caller_controlled_text_cannot_forge_a_line() {
        let (lines, _queue) = mpsc::sync_channel(1);
        let writer = Arc::new(Writer {
            lines,
            dropped: Counter::noop(),
        });
        let mut head = http::Request::get("/x")
            .header("user-agent", "a\"}\t{\"status\":200}")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        head.headers.insert(
            "x-request-id",
            http::HeaderValue::from_bytes(b"\xff\"").unwrap(),
        );
        let log = AccessLog {
            writer: Some(writer),
        };
        let entry = log.begin(&head, "inbound").unwrap();
        let line = entry.line(Ending {
            status: 403,
            grpc_status: None,
            response_bytes: 7,
            error: "forbidden",
        });
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with('\n'));
        let parsed: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        // (A header value cannot hold a newline; quotes, braces, tabs and other bytes it can.)
        assert_eq!(parsed["user_agent"], "a\"}\t{\"status\":200}");
        assert_eq!(parsed["status"], 403);
        assert_eq!(parsed["request_id"], "\u{fffd}\"");
    }

    #[test]
    fn a_full_queue_drops_the_line_instead_of_waiting() {
        let (lines, _queue) = mpsc::sync_channel(1);
        let log = AccessLog {
            writer: Some(Arc::new(Writer {
                lines,
                dropped: Counter::noop(),
            })),
        };
        let head = http::Request::new(()).into_parts().0;
        let ending = Ending {
            status: 200,
            grpc_status: None,
            response_bytes: 0,
            error: "",
        };
        // The second line finds the queue full; finish returns at once.
        for _ in 0..2 {
            log.begin(&head, "outbound").unwrap().finish(ending);
        }
    }
}
