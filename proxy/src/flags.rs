//! The proxy's settings: every one is a command-line flag with a `STRAIT_*` environment twin,
//! so the same binary is configured by hand in local mode and by the injector's env in a pod.
//!
//! This module only parses and defaults; it never opens sockets or files.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use strait_proto::defaults;

/// Where the proxy runs, which decides the listeners' default addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// On a workstation: listeners on 127.0.0.1, apps address the outbound listener directly
    /// and HTTP is routed by authority.
    Local,
    /// In a pod: traffic redirected by iptables; inbound and admin listeners on all addresses
    /// of both IP families, the outbound listener on loopback only (IPv4 and IPv6).
    Pod,
}

/// Whether the inbound proxy accepts plaintext from clients outside the mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InboundMode {
    /// mTLS from the mesh and plaintext from non-meshed clients (labelled tls=false).
    Permissive,
    /// Only mTLS from the mesh: the production setting.
    Strict,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Settings of `strait-proxy run`.
#[derive(Args, Clone, Debug)]
pub struct ProxyFlags {
    /// Where the proxy runs; picks the listeners' default addresses.
    #[arg(long, env = "STRAIT_MODE", value_enum, default_value = "local")]
    pub mode: Mode,

    /// Outbound listener (app → mesh), one or more comma-separated addresses. Default:
    /// 127.0.0.1:4140 in local mode; 127.0.0.1:4140,[::1]:4140 in a pod, loopback only, since
    /// iptables redirects the pod's own connections there and nothing else may reach it.
    #[arg(long, env = "STRAIT_OUTBOUND_ADDR", value_delimiter = ',')]
    pub outbound_addr: Vec<SocketAddr>,

    /// Inbound listener (mesh → app), one or more comma-separated addresses. Default:
    /// 127.0.0.1:4143 in local mode, 0.0.0.0:4143,[::]:4143 in a pod.
    #[arg(long, env = "STRAIT_INBOUND_ADDR", value_delimiter = ',')]
    pub inbound_addr: Vec<SocketAddr>,

    /// Admin listener, one or more comma-separated addresses. /live, /ready and /metrics
    /// answer anyone; /config, /status and /log-level answer loopback callers only. Default: 127.0.0.1:4191 in local mode, 0.0.0.0:4191,[::]:4191 in a pod.
    #[arg(long, env = "STRAIT_ADMIN_ADDR", value_delimiter = ',')]
    pub admin_addr: Vec<SocketAddr>,

    /// Static routing table: a discovery snapshot in the protobuf JSON mapping. Used when no
    /// control plane is configured; re-read when the file changes.
    #[arg(long, env = "STRAIT_SNAPSHOT", conflicts_with = "control_plane")]
    pub snapshot: Option<PathBuf>,

    /// Control plane address (`host:port`). With it the proxy obtains its identity and its
    /// routing from the control plane, and every hop between proxies is mTLS.
    #[arg(long, env = "STRAIT_CONTROL_PLANE", requires_all = ["anchors", "namespace", "workload", "token_file"])]
    pub control_plane: Option<String>,

    /// Identity the control plane must prove. Default:
    /// spiffe://<trust-domain>/ns/strait-system/sa/strait-control-plane.
    #[arg(long, env = "STRAIT_CONTROL_PLANE_IDENTITY")]
    pub control_plane_identity: Option<String>,

    /// The mesh's trust domain.
    #[arg(long, env = "STRAIT_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,

    /// Trust anchors (PEM file) to verify the control plane with before the first certificate.
    #[arg(long, env = "STRAIT_TRUST_ANCHORS", group = "anchors")]
    pub trust_anchors: Option<PathBuf>,

