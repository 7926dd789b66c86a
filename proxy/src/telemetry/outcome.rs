//! What a response means for the golden signals: success or failure, decided once for HTTP
//! and gRPC, and the body wrapper that finds a gRPC response's status in its trailers.
//!
//! HTTP is judged by status class (5xx is a failure, as before). gRPC answers HTTP 200 and
//! carries its status in `grpc-status`: in the headers of a trailers-only response (the
//! proxy's own errors are such), else in the trailers after the messages. A gRPC response is a
//! failure when its status is one the server is to blame for — the codes the gRPC HTTP mapping
//! turns into 5xx (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
//! DATA_LOSS) — so a gRPC `NOT_FOUND` is no more a failure than an HTTP 404 is. A gRPC stream
//! that ends without any status, or breaks off, is a failure; one the client drops before its
//! end is counted as CANCELLED, the status gRPC gives a call its client cancels.
//!
//! The wrapper never holds a frame back: it looks at trailers as they pass, and counts the
//! data bytes for the access log.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;

use crate::body::{Body, BoxError};

/// How a response counts in the success rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classification {
    /// The server did its part (2xx–4xx, a gRPC status the client is to blame for or OK).
    Success,
    /// The server, or the path to it, failed.
    Failure,
}

impl Classification {
    /// The `classification` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Success => "success",
            Classification::Failure => "failure",
        }
    }
}

/// gRPC's `CANCELLED`: what a call its client dropped before the end is counted as.
pub const GRPC_CANCELLED: u32 = 1;

/// Classifies a response from its HTTP status and, for gRPC, its `grpc-status` (from the
/// trailers-only headers or the trailers). `grpc` is `None` when no status is known: an HTTP
/// response, or a gRPC one that ended without a status, which is judged by `grpc_call`.
pub fn classify_outcome(status: u16, grpc: Option<u32>, grpc_call: bool) -> Classification {
    match grpc {
        Some(code) if is_server_fault(code) => Classification::Failure,
        Some(_) => Classification::Success,
        // A gRPC call answered 2xx but without a status is broken: clients report INTERNAL.
        None if grpc_call && (200..300).contains(&status) => Classification::Failure,
        None if status >= 500 => Classification::Failure,
        None => Classification::Success,
    }
}

/// The gRPC codes that map to HTTP 5xx (gRPC's HTTP mapping, as grpc-gateway applies it).
fn is_server_fault(code: u32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// gRPC's `UNKNOWN`, what a status outside the defined codes is read as.
const GRPC_UNKNOWN: u32 = 2;

/// The numeric `grpc-status` in `headers` (a trailers-only response's headers, or trailers).
/// A number outside gRPC's codes (0–16) reads as UNKNOWN, as gRPC clients read it: an
/// upstream choosing arbitrary numbers must not mint a label value per number.
pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .map(|code| if code <= 16 { code } else { GRPC_UNKNOWN })
}

/// How a gRPC response body ended, as far as its status goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcEnd {
    /// Trailers came with this status.
    Status(u32),
    /// The stream ended (trailers without a status, or none at all) or broke off.
    NoStatus,
    /// The client dropped the response before its end.
    Dropped,
}

impl GrpcEnd {
    /// The status to record: the trailers', CANCELLED for a dropped call, none otherwise.
    pub fn status(self) -> Option<u32> {
        match self {
            GrpcEnd::Status(code) => Some(code),
            GrpcEnd::NoStatus => None,
            GrpcEnd::Dropped => Some(GRPC_CANCELLED),
        }
    }
}

/// How a response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyEnd {
    /// The gRPC status its trailers carried, or why there is none.
    pub grpc: GrpcEnd,
    /// Data bytes passed on.
    pub bytes: u64,
}

/// Wraps a response body: `on_end` is called once, with how the body ended, when its
/// trailers pass, when it ends or breaks off, or when it is dropped before that.
pub fn watch_end<F>(body: Body, on_end: F) -> Body
where
    F: FnOnce(BodyEnd) + Send + Unpin + 'static,
{
    http_body_util::BodyExt::boxed_unsync(EndWatch {
        body,
        bytes: 0,
        on_end: Some(on_end),
    })
}

struct EndWatch<F: FnOnce(BodyEnd)> {
    body: Body,
    bytes: u64,
    on_end: Option<F>,
}

impl<F: FnOnce(BodyEnd)> EndWatch<F> {
    fn end(&mut self, grpc: GrpcEnd) {
        if let Some(on_end) = self.on_end.take() {
            on_end(BodyEnd {
                grpc,
                bytes: self.bytes,
            });
        }
    }
}

