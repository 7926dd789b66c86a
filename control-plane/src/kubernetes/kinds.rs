//! The Kubernetes kinds the control plane watches, and how each is addressed in the API.

use kube::api::{ApiResource, GroupVersionKind};

/// Label the injector puts on every pod it adds a proxy to; only those pods are workloads.
pub use crate::inject::PROXIED as PROXIED_LABEL;
/// Annotation the injector puts on a pod: its proxy's inbound port.
pub use crate::inject::PROXY_INBOUND_PORT as PROXY_INBOUND_PORT_ANNOTATION;

/// One watched kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `v1` Service.
    Service,
    /// `discovery.k8s.io/v1` EndpointSlice.
    EndpointSlice,
    /// `v1` Pod (meshed pods only).
    Pod,
    /// `gateway.networking.k8s.io/v1` HTTPRoute.
    HttpRoute,
    /// `gateway.networking.k8s.io/v1` GRPCRoute.
    GrpcRoute,
    /// `gateway.networking.k8s.io/v1` ReferenceGrant.
    ReferenceGrant,
    /// `strait.dev/v1alpha1` BackendPolicy.
    BackendPolicy,
    /// `strait.dev/v1alpha1` AuthorizationPolicy.
    AuthorizationPolicy,
    /// `strait.dev/v1alpha1` MeshConfig (cluster-scoped).
    MeshConfig,
}

impl Kind {
    /// Every watched kind.
    pub const ALL: [Kind; 9] = [
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Pod,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::ReferenceGrant,
        Kind::BackendPolicy,
        Kind::AuthorizationPolicy,
        Kind::MeshConfig,
    ];

    /// `(group, version, kind, plural)`.
    pub fn gvk(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Kind::Service => ("", "v1", "Service", "services"),
            Kind::EndpointSlice => ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
            Kind::Pod => ("", "v1", "Pod", "pods"),
            Kind::HttpRoute => ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
            Kind::GrpcRoute => ("gateway.networking.k8s.io", "v1", "GRPCRoute", "grpcroutes"),
            Kind::ReferenceGrant => (
                "gateway.networking.k8s.io",
                "v1",
                "ReferenceGrant",
                "referencegrants",
            ),
            Kind::BackendPolicy => ("strait.dev", "v1alpha1", "BackendPolicy", "backendpolicies"),
            Kind::AuthorizationPolicy => (
                "strait.dev",
                "v1alpha1",
                "AuthorizationPolicy",
                "authorizationpolicies",
            ),
            Kind::MeshConfig => ("strait.dev", "v1alpha1", "MeshConfig", "meshconfigs"),
        }
    }

    /// The kind's name, as in `kind:`.
    pub fn name(self) -> &'static str {
        self.gvk().2
    }

    /// `group/version`, or `version` for the core group, as in `apiVersion:`.
    pub fn api_version(self) -> String {
        match self.gvk() {
            ("", version, _, _) => version.to_owned(),
            (group, version, _, _) => format!("{group}/{version}"),
        }
    }

    /// How the kube client addresses the kind.
    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = self.gvk();
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    /// The label selector the watch uses, so the control plane holds only what it needs.
    pub fn label_selector(self) -> Option<String> {
        (self == Kind::Pod).then(|| format!("{PROXIED_LABEL}=true"))
    }

    /// Whether the kind is defined by a CRD, which a cluster may not have installed.
    pub fn is_custom(self) -> bool {
        !matches!(self, Kind::Service | Kind::EndpointSlice | Kind::Pod)
    }
}
