//! The control plane's settings: flags with `STRAIT_*` environment twins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the mesh's configuration comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConfigSource {
    /// YAML files in the --config directory (local mode), watched and hot-reloaded.
    Files,
    /// The Kubernetes API: Services, EndpointSlices, meshed Pods, Gateway API routes and
    /// Strait's CRDs, watched; tokens are checked with TokenReview.
    Kubernetes,
}

/// Settings of `strait-control-plane run`.
#[derive(Args, Clone, Debug)]
pub struct ControlPlaneConfig {
    /// Where the configuration comes from. `kubernetes` uses the in-cluster service account,
    /// or KUBECONFIG outside a cluster.
    #[arg(
        long,
        env = "STRAIT_CONFIG_SOURCE",
        value_enum,
        default_value = "files"
    )]
    pub config_source: ConfigSource,

    /// Directory of YAML configuration (with `--config-source files`); watched and
    /// hot-reloaded.
    #[arg(long, env = "STRAIT_CONFIG", required_if_eq("config_source", "files"))]
    pub config: Option<PathBuf>,

    /// Audience of the service-account tokens proxies present (with `--config-source
    /// kubernetes`); the injector projects tokens for it.
    #[arg(long, env = "STRAIT_TOKEN_AUDIENCE", default_value = crate::kubernetes::token_review::DEFAULT_AUDIENCE)]
    pub token_audience: String,

    /// Most bootstrap-token verifications (TokenReviews with `--config-source kubernetes`) in
    /// flight at once; a Certify that finds them all busy for 1s is refused with
    /// RESOURCE_EXHAUSTED and the proxy retries. CSRs are checked before any verification.
    #[arg(long, env = "STRAIT_MAX_CONCURRENT_TOKEN_REVIEWS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_concurrent_token_reviews: u32,

    /// gRPC listener (identity and discovery, TLS).
    #[arg(long, env = "STRAIT_GRPC_ADDR", default_value = "127.0.0.1:8090")]
    pub grpc_addr: SocketAddr,

    /// Most connections the gRPC port holds at once (each watching proxy holds one; a proxy
    /// asking for a certificate briefly holds a second). More are closed at accept and counted
    /// in `strait_grpc_connections_refused_total`. Size it with the memory limit: about 35 KiB
    /// per connected proxy at the peak of a push.
    #[arg(long, env = "STRAIT_MAX_GRPC_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_grpc_connections: u32,

    /// Most gRPC connections one source address may hold before proving a mesh identity
    /// (while handshaking, or TLS without a client certificate: proxies asking for a
    /// certificate). Keeps one client from taking the port.
    #[arg(long, env = "STRAIT_MAX_UNPROVEN_CONNECTIONS_PER_SOURCE", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_unproven_connections_per_source: u32,

    /// Most gRPC connections with one proven mesh identity: every replica of a Deployment
    /// shares its identity and holds one connection, so size it for the largest Deployment.
    #[arg(long, env = "STRAIT_MAX_CONNECTIONS_PER_IDENTITY", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_identity: u32,

    /// How long a gRPC connection without a mesh certificate is served (it exists to call
    /// Certify) before it is asked to close; its calls get 10s more to finish. Proxies
    /// reconnect for their next call.
    #[arg(long, env = "STRAIT_UNPROVEN_CONNECTION_LIFETIME", value_parser = parse_duration, default_value = "30s")]
    pub unproven_connection_lifetime: Duration,

    /// Admin listener: /metrics, /ready and /live answer anyone; /proxies answers loopback
    /// callers only.
    #[arg(long, env = "STRAIT_ADMIN_ADDR", default_value = "127.0.0.1:9990")]
    pub admin_addr: SocketAddr,

    /// Trust anchors (PEM). With --issuer-cert and --issuer-key, the CA to sign with.
    #[arg(long, env = "STRAIT_TRUST_ANCHORS", requires_all = ["issuer_cert", "issuer_key"], conflicts_with = "dev_ca")]
    pub trust_anchors: Option<PathBuf>,

    /// Issuer certificate (PEM), optionally followed by intermediates up to an anchor.
    #[arg(long, env = "STRAIT_ISSUER_CERT", requires = "trust_anchors")]
    pub issuer_cert: Option<PathBuf>,

    /// Issuer private key (PEM).
    #[arg(long, env = "STRAIT_ISSUER_KEY", requires = "trust_anchors")]
    pub issuer_key: Option<PathBuf>,

    /// Keep the CA in this Secret of the control plane's own namespace (with `--config-source
    /// kubernetes`): read it at start, or generate a CA and create the Secret when there is
    /// none (a replica that loses the race to create it uses the winner's). With
    /// --trust-anchors, --issuer-cert and --issuer-key naming where the Secret is mounted,
    /// later changes to it are picked up from those files.
    #[arg(long, env = "STRAIT_CA_SECRET", conflicts_with = "dev_ca")]
    pub ca_secret: Option<String>,

    /// Development only: use (and on first run generate) a CA in this directory.
    #[arg(long, env = "STRAIT_DEV_CA")]
    pub dev_ca: Option<PathBuf>,

    /// Lifetime of the workload certificates the CA issues.
    #[arg(long, env = "STRAIT_CERT_TTL", value_parser = parse_duration, default_value = strait_proto::defaults::CERT_TTL)]
    pub cert_ttl: Duration,

    /// Namespace the control plane's own identity belongs to.
    #[arg(long, env = "STRAIT_NAMESPACE", default_value = "strait-system")]
    pub namespace: String,

    /// Service account of the control plane's own identity.
    #[arg(
        long,
        env = "STRAIT_SERVICE_ACCOUNT",
        default_value = "strait-control-plane"
    )]
    pub service_account: String,

    /// Extra DNS names for the control plane's certificate (repeatable).
    #[arg(
        long = "dns-name",
        env = "STRAIT_DNS_NAME",
        value_delimiter = ',',
        default_value = "localhost"
    )]
    pub dns_names: Vec<String>,

    /// Injector webhook listener (HTTPS). Served only with --injector-cert and --injector-key,
    /// or --injector-webhook.
    #[arg(long, env = "STRAIT_INJECTOR_ADDR", default_value = "127.0.0.1:8443")]
    pub injector_addr: SocketAddr,

    /// Injector serving certificate (PEM, leaf first); re-read when the file changes.
    #[arg(long, env = "STRAIT_INJECTOR_CERT", requires_all = ["injector_key", "injector_config"], conflicts_with = "injector_webhook")]
    pub injector_cert: Option<PathBuf>,

    /// Injector serving key (PEM); re-read when the file changes.
    #[arg(long, env = "STRAIT_INJECTOR_KEY", requires = "injector_cert")]
    pub injector_key: Option<PathBuf>,

    /// The proxy defaults the injector writes into pods (YAML; the chart renders it). Needs
    /// --injector-cert and --injector-key, or --injector-webhook.
    #[arg(long, env = "STRAIT_INJECTOR_CONFIG")]
    pub injector_config: Option<PathBuf>,

    /// Serve the injector with the control plane's own certificate (issued by the mesh CA for
    /// the --dns-name names, renewed with it) and keep the caBundle of every webhook in this
    /// MutatingWebhookConfiguration set to the trust anchors, at start and whenever they change
    /// (with `--config-source kubernetes`); instead of --injector-cert and --injector-key.
    #[arg(long, env = "STRAIT_INJECTOR_WEBHOOK", requires = "injector_config")]
    pub injector_webhook: Option<String>,

    /// How often the configuration directory and CA files are checked for changes.
    #[arg(long, env = "STRAIT_RELOAD_INTERVAL", value_parser = parse_duration, default_value = "250ms")]
    pub reload_interval: Duration,

    /// Log filter in `tracing` syntax.
    #[arg(long, env = "STRAIT_LOG", default_value = "info")]
    pub log: String,

    /// Log line format.
    #[arg(long, env = "STRAIT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ControlPlaneConfig {
    /// The injector's settings, when it is to be served (clap makes the flags all-or-none).
    pub fn injector(&self) -> Option<crate::inject::server::InjectorSettings> {
        use crate::inject::server::{InjectorSettings, ServingSource};
        let serving = match (
            &self.injector_cert,
            &self.injector_key,
            &self.injector_webhook,
        ) {
            (Some(cert), Some(key), _) => ServingSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            (_, _, Some(_)) => ServingSource::ControlPlane,
            _ => return None,
        };
        Some(InjectorSettings {
            addr: self.injector_addr,
            serving,
            config: self.injector_config.clone()?,
            reload_interval: self.reload_interval,
        })
    }
}

/// Parses `250ms`, `5s`, `2m`, `24h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::config::duration::parse(text)
}
