//! The outbound routing table: a discovery snapshot compiled into the lookups a request needs
//! (service by authority or by address, routes with compiled matchers, backends with their
//! endpoints and connection pools).
//!
//! A table is immutable; a new snapshot builds a new table, and [`TableHandle`] swaps it in
//! atomically, so a request sees the old table or the new one, never a mix. Endpoints that
//! appear in both keep their state (connection pools, and later balancer statistics), so a
//! snapshot never drops connections or requests to endpoints that remain.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use strait_proto::discovery::v1 as pb;

use crate::config::InboundMode;
use crate::connect::{Connector, Dest};
use crate::detect::Protocol;
use crate::http::HttpVersion;
use crate::http::upstream::Upstream;
use crate::route::Matcher;

/// Why a snapshot could not become a table. The table in force stays in force.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A field of a service is invalid.
    #[error("service {service}: {field}: {reason}")]
    Service {
        /// `namespace/name:port` of the service.
        service: String,
        /// The offending field.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// An inbound port is invalid.
    #[error("inbound port {port}: {reason}")]
    Inbound {
        /// The port as sent.
        port: u32,
        /// What is wrong.
        reason: String,
    },
}

/// One endpoint of a backend, with its connection pools.
pub struct Endpoint {
    /// Where connections go.
    pub dest: Dest,
    /// The application address.
    pub addr: SocketAddr,
    /// Workload or pod name, for diagnostics.
    pub workload: String,
    http1: Arc<Upstream>,
    http2: Arc<Upstream>,
}

impl Endpoint {
    /// The connection pool for requests of `version`.
    pub fn upstream(&self, version: HttpVersion) -> &Arc<Upstream> {
        match version {
            HttpVersion::Http1 => &self.http1,
            HttpVersion::Http2 => &self.http2,
        }
    }
}

/// A set of endpoints traffic is balanced over.
pub struct Backend {
    /// `namespace/service:port`.
    pub name: String,
    /// The endpoints; may be empty.
    pub endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
}

impl Backend {
    /// Picks the next endpoint in turn, or `None` when there is none.
    pub fn pick(&self) -> Option<&Arc<Endpoint>> {
        if self.endpoints.is_empty() {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints.get(index)
    }
}

/// A route: the requests it matches and where they go.
pub struct Route {
    /// `namespace/route/rule`, or `default`.
    pub name: String,
    /// Empty: matches every request.
    pub matchers: Vec<Matcher>,
    /// Backends with their weights.
    pub backends: Vec<(Arc<Backend>, u32)>,
    /// Weights alone, in the order of `backends`, for [`crate::split::pick`].
    pub weights: Vec<u32>,
    /// Header whose value pins a request to one side of a split.
    pub sticky_header: Option<http::HeaderName>,
}

impl Route {
    /// Picks a backend for a request by weight, using the sticky header's value if present.
    pub fn pick_backend(&self, headers: &http::HeaderMap) -> Option<&Arc<Backend>> {
        let sticky = self
            .sticky_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .map(|value| value.as_bytes());
        let index = crate::split::pick(&self.weights, crate::split::point(sticky))?;
        self.backends.get(index).map(|(backend, _)| backend)
    }
}

/// One port of a service in the mesh.
pub struct Service {
    /// `namespace/name:port`.
    pub name: String,
    /// How its traffic is read; `None` means detect.
    pub protocol: Option<Protocol>,
    /// Routes in precedence order.
    pub routes: Vec<Route>,
}

impl Service {
    /// The route a request takes: the first whose matchers accept it.
    pub fn route(&self, head: &http::request::Parts) -> Option<&Route> {
        crate::route::select(&self.routes, |r| &r.matchers, head)
    }
}

/// What new endpoints are built with.
#[derive(Clone, Debug)]
pub struct EndpointSettings {
    /// Connects to endpoints.
    pub connector: Connector,
    /// Idle pooled connections are closed after this long.
    pub idle_timeout: Duration,
}

/// The compiled routing table.
pub struct Table {
    /// The snapshot this table was built from, for `/config`.
    pub snapshot: Arc<pb::Snapshot>,
    by_authority: HashMap<String, Arc<Service>>,
    by_addr: HashMap<SocketAddr, Arc<Service>>,
    endpoints: HashMap<Dest, Arc<Endpoint>>,
    inbound_modes: HashMap<u16, InboundMode>,
    inbound_default_mode: Option<InboundMode>,
}

fn inbound_mode(mode: i32) -> InboundMode {
    match pb::InboundMode::try_from(mode) {
        Ok(pb::InboundMode::Strict) => InboundMode::Strict,
        // Unknown values (a newer control plane) fall back to the first-install default.
        _ => InboundMode::Permissive,
    }
}

impl Table {
    /// A table that knows no services.
    pub fn empty() -> Self {
        Self {
            snapshot: Arc::new(pb::Snapshot::default()),
            by_authority: HashMap::new(),
            by_addr: HashMap::new(),
            endpoints: HashMap::new(),
            inbound_modes: HashMap::new(),
            inbound_default_mode: None,
        }
    }

