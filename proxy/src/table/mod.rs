//! The routing table: a discovery snapshot compiled into what a request needs (services by
//! authority or address, routes with matchers, timeouts and retries, weighted backends with
//! their endpoints, policies and metric handles) and what inbound needs (per-port modes).
//!
//! A table is immutable; a new snapshot builds a new one ([`build`]) and [`TableHandle`] swaps
//! it in atomically, so a request sees the old table or the new one, never a mix. Endpoints
//! and backend state that appear in both are carried over, so a snapshot never drops
//! connections, in-flight requests or balancer statistics of what remains.

pub mod backend;
pub mod build;
pub mod endpoint;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use strait_identity::SpiffeId;
use strait_proto::discovery::v1 as pb;

use crate::authz::{self, DefaultAuthorization};
use crate::connect::Connector;
use crate::detect::Protocol;
use crate::flags::InboundMode;
use crate::resilience::retry::RetryPolicy;
use crate::route::Matcher;
use crate::telemetry::http::RequestMetrics;
use crate::telemetry::workload::WorkloadLabel;

pub use backend::Backend;
pub use endpoint::Endpoint;

/// Why an entry of a snapshot could not be built; the entry is set aside ([`SetAside`]).
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

/// What kind of snapshot entry was set aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetAsideKind {
    /// One route of a service; the service's other routes apply.
    Route,
    /// A whole service (a backend, endpoint, address or protocol of it is invalid).
    Service,
    /// One authorization rule of an inbound port; it admits nobody in its place.
    Authorization,
    /// An inbound port entry whose number is not a port.
    InboundPort,
}

impl SetAsideKind {
    /// The stable name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SetAsideKind::Route => "route",
            SetAsideKind::Service => "service",
            SetAsideKind::Authorization => "authorization",
            SetAsideKind::InboundPort => "inbound-port",
        }
    }
}

/// An entry of the snapshot in force that the proxy could not build and set aside, while
/// the rest of the snapshot applies. One tenant's entry that this proxy cannot compile (from
/// an older control plane, or a hand-written `--snapshot` file) must not stop every other
/// update; shown in `/status`, counted in `strait_snapshot_set_aside`, logged.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SetAside {
    /// What kind of entry.
    pub kind: SetAsideKind,
    /// The service (`namespace/name:port`), or `inbound port N`.
    pub service: String,
    /// The route or policy name; empty for a whole service or port.
    pub entry: String,
    /// Why it could not be built.
    pub reason: String,
}

/// Route timeouts; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole request, retries included.
    pub request: Option<Duration>,
    /// Each attempt.
    pub backend_request: Option<Duration>,
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
    /// Request metrics per backend, in the order of `backends`.
    pub metrics: Vec<RequestMetrics>,
    /// Header whose value pins a request to one side of a split.
    pub sticky_header: Option<http::HeaderName>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retries on answers from the app.
    pub retry: RetryPolicy,
    /// Retry backoff base set by the route (else the backend's).
    pub backoff_base: Option<Duration>,
    /// The route's filters; `None` for a route without any, which pays nothing for them.
    pub filters: Option<Box<crate::filters::RouteFilters>>,
    /// Each backend's own filters, in the order of `backends`; empty when none has any.
    pub backend_filters: Vec<Option<crate::filters::BackendFilters>>,
    /// Copies of requests sent elsewhere (`RequestMirror`).
    pub mirrors: Vec<Mirror>,
    /// Only for connections that carry no request: no request takes this route.
    pub opaque_only: bool,
}

/// A `RequestMirror`: a share of a route's requests copied to another backend.
pub struct Mirror {
    /// Where copies go.
    pub backend: Arc<Backend>,
    /// Share copied: `numerator / denominator`.
    pub numerator: u32,
    /// See `numerator`; never 0.
    pub denominator: u32,
}

/// Where a request's pick by weight lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// The backend at this position of `backends` (and `metrics`).
    Backend(usize),
    /// The share of references the control plane could not resolve: answered 500.
    Unresolved,
}

impl Route {
    /// Picks a backend by weight, using the sticky header's value if present. `weights` has
    /// one entry more than `backends` when part of the route's references are unresolved.
    pub fn pick_backend(&self, headers: &http::HeaderMap) -> Option<Pick> {
        let sticky = self
            .sticky_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .map(|value| value.as_bytes());
        crate::split::pick(&self.weights, crate::split::point(sticky)).map(|i| {
            if i < self.backends.len() {
                Pick::Backend(i)
            } else {
                Pick::Unresolved
            }
        })
    }
}

