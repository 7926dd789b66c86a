//! Which inbound connections reach the app, and how their bytes are read: pure decisions the
//! inbound proxy takes before it opens anything to the app.
//!
//! The caller is untrusted even when its certificate is valid: a compromised workload holds
//! a real identity and writes whatever transport header it likes. So:
//! - the proxy's own listeners are never a destination (a request sent back out through the
//!   outbound listener would leave under this workload's identity; the admin listener trusts
//!   local callers);
//! - a mesh connection reaches only a port the control plane names for this workload;
//! - the protocol the snapshot declares for a port wins over the one a caller claims, and a
//!   claim of "opaque" on a port that declares nothing is checked by detecting the bytes,
//!   because opaque bytes would carry a forged `strait-client-id` straight to an HTTP app
//!   (except on the default opaque ports, `--opaque-ports`, where detection would only stall
//!   server-speaks-first protocols);
//! - before its first snapshot a proxy that has a configuration source admits nothing: it
//!   knows neither its ports nor its policy yet (fail closed).

use crate::detect::Protocol;
use crate::table::AppPort;

/// The proxy's own listener ports, never forwarded to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnPorts {
    /// Inbound listener.
    pub inbound: u16,
    /// Outbound listener.
    pub outbound: u16,
    /// Admin listener.
    pub admin: u16,
}

impl OwnPorts {
    fn contains(self, port: u16) -> bool {
        port == self.inbound || port == self.outbound || port == self.admin
    }
}

/// What the proxy knows about an application port when a connection for it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortKnowledge {
    /// The proxy runs with neither a control plane nor a snapshot file (a bare development
    /// proxy): every port but its own is forwarded, read as claimed or detected.
    Unconfigured,
    /// The proxy has a configuration source but no snapshot yet.
    Awaiting,
    /// The snapshot in force describes the port.
    Snapshot(AppPort),
}

/// Why an inbound connection is refused before it reaches the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The destination is one of the proxy's own listeners.
    OwnListener,
    /// The control plane does not name the port as one of this workload's.
    NotAnAppPort,
    /// No snapshot has arrived yet.
    NoConfiguration,
    /// The caller's protocol contradicts the port's declared one.
    ProtocolMismatch,
}

impl Refusal {
    /// The stable name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::OwnListener => "proxy-port",
            Refusal::NotAnAppPort => "not-an-app-port",
            Refusal::NoConfiguration => "no-configuration",
            Refusal::ProtocolMismatch => "protocol-mismatch",
        }
    }
}

/// How the inbound reads an admitted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// As this protocol, without looking.
    As(Protocol),
    /// Detect from the first bytes, then check the result with [`after_detection`].
    Detect,
}

/// The decision for a mesh connection whose transport header names `port` and `claimed`;
/// `opaque_port` says `port` is one of the default opaque ports.
pub fn mesh_connection(
    port: u16,
    claimed: Protocol,
    own: OwnPorts,
    knowledge: PortKnowledge,
    opaque_port: bool,
) -> Result<Reading, Refusal> {
    if own.contains(port) {
        return Err(Refusal::OwnListener);
    }
    let declared = match knowledge {
        PortKnowledge::Awaiting => return Err(Refusal::NoConfiguration),
        PortKnowledge::Snapshot(AppPort::Unlisted) => return Err(Refusal::NotAnAppPort),
        PortKnowledge::Snapshot(AppPort::Listed { protocol }) => protocol,
        PortKnowledge::Unconfigured => None,
    };
    match (declared, claimed) {
        (Some(Protocol::Opaque), _) => Ok(Reading::As(Protocol::Opaque)),
        (Some(_), Protocol::Opaque) => Err(Refusal::ProtocolMismatch),
        (None, Protocol::Opaque) if opaque_port => Ok(Reading::As(Protocol::Opaque)),
        (_, Protocol::Opaque) => Ok(Reading::Detect),
        (_, http) => Ok(Reading::As(http)),
    }
}

