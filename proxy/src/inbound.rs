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
//! `strait-proxy-error` (see [`crate::http::reserved`]). The inbound proxy forwards nowhere
//! but the local app, so it cannot be used as a relay.

pub mod admission;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use hyper::body::Incoming;
use strait_identity::SpiffeId;
use tokio::net::TcpStream;

use crate::authz;
use crate::config::InboundMode;
use crate::connect::Dest;
use crate::detect::{self, Protocol};
use crate::errors::{ProxyError, grpc_status, is_grpc, kind_of};
use crate::http::body::{Body, boxed};
use crate::http::forward::{Additions, forward_with, head_takes_over_connection};
use crate::http::reserved::{self, WithoutClientIdTrailers};
use crate::http::upstream::{SendError, Upstream};
use crate::http::{HttpVersion, client_body, path, server, smuggling};
use crate::io::{BoxedIo, PrefixedIo};
use crate::mesh_tls::MeshTls;
use crate::original_dst::{original_dst, unmap};
use crate::run::Shared;
use crate::tcp::{self, Revoked};
use crate::telemetry::http::{RequestLabels, RequestMetrics};
use crate::telemetry::tcp::Direction;
use crate::telemetry::trace::{FinishOnDrop, Side, Tracer};
use crate::transport_header::Header;
use admission::{OwnPorts, PortKnowledge, Reading, Refusal};

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
    // Request metrics per (port, caller identity, TLS), looked up once per connection.
    metrics: Mutex<HashMap<MetricsKey, RequestMetrics>>,
}