/// One port of a service in the mesh.
pub struct Service {
    /// `namespace/name:port`.
    pub name: String,
    /// The workload behind every endpoint of the service, when there is one (for the
    /// connection metrics' `dst_workload`).
    pub workload: WorkloadLabel,
    /// How its traffic is read; `None` means detect.
    pub protocol: Option<Protocol>,
    /// Routes in precedence order.
    pub routes: Vec<Route>,
}

impl Service {
    /// The route a request takes: the first whose matchers accept it, among the routes a
    /// request may take (a default route marked opaque-only is not one: GAMMA's 404).
    pub fn route(&self, head: &http::request::Parts) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| !r.opaque_only)
            .find(|r| crate::route::accepts(&r.matchers, head))
    }

    /// The route for connections that carry no request (opaque TCP): the first route without
    /// matchers, else the last one (the service's default route).
    pub fn default_route(&self) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.matchers.is_empty())
            .or_else(|| self.routes.last())
    }
}

/// What new endpoints are built with.
#[derive(Clone, Debug)]
pub struct EndpointSettings {
    /// Connects to endpoints.
    pub connector: Connector,
    /// Idle pooled connections are closed after this long (unless a backend policy says
    /// otherwise).
    pub idle_timeout: Duration,
    /// Connect timeout unless a backend policy says otherwise.
    pub connect_timeout: Duration,
    /// Whether mesh hops are mTLS (for metric labels).
    pub mtls: bool,
    /// Limits on the response heads endpoints send.
    pub heads: crate::head_limits::HeadLimits,
}

/// The compiled routing table.
pub struct Table {
    /// The snapshot this table was built from, for `/config`.
    pub snapshot: Arc<pb::Snapshot>,
    by_authority: HashMap<String, Arc<Service>>,
    by_addr: HashMap<SocketAddr, Arc<Service>>,
    endpoints: HashMap<build::EndpointKey, Arc<Endpoint>>,
    backend_states: HashMap<String, (backend::BackendSettings, Arc<backend::BackendState>)>,
    /// Whether a snapshot built this table (false for the empty table a proxy starts with).
    configured: bool,
    inbound_modes: HashMap<u16, InboundMode>,
    /// The protocol each listed application port declares; `None` is "detect".
    inbound_protocols: HashMap<u16, Option<Protocol>>,
    inbound_default_mode: Option<InboundMode>,
    inbound_services: HashMap<u16, Vec<String>>,
    own_workload: WorkloadLabel,
    identity_workloads: HashMap<String, WorkloadLabel>,
    inbound_rules: HashMap<u16, Vec<authz::Rule>>,
    default_authorization: DefaultAuthorization,
    set_aside: Vec<SetAside>,
}

impl Table {
    /// A table that knows no services.
    pub fn empty() -> Self {
        Self {
            set_aside: Vec::new(),
            snapshot: Arc::new(pb::Snapshot::default()),
            by_authority: HashMap::new(),
            by_addr: HashMap::new(),
            endpoints: HashMap::new(),
            backend_states: HashMap::new(),
            configured: false,
            inbound_modes: HashMap::new(),
            inbound_protocols: HashMap::new(),
            inbound_default_mode: None,
            inbound_services: HashMap::new(),
            own_workload: WorkloadLabel::unknown(),
            identity_workloads: HashMap::new(),
            inbound_rules: HashMap::new(),
            default_authorization: DefaultAuthorization::default(),
        }
    }

    /// Whether `caller` may make a request with `head` (or, with `None`, open an opaque TCP
    /// connection) to application port `port`; see [`authz::authorize`].
    pub fn authorize(
        &self,
        port: u16,
        local_trust_domain: &str,
        caller: Option<&SpiffeId>,
        head: Option<&http::request::Parts>,
    ) -> Result<(), authz::Denial> {
        let rules = self.inbound_rules.get(&port).map_or(&[][..], Vec::as_slice);
        authz::authorize(
            rules,
            self.default_authorization,
            local_trust_domain,
            caller,
            head,
        )
    }

    /// Whether this table was built from a snapshot. A proxy that has a configuration source
    /// starts with an unconfigured table and admits nothing inbound until it is replaced.
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// What the snapshot says about application port `port` of this workload.
    pub fn app_port(&self, port: u16) -> AppPort {
        match self.inbound_protocols.get(&port) {
            Some(protocol) => AppPort::Listed {
                protocol: *protocol,
            },
            None => AppPort::Unlisted,
        }
    }

