//! The configuration kinds exactly as users write them: Kubernetes and Gateway API shapes plus
//! Strait's own `strait.dev/v1alpha1` kinds. Unknown fields are rejected so a typo is an error,
//! not a silently ignored setting. Nothing here is validated beyond its type; that is
//! [`super::validate`]'s job.
//!
//! One file, over 500 lines, on purpose: it is the schema and nothing else — plain serde
//! structs with no logic, one block per kind in the order of docs/configuration.md — and a
//! reader checks it against the Gateway API and Kubernetes references side by side. Split per
//! kind, the shared shapes (`ObjectMeta`, `ParentRef`, `BackendRef`, matches) would need a home
//! of their own and a kind's fields would be read across files.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `apiVersion` and `kind`, read first to pick the document's type.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: Option<LooseMeta>,
}

/// Just enough metadata to name a document in an error, whatever else is wrong with it.
#[derive(Debug, Deserialize)]
pub struct LooseMeta {
    #[serde(default)]
    pub name: Option<serde_json::Value>,
    #[serde(default)]
    pub namespace: Option<serde_json::Value>,
}

/// Object metadata.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    // Present on objects exported from a cluster; accepted and ignored.
    #[serde(default)]
    pub uid: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub resource_version: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub generation: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub creation_timestamp: Option<serde::de::IgnoredAny>,
}

/// A whole document of one kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<S> {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: S,
    #[serde(default)]
    pub status: Option<serde::de::IgnoredAny>,
}

/// An integer or a name, as Kubernetes' `IntOrString`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

// ---- v1 Service ----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(default, rename = "type")]
    pub service_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    pub port: i64,
    #[serde(default)]
    pub target_port: Option<IntOrString>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub app_protocol: Option<String>,
}

// ---- discovery.k8s.io/v1 EndpointSlice -------------------------------------------------

/// An EndpointSlice: the endpoints of a Service, as Kubernetes' endpointslice controller
/// writes them, or written by hand for a Service without a selector. It has no `spec`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSlice {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub address_type: String,
    #[serde(default)]
    pub endpoints: Vec<SliceEndpoint>,
    #[serde(default)]
    pub ports: Vec<SlicePort>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SliceEndpoint {
    pub addresses: Vec<String>,
    #[serde(default)]
    pub conditions: SliceConditions,
    // Topology and ownership: accepted, not used for routing.
    #[serde(default)]
    pub target_ref: Option<ObjectReference>,
    #[serde(default)]
    pub node_name: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub zone: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub hints: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub hostname: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub deprecated_topology: Option<serde::de::IgnoredAny>,
}

/// A Kubernetes `ObjectReference` (an endpoint's pod).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub field_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SliceConditions {
    #[serde(default)]
    pub ready: Option<bool>,
    #[serde(default)]
    pub serving: Option<bool>,
    #[serde(default)]
    pub terminating: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlicePort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub app_protocol: Option<String>,
}

