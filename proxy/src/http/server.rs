//! Serves one client connection as HTTP/1 or HTTP/2 with the proxy's protocol limits, and
//! shuts it down gracefully when the proxy drains.
//!
//! The limits are hyper's and h2's own (header block size, header count, concurrent streams,
//! flow-control windows, reset-stream floods) plus the request-line length and the two
//! connection deadlines of [`conn_timers`]; this module sets them in one place so both
//! listeners enforce the same ones.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use crate::detect::Protocol;
use crate::errors::{ProxyError, is_grpc};
use crate::http::body::Body;
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
    /// Most header fields in one HTTP/1 message.
    pub max_headers: usize,
    /// Most concurrent streams per HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
}

impl ServerLimits {
    fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // conn_timers enforces it from the head's first byte instead (see there why).
            .header_read_timeout(None)
            // hyper refuses a head larger than its read buffer with 431; its floor is 8 KiB.
            .max_buf_size(self.max_header_bytes.max(8192))
            .max_headers(self.max_headers)
            .half_close(false);
        builder
    }

    fn http2(&self) -> hyper::server::conn::http2::Builder<TokioExecutor> {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .initial_stream_window_size(self.h2_stream_window)
            .initial_connection_window_size(self.h2_connection_window)
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
    let service = service_fn(move |request: Request<Incoming>| {
        let timers = in_service.clone();
        timers.request_started();
        let grpc = is_grpc(&request);
        // Boxed: a request's future is large (routing, retries, pools), and hyper moves the
        // future it is given into its own storage on every request; moving a box is free.
        let response = (request_line_len(&request) <= max_line).then(|| Box::pin(handle(request)));
        async move {
            let response = match response {
                Some(response) => response.await,
                None => ProxyError::RequestLineTooLong { limit: max_line }.into_response(grpc),
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

/// The length of the request line as sent: method, target, version and separators. (For
/// HTTP/2 the same quantities from the pseudo-headers, so both versions share one limit.)
fn request_line_len<B>(request: &Request<B>) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |p| p.as_str().len());
    request.method().as_str().len() + target + " HTTP/1.1".len() + 1
}
