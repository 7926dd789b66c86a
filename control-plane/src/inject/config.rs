//! The proxy defaults the injector writes into every pod (`--injector-config`): a camelCase
//! YAML file the Helm chart renders from its values into a ConfigMap.
//!
//! Every field has a default equal to the chart's `values.yaml` default, so an empty file is a
//! working configuration. Unknown fields are rejected and every error names the field, so a
//! typo in the chart's values fails the control plane at start instead of injecting pods
//! with a silently ignored setting.

use std::collections::BTreeMap;
use std::num::NonZeroU16;
use std::path::Path;

use serde::{Deserialize, Serialize};
use strait_identity::SpiffeId;

use super::pod_settings::{check_collector, check_log_filter, check_sample_ratio};
use super::quantity::Quantity;

/// The proxy image the chart of this version deploys.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/strait-mesh/strait-proxy:",
    env!("CARGO_PKG_VERSION")
);

/// Shortest projected-token lifetime Kubernetes accepts.
const MIN_TOKEN_EXPIRATION_SECONDS: i64 = 600;

/// When the kubelet pulls the proxy image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum PullPolicy {
    /// On every pod start.
    Always,
    /// Only when the node does not have it.
    IfNotPresent,
    /// Never; the image must be on the node.
    Never,
}

/// The proxy's log line format (`STRAIT_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The proxy's access log (`STRAIT_ACCESS_LOG`): one JSON line per HTTP request, or none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// No access log (the proxy's default: it costs nothing).
    #[default]
    Off,
    /// One JSON object per request, on the proxy's stdout.
    Json,
}

impl AccessLog {
    /// The value as the proxy's flag and the annotation spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLog::Off => "off",
            AccessLog::Json => "json",
        }
    }
}

/// The proxy's inbound mode (`STRAIT_INBOUND_MODE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundMode {
    /// mTLS from the mesh, plaintext from clients outside it.
    Permissive,
    /// mTLS only.
    Strict,
}

/// Whether injected pods' IPv6 traffic goes through the proxy (`strait-proxy init --ipv6` and
/// the proxy's IPv6 listeners).
///
/// Kubernetes gives an admission webhook no per-pod IP families, so the default decides in the
/// pod itself: `init` installs the IPv6 rules when the pod's network namespace has an IPv6
/// address besides loopback, and the proxy's IPv6 listeners are skipped where the kernel has no
/// IPv6. Dual-stack and IPv6 pods are then covered with no setting to keep in step with the
/// cluster, and IPv4-only pods are unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipv6 {
    /// IPv6 rules where the pod has IPv6 (the default).
    Auto,
    /// IPv6 rules in every pod; `init` fails where they cannot be installed.
    Enabled,
    /// No IPv6 rules or listeners: a dual-stack pod's IPv6 traffic bypasses the proxy, its
    /// mTLS and its policy. Only for nodes whose ip6tables cannot work.
    Disabled,
}

/// The proxy's listener ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Ports {
    /// Where iptables redirects the app's outbound connections.
    pub outbound: NonZeroU16,
    /// Where iptables redirects connections to the pod; mTLS from other proxies.
    pub inbound: NonZeroU16,
    /// Metrics and health (`/metrics`, `/ready`, `/live`).
    pub admin: NonZeroU16,
}

impl Default for Ports {
    fn default() -> Self {
        let port = |p| NonZeroU16::new(p).expect("a non-zero constant");
        Self {
            outbound: port(strait_proto::defaults::PROXY_OUTBOUND_PORT),
            inbound: port(strait_proto::defaults::PROXY_INBOUND_PORT),
            admin: port(strait_proto::defaults::PROXY_ADMIN_PORT),
        }
    }
}

/// The proxy container's compute resources, as Kubernetes' `ResourceRequirements` (requests
/// and limits only, checked strictly: k8s-openapi's type ignores misspelt fields).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Resource name (`cpu`, `memory`) → quantity (`10m`, `16Mi`).
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    /// Resource name → quantity.
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

impl Default for Resources {
    fn default() -> Self {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // Sized from the benchmark: see the chart's `proxy.resources` (values.yaml) for how.
        Self {
            requests: map(&[("cpu", "100m"), ("memory", "32Mi")]),
            limits: map(&[("memory", "128Mi")]),
        }
    }
}

