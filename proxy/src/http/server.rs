//! Serves one client connection as HTTP/1 or HTTP/2 with the proxy's protocol limits, and
//! shuts it down gracefully when the proxy drains.
//!
//! The limits are hyper's and h2's own (header block size, header count, concurrent streams,
//! flow-control windows, reset-stream floods) plus the request-line length, the head limits
//! of [`head_limits`] checked again on each parsed request (h2 has no field-count limit of its
//! own) and the two connection deadlines of [`conn_timers`]; this module sets them in one
//! place so both listeners enforce the same ones.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::detect::Protocol;
use crate::errors::{ProxyError, is_grpc};
use crate::head_limits::HeadLimits;
use crate::http::conn_timers::{ConnTimers, Expired};
use crate::io::BoxedIo;

/// Protocol limits applied to every client connection.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// An HTTP/1 client must send its whole request head within this time of its first byte.
    pub header_read_timeout: Duration,
    /// A connection with no request in progress this long is closed gracefully.
    pub idle_timeout: Duration,
    /// Longest request line (method, target, version) accepted, in bytes.
    pub max_request_line_bytes: usize,
    /// HTTP/2 flow-control window of each stream, in bytes.
    pub h2_stream_window: u32,
    /// HTTP/2 flow-control window of each connection, in bytes.
    pub h2_connection_window: u32,
    /// Largest header block accepted, in bytes.
    pub max_header_bytes: usize,
    /// Most header fields in one message (HTTP/1 and HTTP/2).
    pub max_headers: usize,
    /// Most concurrent streams per HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
}

impl ServerLimits {
    /// The head limits, for requests and for upstream responses alike.
    pub fn heads(&self) -> HeadLimits {
        HeadLimits {
            max_bytes: self.max_header_bytes,
            max_fields: self.max_headers,
        }
    }

    fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // conn_timers enforces it from the head's first byte instead (see there why).
            .header_read_timeout(None)
            // The read buffer's size is only a soft bound on a head (a head arriving in large
            // reads fits in up to twice it); `max_header_size` is the exact one, and both
            // answer 431. The buffer's floor is 8 KiB. (`max_header_size` bounds chunked
            // trailers too, in place of hyper's 16 KiB default.)
            .max_buf_size(self.max_header_bytes.max(8192))
            .max_header_size(self.max_header_bytes)
            .max_headers(self.max_headers)
            .half_close(false);
        builder
    }

    fn http2(&self) -> hyper::server::conn::http2::Builder<TokioExecutor> {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            // Never stricter than the check on each request below, which answers with the
            // proxy's own 431; beyond this h2 answers 431 itself and resets the stream.
            .max_header_list_size(self.heads().h2_list_size())
            .initial_stream_window_size(self.h2_stream_window)
            .initial_connection_window_size(self.h2_connection_window)
            // Response bytes queued per stream for a slow client: no more than a stream may
            // send us, so the memory budget's window arithmetic covers both directions.
            .max_send_buf_size(self.h2_stream_window as usize)
            // Rapid Reset (CVE-2023-44487): bound streams the client resets before we accept them.
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024)
            // Let HTTP/2 CONNECT with a :protocol (RFC 8441, WebSocket over HTTP/2) through.
            .enable_connect_protocol();
        builder
    }
}

