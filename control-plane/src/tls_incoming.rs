//! The control plane's gRPC port is TLS: this turns accepted TCP connections into TLS streams
//! tonic can serve, with the client's proven mesh identity (if it presented a certificate)
//! attached to every request as [`PeerInfo`].
//!
//! Handshakes run in their own tasks, so a slow or hostile client never delays others, and
//! are bounded by [`HANDSHAKE_TIMEOUT`]. Failures are logged and counted with their reason.
//!
//! Every connection takes a [`Slot`] at accept, before any TLS work, and keeps it until it is
//! dropped: one without a place (see [`crate::connection_slots`] for the caps) is closed at
//! once and counted in `strait_grpc_connections_refused_total`. A client certificate that
//! proves a mesh identity moves the slot from its source's unproven share to that identity's.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use strait_identity::SpiffeId;
use strait_identity::leaf::{self, Usage};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::connection_slots::{Slot, SlotTable};

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is calling the control plane.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The client's address.
    pub addr: SocketAddr,
    /// The mesh identity its certificate proved; `None` when it presented none.
    pub identity: Option<SpiffeId>,
}

/// A TLS connection with its peer and its place among the port's connections.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    peer: PeerInfo,
    _slot: Slot,
}

impl TlsConnection {
    /// Who is at the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Counts and logs a connection refused for want of a slot.
fn refused(addr: SocketAddr, refusal: crate::connection_slots::Refusal, slots: &SlotTable) {
    metrics::counter!("strait_grpc_connections_refused_total", "reason" => refusal.reason())
        .increment(1);
    tracing::debug!(%addr, reason = refusal.reason(), limits = ?slots.limits(), "gRPC connection refused");
}

/// Accepts connections on `listener` while `slots` has room, completes TLS handshakes with
/// `config`, and yields the established connections.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    trust_domain: String,
    slots: Arc<SlotTable>,
) -> tokio::sync::mpsc::Receiver<TlsConnection> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "control plane accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let mut slot = match slots.admit(addr.ip()) {
                Ok(slot) => slot,
                Err(refusal) => {
                    refused(addr, refusal, &slots);
                    drop(tcp);
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let slots = slots.clone();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let trust_domain = trust_domain.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                let stream = match handshake {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        let reason = strait_identity::verifier::io_failure_reason(&error);
                        metrics::counter!("strait_tls_handshakes_total", "direction" => "control-plane", "result" => "failure", "reason" => reason)
                            .increment(1);
                        tracing::info!(%addr, reason, %error, "control plane TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        metrics::counter!("strait_tls_handshakes_total", "direction" => "control-plane", "result" => "failure", "reason" => "timeout")
                            .increment(1);
                        return;
                    }
                };
                metrics::counter!("strait_tls_handshakes_total", "direction" => "control-plane", "result" => "success", "reason" => "")
                    .increment(1);
                let identity = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(|cert| leaf::check(cert, &trust_domain, Usage::Client).ok());
                if let Some(identity) = &identity
                    && let Err(refusal) = slot.prove(&identity.to_string())
                {
                    refused(addr, refusal, &slots);
                    return;
                }
                let _ = tx
                    .send(TlsConnection {
                        stream,
                        peer: PeerInfo { addr, identity },
                        _slot: slot,
                    })
                    .await;
            });
        }
    });
    rx
}
