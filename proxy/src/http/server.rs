//! Serves one client connection as HTTP/1 or HTTP/2 with the proxy's protocol limits, and
//! shuts it down gracefully when the proxy drains.
//!
//! The limits are hyper's and h2's own (header block size, header count, concurrent streams,
//! flow-control windows, reset-stream floods) plus the request-line length, the head limits
//! of [`head_limits`] checked again on each parsed request (h2 has no field-count limit of its
//! own) and the two connection deadlines of [`conn_timers`]; this module sets them in one
//! place so both listeners enforce the same ones. Idle HTTP/1 connections are parked
//! between requests ([`park`]) so that they do not hold hyper's buffers.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
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
use crate::http::park::{PARK_AFTER, ParkIo, ParkState, Parked};
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
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + Unpin + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let timers = ConnTimers::new();
    let in_service = timers.clone();
    let max_line = limits.max_request_line_bytes;
    let heads = limits.heads();
    // HTTP/1 only: the exchanges parking waits for.
    let parking = matches!(protocol, Protocol::Http1 | Protocol::Opaque).then(ParkState::new);
    let in_exchange = parking.clone();
    let service = service_fn(move |request: Request<Incoming>| {
        let timers = in_service.clone();
        timers.request_started();
        let exchange = in_exchange.as_ref().map(|p| p.exchange_started(&request));
        let grpc = is_grpc(&request);
        // Boxed: a request's future is large (routing, retries, pools), and hyper moves the
        // future it is given into its own storage on every request; moving a box is free.
        let response = match refusal(&request, max_line, heads) {
            None => Ok(Box::pin(handle(request))),
            Some(error) => Err(Box::new(error)),
        };
        async move {
            let response = match response {
                Ok(response) => response.await,
                Err(error) => {
                    tracing::info!(kind = error.kind(), %error, "request refused");
                    (*error).into_response(grpc)
                }
            };
            timers.request_finished();
            Ok::<_, Infallible>(match exchange {
                Some(exchange) => response.map(|body| exchange.until_sent(body)),
                None => response,
            })
        }
    });
    let (header_read, idle) = (limits.header_read_timeout, limits.idle_timeout);
    match (protocol, parking) {
        (Protocol::Http1 | Protocol::Opaque, Some(parking)) => {
            let io = ParkIo::new(timers.watch_reads(io), parking.clone());
            let deadlines = Deadlines {
                timers: &timers,
                header_read,
                idle,
            };
            serve_http1(io, service, limits, &drain, deadlines, &parking).await
        }
        _ => {
            // Boxed, as below: kept out of the connection task's future, whose size every
            // connection pays whatever its protocol.
            let mut connection =
                Box::pin(limits.http2().serve_connection(TokioIo::new(io), service));
            tokio::select! {
                result = connection.as_mut() => return result,
                () = drain.cancelled() => connection.as_mut().graceful_shutdown(),
                // HTTP/2 has no heads to time: only the idle deadline applies.
                _ = timers.expired(Duration::MAX, idle) => connection.as_mut().graceful_shutdown(),
            }
            connection.await
        }
    }
}

/// One connection's deadlines, as [`serve_http1`] checks them.
struct Deadlines<'a> {
    timers: &'a Arc<ConnTimers>,
    header_read: Duration,
    idle: Duration,
}

/// Serves HTTP/1 on `io` with hyper, parking the connection whenever it goes quiet (see
/// [`park`]): hyper's connection (and its buffers) is dropped, the stream waits
/// for the client's next bytes here, and a new hyper connection carries on from them. The
/// deadlines and draining apply the same whether hyper holds the stream or not.
async fn serve_http1<S, B>(
    mut io: ParkIo,
    mut service: S,
    limits: &ServerLimits,
    drain: &CancellationToken,
    deadlines: Deadlines<'_>,
    parking: &ParkState,
) -> Result<(), hyper::Error>
where
    S: hyper::service::HttpService<Incoming, ResBody = B> + Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Deadlines {
        timers,
        header_read,
        idle,
    } = deadlines;
    loop {
        // Boxed: hyper's connection state is large, and a task's future is as large as its
        // largest state; boxed, a parked connection's task holds none of it.
        let mut connection = Box::new(
            limits
                .http1()
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        );
        tokio::select! {
            result = &mut *connection => return result,
            () = drain.cancelled() => {
                std::pin::Pin::new(&mut *connection).graceful_shutdown();
                return connection.await;
            }
            expired = timers.expired(header_read, idle) => match expired {
                // A head trickling in: drop the connection without a word.
                Expired::HeaderRead => return Ok(()),
                Expired::Idle => {
                    std::pin::Pin::new(&mut *connection).graceful_shutdown();
                    return connection.await;
                }
            },
            () = parking.until_idle_for(PARK_AFTER, || !timers.head_in_progress()) => {}
        }
        // Quiet: nothing in flight, everything flushed, hyper waiting for a head. (`None`
        // only after an upgrade, which a quiet connection has not had.)
        let Some(parts) = (*connection).into_parts() else {
            return Ok(());
        };
        service = parts.service;
        io = parts.io.into_inner();
        if !parts.read_buf.is_empty() {
            // Bytes hyper read but had not parsed yet: serve them at once, in order.
            io.replay_unparsed(parts.read_buf);
            continue;
        }
        // Empty, but it still holds hyper's read buffer: the point of parking is to free it.
        drop(parts.read_buf);
        let _parked = Parked::count();
        tokio::select! {
            woke = io.wait_for_bytes() => match woke {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(error) => {
                    tracing::debug!(%error, "a parked HTTP/1 connection failed");
                    return Ok(());
                }
            },
            // Nothing in flight: draining or the idle timeout closes a parked connection at
            // once, as hyper closes an idle one. (No head has begun, so only `Idle` passes.)
            () = drain.cancelled() => return Ok(()),
            _ = timers.expired(header_read, idle) => return Ok(()),
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