// ---- strait.dev/v1alpha1 Workload -----------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSpec {
    #[serde(default)]
    pub service_account: Option<String>,
    pub address: String,
    /// Its other addresses (a dual-stack workload's other family).
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub ports: Vec<WorkloadPort>,
    #[serde(default)]
    pub proxy: Option<WorkloadProxy>,
    #[serde(default)]
    pub bootstrap_token: Option<BootstrapToken>,
    /// The controller owning the workload (a pod's Deployment, StatefulSet…), for metric
    /// labels; the Kubernetes source fills it from the pod's `ownerReferences`.
    #[serde(default)]
    pub owner: Option<WorkloadOwner>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadOwner {
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadPort {
    pub name: String,
    pub port: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadProxy {
    #[serde(default)]
    pub inbound_port: Option<i64>,
    #[serde(default)]
    pub admin_port: Option<i64>,
    #[serde(default)]
    pub outbound_port: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapToken {
    /// A file holding the token, relative to the configuration directory.
    #[serde(default)]
    pub file: Option<String>,
    /// The hex SHA-256 of the token, so the configuration need not hold the token itself.
    #[serde(default)]
    pub sha256: Option<String>,
}

// ---- Gateway API ReferenceGrant -------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReferenceGrantSpec {
    #[serde(default)]
    pub from: Vec<ReferenceGrantFrom>,
    #[serde(default)]
    pub to: Vec<ReferenceGrantTo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReferenceGrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReferenceGrantTo {
    pub group: String,
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
}

// ---- Gateway API routes ----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParentRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub section_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    #[serde(default)]
    pub weight: Option<i64>,
    #[serde(default)]
    pub filters: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// `useDefaultGateways` (Gateway API v1.6): a Gateway scope; no meaning for a mesh route.
    #[serde(default)]
    pub use_default_gateways: Option<String>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteRule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub matches: Vec<HttpRouteMatch>,
    #[serde(default)]
    pub filters: Vec<serde_json::Value>,
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    #[serde(default)]
    pub timeouts: Option<HttpRouteTimeouts>,
    #[serde(default)]
    pub retry: Option<HttpRouteRetry>,
    #[serde(default)]
    pub session_persistence: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteMatch {
    #[serde(default)]
    pub path: Option<PathMatch>,
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    #[serde(default)]
    pub query_params: Vec<ValueMatch>,
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    #[serde(default, rename = "type")]
    pub match_type: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueMatch {
    #[serde(default, rename = "type")]
    pub match_type: Option<String>,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteTimeouts {
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub backend_request: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteRetry {
    #[serde(default)]
    pub codes: Vec<i64>,
    #[serde(default)]
    pub attempts: Option<i64>,
    #[serde(default)]
    pub backoff: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentRef>,
    /// `useDefaultGateways` (Gateway API v1.6): a Gateway scope; no meaning for a mesh route.
    #[serde(default)]
    pub use_default_gateways: Option<String>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<GrpcRouteRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRouteRule {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub matches: Vec<GrpcRouteMatch>,
    #[serde(default)]
    pub filters: Vec<serde_json::Value>,
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
    #[serde(default)]
    pub session_persistence: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRouteMatch {
    #[serde(default)]
    pub method: Option<GrpcMethodMatch>,
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcMethodMatch {
    #[serde(default, rename = "type")]
    pub match_type: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
}

// ---- strait.dev/v1alpha1 policies ----------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    pub name: String,
    #[serde(default)]
    pub port: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendPolicySpec {
    pub target_ref: TargetRef,
    #[serde(default)]
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub idle_timeout: Option<String>,
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
    #[serde(default)]
    pub max_pending_requests: Option<i64>,
    #[serde(default)]
    pub retry_budget: Option<RetryBudget>,
    #[serde(default)]
    pub retry_backoff: Option<RetryBackoff>,
    #[serde(default)]
    pub load_balancer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    #[serde(default)]
    pub consecutive_failures: Option<i64>,
    #[serde(default)]
    pub base_ejection_time: Option<String>,
    #[serde(default)]
    pub max_ejection_time: Option<String>,
    #[serde(default)]
    pub max_ejected_percent: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    #[serde(default)]
    pub percent: Option<i64>,
    #[serde(default)]
    pub min_retries_per_second: Option<i64>,
    #[serde(default)]
    pub interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBackoff {
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    pub max: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicySpec {
    pub target_ref: TargetRef,
    #[serde(default)]
    pub routes: Vec<HttpRouteMatch>,
    #[serde(default)]
    pub from: Vec<Principal>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principal {
    #[serde(default)]
    pub identity: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub trust_domain: Option<String>,
    #[serde(default)]
    pub authenticated: Option<bool>,
    #[serde(default)]
    pub unauthenticated: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshConfigSpec {
    #[serde(default)]
    pub trust_domain: Option<String>,
    #[serde(default)]
    pub inbound_mode: Option<String>,
    #[serde(default)]
    pub default_authorization: Option<String>,
}

/// One parsed document, by kind. Documents are few and short-lived, so variant sizes do not
/// matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Document {
    Service(Object<ServiceSpec>),
    EndpointSlice(EndpointSlice),
    Workload(Object<WorkloadSpec>),
    HttpRoute(Object<HttpRouteSpec>),
    GrpcRoute(Object<GrpcRouteSpec>),
    ReferenceGrant(Object<ReferenceGrantSpec>),
    BackendPolicy(Object<BackendPolicySpec>),
    AuthorizationPolicy(Object<AuthorizationPolicySpec>),
    MeshConfig(Object<MeshConfigSpec>),
}

impl Document {
    /// The document's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Document::Service(o) => &o.metadata,
            Document::EndpointSlice(o) => &o.metadata,
            Document::Workload(o) => &o.metadata,
            Document::HttpRoute(o) => &o.metadata,
            Document::GrpcRoute(o) => &o.metadata,
            Document::ReferenceGrant(o) => &o.metadata,
            Document::BackendPolicy(o) => &o.metadata,
            Document::AuthorizationPolicy(o) => &o.metadata,
            Document::MeshConfig(o) => &o.metadata,
        }
    }

    /// The kind as written.
    pub fn kind(&self) -> &'static str {
        match self {
            Document::Service(_) => "Service",
            Document::EndpointSlice(_) => "EndpointSlice",
            Document::Workload(_) => "Workload",
            Document::HttpRoute(_) => "HTTPRoute",
            Document::GrpcRoute(_) => "GRPCRoute",
            Document::ReferenceGrant(_) => "ReferenceGrant",
            Document::BackendPolicy(_) => "BackendPolicy",
            Document::AuthorizationPolicy(_) => "AuthorizationPolicy",
            Document::MeshConfig(_) => "MeshConfig",
        }
    }
}
