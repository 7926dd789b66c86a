//! The runtime state the inbound and outbound paths share: the data-path [`Settings`] derived
//! once from the configuration, and [`Shared`], which adds the routing table in force, the
//! connector, connection metrics, the drain signal and the tracer.
//!
//! `run` builds one [`Shared`] and hands it to both directions; it lives here, not in
//! `run`, so the directions depend on the state they read and not on the wiring that starts
//! them.

use std::net::IpAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::connect::Connector;
use crate::flags::InboundMode;
use crate::http::server::ServerLimits;
use crate::table::TableHandle;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::tcp::TcpMetrics;
use crate::telemetry::trace::Tracer;

/// Data-path settings, derived once from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Client-side protocol limits.
    pub limits: ServerLimits,
    /// Protocol detection's byte limit.
    pub detect_max_bytes: usize,
    /// Ports read as opaque TCP, without detection, unless the snapshot declares a protocol.
    pub opaque_ports: Vec<u16>,
    /// Protocol detection's (and the transport header's) time limit.
    pub detect_timeout: Duration,
    /// Opaque and upgraded connections idle this long are closed.
    pub tcp_idle_timeout: Duration,
    /// Pooled upstream connections idle this long are closed.
    pub pool_idle_timeout: Duration,
    /// Where inbound traffic is delivered; `None`: the address each connection was meant for.
    pub inbound_target_ip: Option<IpAddr>,
    /// The inbound mode of ports the snapshot says nothing about (and before the first one).
    pub default_inbound_mode: InboundMode,
    /// Request bodies up to this size can be replayed for a retry.
    pub retry_buffer: usize,
    /// The mesh's trust domain, which `namespace` authorization principals refer to.
    pub trust_domain: String,
}

/// State both directions share.
pub struct Shared {
    /// Data-path settings.
    pub settings: Settings,
    /// The routing table in force.
    pub table: TableHandle,
    /// Opens upstream connections.
    pub connector: Connector,
    /// Connection metrics.
    pub tcp_metrics: TcpMetrics,
    /// Fires when connections should finish their in-flight work and close.
    pub drain: CancellationToken,
    /// Starts request spans.
    pub tracer: Tracer,
    /// The access log (off unless `--access-log` asks for it).
    pub access_log: AccessLog,
}