/// Tracing of injected proxies (OTLP/gRPC export of spans).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Tracing {
    /// Whether proxies export spans; needs `collector`. Pods override it with
    /// `strait.dev/tracing`.
    pub enabled: bool,
    /// The OTLP/gRPC collector, e.g. `http://otel-collector.observability:4317`.
    pub collector: String,
    /// Share of requests started in the mesh that are traced, 0 to 1.
    pub sample_ratio: f64,
}

impl Default for Tracing {
    fn default() -> Self {
        Self {
            enabled: false,
            collector: String::new(),
            sample_ratio: 0.01,
        }
    }
}

/// What the injector puts into a pod.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectorConfig {
    /// The proxy image, used for both the init container and the proxy.
    pub image: String,
    /// Pull policy of that image.
    pub image_pull_policy: PullPolicy,
    /// Secrets (in each pod's namespace) the kubelet pulls that image with, added to every
    /// injected pod's `imagePullSecrets`.
    pub image_pull_secrets: Vec<String>,
    /// The control plane's gRPC address (`host:port`) as pods reach it.
    pub control_plane_address: String,
    /// The identity the control plane must prove to the proxy.
    pub control_plane_identity: String,
    /// The mesh's trust domain.
    pub trust_domain: String,
    /// The UID the proxy runs as; iptables lets this UID's traffic through unredirected.
    #[serde(rename = "proxyUID")]
    pub proxy_uid: i64,
    /// The proxy's listener ports.
    pub ports: Ports,
    /// The proxy's log filter (`tracing` syntax).
    pub log_level: String,
    /// The proxy's log format.
    pub log_format: LogFormat,
    /// The proxy's access log.
    pub access_log: AccessLog,
    /// Inbound mode for ports the control plane says nothing about.
    pub inbound_mode: InboundMode,
    /// Whether pods' IPv6 traffic is intercepted.
    pub ipv6: Ipv6,
    /// Inbound ports never redirected to the proxy (the admin port always is skipped).
    pub skip_inbound_ports: Vec<NonZeroU16>,
    /// Outbound destination ports never redirected to the proxy.
    pub skip_outbound_ports: Vec<NonZeroU16>,
    /// Ports relayed as opaque TCP without protocol detection (`STRAIT_OPAQUE_PORTS`).
    pub opaque_ports: Vec<NonZeroU16>,
    /// Span export.
    pub tracing: Tracing,
    /// Inject the proxy as a native sidecar (an init container with `restartPolicy: Always`,
    /// Kubernetes 1.29+), so it starts before and stops after the app.
    pub native_sidecar: bool,
    /// The proxy container's resources.
    pub resources: Resources,
    /// Audience of the projected service-account token the proxy presents as its bootstrap
    /// token; the control plane's TokenReview asks for the same audience.
    pub token_audience: String,
    /// Lifetime of that token (Kubernetes rotates it at 80 %).
    pub token_expiration_seconds: i64,
}

impl Default for InjectorConfig {
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.into(),
            image_pull_policy: PullPolicy::IfNotPresent,
            image_pull_secrets: Vec::new(),
            control_plane_address: "strait-control-plane.strait-system.svc.cluster.local:8090"
                .into(),
            control_plane_identity:
                "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane".into(),
            trust_domain: "cluster.local".into(),
            proxy_uid: 2102,
            ports: Ports::default(),
            log_level: "info".into(),
            log_format: LogFormat::Json,
            access_log: AccessLog::Off,
            inbound_mode: InboundMode::Permissive,
            ipv6: Ipv6::Auto,
            skip_inbound_ports: Vec::new(),
            skip_outbound_ports: Vec::new(),
            opaque_ports: strait_proto::defaults::OPAQUE_PORTS
                .split(',')
                .map(|p| p.parse().expect("the default opaque ports are ports"))
                .collect(),
            tracing: Tracing::default(),
            native_sidecar: true,
            resources: Resources::default(),
            token_audience: "strait.dev/identity".into(),
            token_expiration_seconds: 86400,
        }
    }
}