/// Serves `io` as `protocol` (HTTP/1 or HTTP/2), calling `handle` for each request, until the
/// client closes the connection, a deadline of [`conn_timers`] passes, or, after `drain`
/// fires, the in-flight requests finish.
pub async fn serve<H, F>(
    io: BoxedIo,
    protocol: Protocol,
    limits: &ServerLimits,
    drain: CancellationToken,
    handle: H,
) -> Result<(), hyper::Error>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let timers = ConnTimers::new();
    let in_service = timers.clone();
    let max_line = limits.max_request_line_bytes;
    let heads = limits.heads();
    let service = service_fn(move |request: Request<Incoming>| {
        let timers = in_service.clone();
        timers.request_started();
        let grpc = is_grpc(&request);
        // Boxed: a request's future is large (routing, retries, pools), and hyper moves the
        // future it is given into its own storage on every request; moving a box is free.
        let response = match refusal(&request, max_line, heads) {
            None => Ok(Box::pin(handle(request))),
            Some(error) => Err(error),
        };
        async move {
            let response = match response {
                Ok(response) => response.await,
                Err(error) => {
                    tracing::info!(kind = error.kind(), %error, "request refused");
                    error.into_response(grpc)
                }
            };
            timers.request_finished();
            Ok::<_, Infallible>(response)
        }
    });
    let (header_read, idle) = (limits.header_read_timeout, limits.idle_timeout);
    match protocol {
        Protocol::Http2 => {
            let connection = limits.http2().serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => return result,
                () = drain.cancelled() => connection.as_mut().graceful_shutdown(),
                // HTTP/2 has no heads to time: only the idle deadline applies.
                _ = timers.expired(Duration::MAX, idle) => connection.as_mut().graceful_shutdown(),
            }
            connection.await
        }
        Protocol::Http1 | Protocol::Opaque => {
            let io = timers.watch_reads(io);
            let connection = limits
                .http1()
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => return result,
                () = drain.cancelled() => connection.as_mut().graceful_shutdown(),
                expired = timers.expired(header_read, idle) => match expired {
                    // A head trickling in: drop the connection without a word.
                    Expired::HeaderRead => return Ok(()),
                    Expired::Idle => connection.as_mut().graceful_shutdown(),
                },
            }
            connection.await
        }
    }
}

/// The error a request is refused with before it is handled, if any: its request line or its
/// head exceeds the limits.
fn refusal<B>(request: &Request<B>, max_line: usize, heads: HeadLimits) -> Option<ProxyError> {
    if request_line_len(request) > max_line {
        return Some(ProxyError::RequestLineTooLong { limit: max_line });
    }
    heads
        .excess(start_line_len(request), request.headers())
        .map(ProxyError::RequestHeadTooLarge)
}

/// The length of the request line as sent: method, target, version and separators. (For
/// HTTP/2 the same quantities from the pseudo-headers, so both versions share one limit.)
fn request_line_len<B>(request: &Request<B>) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    request.method().as_str().len() + target + " HTTP/1.1".len() + 1
}

/// The start line a head is measured with: the request line and its line ending, plus the
/// scheme and authority an absolute-form target or HTTP/2's pseudo-headers carry.
fn start_line_len<B>(request: &Request<B>) -> usize {
    let uri = request.uri();
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    request_line_len(request) + scheme + authority + "\r\n".len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADS: HeadLimits = HeadLimits {
        max_bytes: 200,
        max_fields: 2,
    };

    #[test]
    fn a_long_request_line_is_refused_before_the_head_is_measured() {
        let request = Request::get(format!("/{}", "a".repeat(300)))
            .body(())
            .unwrap();
        assert!(matches!(
            refusal(&request, 100, HEADS),
            Some(ProxyError::RequestLineTooLong { limit: 100 })
        ));
    }

    #[test]
    fn one_large_field_or_too_many_fields_refuse_the_head_on_either_version() {
        for version in [http::Version::HTTP_11, http::Version::HTTP_2] {
            let big = Request::get("http://web.demo/")
                .version(version)
                .header("x-big", "b".repeat(200))
                .body(())
                .unwrap();
            assert!(matches!(
                refusal(&big, 8192, HEADS),
                Some(ProxyError::RequestHeadTooLarge(
                    crate::head_limits::HeadExcess::Bytes { .. }
                ))
            ));
            let many = Request::get("http://web.demo/")
                .version(version)
                .header("a", "1")
                .header("b", "2")
                .header("c", "3")
                .body(())
                .unwrap();
            assert!(matches!(
                refusal(&many, 8192, HEADS),
                Some(ProxyError::RequestHeadTooLarge(
                    crate::head_limits::HeadExcess::Fields { count: 3, limit: 2 }
                ))
            ));
            let fine = Request::get("http://web.demo/")
                .version(version)
                .header("a", "1")
                .body(())
                .unwrap();
            assert!(refusal(&fine, 8192, HEADS).is_none());
        }
    }

    #[test]
    fn the_authority_of_an_http2_request_counts_toward_its_head() {
        let long_authority = format!("{}.demo", "a".repeat(190));
        let request = Request::get(format!("http://{long_authority}/"))
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        assert!(refusal(&request, 8192, HEADS).is_some());
    }
}
