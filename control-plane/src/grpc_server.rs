//! Serves the gRPC services over the TLS connections [`crate::tls_incoming`] admits, one
//! HTTP/2 connection per task, with limits sized for what the port serves.
//!
//! Why not tonic's own server loop: it treats every connection alike, and the control plane
//! must not. A connection without a mesh certificate serves only `Certify`, one call a proxy
//! makes at start and at renewal, so it gets a short life ([`GrpcSettings::unproven_lifetime`]):
//! then a GOAWAY, in-flight calls finish within [`GrpcSettings::unproven_grace`], and it is
//! closed. A proxy's channel reconnects on its next call, so legitimate proxies never notice;
//! an anonymous client cannot sit on a slot. A connection with a mesh certificate carries a
//! `Watch` stream that lives for hours and keeps its connection for as long as it is alive.
//!
//! Per connection, for every client:
//! - [`MAX_CONCURRENT_STREAMS`] streams: a proxy uses one at a time (a `Certify` or a `Watch`).
//! - HTTP/2 keepalive pings every [`KEEPALIVE_INTERVAL`]; a peer that does not answer within
//!   [`KEEPALIVE_TIMEOUT`] is dropped, so dead proxies do not hold slots.
//! - A request's header list is at most [`MAX_HEADER_LIST_BYTES`]: gRPC metadata is small.
//! - Request messages are capped per service in `run.rs` (a CSR is a few KiB).

use std::future::Future;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tonic::codegen::Service as _;
use tonic::service::Routes;

use crate::tls_incoming::TlsConnection;

/// Streams one connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 8;
/// How often the server pings an idle connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request header list (HPACK-decoded), in bytes.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// How the gRPC port treats connections.
#[derive(Clone, Copy, Debug)]
pub struct GrpcSettings {
    /// How long a connection without a mesh certificate is served before it is asked to close.
    pub unproven_lifetime: Duration,
    /// How long its in-flight calls may take after that before it is closed.
    pub unproven_grace: Duration,
}

/// What happens to a connection when its deadline passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Served until the client or the shutdown closes it.
    None,
    /// GOAWAY after `.0`, closed `.1` later.
    CloseAfter(Duration, Duration),
}

/// The deadline of a connection that proved a mesh identity (`proven`) or not.
pub fn connection_deadline(settings: &GrpcSettings, proven: bool) -> Deadline {
    if proven {
        Deadline::None
    } else {
        Deadline::CloseAfter(settings.unproven_lifetime, settings.unproven_grace)
    }
}

/// Serves `routes` on every connection from `incoming` until `shutdown` completes, then asks
/// every connection to close and waits for them.
pub async fn serve(
    mut incoming: tokio::sync::mpsc::Receiver<TlsConnection>,
    routes: Routes,
    settings: GrpcSettings,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            connection = incoming.recv() => {
                let Some(connection) = connection else { break };
                let deadline = connection_deadline(&settings, connection.peer().identity.is_some());
                tokio::spawn(serve_connection(connection, routes.clone(), deadline, stop_rx.clone()));
            }
        }
    }
    drop(incoming);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
}

async fn serve_connection(
    connection: TlsConnection,
    routes: Routes,
    deadline: Deadline,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let peer = connection.peer().clone();
    let service = hyper::service::service_fn({
        let peer = peer.clone();
        move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(peer.clone());
            // `Routes` is always ready (an axum router), so no `poll_ready` is needed.
            routes.clone().call(request.map(tonic::body::Body::new))
        }
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .max_header_list_size(MAX_HEADER_LIST_BYTES);
    let conn = builder.serve_connection(TokioIo::new(connection), service);
    let mut conn = std::pin::pin!(conn);
    let (lifetime, grace) = match deadline {
        Deadline::None => (None, None),
        Deadline::CloseAfter(lifetime, grace) => (Some(lifetime), Some(lifetime + grace)),
    };
    let asked = sleep_or_never(lifetime);
    let forced = sleep_or_never(grace);
    let mut asked = std::pin::pin!(asked);
    let mut forced = std::pin::pin!(forced);
    let mut closing = false;
    loop {
        tokio::select! {
            result = &mut conn => {
                if let Err(error) = result {
                    tracing::debug!(addr = %peer.addr, %error, "gRPC connection ended with an error");
                }
                return;
            }
            _ = &mut asked, if !closing => {
                tracing::debug!(addr = %peer.addr, "closing a gRPC connection without a mesh certificate: its lifetime is over");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = &mut forced => {
                tracing::debug!(addr = %peer.addr, "dropping a gRPC connection whose calls outlived its grace period");
                return;
            }
            changed = stop.changed(), if !closing => {
                let _ = changed;
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

async fn sleep_or_never(after: Option<Duration>) {
    match after {
        Some(after) => tokio::time::sleep(after).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: GrpcSettings = GrpcSettings {
        unproven_lifetime: Duration::from_secs(30),
        unproven_grace: Duration::from_secs(10),
    };

    #[test]
    fn a_proven_connection_lives_as_long_as_its_client_keeps_it() {
        assert_eq!(connection_deadline(&SETTINGS, true), Deadline::None);
    }

    #[test]
    fn an_unproven_connection_is_asked_to_close_then_closed() {
        assert_eq!(
            connection_deadline(&SETTINGS, false),
            Deadline::CloseAfter(Duration::from_secs(30), Duration::from_secs(10))
        );
    }
}