    /// The inbound mode of application port `port`: the snapshot's setting for the port, else
    /// the snapshot's default, else `fallback` (the proxy's own flag).
    pub fn inbound_mode(&self, port: u16, fallback: InboundMode) -> InboundMode {
        self.inbound_modes
            .get(&port)
            .copied()
            .or(self.inbound_default_mode)
            .unwrap_or(fallback)
    }

    /// Compiles `snapshot`, reusing the endpoints (and their pools) of `previous` that remain.
    pub fn build(
        snapshot: pb::Snapshot,
        previous: &Table,
        settings: &EndpointSettings,
    ) -> Result<Self, TableError> {
        let mut table = Table::empty();
        table.inbound_default_mode = snapshot
            .inbound_defaults
            .as_ref()
            .map(|d| inbound_mode(d.mode));
        for port in &snapshot.inbound_ports {
            let number = u16::try_from(port.port).map_err(|_| TableError::Inbound {
                port: port.port,
                reason: "not a port number".into(),
            })?;
            table.inbound_modes.insert(number, inbound_mode(port.mode));
        }
        for service in &snapshot.services {
            let compiled = Arc::new(table.compile_service(service, previous, settings)?);
            let name = &compiled.name;
            for authority in &service.authorities {
                let key = normalize_authority(authority).into_owned();
                table.by_authority.insert(key, compiled.clone());
            }
            for address in &service.addresses {
                let addr: SocketAddr = address
                    .parse()
                    .map_err(|e| service_error(name, "addresses", format!("{address:?}: {e}")))?;
                table.by_addr.insert(addr, compiled.clone());
            }
        }
        table.snapshot = Arc::new(snapshot);
        Ok(table)
    }

    fn compile_service(
        &mut self,
        service: &pb::OutboundService,
        previous: &Table,
        settings: &EndpointSettings,
    ) -> Result<Service, TableError> {
        let name = format!("{}/{}:{}", service.namespace, service.name, service.port);
        let mut backends = HashMap::new();
        for backend in &service.backends {
            let compiled = self.compile_backend(&name, backend, previous, settings)?;
            backends.insert(backend.name.clone(), Arc::new(compiled));
        }
        let mut routes = Vec::with_capacity(service.routes.len());
        for (index, route) in service.routes.iter().enumerate() {
            let field = format!("routes[{index}]");
            let matchers = route
                .matches
                .iter()
                .map(Matcher::compile)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| service_error(&name, &format!("{field}.matches"), e))?;
            let mut route_backends = Vec::with_capacity(route.backends.len());
            for weighted in &route.backends {
                let backend = backends.get(&weighted.backend).ok_or_else(|| {
                    service_error(
                        &name,
                        &format!("{field}.backends"),
                        format!("unknown backend {:?}", weighted.backend),
                    )
                })?;
                route_backends.push((backend.clone(), weighted.weight));
            }
            let sticky_header = match route.sticky_header.as_str() {
                "" => None,
                header => Some(
                    http::HeaderName::from_bytes(header.as_bytes()).map_err(|e| {
                        service_error(
                            &name,
                            &format!("{field}.stickyHeader"),
                            format!("{header:?}: {e}"),
                        )
                    })?,
                ),
            };
            routes.push(Route {
                name: route.name.clone(),
                matchers,
                weights: route_backends.iter().map(|(_, w)| *w).collect(),
                backends: route_backends,
                sticky_header,
            });
        }
        let protocol = match pb::Protocol::try_from(service.protocol) {
            Ok(pb::Protocol::Detect) => None,
            Ok(pb::Protocol::Http1) => Some(Protocol::Http1),
            Ok(pb::Protocol::Http2) => Some(Protocol::Http2),
            Ok(pb::Protocol::Opaque) => Some(Protocol::Opaque),
            Err(_) => {
                return Err(service_error(
                    &name,
                    "protocol",
                    format!("unknown protocol {}", service.protocol),
                ));
            }
        };
        Ok(Service {
            name,
            protocol,
            routes,
        })
    }

