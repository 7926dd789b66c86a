//! The validated configuration model: what the mesh looks like once every reference is
//! resolved and every value is in range. Both configuration sources (YAML files, the
//! Kubernetes API) produce this, and per-proxy snapshots are computed from it alone.
//!
//! The types make invalid states unrepresentable where it is cheap: ports are `u16` and never
//! zero, durations are `Duration`, references point at objects known to exist.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use strait_identity::SpiffeId;

/// `namespace/name` of an object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key from its parts.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

// The model's enumerations are the API's own, declared once in `proto/proto/discovery.proto`:
// how a port's bytes are read (`Protocol`: detect, HTTP/1, HTTP/2, opaque), inbound acceptance
// of plaintext (`InboundMode`), what inbound allows where no authorization policy covers a
// port (`DefaultAuthorization`) and the load balancer (`LoadBalancer`). Each one's zero value
// is its default (see `strait_proto::defaults`).
pub use strait_proto::discovery::v1::{DefaultAuthorization, InboundMode, LoadBalancer, Protocol};

/// Mesh-wide settings (`MeshConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshSettings {
    /// Every identity's trust domain.
    pub trust_domain: String,
    /// Default inbound mode.
    pub inbound_mode: InboundMode,
    /// Default authorization.
    pub default_authorization: DefaultAuthorization,
}

impl Default for MeshSettings {
    fn default() -> Self {
        Self {
            trust_domain: strait_identity::spiffe::DEFAULT_TRUST_DOMAIN.to_owned(),
            inbound_mode: InboundMode::Permissive,
            default_authorization: DefaultAuthorization::AllowAll,
        }
    }
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name, if any.
    pub name: Option<String>,
    /// The service port.
    pub port: u16,
    /// How its traffic is read.
    pub protocol: Protocol,
    /// Endpoints serving this port.
    pub endpoints: Vec<Endpoint>,
}

/// An address serving a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The application's address.
    pub addr: SocketAddr,
    /// The workload's identity, when it is meshed.
    pub identity: Option<SpiffeId>,
    /// The workload proxy's inbound port, when it is meshed.
    pub proxy_port: Option<u16>,
    /// The workload (or pod) name.
    pub workload: String,
}

/// A service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `namespace/name`.
    pub key: ObjectKey,
    /// Its ports.
    pub ports: Vec<ServicePort>,
    /// Its cluster IP, if it has one.
    pub cluster_ip: Option<IpAddr>,
}

impl Service {
    /// The port numbered `port`.
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// A workload: a pod, or in local mode a `Workload` object standing in for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// `namespace/name`.
    pub key: ObjectKey,
    /// Its identity (from its service account).
    pub identity: SpiffeId,
    /// Its primary address (a pod's `status.podIP`): where the Services a local-mode
    /// configuration selects it by send their calls.
    pub address: IpAddr,
    /// Its other addresses (a dual-stack pod's other family, from `status.podIPs`), distinct
    /// from `address` and each other. The workload owns them as it owns `address`: a call to
    /// any of them is a call to it, with its identity.
    pub other_addresses: Vec<IpAddr>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its named ports.
    pub ports: BTreeMap<String, u16>,
    /// Its proxy's inbound port.
    pub proxy_inbound_port: u16,
    /// Where its proxy's admin listener is meant to be (local mode, for tools that start it).
    pub proxy_admin_port: Option<u16>,
    /// Where its proxy's outbound listener is meant to be (local mode).
    pub proxy_outbound_port: Option<u16>,
    /// SHA-256 of its bootstrap token (local mode).
    pub token_sha256: Option<[u8; 32]>,
    /// The controller owning it (its pod's Deployment, StatefulSet…), for metric labels;
    /// `None`: unknown (a pod without an owner, a Workload without `spec.owner`).
    pub owner: Option<Owner>,
}

/// The controller owning a workload, in the workload's namespace: what the workload metric
/// labels name (never a pod, so their values are bounded by the controllers that exist).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `ReplicaSet`, … (as written).
    pub kind: String,
    /// Its name: a Kubernetes name (at most 253 characters).
    pub name: String,
}

impl Owner {
    /// A Kubernetes kind as `spec.owner.kind` accepts it: 1-63 ASCII letters and digits,
    /// a letter first.
    pub fn is_kind(kind: &str) -> bool {
        kind.len() <= 63
            && kind.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && kind.bytes().all(|b| b.is_ascii_alphanumeric())
    }
}

impl Workload {
    /// Every address it has, the primary first.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        std::iter::once(self.address).chain(self.other_addresses.iter().copied())
    }

    /// Whether `ip` is one of its addresses.
    pub fn has_address(&self, ip: IpAddr) -> bool {
        self.addresses().any(|own| own == ip)
    }
}

/// A path match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// Whole leading path segments.
    Prefix(String),
    /// A regular expression over the whole path.
    Regex(String),
}

/// A header or query parameter match.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueMatch {
    /// Equal to.
    Exact(String),
    /// Matching the whole value.
    Regex(String),
}

