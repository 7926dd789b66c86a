//! Every default of the configuration model, in one place both binaries and the documentation
//! read: what the control plane fills in for an unset field is what the proxy uses when a
//! snapshot leaves it unset, and what docs/configuration.md says ([`reference`] renders its
//! "Defaults at a glance" table; a test fails when the document drifts). They once drifted:
//! the control plane filled a 5 s / 300 s ejection where the proxy and the documentation said
//! 1 s / 60 s.
//!
//! Defaults that are command-line flags' defaults are written as the flag's text (they are
//! what `--help` shows and what [`crate::duration::parse`] reads); the rest as typed values.
//! Enumerations need no constant: the proto's zero value is the default, so an unset field
//! means it (`InboundMode::Permissive`, `LoadBalancer::P2cPeakEwma`,
//! `DefaultAuthorization::AllowAll`, `Protocol::Detect`); a test below pins that.

pub mod reference;

use std::time::Duration;

// ---- BackendPolicy ---------------------------------------------------------------------------

/// Circuit breaker: consecutive failures that eject an endpoint.
pub const BREAKER_CONSECUTIVE_FAILURES: u32 = 7;
/// Circuit breaker: the first ejection's length (doubling with each ejection in a row).
pub const BREAKER_BASE_EJECTION: Duration = Duration::from_secs(1);
/// Circuit breaker: the longest ejection.
pub const BREAKER_MAX_EJECTION: Duration = Duration::from_secs(60);
/// Circuit breaker: most endpoints of a backend ejected at once, in percent.
pub const BREAKER_MAX_EJECTED_PERCENT: u32 = 50;

/// Retry budget: retries may add this percentage of recent requests…
pub const RETRY_BUDGET_PERCENT: u32 = 20;
/// Retry budget: …plus this many per second…
pub const RETRY_BUDGET_MIN_PER_SECOND: u32 = 10;
/// Retry budget: …over this window.
pub const RETRY_BUDGET_INTERVAL: Duration = Duration::from_secs(10);

/// The retry budget's share of recent requests, as the ratio the proxy computes with.
pub fn retry_budget_ratio() -> f64 {
    f64::from(RETRY_BUDGET_PERCENT) / 100.0
}

/// Retry backoff base (full jitter), unless a route sets its own.
pub const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Retry backoff cap.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Requests in flight to one backend beyond which new ones fail fast.
pub const MAX_PENDING_REQUESTS: u32 = 10_000;

// ---- HTTPRoute / GRPCRoute -------------------------------------------------------------------

/// Retries of a rule whose `retry` field sets no `attempts` (the Gateway API leaves the
/// default to implementations; one retry is the common, safe choice).
pub const ROUTE_RETRY_ATTEMPTS: u32 = 1;
/// A `backendRef`'s weight when it sets none (the Gateway API's default).
pub const BACKEND_WEIGHT: i64 = 1;

// ---- Workload and proxy listeners ------------------------------------------------------------

/// The proxy's outbound listener port.
pub const PROXY_OUTBOUND_PORT: u16 = 4140;
/// The proxy's inbound listener port: where meshed endpoints are reached unless a Workload
/// (`spec.proxy.inboundPort`) or a pod annotation says otherwise.
pub const PROXY_INBOUND_PORT: u16 = 4143;
/// The proxy's admin listener port.
pub const PROXY_ADMIN_PORT: u16 = 4191;
/// The control plane's admin port (`--admin-addr`, the chart's `admin` container port), where
/// `strait check` reads `/proxies`.
pub const CONTROL_PLANE_ADMIN_PORT: u16 = 9990;

// ---- Proxy flags (a BackendPolicy overrides the first two per backend) -----------------------

/// `--connect-timeout`: establishing an upstream connection (TCP and mTLS).
pub const CONNECT_TIMEOUT: &str = "1s";
/// `--pool-idle-timeout`: pooled upstream connections idle this long are closed.
pub const POOL_IDLE_TIMEOUT: &str = "30s";
/// `--tcp-idle-timeout`: opaque TCP connections idle this long are closed.
pub const TCP_IDLE_TIMEOUT: &str = "1h";
/// `--retry-buffer-bytes`: request bodies up to this size are kept for a retry.
pub const RETRY_BUFFER_BYTES: usize = 64 * 1024;
/// Most mirrored requests (`RequestMirror`) one proxy has in flight; beyond it a copy is not
/// sent, so a mirror target that hangs holds at most this many tasks.
pub const MIRROR_MAX_IN_FLIGHT: usize = 64;
/// A mirrored request is abandoned after this long.
pub const MIRROR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// `--inbound-mode`: for ports the control plane says nothing about (as `MeshConfig`'s
/// `inboundMode`, whose unset value is the proto's zero, `Permissive`).
pub const INBOUND_MODE: &str = "permissive";
/// `--opaque-ports` (and the chart's `proxy.opaquePorts`): destination ports relayed as opaque
/// TCP without protocol detection when the control plane declares no protocol. Linkerd's list:
/// servers that speak first (SMTP 25 and 587, MySQL 3306, Galera 4444, PostgreSQL 5432, Redis
/// 6379, Elasticsearch transport 9300) would stall each client for the detection timeout, and
/// memcached's (11211) clients send nothing detection can read.
pub const OPAQUE_PORTS: &str = "25,587,3306,4444,5432,6379,9300,11211";

// ---- Control plane flags ---------------------------------------------------------------------

/// `--cert-ttl`: lifetime of the workload certificates the control plane issues.
pub const CERT_TTL: &str = "24h";

// Ranges the defaults must respect, checked when compiling.
const _: () = assert!(BREAKER_BASE_EJECTION.as_nanos() <= BREAKER_MAX_EJECTION.as_nanos());
const _: () = assert!(RETRY_BACKOFF_BASE.as_nanos() <= RETRY_BACKOFF_MAX.as_nanos());
const _: () = assert!(BREAKER_MAX_EJECTED_PERCENT <= 100);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::v1 as pb;

    #[test]
    fn flag_defaults_are_valid_durations() {
        for text in [
            CONNECT_TIMEOUT,
            POOL_IDLE_TIMEOUT,
            TCP_IDLE_TIMEOUT,
            CERT_TTL,
        ] {
            assert!(crate::duration::parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn the_opaque_ports_default_is_a_list_of_ports() {
        let ports: Vec<u16> = OPAQUE_PORTS
            .split(',')
            .map(|p| p.parse().expect("a port"))
            .collect();
        assert!(
            ports.iter().all(|p| *p > 0) && ports.contains(&5432),
            "{ports:?}"
        );
    }

    #[test]
    fn unset_enumerations_mean_the_documented_defaults() {
        assert_eq!(pb::InboundMode::default(), pb::InboundMode::Permissive);
        assert_eq!(pb::LoadBalancer::default(), pb::LoadBalancer::P2cPeakEwma);
        assert_eq!(
            pb::DefaultAuthorization::default(),
            pb::DefaultAuthorization::AllowAll
        );
        assert_eq!(pb::Protocol::default(), pb::Protocol::Detect);
    }
}
