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
//! Plaintext is refused on ports in strict mode. The bytes go to the app at
//! `inbound_target_ip:port`: HTTP over a pooled connection per port, opaque TCP relayed as is.
//! The inbound proxy forwards nowhere but the local app, so it cannot be used as a relay.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{HeaderName, Request, Response};
use hyper::body::Incoming;
use strait_identity::SpiffeId;
use tokio::net::TcpStream;

use crate::authz;
use crate::config::InboundMode;
use crate::connect::Dest;
use crate::detect::{self, Protocol};
use crate::errors::{ProxyError, grpc_status, is_grpc, kind_of};
use crate::http::body::{Body, boxed};
use crate::http::forward::forward;
use crate::http::upstream::{SendError, Upstream};
use crate::http::{HttpVersion, path, server, smuggling};
use crate::io::{BoxedIo, PrefixedIo};
use crate::mesh_tls::MeshTls;
use crate::original_dst::original_dst;
use crate::run::Shared;
use crate::tcp;
use crate::telemetry::http::{RequestLabels, RequestMetrics};
use crate::telemetry::tcp::Direction;
use crate::telemetry::trace::{FinishOnDrop, Side, Tracer};
use crate::transport_header::Header;

/// Request header carrying the calling workload's proven SPIFFE identity to the app. Any
/// value a client sends is removed first, so the app can trust it.
pub const CLIENT_ID_HEADER: HeaderName = HeaderName::from_static("strait-client-id");

/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// The inbound proxy.
pub struct Inbound {
    shared: Arc<Shared>,
    tls: Option<Arc<MeshTls>>,
    mode: InboundMode,
    listen_port: u16,
    // One pool per (app port, HTTP version), looked up once per connection.
    app_pools: Mutex<HashMap<(u16, HttpVersion), Arc<Upstream>>>,
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
    /// An inbound proxy listening on `listen_port`; with `tls` it terminates mesh mTLS, and
    /// `mode` is its inbound mode where the control plane sets none.
    pub fn new(
        shared: Arc<Shared>,
        tls: Option<Arc<MeshTls>>,
        mode: InboundMode,
        listen_port: u16,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared,
            tls,
            mode,
            listen_port,
            app_pools: Mutex::new(HashMap::new()),
            metrics: Mutex::new(HashMap::new()),
        })
    }

    /// Serves one accepted connection to its end.
    pub async fn serve(self: Arc<Self>, stream: TcpStream, client: SocketAddr) {
        match original_dst(&stream) {
            Some(dst) if dst.port() != self.listen_port => {
                self.serve_redirected(stream, client, dst.port()).await
            }
            _ => self.serve_mesh(stream, client).await,
        }
    }

    fn plaintext_allowed(&self, port: u16, client: SocketAddr) -> bool {
        let allowed =
            self.shared.table.load().inbound_mode(port, self.mode) == InboundMode::Permissive;
        if !allowed {
            metrics::counter!("strait_inbound_plaintext_refused_total").increment(1);
            tracing::info!(%client, port, "plaintext connection refused: the port is in strict mode");
        }
        allowed
    }

    async fn serve_mesh(self: Arc<Self>, stream: TcpStream, client: SocketAddr) {
        let timeout = self.shared.settings.detect_timeout;
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
            self.serve_app(
                Box::new(stream),
                Default::default(),
                client,
                header.port,
                header.protocol,
                peer,
            )
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
            self.serve_app(
                Box::new(stream),
                Default::default(),
                client,
                header.port,
                header.protocol,
                Peer::default(),
            )
            .await;
        }
    }

    async fn serve_redirected(
        self: Arc<Self>,
        mut stream: TcpStream,
        client: SocketAddr,
        port: u16,
    ) {
        if !self.plaintext_allowed(port, client) {
            return;
        }
        let settings = &self.shared.settings;
        let (protocol, prefix) = match detect::detect(
            &mut stream,
            settings.detect_max_bytes,
            settings.detect_timeout,
        )
        .await
        {
            Ok(detected) => detected,
            Err(error) => {
                tracing::debug!(%client, %error, "inbound connection failed during detection");
                return;
            }
        };
        self.serve_app(
            Box::new(stream),
            prefix,
            client,
            port,
            protocol,
            Peer::default(),
        )
        .await;
    }

    async fn serve_app(
        self: Arc<Self>,
        io: BoxedIo,
        prefix: bytes::BytesMut,
        client: SocketAddr,
        port: u16,
        protocol: Protocol,
        peer: Peer,
    ) {
        let open = self
            .shared
            .tcp_metrics
            .get(Direction::Inbound, protocol)
            .open();
        let io: BoxedIo = Box::new(open.count(PrefixedIo::new(prefix, io)));
        let target = SocketAddr::new(self.shared.settings.inbound_target_ip, port);
        match HttpVersion::from_protocol(protocol) {
            Some(version) => {
                let connection = Arc::new(AppConnection {
                    upstream: self.app_pool(port, version),
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
                if authorize(&self.shared, port, client, &peer, None).is_err() {
                    return;
                }
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
                if let Err(error) = tcp::relay(io, app, self.shared.settings.tcp_idle_timeout).await
                {
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

    fn app_pool(&self, port: u16, version: HttpVersion) -> Arc<Upstream> {
        let mut pools = self.app_pools.lock().expect("app pool lock poisoned");
        pools
            .entry((port, version))
            .or_insert_with(|| {
                let target = SocketAddr::new(self.shared.settings.inbound_target_ip, port);
                Upstream::new(
                    Dest::Direct(target),
                    version,
                    self.shared.connector.clone(),
                    self.shared.settings.pool_idle_timeout,
                )
            })
            .clone()
    }
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
        let refused = match smuggling::check(&mut head)
            .map_err(|e| e.to_string())
            .and_then(|()| path::normalize_head(&mut head).map_err(|e| e.to_string()))
        {
            Err(error) => Some(ProxyError::BadRequest(error)),
            Ok(()) => authorize(
                &self.shared,
                self.port,
                self.client,
                &self.peer,
                Some(&head),
            )
            .err()
            .map(ProxyError::Forbidden),
        };
        let mut request = Request::from_parts(head, body);
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
        let headers = request.headers_mut();
        headers.remove(CLIENT_ID_HEADER);
        if let Some(client_id) = &self.client_id {
            headers.insert(CLIENT_ID_HEADER, client_id.clone());
        }
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
        let forwarded = forward(
            &self.upstream,
            request.map(boxed),
            self.version,
            self.idle_timeout,
        )
        .await;
        let response = forwarded.unwrap_or_else(|error| {
            let error = SendError::into_error(error);
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
