//! The inbound path: traffic from the mesh (or from non-meshed clients) to the local app.
//!
//! Two kinds of connection arrive on the inbound listener:
//! - mesh connections from other proxies, addressed to the listener itself: mTLS when the
//!   proxy has an identity (the caller's identity comes from its certificate), plaintext
//!   otherwise; either way they open with the transport header naming the application port
//!   and protocol;
//! - connections redirected by iptables from an application port (non-meshed clients), whose
//!   port comes from the original destination and whose protocol is detected.
//!
//! What is admitted is decided in [`admission`] (never the proxy's own listeners, only the
//! ports the control plane names, the declared protocol over the claimed one, nothing before
//! the first snapshot); plaintext is refused on ports in strict mode; authorization is checked
//! per request, and re-checked for opaque and upgraded connections whenever the table changes.
//!
//! The bytes go to the app at the address the connection was meant for (the pod's own
//! address; `--inbound-target-ip` overrides it), never to a loopback-only listener: HTTP over
//! a pooled connection per target, opaque TCP relayed as is. The app receives
//! `strait-client-id` only as this proxy sets it, and its responses lose any
//! `strait-proxy-error` (see [`crate::reserved`]). The inbound proxy forwards nowhere
//! but the local app, so it cannot be used as a relay.

pub mod admission;
mod app_connection;
mod policy;
mod port_metrics;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use strait_identity::SpiffeId;
use tokio::net::TcpStream;

use crate::connect::Dest;
use crate::detect::{self, Protocol};
use crate::flags::InboundMode;
use crate::http::upstream::Upstream;
use crate::http::{HttpVersion, server};
use crate::io::{BoxedIo, PrefixedIo};
use crate::mesh_tls::MeshTls;
use crate::original_dst::{original_dst, unmap};
use crate::shared::Shared;
use crate::tcp;
use crate::telemetry::http::RequestLabels;
use crate::telemetry::tcp::{ConnectionLabels, Direction};
use crate::transport_header::Header;
use admission::{OwnPorts, PortKnowledge, Reading, Refusal};
use app_connection::AppConnection;
use policy::{authorize, revocation};
use port_metrics::RequestMetricsCache;

/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The inbound proxy.
pub struct Inbound {
    shared: Arc<Shared>,
    tls: Option<Arc<MeshTls>>,
    own_ports: OwnPorts,
    // Whether the proxy has a control plane or a snapshot file: then it admits nothing until
    // the first snapshot arrives.
    has_configuration_source: bool,
    // One pool per (app address, HTTP version), looked up once per connection.
    app_pools: Mutex<HashMap<(SocketAddr, HttpVersion), Arc<Upstream>>>,
    // Request metrics per label set, looked up once per connection.
    metrics: RequestMetricsCache,
}

/// Who is calling, as far as the inbound proxy can tell.
#[derive(Clone, Debug, Default)]
struct Peer {
    /// The identity the client's certificate proved; `None` for plaintext clients.
    identity: Option<SpiffeId>,
    /// Whether the connection is mesh mTLS.
    tls: bool,
}