    /// Whether some authorization rule of `port` covers only some routes: then every request
    /// on the port must be seen by the proxy, so nothing may tunnel past it.
    pub fn has_route_rules(&self, port: u16) -> bool {
        self.inbound_rules
            .get(&port)
            .is_some_and(|rules| rules.iter().any(|rule| !rule.routes.is_empty()))
    }

    /// The services (`namespace/name`, sorted) application port `port` serves, for metric
    /// labels; empty when the snapshot does not say.
    pub fn inbound_services(&self, port: u16) -> &[String] {
        self.inbound_services
            .get(&port)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The workload this proxy's pod belongs to, as the snapshot names it.
    pub fn own_workload(&self) -> &WorkloadLabel {
        &self.own_workload
    }

    /// The workload of a caller that proved `identity`: the snapshot's, when the identity
    /// belongs to exactly one workload; unknown otherwise (and without an identity).
    pub fn workload_of_identity(&self, identity: Option<&str>) -> WorkloadLabel {
        identity
            .and_then(|id| self.identity_workloads.get(id))
            .cloned()
            .unwrap_or_default()
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

    /// The service a redirected connection's original destination belongs to.
    pub fn service_for_addr(&self, addr: SocketAddr) -> Option<&Arc<Service>> {
        self.by_addr.get(&addr)
    }

    /// The service a request's authority names (`Host` or `:authority`; port 80 if absent).
    pub fn service_for_authority(&self, authority: &str) -> Option<&Arc<Service>> {
        self.by_authority
            .get(normalize_authority(authority).as_ref())
    }

    /// The snapshot's entries this table was built without.
    pub fn set_aside(&self) -> &[SetAside] {
        &self.set_aside
    }

    /// Number of services (one per service port), for diagnostics.
    pub fn service_count(&self) -> usize {
        self.snapshot.services.len()
    }
}

/// An application port as the snapshot describes this workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppPort {
    /// The control plane names the port; `protocol` is what it declares (`None`: detect).
    Listed {
        /// The declared protocol.
        protocol: Option<Protocol>,
    },
    /// The control plane does not name the port as one of this workload's.
    Unlisted,
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
    // Bumped after each swap, so long-lived connections can re-check what admitted them.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl TableHandle {
    /// A handle starting with an empty table.
    pub fn new(settings: EndpointSettings) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(Table::empty())),
            settings,
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// The table in force. Cheap; take it once per request.
    pub fn load(&self) -> arc_swap::Guard<Arc<Table>> {
        self.current.load()
    }

    /// Compiles and installs `snapshot`. Entries that cannot be built are set aside (logged
    /// when new, and shown by the `strait_snapshot_set_aside` gauge) and returned; the rest
    /// applies.
    pub fn apply(&self, snapshot: pb::Snapshot) -> Vec<SetAside> {
        let previous = self.current.load_full();
        let table = build::build(snapshot, &previous, &self.settings);
        report_set_aside(previous.set_aside(), table.set_aside());
        let set_aside = table.set_aside.clone();
        self.current.store(Arc::new(table));
        self.changes.send_modify(|generation| *generation += 1);
        set_aside
    }

    /// A receiver that sees a change each time a new table is installed.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// Logs entries newly set aside and sets the gauge: 1 for each entry set aside now, 0 for
/// each one set aside before and no longer.
fn report_set_aside(before: &[SetAside], now: &[SetAside]) {
    let gauge = |entry: &SetAside, value: f64| {
        metrics::gauge!(
            "strait_snapshot_set_aside",
            "kind" => entry.kind.as_str(),
            "service" => entry.service.clone(),
            "entry" => entry.entry.clone(),
        )
        .set(value);
    };
    let same = |a: &SetAside, b: &SetAside| {
        a.kind == b.kind && a.service == b.service && a.entry == b.entry
    };
    for entry in before {
        if !now.iter().any(|n| same(n, entry)) {
            gauge(entry, 0.0);
        }
    }
    for entry in now {
        gauge(entry, 1.0);
        if !before.iter().any(|b| b == entry) {
            tracing::warn!(
                kind = entry.kind.as_str(),
                service = %entry.service,
                entry = %entry.entry,
                reason = %entry.reason,
                "snapshot entry set aside; the rest of the snapshot applies"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_normalise() {
        assert_eq!(normalize_authority("a.b:80"), "a.b:80");
        assert!(matches!(normalize_authority("a.b:80"), Cow::Borrowed(_)));
        assert_eq!(normalize_authority("A.b"), "a.b:80");
        assert_eq!(normalize_authority("[::1]:8080"), "[::1]:8080");
        assert_eq!(normalize_authority("127.0.0.1"), "127.0.0.1:80");
    }
}
