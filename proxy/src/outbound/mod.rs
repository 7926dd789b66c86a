//! The outbound path: traffic from the local app into the mesh.
//!
//! A connection arrives (redirected by iptables, or addressed to the listener directly in
//! local mode), its protocol is detected, and then:
//! - HTTP is served request by request: each request finds its service (by the original
//!   destination, else by authority) and goes through [`request::send`] (route, split,
//!   balance, timeouts, retries, circuit breaking) over pooled connections to the chosen
//!   endpoint's proxy;
//! - opaque TCP goes to an endpoint of the original destination's service, or straight to the
//!   original destination when it is not in the mesh;
//! - `CONNECT host:port` (what apps behind an `HTTPS_PROXY` send) opens an opaque tunnel to a
//!   mesh service, the local-mode way to carry TCP.

pub mod mirror;
pub mod request;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpStream;

use crate::body::{Body, boxed};
use crate::connect::Dest;
use crate::detect::{self, Protocol};
use crate::errors::{ProxyError, SendError, is_grpc};
use crate::http::forward::forward;
use crate::http::upgrade::splice_tunnel;
use crate::http::upstream::Upstream;
use crate::http::{HttpVersion, authority, server};
use crate::io::{BoxedIo, PrefixedIo};
use crate::original_dst::original_dst;
use crate::shared::Shared;
use crate::table::{Endpoint, Service};
use crate::tcp;
use crate::telemetry::tcp::{ConnectionLabels, Direction};

/// The outbound proxy.
pub struct Outbound {
    shared: Arc<Shared>,
    request_settings: request::RequestSettings,
    // Pools for destinations outside the mesh, created on first use and pruned when unused.
    passthrough: Mutex<HashMap<(SocketAddr, HttpVersion), Arc<Upstream>>>,
}

/// Most passthrough pools kept before unused ones are pruned.
const MAX_PASSTHROUGH_POOLS: usize = 1024;

impl Outbound {
    /// An outbound proxy over the shared state.
    pub fn new(shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Self {
            request_settings: request::RequestSettings {
                retry_buffer: shared.settings.retry_buffer,
                idle_timeout: shared.settings.tcp_idle_timeout,
                tracer: shared.tracer.clone(),
                mirror_slots: mirror::MirrorSlots::default(),
                access_log: shared.access_log.clone(),
            },
            shared,
            passthrough: Mutex::new(HashMap::new()),
        })
    }

    /// Serves one accepted connection to its end.
    pub async fn serve(self: Arc<Self>, mut stream: TcpStream, client: SocketAddr) {
        let orig_dst = original_dst(&stream);
        let service =
            orig_dst.and_then(|dst| self.shared.table.load().service_for_addr(dst).cloned());
        let opaque_port =
            orig_dst.is_some_and(|dst| self.shared.settings.opaque_ports.contains(&dst.port()));
        let (protocol, prefix) = match service.as_ref().and_then(|s| s.protocol) {
            Some(protocol) => (protocol, Default::default()),
            None if opaque_port => (Protocol::Opaque, Default::default()),
            None => {
                let settings = &self.shared.settings;
                match detect::detect(
                    &mut stream,
                    settings.detect_max_bytes,
                    settings.detect_timeout,
                )
                .await
                {
                    Ok(detected) => detected,
                    Err(error) => {
                        tracing::debug!(%client, %error, "outbound connection failed during detection");
                        return;
                    }
                }
            }
        };
        let open = self
            .shared
            .tcp_metrics
            .get(ConnectionLabels {
                direction: Direction::Outbound,
                protocol,
                service: service.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                src_workload: self.shared.table.load().own_workload().clone(),
                dst_workload: service
                    .as_ref()
                    .map(|s| s.workload.clone())
                    .unwrap_or_default(),
            })
            .open();
        let io: BoxedIo = Box::new(open.count(PrefixedIo::new(prefix, stream)));
        match HttpVersion::from_protocol(protocol) {
            Some(version) => {
                let connection = Arc::new(HttpConnection {
                    outbound: self.clone(),
                    orig_dst,
                    version,
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
                    tracing::debug!(%client, %error, "outbound HTTP connection ended with an error");
                }
            }
            None => self.forward_opaque(io, client, orig_dst, service).await,
        }
    }

    async fn forward_opaque(
        &self,
        io: BoxedIo,
        client: SocketAddr,
        orig_dst: Option<SocketAddr>,
        service: Option<Arc<Service>>,
    ) {
        let dest = match (&service, orig_dst) {
            (Some(service), _) => match default_endpoint(service) {
                Ok(endpoint) => endpoint.dest.clone(),
                Err(error) => {
                    tracing::info!(%client, service = %service.name, %error, "opaque connection refused");
                    return;
                }
            },
            (None, Some(dst)) => Dest::Direct(dst),
            (None, None) => {
                tracing::info!(%client, "opaque connection has no original destination and names no service; closing");
                return;
            }
        };
        let upstream = match self.shared.connector.connect(&dest, Protocol::Opaque).await {
            Ok(upstream) => upstream,
            Err(error) => {
                tracing::info!(%client, %error, "opaque connection failed to connect upstream");
                return;
            }
        };
        if let Err(error) = tcp::relay(io, upstream, self.shared.settings.tcp_idle_timeout).await {
            tracing::debug!(%client, %error, "opaque connection ended with an error");
        }
    }

    fn passthrough_pool(&self, dst: SocketAddr, version: HttpVersion) -> Arc<Upstream> {
        let mut pools = self.passthrough.lock().expect("passthrough lock poisoned");
        if pools.len() >= MAX_PASSTHROUGH_POOLS {
            pools.retain(|_, pool| Arc::strong_count(pool) > 1 || pool.pooled_connections() > 0);
        }
        pools
            .entry((dst, version))
            .or_insert_with(|| {
                Upstream::new(
                    Dest::Direct(dst),
                    version,
                    self.shared.connector.clone(),
                    self.shared.settings.pool_idle_timeout,
                    self.shared.settings.limits.heads(),
                )
            })
            .clone()
    }
}