    fn compile_backend(
        &mut self,
        service: &str,
        backend: &pb::Backend,
        previous: &Table,
        settings: &EndpointSettings,
    ) -> Result<Backend, TableError> {
        let mut endpoints = Vec::with_capacity(backend.endpoints.len());
        for (index, endpoint) in backend.endpoints.iter().enumerate() {
            let field = format!("backends[{:?}].endpoints[{index}]", backend.name);
            let addr: SocketAddr = endpoint.address.parse().map_err(|e| {
                service_error(
                    service,
                    &format!("{field}.address"),
                    format!("{:?}: {e}", endpoint.address),
                )
            })?;
            let dest = if endpoint.proxy_port == 0 {
                Dest::Direct(addr)
            } else {
                let proxy_port = u16::try_from(endpoint.proxy_port).map_err(|_| {
                    service_error(
                        service,
                        &format!("{field}.proxyPort"),
                        format!("{} is not a port", endpoint.proxy_port),
                    )
                })?;
                let identity = match endpoint.identity.as_str() {
                    "" => None,
                    id => Some(
                        id.parse::<strait_identity::SpiffeId>()
                            .map_err(|e| service_error(service, &format!("{field}.identity"), e))?,
                    ),
                };
                Dest::Mesh {
                    proxy: SocketAddr::new(addr.ip(), proxy_port),
                    port: addr.port(),
                    identity,
                }
            };
            let shared = self
                .endpoints
                .get(&dest)
                .or_else(|| previous.endpoints.get(&dest))
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(Endpoint {
                        http1: Upstream::new(
                            dest.clone(),
                            HttpVersion::Http1,
                            settings.connector.clone(),
                            settings.idle_timeout,
                        ),
                        http2: Upstream::new(
                            dest.clone(),
                            HttpVersion::Http2,
                            settings.connector.clone(),
                            settings.idle_timeout,
                        ),
                        dest: dest.clone(),
                        addr,
                        workload: endpoint.workload.clone(),
                    })
                });
            self.endpoints.insert(dest, shared.clone());
            endpoints.push(shared);
        }
        Ok(Backend {
            name: backend.name.clone(),
            endpoints,
            next: AtomicUsize::new(0),
        })
    }

    /// The service a redirected connection's original destination belongs to.
    pub fn service_for_addr(&self, addr: SocketAddr) -> Option<&Arc<Service>> {
        self.by_addr.get(&addr)
    }

    /// The service a request's authority names (`Host` or `:authority`; port 80 if absent).
    pub fn service_for_authority(&self, authority: &str) -> Option<&Arc<Service>> {
        self.by_authority
            .get(normalize_authority(authority).as_ref())
    }

    /// Number of services (one per service port), for diagnostics.
    pub fn service_count(&self) -> usize {
        self.snapshot.services.len()
    }
}