/// What a route rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteMatch {
    /// Path condition.
    pub path: Option<PathMatch>,
    /// Method condition.
    pub method: Option<String>,
    /// Header conditions (name lower-cased).
    pub headers: Vec<(String, ValueMatch)>,
    /// Query parameter conditions.
    pub query: Vec<(String, ValueMatch)>,
}

/// A weighted backend of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedBackend {
    /// The backend service.
    pub service: ObjectKey,
    /// Its port.
    pub port: u16,
    /// Its weight.
    pub weight: u32,
    /// Header changes for this backend alone (backendRef `filters`).
    pub filters: BackendFilters,
}

/// Route timeouts; `None` means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// Whole request, retries included.
    pub request: Option<Duration>,
    /// Each attempt.
    pub backend_request: Option<Duration>,
}

/// Route retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Retries after the first try (the Gateway API's `attempts`).
    pub max_retries: u32,
    /// HTTP statuses worth retrying.
    pub http_statuses: Vec<u16>,
    /// gRPC codes worth retrying.
    pub grpc_codes: Vec<u32>,
    /// Backoff base.
    pub backoff: Option<Duration>,
}

/// One match of one rule of a route, attached to one service port, in precedence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    /// `namespace/route/rule` (rule name or index).
    pub name: String,
    /// `HTTPRoute namespace/name`, for errors.
    pub source: String,
    /// What it matches.
    pub matcher: RouteMatch,
    /// Where it sends requests.
    pub backends: Vec<WeightedBackend>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Retries.
    pub retry: Option<Retry>,
    /// Sticky split header.
    pub sticky_header: Option<String>,
    /// What the rule does besides choosing a backend (its `filters`).
    pub filters: RouteFilters,
    /// For a consumer route (one in another namespace than its parent service): the
    /// namespace whose clients it applies to. `None` for the service owner's own routes.
    pub consumer_namespace: Option<String>,
    /// Summed weight of the rule's backendRefs that could not be resolved (a missing
    /// Service, a reference no ReferenceGrant permits): that share of its requests gets 500.
    pub unresolved_weight: u32,
}

/// A `ReferenceGrant`: routes of the `from` namespaces may refer to the `to` objects of the
/// grant's own namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceGrant {
    /// The grant (its namespace is the one it opens).
    pub key: ObjectKey,
    /// Who may refer.
    pub from: Vec<GrantFrom>,
    /// To what.
    pub to: Vec<GrantTo>,
}

/// A `ReferenceGrant`'s `from` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantFrom {
    /// API group of the referring kind.
    pub group: String,
    /// Referring kind (`HTTPRoute`, `GRPCRoute`).
    pub kind: String,
    /// Namespace of the referring objects.
    pub namespace: String,
}

/// A `ReferenceGrant`'s `to` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTo {
    /// API group of the target kind (`""`: core).
    pub group: String,
    /// Target kind (`Service`).
    pub kind: String,
    /// One object, or every object of the kind when `None`.
    pub name: Option<String>,
}

/// A condition of a route's status for one parent (the Gateway API's `metav1.Condition`
/// without its times, which the writer adds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCondition {
    /// `Accepted`, `ResolvedRefs`, `PartiallyInvalid`.
    pub type_: String,
    /// `True` or `False`.
    pub status: bool,
    /// A CamelCase reason from the Gateway API's list.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
}

/// What the mesh did with a route, per parentRef (the Gateway API's `status.parents[]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteStatus {
    /// One entry per parentRef, in the route's order.
    pub parents: Vec<ParentStatus>,
}

/// One parentRef's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentStatus {
    /// The parentRef as written, completed with its defaults (group, kind, namespace).
    pub parent: ParentRefKey,
    /// Its conditions.
    pub conditions: Vec<RouteCondition>,
}

/// A parentRef, completed with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentRefKey {
    /// Group (`""` for a Service).
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `port`, when set.
    pub port: Option<u16>,
    /// `sectionName`, when set.
    pub section_name: Option<String>,
}

/// Circuit breaking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Consecutive failures that eject an endpoint.
    pub consecutive_failures: u32,
    /// First ejection.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most endpoints ejected at once, in percent.
    pub max_ejected_percent: u32,
}

/// Retry budget.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryBudget {
    /// Retries as a share of recent requests.
    pub ratio: f64,
    /// Plus this many per second.
    pub min_per_second: u32,
    /// Over this window.
    pub interval: Duration,
}

/// A backend policy; unset fields take the proxy's defaults.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackendPolicy {
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Idle pooled connections closed after.
    pub idle_timeout: Option<Duration>,
    /// Circuit breaking.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Pending-request limit.
    pub max_pending_requests: Option<u32>,
    /// Retry budget.
    pub retry_budget: Option<RetryBudget>,
    /// Retry backoff cap.
    pub retry_backoff_max: Option<Duration>,
    /// Retry backoff base (for retries without a route backoff).
    pub retry_backoff_base: Option<Duration>,
    /// Load balancer.
    pub load_balancer: Option<LoadBalancer>,
}

