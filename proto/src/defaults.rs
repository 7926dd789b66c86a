//! Defaults both sides of the API must agree on: what the control plane fills in for an unset
//! field is what the proxy uses when a snapshot leaves it unset. One home for each, so the two
//! cannot drift (they once did: the control plane filled a 5 s / 300 s ejection where the
//! proxy and the documentation said 1 s / 60 s).

use std::time::Duration;

/// Circuit breaker: consecutive failures that eject an endpoint.
pub const BREAKER_CONSECUTIVE_FAILURES: u32 = 7;
/// Circuit breaker: the first ejection's length (doubling with each ejection in a row).
pub const BREAKER_BASE_EJECTION: Duration = Duration::from_secs(1);
/// Circuit breaker: the longest ejection.
pub const BREAKER_MAX_EJECTION: Duration = Duration::from_secs(60);
/// Circuit breaker: most endpoints of a backend ejected at once, in percent.
pub const BREAKER_MAX_EJECTED_PERCENT: u32 = 50;

/// The proxy's outbound listener port.
pub const PROXY_OUTBOUND_PORT: u16 = 4140;
/// The proxy's inbound listener port: where meshed endpoints are reached unless a Workload
/// (`spec.proxy.inboundPort`) or a pod annotation says otherwise.
pub const PROXY_INBOUND_PORT: u16 = 4143;
/// The proxy's admin listener port.
pub const PROXY_ADMIN_PORT: u16 = 4191;