/// The endpoint a non-HTTP connection to `service` goes to: its default route's backend,
/// split by weight and balanced like a request.
fn default_endpoint(service: &Service) -> Result<Arc<Endpoint>, ProxyError> {
    let route = service.default_route().ok_or_else(|| ProxyError::NoRoute {
        authority: service.name.clone(),
    })?;
    let index = match route.pick_backend(&http::HeaderMap::new()) {
        Some(crate::table::Pick::Backend(index)) => index,
        Some(crate::table::Pick::Unresolved) => {
            return Err(ProxyError::UnresolvedBackend {
                route: route.name.clone(),
            });
        }
        None => {
            return Err(ProxyError::NoEndpoints {
                backend: service.name.clone(),
            });
        }
    };
    let backend = &route.backends[index].0;
    backend
        .pick(&[])
        .map(|(_, endpoint)| endpoint.clone())
        .ok_or_else(|| ProxyError::NoEndpoints {
            backend: backend.name.clone(),
        })
}

/// One HTTP connection from the app.
struct HttpConnection {
    outbound: Arc<Outbound>,
    orig_dst: Option<SocketAddr>,
    version: HttpVersion,
}

impl HttpConnection {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let grpc = is_grpc(&request);
        let method = request.method().clone();
        let authority = authority(&request).map(str::to_owned);
        match self.route(request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::info!(
                    kind = error.kind(),
                    %method,
                    authority = authority.as_deref().unwrap_or(""),
                    %error,
                    "outbound request failed"
                );
                error.into_response(grpc)
            }
        }
    }

    async fn route(&self, request: Request<Incoming>) -> Result<Response<Body>, ProxyError> {
        let request = crate::http::smuggling::checked(request)?;
        if request.method() == Method::CONNECT {
            return self.tunnel(request).await;
        }
        let service = {
            let table = self.outbound.shared.table.load();
            self.orig_dst
                .and_then(|dst| table.service_for_addr(dst))
                .or_else(|| authority(&request).and_then(|a| table.service_for_authority(a)))
                .cloned()
        };
        let Some(service) = service else {
            return match (self.orig_dst, authority(&request)) {
                (Some(dst), _) => {
                    let pool = self.outbound.passthrough_pool(dst, self.version);
                    self.send(&pool, request.map(boxed)).await
                }
                (None, Some(authority)) => Err(ProxyError::NoRoute {
                    authority: authority.to_owned(),
                }),
                (None, None) => Err(ProxyError::NoAuthority),
            };
        };
        Ok(request::send(
            &service,
            request,
            self.version,
            &self.outbound.request_settings,
        )
        .await)
    }

    async fn send(
        &self,
        upstream: &Arc<Upstream>,
        request: Request<Body>,
    ) -> Result<Response<Body>, ProxyError> {
        forward(
            upstream,
            request,
            self.version,
            self.outbound.shared.settings.tcp_idle_timeout,
        )
        .await
        .map_err(SendError::into_error)
    }

    /// `CONNECT host:port`: an opaque tunnel to a mesh service.
    async fn tunnel(&self, mut request: Request<Incoming>) -> Result<Response<Body>, ProxyError> {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| ProxyError::BadRequest("CONNECT without host:port".into()))?;
        let service = self
            .outbound
            .shared
            .table
            .load()
            .service_for_authority(&authority)
            .cloned()
            .ok_or(ProxyError::NoRoute { authority })?;
        let endpoint = default_endpoint(&service)?;
        let upstream = self
            .outbound
            .shared
            .connector
            .connect(&endpoint.dest, Protocol::Opaque)
            .await?;
        splice_tunnel(
            hyper::upgrade::on(&mut request),
            upstream,
            self.outbound.shared.settings.tcp_idle_timeout,
        );
        let mut response = Response::new(crate::body::empty());
        *response.status_mut() = StatusCode::OK;
        Ok(response)
    }
}