    /// The trust anchors themselves (PEM text), instead of --trust-anchors: how the injector
    /// hands them to a pod's proxy without a file.
    #[arg(
        long,
        env = "STRAIT_TRUST_ANCHORS_PEM",
        group = "anchors",
        hide_env_values = true
    )]
    pub trust_anchors_pem: Option<String>,

    /// Namespace of this workload.
    #[arg(long, env = "STRAIT_NAMESPACE")]
    pub namespace: Option<String>,

    /// Service account of this workload, which names its identity.
    #[arg(long, env = "STRAIT_SERVICE_ACCOUNT", default_value = "default")]
    pub service_account: String,

    /// Workload (pod) name, as the control plane knows it.
    #[arg(long, env = "STRAIT_WORKLOAD")]
    pub workload: Option<String>,

    /// File holding the bootstrap token (a projected service-account token on Kubernetes);
    /// re-read before every certificate request.
    #[arg(long, env = "STRAIT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Inbound mode for ports the control plane says nothing about.
    #[arg(
        long,
        env = "STRAIT_INBOUND_MODE",
        value_enum,
        default_value = defaults::INBOUND_MODE
    )]
    pub inbound_mode: InboundMode,

    /// Address the inbound proxy forwards to. Default: the address each connection was meant
    /// for (the pod's own address, or 127.0.0.1 in local mode), so apps listening only on
    /// loopback are not reachable from the mesh in a pod. The port comes from the connection.
    #[arg(long, env = "STRAIT_INBOUND_TARGET_IP")]
    pub inbound_target_ip: Option<IpAddr>,

    /// How long protocol detection waits for the client's first bytes before treating the
    /// connection as opaque TCP.
    #[arg(long, env = "STRAIT_DETECT_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub detect_timeout: Duration,

    /// Destination ports read as opaque TCP without detection when the control plane declares
    /// no protocol for them: protocols where the server speaks first (SMTP 25 and 587, MySQL
    /// 3306, Galera 4444) would otherwise stall for `--detect-timeout` at each proxy, and
    /// common binary protocols (PostgreSQL 5432, Redis 6379, Elasticsearch transport 9300,
    /// memcached 11211) gain nothing from detection. A Service's `appProtocol` overrides it.
    #[arg(
        long,
        env = "STRAIT_OPAQUE_PORTS",
        value_delimiter = ',',
        default_value = defaults::OPAQUE_PORTS
    )]
    pub opaque_ports: Vec<u16>,

    /// Most bytes protocol detection reads before deciding.
    #[arg(long, env = "STRAIT_DETECT_MAX_BYTES", default_value_t = 8192)]
    pub detect_max_bytes: usize,

    /// An HTTP/1 client must send a complete request head within this time of its first byte.
    #[arg(long, env = "STRAIT_HEADER_READ_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    pub header_read_timeout: Duration,

    /// Client HTTP connections with no request in progress this long are closed (HTTP/2 with
    /// GOAWAY). Keep it above the clients' pool idle timeouts (the proxy's own is 30s).
    #[arg(long, env = "STRAIT_HTTP_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "5m")]
    pub http_idle_timeout: Duration,

    /// Longest request line (method, target, version) accepted, in bytes; longer gets 414.
    #[arg(long, env = "STRAIT_MAX_REQUEST_LINE_BYTES", default_value_t = 8192)]
    pub max_request_line_bytes: usize,

    /// Largest request or response head accepted, in bytes, start line included, HTTP/1 and
    /// HTTP/2 alike: a larger request head gets 431, a larger response head from an app or a
    /// peer proxy becomes 502 `response-head-too-large`.
    #[arg(long, env = "STRAIT_MAX_HEADER_BYTES", default_value_t = 65536)]
    pub max_header_bytes: usize,

    /// Most header fields accepted in one request or response head, HTTP/1 and HTTP/2 alike:
    /// more in a request gets 431, in a response 502 `response-head-too-large`.
    #[arg(long, env = "STRAIT_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,

    /// Most concurrent streams a client may open on one HTTP/2 connection.
    #[arg(long, env = "STRAIT_H2_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub h2_max_concurrent_streams: u32,

    /// HTTP/2 flow-control window of each client stream, in bytes: how much a client may send
    /// on one stream before the proxy has passed it on.
    #[arg(long, env = "STRAIT_H2_STREAM_WINDOW", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(65_535..=2_147_483_647))]
    pub h2_stream_window: u32,

    /// HTTP/2 flow-control window of each client connection, in bytes.
    #[arg(long, env = "STRAIT_H2_CONNECTION_WINDOW", default_value_t = 2 << 20, value_parser = clap::value_parser!(u32).range(65_535..=2_147_483_647))]
    pub h2_connection_window: u32,

    /// Timeout for establishing an upstream TCP connection, unless a backend policy says otherwise.
    #[arg(long, env = "STRAIT_CONNECT_TIMEOUT", value_parser = parse_duration, default_value = defaults::CONNECT_TIMEOUT)]
    pub connect_timeout: Duration,

    /// Request bodies up to this many bytes are kept so the request can be retried; larger
    /// ones are never retried once sent.
    #[arg(long, env = "STRAIT_RETRY_BUFFER_BYTES", default_value_t = defaults::RETRY_BUFFER_BYTES)]
    pub retry_buffer_bytes: usize,

    /// Pooled upstream HTTP connections idle this long are closed.
    #[arg(long, env = "STRAIT_POOL_IDLE_TIMEOUT", value_parser = parse_duration, default_value = defaults::POOL_IDLE_TIMEOUT)]
    pub pool_idle_timeout: Duration,

    /// Opaque TCP connections with no bytes in either direction this long are closed.
    #[arg(long, env = "STRAIT_TCP_IDLE_TIMEOUT", value_parser = parse_duration, default_value = defaults::TCP_IDLE_TIMEOUT)]
    pub tcp_idle_timeout: Duration,

    /// On SIGTERM/SIGINT, in-flight requests get this long to finish before the proxy exits.
    #[arg(long, env = "STRAIT_DRAIN_TIMEOUT", value_parser = parse_duration, default_value = "25s")]
    pub drain_timeout: Duration,

    /// Most client connections open at once per listener; further ones are closed at accept.
    /// Lowered to what the memory limit holds (see `--memory-limit`).
    #[arg(long, env = "STRAIT_MAX_CONNECTIONS", default_value_t = 20000)]
    pub max_connections: usize,

    /// The memory the proxy must stay within, e.g. `128Mi` (bytes, or a Kubernetes suffix).
    /// Unset: the container's cgroup limit (`memory.max`, or v1's `memory.limit_in_bytes`);
    /// with neither, no memory-derived caps. From it the proxy lowers `--max-connections`
    /// and the HTTP/2 windows to what fits, and refuses new connections while its resident
    /// memory is above 90 % of it (always admitting 16 per listener).
    #[arg(long, env = "STRAIT_MEMORY_LIMIT", value_parser = crate::memory::parse_size)]
    pub memory_limit: Option<u64>,

    /// OTLP/gRPC trace collector, e.g. `http://127.0.0.1:4317`. Unset: no tracing.
    #[arg(long, env = "STRAIT_TRACE_COLLECTOR")]
    pub trace_collector: Option<String>,

    /// Share of requests that start in the mesh (no incoming `traceparent`) to trace, 0 to 1.
    /// Requests that arrive with a `traceparent` follow its sampled flag.
    #[arg(long, env = "STRAIT_TRACE_SAMPLE_RATIO", default_value_t = 0.01)]
    pub trace_sample_ratio: f64,

    /// Finished spans waiting for export; past this, spans are dropped (and counted) rather
    /// than slow the data path.
    #[arg(long, env = "STRAIT_TRACE_QUEUE", default_value_t = 2048)]
    pub trace_queue: usize,

    /// Access log: `json` writes one JSON line per HTTP request to stdout when its response
    /// ends (fields in docs/operations.md); `off` costs nothing.
    #[arg(long, env = "STRAIT_ACCESS_LOG", value_enum, default_value = "off")]
    pub access_log: crate::telemetry::access_log::AccessLogFormat,

    /// Runtime worker threads; 0 = one per CPU core.
    #[arg(long, env = "STRAIT_THREADS", default_value_t = 0)]
    pub threads: usize,

    /// Log filter in `tracing` syntax, e.g. `info` or `strait_proxy=debug,info`.
    #[arg(long, env = "STRAIT_LOG", default_value = "info")]
    pub log: String,

    /// Log line format.
    #[arg(long, env = "STRAIT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Which of the proxy's listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// App → mesh.
    Outbound,
    /// Mesh → app.
    Inbound,
    /// Metrics, health, configuration.
    Admin,
}