/// Who may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Exactly this identity.
    Identity(SpiffeId),
    /// Any identity in this namespace (of the mesh's trust domain).
    Namespace(String),
    /// Any identity in this trust domain.
    TrustDomain(String),
    /// Any mesh identity.
    Authenticated,
    /// Anyone, plaintext included.
    Unauthenticated,
}

/// An authorization policy on a service (port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    /// `namespace/name` of the policy.
    pub key: ObjectKey,
    /// The service it protects.
    pub service: ObjectKey,
    /// The port, or every port.
    pub port: Option<u16>,
    /// Routes it covers; empty: every request.
    pub routes: Vec<RouteMatch>,
    /// Who may call.
    pub principals: Vec<Principal>,
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// Mesh-wide settings.
    pub mesh: MeshSettings,
    /// Services by key.
    pub services: BTreeMap<ObjectKey, Service>,
    /// Workloads by key.
    pub workloads: BTreeMap<ObjectKey, Workload>,
    /// Routes attached to each service port, in precedence order.
    pub routes: BTreeMap<(ObjectKey, u16), Vec<RouteRule>>,
    /// Backend policies by (service, port); port `None` covers every port.
    pub backend_policies: BTreeMap<(ObjectKey, Option<u16>), BackendPolicy>,
    /// Authorization policies.
    pub authorization_policies: Vec<AuthorizationPolicy>,
    /// Route rules refused alone, with why (an unsupported or invalid filter): each still
    /// matches its requests and answers them 500, and the rest of its route is in force.
    pub refused_rules: Vec<crate::config::error::ConfigError>,
    /// ReferenceGrants.
    pub reference_grants: Vec<ReferenceGrant>,
    /// The status of every route in the model, by (`HTTPRoute`|`GRPCRoute`, key).
    pub route_status: BTreeMap<(String, ObjectKey), RouteStatus>,
}

impl Model {
    /// The policy for a backend service port: the port-specific one, else the service-wide one.
    pub fn backend_policy(&self, service: &ObjectKey, port: u16) -> Option<&BackendPolicy> {
        self.backend_policies
            .get(&(service.clone(), Some(port)))
            .or_else(|| self.backend_policies.get(&(service.clone(), None)))
    }
}

/// Header changes of a `RequestHeaderModifier` or `ResponseHeaderModifier` filter; names are
/// lower case, none of them one the mesh reserves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    /// Replaced (or added when absent).
    pub set: Vec<(String, String)>,
    /// Appended to what is there.
    pub add: Vec<(String, String)>,
    /// Removed.
    pub remove: Vec<String>,
}

/// A new path for a request (`ReplaceFullPath` or `ReplacePrefixMatch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathModifier {
    /// The whole path.
    Full(String),
    /// The part the rule's path prefix `matched` took, replaced by `replacement`.
    Prefix {
        /// The rule's `PathPrefix` match value.
        matched: String,
        /// What takes its place.
        replacement: String,
    },
}

/// A `RequestRedirect` filter: the rule answers with a redirect and calls no backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https`; `None`: the request's.
    pub scheme: Option<String>,
    /// `None`: the request's host.
    pub hostname: Option<String>,
    /// `None`: derived from the scheme or the service port, as the Gateway API says.
    pub port: Option<u16>,
    /// `None`: the request's path.
    pub path: Option<PathModifier>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// A `URLRewrite` filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// The host the backend sees.
    pub hostname: Option<String>,
    /// The path the backend sees.
    pub path: Option<PathModifier>,
}

/// A `RequestMirror` filter: a share of requests copied to another backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The Service mirrored to.
    pub service: ObjectKey,
    /// Its port.
    pub port: u16,
    /// Share mirrored: numerator / denominator (1 ≤ denominator, numerator ≤ denominator).
    pub numerator: u32,
    /// See `numerator`.
    pub denominator: u32,
}

/// A rule's filters; the default does nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteFilters {
    /// `RequestHeaderModifier`.
    pub request_headers: Option<HeaderModifier>,
    /// `ResponseHeaderModifier`.
    pub response_headers: Option<HeaderModifier>,
    /// `RequestRedirect`.
    pub redirect: Option<Redirect>,
    /// `URLRewrite`.
    pub rewrite: Option<Rewrite>,
    /// `RequestMirror` (may repeat).
    pub mirrors: Vec<Mirror>,
    /// Set when the rule was refused for its filters: requests it matches are answered 500
    /// instead of being forwarded without a filter (the Gateway API: a filter is never
    /// skipped).
    pub refused: Option<String>,
}

/// A backendRef's filters (header changes only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendFilters {
    /// `RequestHeaderModifier`.
    pub request_headers: Option<HeaderModifier>,
    /// `ResponseHeaderModifier`.
    pub response_headers: Option<HeaderModifier>,
}
