//! Serves one client connection as HTTP/1 or HTTP/2 with the proxy's protocol limits, and
//! shuts it down gracefully when the proxy drains.
//!
//! The limits are hyper's and h2's own (header block size, header count, header-read timeout,
//! concurrent streams, reset-stream floods); this module only sets them in one place so both
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
use crate::http::body::Body;
use crate::io::BoxedIo;

/// Protocol limits applied to every client connection.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// An HTTP/1 client must send its whole request head within this time.
    pub header_read_timeout: Duration,
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
            .header_read_timeout(self.header_read_timeout)
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
            // Rapid Reset (CVE-2023-44487): bound streams the client resets before we accept them.
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024)
            // Let HTTP/2 CONNECT with a :protocol (RFC 8441, WebSocket over HTTP/2) through.
            .enable_connect_protocol();
        builder
    }
}

/// Serves `io` as `protocol` (HTTP/1 or HTTP/2), calling `handle` for each request, until the
/// client closes the connection or, after `drain` fires, the in-flight requests finish.
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
    let service = service_fn(move |request| {
        let response = handle(request);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let io = TokioIo::new(io);
    match protocol {
        Protocol::Http2 => {
            let connection = limits.http2().serve_connection(io, service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => return result,
                () = drain.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            connection.await
        }
        Protocol::Http1 | Protocol::Opaque => {
            let connection = limits.http1().serve_connection(io, service).with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => return result,
                () = drain.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            connection.await
        }
    }
}
