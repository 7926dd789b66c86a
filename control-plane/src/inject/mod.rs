//! The sidecar injector: a mutating admission webhook that adds the iptables init container,
//! the proxy and its identity-token volume to pods that ask for the mesh.
//!
//! [`patch::inject`] decides and computes the JSONPatch as a pure function of the pod, the
//! configuration and the trust anchors; [`review`] turns an AdmissionReview body into the
//! answer; [`server`] is the HTTPS shell around them, with its certificate from
//! [`serving_cert`]; [`review_permits`] bounds the reviews it works on at once. The injector never rejects a pod: whatever goes wrong on its side, the
//! answer is "allowed, no patch", logged and counted.

pub mod config;
pub mod patch;
pub mod review;
pub mod review_permits;
pub mod server;
pub mod serving_cert;

/// Pod annotation (and, on a namespace, label) that asks for injection: `enabled` or
/// `disabled`.
pub const INJECT: &str = "strait.dev/inject";
/// Pod annotation the injector adds: the control plane version that injected the pod.
pub const INJECTED: &str = "strait.dev/injected";
/// Pod annotation the injector adds: the proxy's inbound port, read by the Kubernetes source.
pub const PROXY_INBOUND_PORT: &str = "strait.dev/proxy-inbound-port";
/// Pod annotation: extra comma-separated inbound ports iptables leaves alone.
pub const SKIP_INBOUND_PORTS: &str = "strait.dev/skip-inbound-ports";
/// Pod annotation: extra comma-separated outbound destination ports iptables leaves alone.
pub const SKIP_OUTBOUND_PORTS: &str = "strait.dev/skip-outbound-ports";
/// Pod label the injector adds, so the Kubernetes source knows the pod is meshed.
pub const PROXIED: &str = "strait.dev/proxied";
/// The proxy container's name; a pod that has one is already injected.
pub const PROXY_CONTAINER: &str = "strait-proxy";
/// The proxy's inbound container port name.
pub const INBOUND_PORT_NAME: &str = "strait-inbound";
/// The proxy's admin container port name, which Prometheus scrapes by.
pub const ADMIN_PORT_NAME: &str = "strait-admin";
/// The init container that installs the iptables rules.
pub const INIT_CONTAINER: &str = "strait-init";
/// The projected service-account token volume.
pub const TOKEN_VOLUME: &str = "strait-identity-token";
/// Where the token volume is mounted in the proxy.
pub const TOKEN_DIR: &str = "/var/run/secrets/strait.dev/identity";
/// The HTTP path of the webhook for pods that ask for injection themselves.
pub const PATH_POD: &str = "/inject";
/// The HTTP path of the webhook whose namespaceSelector already chose the namespace
/// (labelled `strait.dev/inject=enabled`): every pod there is injected unless it opts out.
pub const PATH_NAMESPACE: &str = "/inject/namespace-enabled";
