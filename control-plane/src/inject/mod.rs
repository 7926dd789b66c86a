//! The sidecar injector: a mutating admission webhook that adds the iptables init container,
//! the proxy and its identity-token volume to pods that ask for the mesh.
//!
//! [`patch::inject`] decides and computes the JSONPatch as a pure function of the pod, the
//! configuration and the trust anchors; [`review`] turns an AdmissionReview body into the
//! answer; [`server`] is the HTTPS shell around them, with its certificate from
//! [`serving_cert`]; [`review_permits`] bounds the reviews it works on at once. A hostNetwork
//! pod it skips is reported as a Kubernetes Event: [`skip_event`] says what the Event regards
//! and says, [`event_throttle`] how often one may be posted, and [`skip_events`] posts them
//! off the admission path. The injector never rejects a pod: whatever goes wrong on its side,
//! the answer is "allowed, no patch", logged and counted.

pub mod config;
pub mod event_throttle;
pub mod patch;
pub mod pod_settings;
pub mod quantity;
pub mod review;
pub mod review_permits;
pub mod server;
pub mod serving_cert;
pub mod skip_event;
pub mod skip_events;

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
/// Pod annotation: the proxy container's CPU request (a Kubernetes quantity, e.g. `200m`).
pub const PROXY_CPU_REQUEST: &str = "strait.dev/proxy-cpu-request";
/// Pod annotation: the proxy container's CPU limit; also sets its worker threads.
pub const PROXY_CPU_LIMIT: &str = "strait.dev/proxy-cpu-limit";
/// Pod annotation: the proxy container's memory request (e.g. `64Mi`).
pub const PROXY_MEMORY_REQUEST: &str = "strait.dev/proxy-memory-request";
/// Pod annotation: the proxy container's memory limit, which the proxy plans its caps from.
pub const PROXY_MEMORY_LIMIT: &str = "strait.dev/proxy-memory-limit";
/// Pod annotation: the proxy's runtime worker threads (`STRAIT_THREADS`), 1 to
/// [`pod_settings::MAX_THREADS`]; unset, derived from the CPU limit or request.
pub const PROXY_THREADS: &str = "strait.dev/proxy-threads";
/// Pod annotation: the proxy's log filter (`tracing` syntax).
pub const PROXY_LOG_LEVEL: &str = "strait.dev/proxy-log-level";
/// Pod annotation: comma-separated ports relayed as opaque TCP without protocol detection;
/// replaces the chart's `proxy.opaquePorts` for the pod.
pub const OPAQUE_PORTS: &str = "strait.dev/opaque-ports";
/// Pod annotation: `enabled` or `disabled`, overriding the chart's `proxy.tracing.enabled`.
pub const TRACING: &str = "strait.dev/tracing";
/// Pod annotation: the OTLP/gRPC collector the proxy exports spans to (`http://host:4317`).
pub const TRACE_COLLECTOR: &str = "strait.dev/trace-collector";
/// Pod annotation: the share of requests started in the mesh that are traced, 0 to 1.
pub const TRACE_SAMPLE_RATIO: &str = "strait.dev/trace-sample-ratio";
/// Pod annotation: the proxy's access log, `json` or `off`, overriding the chart's
/// `proxy.accessLog`.
pub const ACCESS_LOG: &str = "strait.dev/access-log";
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