impl Inbound {
    /// An inbound proxy for a proxy listening on `own_ports`; with `tls` it terminates mesh
    /// mTLS, and `has_configuration_source` says whether a snapshot is to be waited for.
    pub fn new(
        shared: Arc<Shared>,
        tls: Option<Arc<MeshTls>>,
        own_ports: OwnPorts,
        has_configuration_source: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared,
            tls,
            own_ports,
            has_configuration_source,
            app_pools: Mutex::new(HashMap::new()),
            metrics: RequestMetricsCache::default(),
        })
    }

    /// Serves one accepted connection to its end.
    pub async fn serve(self: Arc<Self>, stream: TcpStream, client: SocketAddr) {
        match original_dst(&stream) {
            Some(dst) if dst.port() != self.own_ports.inbound => {
                self.serve_redirected(stream, client, dst).await
            }
            _ => self.serve_mesh(stream, client).await,
        }
    }

    /// What the proxy knows about `port` now.
    fn knowledge(&self, port: u16) -> PortKnowledge {
        let table = self.shared.table.load();
        if !self.has_configuration_source {
            PortKnowledge::Unconfigured
        } else if !table.is_configured() {
            PortKnowledge::Awaiting
        } else {
            PortKnowledge::Snapshot(table.app_port(port))
        }
    }

    /// Whether `port` is one of the default opaque ports (`--opaque-ports`).
    fn is_opaque_port(&self, port: u16) -> bool {
        self.shared.settings.opaque_ports.contains(&port)
    }

    /// Where the app is for a connection that was addressed to `destination`.
    fn app_addr(&self, destination: IpAddr, port: u16) -> SocketAddr {
        let ip = self
            .shared
            .settings
            .inbound_target_ip
            .unwrap_or(destination);
        unmap(SocketAddr::new(ip, port))
    }

    fn plaintext_allowed(&self, port: u16, client: SocketAddr) -> bool {
        let allowed = self
            .shared
            .table
            .load()
            .inbound_mode(port, self.shared.settings.default_inbound_mode)
            == InboundMode::Permissive;
        if !allowed {
            metrics::counter!("strait_inbound_plaintext_refused_total").increment(1);
            tracing::info!(%client, port, "plaintext connection refused: the port is in strict mode");
        }
        allowed
    }

    async fn serve_mesh(self: Arc<Self>, stream: TcpStream, client: SocketAddr) {
        let timeout = self.shared.settings.detect_timeout;
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let mut first = [0u8; 1];
        match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
            Ok(Ok(1)) => {}
            _ => {
                tracing::debug!(%client, "inbound connection closed or silent before sending anything");
                return;
            }
        }
        if first[0] == TLS_HANDSHAKE {
            let Some(tls) = self.tls.clone() else {
                tracing::info!(%client, "TLS connection refused: this proxy has no mesh identity");
                return;
            };
            let accepted = match tokio::time::timeout(timeout, tls.accept(stream)).await {
                Ok(Ok(accepted)) => accepted,
                Ok(Err(error)) => {
                    let reason = strait_identity::verifier::io_failure_reason(&error);
                    tracing::info!(%client, reason, %error, "inbound mTLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%client, "inbound mTLS handshake timed out");
                    return;
                }
            };
            let mut stream = accepted.stream;
            let header = match tokio::time::timeout(timeout, Header::read(&mut stream)).await {
                Ok(Ok(header)) => header,
                Ok(Err(error)) => {
                    tracing::info!(%client, peer = %accepted.peer, %error, "mesh connection refused: bad transport header");
                    return;
                }
                Err(_) => {
                    tracing::info!(%client, peer = %accepted.peer, "mesh connection refused: no transport header in time");
                    return;
                }
            };
            if header.protocol != accepted.protocol {
                tracing::info!(%client, peer = %accepted.peer, "mesh connection refused: transport header and ALPN disagree");
                return;
            }
            let peer = Peer {
                identity: Some(accepted.peer),
                tls: true,
            };
            self.serve_mesh_app(Box::new(stream), client, local, header, peer)
                .await;
        } else {
            let mut stream = stream;
            let header = match tokio::time::timeout(timeout, Header::read(&mut stream)).await {
                Ok(Ok(header)) => header,
                Ok(Err(error)) => {
                    tracing::info!(%client, %error, "inbound connection refused: not a mesh connection");
                    return;
                }
                Err(_) => {
                    tracing::info!(%client, "inbound connection refused: no transport header in time");
                    return;
                }
            };
            if !self.plaintext_allowed(header.port, client) {
                return;
            }
            self.serve_mesh_app(Box::new(stream), client, local, header, Peer::default())
                .await;
        }
    }

    /// Serves a mesh connection whose transport header has been read, if admission allows.
    async fn serve_mesh_app(
        self: Arc<Self>,
        mut io: BoxedIo,
        client: SocketAddr,
        local: SocketAddr,
        header: Header,
        peer: Peer,
    ) {
        let knowledge = self.knowledge(header.port);
        let reading = admission::mesh_connection(
            header.port,
            header.protocol,
            self.own_ports,
            knowledge,
            self.is_opaque_port(header.port),
        );
        let (protocol, prefix) = match reading {
            Ok(Reading::As(protocol)) => (protocol, Default::default()),
            Ok(Reading::Detect) => match self.detect(&mut io, client, knowledge).await {
                Some(detected) => detected,
                None => return,
            },
            Err(refusal) => {
                return refused(client, header.port, &peer, refusal);
            }
        };
        let app = self.app_addr(local.ip(), header.port);
        self.serve_app(io, prefix, client, app, protocol, peer)
            .await;
    }

    /// Detects the protocol of `io`'s first bytes and checks it against the port's
    /// declaration; `None` when the connection is to be dropped (logged here).
    async fn detect(
        &self,
        io: &mut BoxedIo,
        client: SocketAddr,
        knowledge: PortKnowledge,
    ) -> Option<(Protocol, bytes::BytesMut)> {
        let settings = &self.shared.settings;
        let (detected, prefix) =
            match detect::detect(io, settings.detect_max_bytes, settings.detect_timeout).await {
                Ok(detected) => detected,
                Err(error) => {
                    tracing::debug!(%client, %error, "inbound connection failed during detection");
                    return None;
                }
            };
        match admission::after_detection(detected, knowledge) {
            Ok(protocol) => Some((protocol, prefix)),
            Err(refusal) => {
                count_refusal(refusal);
                tracing::info!(%client, reason = refusal.as_str(), "inbound connection refused: not HTTP on a port declared HTTP");
                None
            }
        }
    }

    async fn serve_redirected(
        self: Arc<Self>,
        stream: TcpStream,
        client: SocketAddr,
        destination: SocketAddr,
    ) {
        let port = destination.port();
        let knowledge = self.knowledge(port);
        let opaque_port = self.is_opaque_port(port);
        let reading =
            match admission::redirected_connection(port, self.own_ports, knowledge, opaque_port) {
                Ok(reading) => reading,
                Err(refusal) => return refused(client, port, &Peer::default(), refusal),
            };
        if !self.plaintext_allowed(port, client) {
            return;
        }
        let mut io: BoxedIo = Box::new(stream);
        let (protocol, prefix) = match reading {
            Reading::As(protocol) => (protocol, Default::default()),
            Reading::Detect => match self.detect(&mut io, client, knowledge).await {
                Some(detected) => detected,
                None => return,
            },
        };
        let app = self.app_addr(destination.ip(), port);
        self.serve_app(io, prefix, client, app, protocol, Peer::default())
            .await;
    }

    async fn serve_app(
        self: Arc<Self>,
        io: BoxedIo,
        prefix: bytes::BytesMut,
        client: SocketAddr,
        target: SocketAddr,
        protocol: Protocol,
        peer: Peer,
    ) {
        let port = target.port();
        let table = self.shared.table.load();
        let services = table.inbound_services(port);
        let identity = peer.identity.as_ref().map(ToString::to_string);
        let src_workload = table.workload_of_identity(identity.as_deref());
        let open = self
            .shared
            .tcp_metrics
            .get(ConnectionLabels {
                direction: Direction::Inbound,
                protocol,
                service: match services {
                    [one] => one.clone(),
                    _ => String::new(),
                },
                src_workload: src_workload.clone(),
                dst_workload: table.own_workload().clone(),
            })
            .open();
        let labels = RequestLabels {
            direction: "inbound",
            service: String::new(),
            route: String::new(),
            backend: String::new(),
            peer_identity: identity.unwrap_or_default(),
            tls: peer.tls,
            src_workload,
            dst_workload: table.own_workload().clone(),
        };
        let metrics = self.metrics.port(&labels, services);
        drop(table);
        let io: BoxedIo = Box::new(open.count(PrefixedIo::new(prefix, io)));
        match HttpVersion::from_protocol(protocol) {
            Some(version) => {
                let connection = Arc::new(AppConnection {
                    upstream: self.app_pool(target, version),
                    metrics,
                    tracer: self.shared.tracer.clone(),
                    version,
                    client_id: peer
                        .identity
                        .as_ref()
                        .and_then(|id| http::HeaderValue::from_str(&id.to_string()).ok()),
                    idle_timeout: self.shared.settings.tcp_idle_timeout,
                    shared: self.shared.clone(),
                    port,
                    client,
                    peer,
                });
                let served = server::serve(
                    io,
                    protocol,
                    &self.shared.settings.limits,
                    self.shared.drain.clone(),
                    move |request| connection.clone().handle(request),
                )
                .await;
                if let Err(error) = served {
                    tracing::debug!(%client, %error, "inbound HTTP connection ended with an error");
                }
            }
            None => {
                // Subscribed before the check, so a change between the two is not missed.
                let changes = self.shared.table.subscribe();
                if authorize(&self.shared, port, client, &peer, None).is_err() {
                    return;
                }
                let revoked = revocation(self.shared.clone(), changes, port, client, peer, None);
                let app = match self
                    .shared
                    .connector
                    .connect(&Dest::Direct(target), Protocol::Opaque)
                    .await
                {
                    Ok(app) => app,
                    Err(error) => {
                        tracing::info!(%client, %error, "inbound opaque connection: app unreachable");
                        return;
                    }
                };
                let idle_timeout = self.shared.settings.tcp_idle_timeout;
                if let Err(error) = tcp::relay_until(io, app, idle_timeout, Some(revoked)).await {
                    tracing::debug!(%client, %error, "inbound opaque connection ended with an error");
                }
            }
        }
    }

    fn app_pool(&self, target: SocketAddr, version: HttpVersion) -> Arc<Upstream> {
        let mut pools = self.app_pools.lock().expect("app pool lock poisoned");
        pools
            .entry((target, version))
            .or_insert_with(|| {
                Upstream::new(
                    Dest::Direct(target),
                    version,
                    self.shared.connector.clone(),
                    self.shared.settings.pool_idle_timeout,
                    self.shared.settings.limits.heads(),
                )
            })
            .clone()
    }
}

/// Counts a connection refused by [`admission`].
fn count_refusal(refusal: Refusal) {
    metrics::counter!("strait_inbound_refused_total", "reason" => refusal.as_str()).increment(1);
}

/// Counts and logs a connection refused by [`admission`].
fn refused(client: SocketAddr, port: u16, peer: &Peer, refusal: Refusal) {
    count_refusal(refusal);
    tracing::info!(
        %client,
        port,
        peer = peer.identity.as_ref().map(tracing::field::display),
        reason = refusal.as_str(),
        "inbound connection refused: {}",
        match refusal {
            Refusal::OwnListener => "the destination is one of the proxy's own listeners",
            Refusal::NotAnAppPort => "the control plane names no such port for this workload",
            Refusal::NoConfiguration => "no configuration from the control plane yet",
            Refusal::ProtocolMismatch => "the protocol contradicts the port's declared one",
        }
    );
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