impl Listener {
    /// The listener's name in logs and errors.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Outbound => "outbound",
            Listener::Inbound => "inbound",
            Listener::Admin => "admin",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Listener::Outbound => defaults::PROXY_OUTBOUND_PORT,
            Listener::Inbound => defaults::PROXY_INBOUND_PORT,
            Listener::Admin => defaults::PROXY_ADMIN_PORT,
        }
    }
}

/// A listener's default addresses in `mode`. In a pod, each listener has an IPv4 and an IPv6
/// address, so a dual-stack pod's IPv6 traffic meets the proxy as its IPv4 traffic does (the
/// IPv6 one is skipped where the pod has no IPv6); the outbound listener binds loopback only,
/// because iptables redirects only the pod's own connections to it, and a listener reachable
/// at the pod's address would let other pods send traffic out under this pod's identity.
pub fn default_addrs(mode: Mode, listener: Listener) -> Vec<SocketAddr> {
    let port = listener.default_port();
    let ips: &[IpAddr] = match (mode, listener) {
        (Mode::Local, _) => &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        (Mode::Pod, Listener::Outbound) => &[
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
        (Mode::Pod, Listener::Inbound | Listener::Admin) => &[
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ],
    };
    ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}

impl ProxyFlags {
    /// The addresses `listener` binds: the flag's, else the mode's defaults.
    pub fn listen_addrs(&self, listener: Listener) -> Vec<SocketAddr> {
        let given = match listener {
            Listener::Outbound => &self.outbound_addr,
            Listener::Inbound => &self.inbound_addr,
            Listener::Admin => &self.admin_addr,
        };
        if given.is_empty() {
            default_addrs(self.mode, listener)
        } else {
            given.clone()
        }
    }

    /// The outbound listener's first address, defaulted by mode.
    pub fn outbound_addr(&self) -> SocketAddr {
        self.listen_addrs(Listener::Outbound)[0]
    }

    /// The inbound listener's first address, defaulted by mode.
    pub fn inbound_addr(&self) -> SocketAddr {
        self.listen_addrs(Listener::Inbound)[0]
    }

    /// The admin listener's first address, defaulted by mode.
    pub fn admin_addr(&self) -> SocketAddr {
        self.listen_addrs(Listener::Admin)[0]
    }
}

/// Parses a duration flag in Strait's one duration grammar ([`strait_proto::duration`]: the
/// Gateway API's, with decimals): `250ms`, `1.5s`, `1m30s`, `2h`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(strait_proxy::flags::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(strait_proxy::flags::parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(strait_proxy::flags::parse_duration("5").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    strait_proto::duration::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn in_a_pod_the_outbound_listener_is_on_loopback_of_both_families() {
        assert_eq!(
            default_addrs(Mode::Pod, Listener::Outbound),
            addrs(&["127.0.0.1:4140", "[::1]:4140"])
        );
    }

    #[test]
    fn in_a_pod_inbound_and_admin_listen_on_every_address_of_both_families() {
        assert_eq!(
            default_addrs(Mode::Pod, Listener::Inbound),
            addrs(&["0.0.0.0:4143", "[::]:4143"])
        );
        assert_eq!(
            default_addrs(Mode::Pod, Listener::Admin),
            addrs(&["0.0.0.0:4191", "[::]:4191"])
        );
    }

    #[test]
    fn local_mode_listens_on_ipv4_loopback_only() {
        for (listener, port) in [
            (Listener::Outbound, 4140),
            (Listener::Inbound, 4143),
            (Listener::Admin, 4191),
        ] {
            assert_eq!(
                default_addrs(Mode::Local, listener),
                [SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)]
            );
        }
    }

    #[test]
    fn durations_parse_with_every_unit() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_take_the_gateway_api_forms_yaml_takes() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn durations_without_a_known_unit_are_refused_with_the_input_named() {
        let err = parse_duration("10 parsecs").unwrap_err();
        assert!(err.contains("10 parsecs"), "{err}");
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
    }
}