/// Why the injector configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the injector config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not YAML.
    #[error("injector config {source_name}: invalid YAML: {reason}")]
    Yaml {
        /// The file (or a description of the input).
        source_name: String,
        /// What the YAML parser said.
        reason: String,
    },
    /// A field has a wrong type or value.
    #[error("injector config {source_name}: field {field}: {reason}")]
    Field {
        /// The file (or a description of the input).
        source_name: String,
        /// The field path, e.g. `ports.admin` (`.` for the whole document).
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl InjectorConfig {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks `text`; `source_name` names the input in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml {
                source_name: source_name.to_owned(),
                reason: e.to_string(),
            })?;
        if value.is_null() {
            return Ok(Self::default());
        }
        let field_error = |field: String, reason: String| ConfigError::Field {
            source_name: source_name.to_owned(),
            field,
            reason,
        };
        let config: Self = serde_path_to_error::deserialize(value)
            .map_err(|e| field_error(e.path().to_string(), e.inner().to_string()))?;
        config
            .check()
            .map_err(|(field, reason)| field_error(field.to_owned(), reason))?;
        Ok(config)
    }

    /// What serde cannot check: values that must agree or fall in a range.
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.image.trim().is_empty() {
            return Err(("image", "must name an image".into()));
        }
        if self
            .control_plane_address
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<NonZeroU16>().is_err())
        {
            return Err((
                "controlPlaneAddress",
                format!(
                    "{:?} is not host:port with a port from 1 to 65535",
                    self.control_plane_address
                ),
            ));
        }
        SpiffeId::new(&self.trust_domain, "a", "b").map_err(|_| {
            (
                "trustDomain",
                format!("{:?} is not a valid trust domain", self.trust_domain),
            )
        })?;
        let identity: SpiffeId = self
            .control_plane_identity
            .parse()
            .map_err(|e| ("controlPlaneIdentity", format!("{e}")))?;
        if identity.trust_domain() != self.trust_domain {
            return Err((
                "controlPlaneIdentity",
                format!(
                    "{identity} is outside the trust domain {:?}",
                    self.trust_domain
                ),
            ));
        }
        // The proxy must not run as root: iptables lets the proxy's UID through, and root's
        // traffic includes the app's when the app runs as root.
        if !(1..=i64::from(i32::MAX)).contains(&self.proxy_uid) {
            return Err((
                "proxyUID",
                format!("{} must be from 1 to {}", self.proxy_uid, i32::MAX),
            ));
        }
        let ports = [self.ports.outbound, self.ports.inbound, self.ports.admin];
        if ports[0] == ports[1] || ports[0] == ports[2] || ports[1] == ports[2] {
            return Err((
                "ports",
                format!(
                    "outbound {}, inbound {} and admin {} must be three different ports",
                    ports[0], ports[1], ports[2]
                ),
            ));
        }
        check_log_filter(&self.log_level)
            .map_err(|e| ("logLevel", format!("{:?} {e}", self.log_level)))?;
        for (section, map) in [
            ("resources.requests", &self.resources.requests),
            ("resources.limits", &self.resources.limits),
        ] {
            for (name, quantity) in map {
                Quantity::parse(quantity)
                    .map_err(|e| (section, format!("{name}: {quantity:?} is {e}")))?;
            }
        }
        for name in ["cpu", "memory"] {
            let quantity = |map: &BTreeMap<String, String>| {
                map.get(name).and_then(|q| Quantity::parse(q).ok())
            };
            if let (Some(request), Some(limit)) = (
                quantity(&self.resources.requests),
                quantity(&self.resources.limits),
            ) && request > limit
            {
                return Err((
                    "resources",
                    format!("the {name} request is above its limit, which the API server refuses"),
                ));
            }
        }
        check_sample_ratio(self.tracing.sample_ratio).map_err(|e| {
            (
                "tracing.sampleRatio",
                format!("{} {e}", self.tracing.sample_ratio),
            )
        })?;
        if !self.tracing.collector.is_empty() {
            check_collector(&self.tracing.collector).map_err(|e| {
                (
                    "tracing.collector",
                    format!("{:?} {e}", self.tracing.collector),
                )
            })?;
        } else if self.tracing.enabled {
            return Err((
                "tracing.collector",
                "tracing is enabled but no collector is set".into(),
            ));
        }
        if self.token_audience.is_empty() {
            return Err(("tokenAudience", "must not be empty".into()));
        }
        if self.token_expiration_seconds < MIN_TOKEN_EXPIRATION_SECONDS {
            return Err((
                "tokenExpirationSeconds",
                format!(
                    "{} is less than the {MIN_TOKEN_EXPIRATION_SECONDS} seconds Kubernetes requires",
                    self.token_expiration_seconds
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        InjectorConfig::parse(text, "proxy.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(
            InjectorConfig::parse("", "proxy.yaml").unwrap(),
            InjectorConfig::default()
        );
        assert_eq!(
            InjectorConfig::parse("{}\n", "proxy.yaml").unwrap(),
            InjectorConfig::default()
        );
    }

    #[test]
    fn the_defaults_pass_their_own_checks() {
        assert_eq!(InjectorConfig::default().check(), Ok(()));
    }

    #[test]
    fn fields_are_read_in_camel_case() {
        let config = InjectorConfig::parse(
            "proxyUID: 3000\nports: {admin: 5000}\nskipOutboundPorts: [5432, 6379]\nnativeSidecar: false\ninboundMode: strict\nipv6: disabled\nresources: {requests: {cpu: 50m}}\n",
            "proxy.yaml",
        )
        .unwrap();
        assert_eq!(config.proxy_uid, 3000);
        assert_eq!(config.ports.admin.get(), 5000);
        assert_eq!(
            config.ports.inbound.get(),
            4143,
            "the other ports keep defaults"
        );
        assert_eq!(
            config
                .skip_outbound_ports
                .iter()
                .map(|p| p.get())
                .collect::<Vec<_>>(),
            [5432, 6379]
        );
        assert!(!config.native_sidecar);
        assert_eq!(config.inbound_mode, InboundMode::Strict);
        assert_eq!(config.ipv6, Ipv6::Disabled);
        assert_eq!(config.access_log, AccessLog::Off);
        assert_eq!(config.resources.requests["cpu"], "50m");
        assert!(config.resources.limits.is_empty());
        let config = InjectorConfig::parse("accessLog: json\n", "proxy.yaml").unwrap();
        assert_eq!(config.access_log, AccessLog::Json);
    }

    #[test]
    fn errors_name_the_field() {
        let e = error("ports: {admin: 70000}\n");
        assert!(
            e.contains("proxy.yaml") && e.contains("field ports.admin"),
            "{e}"
        );
        let e = error("ports: {admin: 0}\n");
        assert!(e.contains("field ports.admin"), "{e}");
        let e = error("imagePullPolicy: Sometimes\n");
        assert!(
            e.contains("field imagePullPolicy") && e.contains("Sometimes"),
            "{e}"
        );
        let e = error("skipInboundPorts: [80, http]\n");
        assert!(e.contains("field skipInboundPorts[1]"), "{e}");
        let e = error("proxyUid: 5\n");
        assert!(e.contains("unknown field `proxyUid`"), "{e}");
        let e = error("resources: {request: {cpu: 1}}\n");
        assert!(
            e.contains("field resources") && e.contains("unknown field `request`"),
            "{e}"
        );
        let e = error("proxyUID: 0\n");
        assert!(e.contains("field proxyUID") && e.contains("from 1"), "{e}");
        let e = error("ports: {inbound: 4191}\n");
        assert!(e.contains("field ports") && e.contains("different"), "{e}");
        let e = error("controlPlaneAddress: strait-control-plane\n");
        assert!(e.contains("field controlPlaneAddress"), "{e}");
        let e = error("trustDomain: example.org\n");
        assert!(
            e.contains("field controlPlaneIdentity") && e.contains("example.org"),
            "{e}"
        );
        let e = error("tokenExpirationSeconds: 60\n");
        assert!(e.contains("field tokenExpirationSeconds"), "{e}");
        let e = error("logLevel: \"strait=loud\"\n");
        assert!(e.contains("field logLevel"), "{e}");
        let e = error("accessLog: text\n");
        assert!(e.contains("field accessLog") && e.contains("text"), "{e}");
        let e = error("ipv6: on\n");
        assert!(e.contains("field ipv6"), "{e}");
        let e = error("resources: {limits: {memory: lots}}\n");
        assert!(
            e.contains("field resources.limits") && e.contains("lots"),
            "{e}"
        );
        let e = error("resources: {requests: {memory: 256Mi}, limits: {memory: 128Mi}}\n");
        assert!(e.contains("field resources") && e.contains("above"), "{e}");
        let e = error("tracing: {enabled: true}\n");
        assert!(e.contains("field tracing.collector"), "{e}");
        let e = error("tracing: {collector: \"otel:4317\"}\n");
        assert!(e.contains("field tracing.collector"), "{e}");
        let e = error("tracing: {sampleRatio: 1.5}\n");
        assert!(e.contains("field tracing.sampleRatio"), "{e}");
        let e = error("opaquePorts: [0]\n");
        assert!(e.contains("field opaquePorts[0]"), "{e}");
        let e = error("image: [unclosed\n");
        assert!(e.contains("invalid YAML"), "{e}");
    }
}