impl<F: FnOnce(BodyEnd) + Unpin> http_body::Body for EndWatch<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let poll = Pin::new(&mut self.body).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if let Some(trailers) = frame.trailers_ref() {
                    let end = grpc_status(trailers).map_or(GrpcEnd::NoStatus, GrpcEnd::Status);
                    self.end(end);
                }
            }
            Poll::Ready(Some(Err(_)) | None) => self.end(GrpcEnd::NoStatus),
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl<F: FnOnce(BodyEnd)> Drop for EndWatch<F> {
    fn drop(&mut self) {
        self.end(GrpcEnd::Dropped);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn http_responses_fail_only_with_5xx() {
        for (status, expected) in [
            (200, Classification::Success),
            (302, Classification::Success),
            (404, Classification::Success),
            (499, Classification::Success),
            (500, Classification::Failure),
            (503, Classification::Failure),
        ] {
            assert_eq!(classify_outcome(status, None, false), expected, "{status}");
        }
    }

    #[test]
    fn grpc_responses_fail_with_server_fault_codes_whatever_the_http_status() {
        let failures = [2, 4, 12, 13, 14, 15];
        for code in 0..=16 {
            let expected = if failures.contains(&code) {
                Classification::Failure
            } else {
                Classification::Success
            };
            assert_eq!(classify_outcome(200, Some(code), true), expected, "{code}");
        }
        assert_eq!(
            classify_outcome(200, Some(14), true),
            Classification::Failure,
            "the proxy's own UNAVAILABLE"
        );
    }

    #[test]
    fn a_grpc_call_answered_without_any_status_is_a_failure() {
        assert_eq!(classify_outcome(200, None, true), Classification::Failure);
        assert_eq!(classify_outcome(503, None, true), Classification::Failure);
        assert_eq!(classify_outcome(404, None, true), Classification::Success);
    }

    #[test]
    fn a_dropped_call_counts_as_cancelled_which_is_not_the_servers_fault() {
        assert_eq!(GrpcEnd::Dropped.status(), Some(GRPC_CANCELLED));
        assert_eq!(
            classify_outcome(200, GrpcEnd::Dropped.status(), true),
            Classification::Success
        );
    }

    #[test]
    fn grpc_status_outside_the_defined_codes_reads_as_unknown() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "4000000000".parse().unwrap());
        assert_eq!(grpc_status(&headers), Some(GRPC_UNKNOWN));
        headers.insert("grpc-status", "16".parse().unwrap());
        assert_eq!(grpc_status(&headers), Some(16));
        headers.insert("grpc-status", "x".parse().unwrap());
        assert_eq!(grpc_status(&headers), None);
    }

    fn body_of(frames: Vec<Frame<Bytes>>) -> Body {
        let stream = futures_util::stream::iter(frames.into_iter().map(Ok::<_, BoxError>));
        http_body_util::StreamBody::new(stream).boxed_unsync()
    }

    fn watched(frames: Vec<Frame<Bytes>>) -> (Body, Arc<Mutex<Vec<GrpcEnd>>>) {
        watched_with_bytes(frames, 0)
    }

    fn watched_with_bytes(
        frames: Vec<Frame<Bytes>>,
        expected_bytes: u64,
    ) -> (Body, Arc<Mutex<Vec<GrpcEnd>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let body = watch_end(body_of(frames), move |end| {
            if end.grpc != GrpcEnd::Dropped {
                assert_eq!(end.bytes, expected_bytes);
            }
            record.lock().unwrap().push(end.grpc);
        });
        (body, seen)
    }

    #[tokio::test]
    async fn the_status_in_trailers_is_seen_and_every_frame_passes_unchanged() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "13".parse().unwrap());
        let (body, seen) = watched_with_bytes(
            vec![
                Frame::data(Bytes::from_static(b"one")),
                Frame::data(Bytes::from_static(b"two")),
                Frame::trailers(trailers.clone()),
            ],
            6,
        );
        let collected = body.collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), Bytes::from_static(b"onetwo"));
        assert_eq!(*seen.lock().unwrap(), [GrpcEnd::Status(13)]);
    }

    #[tokio::test]
    async fn a_stream_ending_without_trailers_has_no_status_and_is_reported_once() {
        let (body, seen) = watched_with_bytes(vec![Frame::data(Bytes::from_static(b"one"))], 3);
        body.collect().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), [GrpcEnd::NoStatus]);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_is_reported_dropped() {
        let (mut body, seen) = watched(vec![
            Frame::data(Bytes::from_static(b"one")),
            Frame::trailers(HeaderMap::new()),
        ]);
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(*seen.lock().unwrap(), [GrpcEnd::Dropped]);
    }
}