/// The decision for a connection redirected to the inbound listener by iptables (a client
/// outside the mesh), addressed to `port`. Whether plaintext is allowed there is the inbound
/// mode's business, decided separately. `opaque_port` says `port` is one of the default
/// opaque ports.
pub fn redirected_connection(
    port: u16,
    own: OwnPorts,
    knowledge: PortKnowledge,
    opaque_port: bool,
) -> Result<Reading, Refusal> {
    if own.contains(port) {
        return Err(Refusal::OwnListener);
    }
    match knowledge {
        PortKnowledge::Awaiting => Err(Refusal::NoConfiguration),
        PortKnowledge::Snapshot(AppPort::Listed {
            protocol: Some(Protocol::Opaque),
        }) => Ok(Reading::As(Protocol::Opaque)),
        PortKnowledge::Snapshot(AppPort::Listed {
            protocol: Some(Protocol::Http1 | Protocol::Http2),
        }) => Ok(Reading::Detect),
        _ if opaque_port => Ok(Reading::As(Protocol::Opaque)),
        // A client outside the mesh may reach any port the pod serves, as it could without
        // the mesh; the inbound mode and authorization decide whether it is admitted.
        _ => Ok(Reading::Detect),
    }
}

/// The protocol to serve after detection found `detected` on a port that declares
/// `declared` (`None`: detect). A port declared HTTP is never relayed as opaque bytes.
pub fn after_detection(detected: Protocol, knowledge: PortKnowledge) -> Result<Protocol, Refusal> {
    let declared_http = matches!(
        knowledge,
        PortKnowledge::Snapshot(AppPort::Listed {
            protocol: Some(Protocol::Http1 | Protocol::Http2)
        })
    );
    if declared_http && detected == Protocol::Opaque {
        return Err(Refusal::ProtocolMismatch);
    }
    Ok(detected)
}