fn service_error(service: &str, field: &str, reason: impl std::fmt::Display) -> TableError {
    TableError::Service {
        service: service.to_owned(),
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

/// Normalises an authority for lookup: lower case, no trailing dot on the host, and an
/// explicit port (80 when absent, the HTTP default).
///
/// ```
/// use strait_proxy::table::normalize_authority;
/// assert_eq!(normalize_authority("API.Demo."), "api.demo:80");
/// assert_eq!(normalize_authority("api.demo:8080"), "api.demo:8080");
/// assert_eq!(normalize_authority("[::1]"), "[::1]:80");
/// ```
pub fn normalize_authority(authority: &str) -> Cow<'_, str> {
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let clean_host = host.strip_suffix('.').unwrap_or(host);
    let lower = !clean_host.bytes().any(|b| b.is_ascii_uppercase());
    if lower && port.is_some() && clean_host.len() == host.len() {
        return Cow::Borrowed(authority);
    }
    Cow::Owned(format!(
        "{}:{}",
        clean_host.to_ascii_lowercase(),
        port.unwrap_or("80")
    ))
}

/// The table in force, swapped atomically when a new snapshot arrives.
#[derive(Clone)]
pub struct TableHandle {
    current: Arc<ArcSwap<Table>>,
    settings: EndpointSettings,
}

impl TableHandle {
    /// A handle starting with an empty table.
    pub fn new(settings: EndpointSettings) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(Table::empty())),
            settings,
        }
    }

    /// The table in force. Cheap; take it once per request.
    pub fn load(&self) -> arc_swap::Guard<Arc<Table>> {
        self.current.load()
    }

    /// Compiles and installs `snapshot`; on error the table in force is kept.
    pub fn apply(&self, snapshot: pb::Snapshot) -> Result<(), TableError> {
        let previous = self.current.load_full();
        let table = Table::build(snapshot, &previous, &self.settings)?;
        self.current.store(Arc::new(table));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EndpointSettings {
        EndpointSettings {
            connector: Connector::new(Duration::from_secs(1), None),
            idle_timeout: Duration::from_secs(30),
        }
    }

    fn snapshot(endpoints: &[&str]) -> pb::Snapshot {
        pb::Snapshot {
            version: "1".into(),
            services: vec![pb::OutboundService {
                name: "web".into(),
                namespace: "demo".into(),
                port: 80,
                authorities: vec!["web.demo.svc.cluster.local:80".into(), "Web.Demo".into()],
                addresses: vec!["10.0.0.1:80".into()],
                routes: vec![pb::Route {
                    name: "default".into(),
                    backends: vec![pb::WeightedBackend {
                        backend: "demo/web:80".into(),
                        weight: 1,
                    }],
                    ..Default::default()
                }],
                backends: vec![pb::Backend {
                    name: "demo/web:80".into(),
                    endpoints: endpoints
                        .iter()
                        .map(|a| pb::Endpoint {
                            address: (*a).into(),
                            proxy_port: 4143,
                            identity: "spiffe://cluster.local/ns/demo/sa/web".into(),
                            workload: "web-1".into(),
                        })
                        .collect(),
                    policy: None,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn services_are_found_by_any_authority_form_and_by_address() {
        let table =
            Table::build(snapshot(&["10.1.0.1:8080"]), &Table::empty(), &settings()).unwrap();
        for authority in ["web.demo.svc.cluster.local", "web.demo:80", "WEB.DEMO."] {
            assert!(
                table.service_for_authority(authority).is_some(),
                "{authority}"
            );
        }
        assert!(table.service_for_authority("web.demo:8080").is_none());
        assert!(
            table
                .service_for_addr("10.0.0.1:80".parse().unwrap())
                .is_some()
        );
    }

    #[tokio::test]
    async fn endpoints_that_remain_keep_their_state_across_snapshots() {
        let first = Table::build(
            snapshot(&["10.1.0.1:8080", "10.1.0.2:8080"]),
            &Table::empty(),
            &settings(),
        )
        .unwrap();
        let second = Table::build(
            snapshot(&["10.1.0.2:8080", "10.1.0.3:8080"]),
            &first,
            &settings(),
        )
        .unwrap();
        let endpoint = |table: &Table, addr: &str| {
            let service = table.service_for_authority("web.demo").unwrap().clone();
            let backend = service.routes[0].backends[0].0.clone();
            backend
                .endpoints
                .iter()
                .find(|e| e.addr.to_string() == addr)
                .cloned()
        };
        let before = endpoint(&first, "10.1.0.2:8080").unwrap();
        let after = endpoint(&second, "10.1.0.2:8080").unwrap();
        assert!(Arc::ptr_eq(&before, &after));
        assert!(endpoint(&second, "10.1.0.1:8080").is_none());
    }

    #[tokio::test]
    async fn a_bad_snapshot_names_the_service_and_field_and_leaves_the_table_alone() {
        let handle = TableHandle::new(settings());
        handle.apply(snapshot(&["10.1.0.1:8080"])).unwrap();
        let err = handle
            .apply(snapshot(&["not-an-address"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("demo/web:80"), "{err}");
        assert!(err.contains("endpoints[0].address"), "{err}");
        assert!(err.contains("not-an-address"), "{err}");
        assert!(handle.load().service_for_authority("web.demo").is_some());
    }

    #[test]
    fn authorities_normalise() {
        assert_eq!(normalize_authority("a.b:80"), "a.b:80");
        assert!(matches!(normalize_authority("a.b:80"), Cow::Borrowed(_)));
        assert_eq!(normalize_authority("A.b"), "a.b:80");
        assert_eq!(normalize_authority("[::1]:8080"), "[::1]:8080");
        assert_eq!(normalize_authority("127.0.0.1"), "127.0.0.1:80");
    }
}