/// What inbound request metrics are cached by: application port, caller identity, TLS.
type MetricsKey = (u16, Option<SpiffeId>, bool);

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
            metrics: Mutex::new(HashMap::new()),
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
        let reading =
            admission::mesh_connection(header.port, header.protocol, self.own_ports, knowledge);
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
        let reading = match admission::redirected_connection(port, self.own_ports, knowledge) {
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
        let open = self
            .shared
            .tcp_metrics
            .get(Direction::Inbound, protocol)
            .open();
        let io: BoxedIo = Box::new(open.count(PrefixedIo::new(prefix, io)));
        match HttpVersion::from_protocol(protocol) {
            Some(version) => {
                let connection = Arc::new(AppConnection {
                    upstream: self.app_pool(target, version),
                    metrics: self.request_metrics(port, &peer),
                    tracer: self.shared.tracer.clone(),
                    service: self.shared.table.load().inbound_service(port).to_owned(),
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

    fn request_metrics(&self, port: u16, peer: &Peer) -> RequestMetrics {
        let mut cache = self.metrics.lock().expect("metrics lock poisoned");
        cache
            .entry((port, peer.identity.clone(), peer.tls))
            .or_insert_with(|| {
                RequestMetrics::new(&RequestLabels {
                    direction: "inbound",
                    service: self.shared.table.load().inbound_service(port).to_owned(),
                    route: String::new(),
                    backend: String::new(),
                    peer_identity: peer
                        .identity
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    tls: peer.tls,
                })
            })
            .clone()
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

/// A future that completes once what admitted a long-lived connection (opaque, upgraded) no
/// longer does: each table change re-runs its authorization and, for plaintext callers, the
/// port's inbound mode. `changes` must be taken before the first check.
fn revocation(
    shared: Arc<Shared>,
    mut changes: tokio::sync::watch::Receiver<u64>,
    port: u16,
    client: SocketAddr,
    peer: Peer,
    head: Option<http::request::Parts>,
) -> Revoked {
    Box::pin(async move {
        loop {
            if changes.changed().await.is_err() {
                // The table can no longer change: what admitted the connection stands.
                return std::future::pending().await;
            }
            let plaintext_refused = !peer.tls
                && shared
                    .table
                    .load()
                    .inbound_mode(port, shared.settings.default_inbound_mode)
                    == InboundMode::Strict;
            if plaintext_refused || authorize(&shared, port, client, &peer, head.as_ref()).is_err()
            {
                tracing::info!(%client, port, "closing a connection that is no longer authorized");
                metrics::counter!("strait_inbound_revoked_total").increment(1);
                return;
            }
        }
    })
}

/// Checks a connection (`head` is `None`) or a request against the port's authorization as
/// it is now, so policy changes apply to the next request on a connection already open;
/// counts and logs a refusal.
fn authorize(
    shared: &Shared,
    port: u16,
    client: SocketAddr,
    peer: &Peer,
    head: Option<&http::request::Parts>,
) -> Result<(), authz::DenyReason> {
    let table = shared.table.load();
    let caller = peer.identity.as_ref();
    let Err(denial) = table.authorize(port, &shared.settings.trust_domain, caller, head) else {
        return Ok(());
    };
    // Denials are the rare path, so formatting labels here costs the data path nothing.
    metrics::counter!(
        "strait_inbound_denied_total",
        "port" => port.to_string(),
        "policy" => denial.policy.to_string(),
        "reason" => denial.reason.as_str(),
        "tls" => if peer.tls { "true" } else { "false" },
    )
    .increment(1);
    tracing::info!(
        %client,
        port,
        peer = caller.map(tracing::field::display),
        policy = %denial.policy,
        reason = denial.reason.as_str(),
        method = head.map(|h| tracing::field::display(&h.method)),
        // The path only: a query string may carry secrets.
        path = head.map(|h| h.uri.path()),
        "inbound {} denied by authorization policy",
        if head.is_some() { "request" } else { "connection" },
    );
    Err(denial.reason)
}

/// One HTTP connection to be forwarded to the app.
struct AppConnection {
    upstream: Arc<Upstream>,
    metrics: RequestMetrics,
    tracer: Tracer,
    service: String,
    version: HttpVersion,
    client_id: Option<http::HeaderValue>,
    idle_timeout: std::time::Duration,
    shared: Arc<Shared>,
    port: u16,
    client: SocketAddr,
    peer: Peer,
}

impl AppConnection {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let started = tokio::time::Instant::now();
        self.metrics.request();
        let grpc = is_grpc(&request);
        let (mut head, body) = request.into_parts();
        let upgrade = head_takes_over_connection(&head.method, &head.headers, self.version);
        // Subscribed before the check, so a change between the two is not missed.
        let changes = upgrade.then(|| self.shared.table.subscribe());
        let refused = match smuggling::check(&mut head)
            .map_err(|e| e.to_string())
            .and_then(|()| path::normalize_head(&mut head).map_err(|e| e.to_string()))
        {
            Err(error) => Some(ProxyError::BadRequest(error)),
            Ok(()) => upgrade
                .then(|| {
                    admission::takeover_refusal(
                        // `None` for a CONNECT tunnel.
                        (head.method != http::Method::CONNECT)
                            .then(|| head.headers.get(http::header::UPGRADE))
                            .flatten(),
                        self.shared.table.load().has_route_rules(self.port),
                    )
                })
                .flatten()
                .map(|reason| ProxyError::BadRequest(reason.to_owned()))
                .or_else(|| {
                    authorize(
                        &self.shared,
                        self.port,
                        self.client,
                        &self.peer,
                        Some(&head),
                    )
                    .err()
                    .map(ProxyError::Forbidden)
                }),
        };
        let revoked = changes.map(|changes| {
            revocation(
                self.shared.clone(),
                changes,
                self.port,
                self.client,
                self.peer.clone(),
                Some(head.clone()),
            )
        });
        let (body, client_fault) = client_body::watch(body);
        let mut request = Request::from_parts(head, WithoutClientIdTrailers(body));
        if let Some(error) = refused {
            if let ProxyError::BadRequest(reason) = &error {
                tracing::info!(client = %self.client, %reason, "inbound request refused");
            }
            let response = error.into_response(grpc);
            self.metrics.response(
                response.status().as_u16(),
                grpc_status(&response),
                kind_of(&response),
                started.elapsed(),
            );
            return response;
        }
        reserved::remove_lookalikes(request.headers_mut(), &reserved::CLIENT_ID);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let mut span = self
            .tracer
            .begin(Side::Server, method.as_str(), request.headers_mut());
        if let Some(span) = &mut span {
            span.set("http.request.method", method.as_str());
            span.set("url.path", path);
            span.set("strait.direction", "inbound");
            span.set("strait.service", self.service.as_str());
            if let Some(client_id) = self.client_id.as_ref().and_then(|v| v.to_str().ok()) {
                span.set("strait.peer_identity", client_id);
            }
        }
        let additions = Additions {
            header: self.client_id.clone().map(|id| (reserved::CLIENT_ID, id)),
            revoked,
        };
        let forwarded = forward_with(
            &self.upstream,
            request.map(boxed),
            self.version,
            self.idle_timeout,
            additions,
        )
        .await;
        let response = forwarded.map(|mut response| {
            // Only this proxy names its failures; an app's claim would steer callers' retries.
            reserved::remove_lookalikes(response.headers_mut(), &reserved::PROXY_ERROR);
            response
        });
        let response = response.unwrap_or_else(|error| {
            // The client's own body breaking off is the client's fault, not the app's.
            let error = match client_fault.reason() {
                Some(reason) => ProxyError::ClientBody(reason.to_owned()),
                None => SendError::into_error(error),
            };
            tracing::info!(kind = error.kind(), %error, "inbound request failed");
            error.into_response(grpc)
        });
        let status = response.status().as_u16();
        self.metrics.response(
            status,
            grpc_status(&response),
            kind_of(&response),
            started.elapsed(),
        );
        match span {
            Some(span) => response
                .map(|body| crate::http::body::with_guard(body, FinishOnDrop::new(span, status))),
            None => response,
        }
    }
}