/// Why a request that takes over its connection is refused, if it is: an HTTP/1 upgrade to
/// the protocols in `upgrade`, or a CONNECT tunnel (`upgrade` is `None`). `h2c` is refused
/// everywhere (RFC 9113 deprecates it, and the HTTP/2 requests it would carry pass by
/// per-request authorization and header hygiene). On a port whose authorization covers only
/// some routes every request must be seen, so only WebSocket, which carries no HTTP requests,
/// may take over the connection there.
pub fn takeover_refusal(
    upgrade: Option<&http::HeaderValue>,
    port_has_route_rules: bool,
) -> Option<&'static str> {
    const ROUTE_SCOPED: &str =
        "the port's authorization covers single routes, so only WebSocket upgrades are allowed";
    let Some(upgrade) = upgrade else {
        return port_has_route_rules.then_some(ROUTE_SCOPED);
    };
    let tokens = || {
        upgrade
            .as_bytes()
            .split(|b| *b == b',')
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
    };
    let is = |token: &[u8], name: &[u8]| {
        // A token may carry a version (`websocket/13`); the protocol name decides.
        let name_part = token.split(|b| *b == b'/').next().unwrap_or(token);
        name_part.eq_ignore_ascii_case(name)
    };
    if tokens().any(|t| is(t, b"h2c")) {
        return Some("upgrading to h2c is not supported through the mesh");
    }
    if port_has_route_rules && !tokens().all(|t| is(t, b"websocket")) {
        return Some(ROUTE_SCOPED);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: OwnPorts = OwnPorts {
        inbound: 4143,
        outbound: 4140,
        admin: 4191,
    };

    fn listed(protocol: Option<Protocol>) -> PortKnowledge {
        PortKnowledge::Snapshot(AppPort::Listed { protocol })
    }

    #[test]
    fn the_proxys_own_listeners_are_never_a_destination() {
        for port in [4140, 4143, 4191] {
            for knowledge in [PortKnowledge::Unconfigured, listed(None)] {
                assert_eq!(
                    mesh_connection(port, Protocol::Http1, OWN, knowledge, false),
                    Err(Refusal::OwnListener)
                );
                assert_eq!(
                    redirected_connection(port, OWN, knowledge, false),
                    Err(Refusal::OwnListener)
                );
            }
        }
    }

    #[test]
    fn mesh_connections_reach_only_ports_the_control_plane_names() {
        assert_eq!(
            mesh_connection(
                8080,
                Protocol::Http1,
                OWN,
                PortKnowledge::Snapshot(AppPort::Unlisted),
                false
            ),
            Err(Refusal::NotAnAppPort)
        );
        assert_eq!(
            mesh_connection(8080, Protocol::Http1, OWN, listed(None), false),
            Ok(Reading::As(Protocol::Http1))
        );
    }

    #[test]
    fn nothing_is_admitted_before_the_first_snapshot() {
        assert_eq!(
            mesh_connection(8080, Protocol::Http1, OWN, PortKnowledge::Awaiting, false),
            Err(Refusal::NoConfiguration)
        );
        assert_eq!(
            redirected_connection(8080, OWN, PortKnowledge::Awaiting, false),
            Err(Refusal::NoConfiguration)
        );
    }

    #[test]
    fn a_caller_cannot_turn_a_declared_http_port_into_an_opaque_one() {
        for declared in [Protocol::Http1, Protocol::Http2] {
            assert_eq!(
                mesh_connection(80, Protocol::Opaque, OWN, listed(Some(declared)), false),
                Err(Refusal::ProtocolMismatch)
            );
            assert_eq!(
                after_detection(Protocol::Opaque, listed(Some(declared))),
                Err(Refusal::ProtocolMismatch)
            );
        }
    }

    #[test]
    fn an_opaque_claim_on_an_undeclared_port_is_checked_by_detection() {
        for knowledge in [listed(None), PortKnowledge::Unconfigured] {
            assert_eq!(
                mesh_connection(80, Protocol::Opaque, OWN, knowledge, false),
                Ok(Reading::Detect)
            );
            assert_eq!(
                after_detection(Protocol::Http1, knowledge),
                Ok(Protocol::Http1)
            );
        }
    }

    #[test]
    fn a_port_declared_opaque_is_relayed_whatever_the_caller_claims() {
        for claimed in [Protocol::Http1, Protocol::Http2, Protocol::Opaque] {
            assert_eq!(
                mesh_connection(5432, claimed, OWN, listed(Some(Protocol::Opaque)), false),
                Ok(Reading::As(Protocol::Opaque))
            );
        }
        assert_eq!(
            redirected_connection(5432, OWN, listed(Some(Protocol::Opaque)), false),
            Ok(Reading::As(Protocol::Opaque))
        );
    }

    #[test]
    fn default_opaque_ports_skip_detection_unless_the_snapshot_declares_http() {
        for knowledge in [listed(None), PortKnowledge::Unconfigured] {
            assert_eq!(
                mesh_connection(3306, Protocol::Opaque, OWN, knowledge, true),
                Ok(Reading::As(Protocol::Opaque))
            );
            assert_eq!(
                redirected_connection(3306, OWN, knowledge, true),
                Ok(Reading::As(Protocol::Opaque))
            );
        }
        let http = listed(Some(Protocol::Http1));
        assert_eq!(
            mesh_connection(3306, Protocol::Opaque, OWN, http, true),
            Err(Refusal::ProtocolMismatch)
        );
        assert_eq!(
            redirected_connection(3306, OWN, http, true),
            Ok(Reading::Detect)
        );
    }

    #[test]
    fn h2c_upgrades_are_refused_and_route_scoped_ports_allow_only_websocket() {
        let value = |v: &'static str| http::HeaderValue::from_static(v);
        let refusal = |v: &'static str, route_rules| takeover_refusal(Some(&value(v)), route_rules);
        assert!(refusal("h2c", false).is_some());
        assert!(refusal("websocket, H2C", false).is_some());
        assert!(refusal("websocket", false).is_none());
        assert!(refusal("foo/2", false).is_none());
        assert!(refusal("websocket", true).is_none());
        assert!(refusal("WebSocket/13", true).is_none());
        assert!(refusal("foo", true).is_some());
        assert!(refusal("websocket, foo", true).is_some());
    }

    #[test]
    fn connect_tunnels_are_refused_only_on_route_scoped_ports() {
        assert!(takeover_refusal(None, false).is_none());
        assert!(takeover_refusal(None, true).is_some());
    }
}
