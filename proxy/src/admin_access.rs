//! Who may call which admin endpoint: the pure decision the admin server applies to every
//! request before it reads any state.
//!
//! The admin port listens on the pod network so the kubelet can probe it and Prometheus can
//! scrape it; those three endpoints are open. Everything else (`/config`, `/status`,
//! `/log-level`, and any path added later) either reveals the mesh (services, endpoints,
//! identities, policies) or changes the proxy, so it answers only callers on the loopback
//! interface: the pod itself, or `kubectl port-forward`, which connects from inside the pod.
//! Linkerd's proxy serves its environment dump the same way.

use std::net::IpAddr;

/// Who may call an admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Anyone who can reach the port (kubelet probes, Prometheus).
    Anyone,
    /// Only callers on the loopback interface.
    Loopback,
}

/// The endpoints open to the pod network; every other path is loopback-only.
pub const OPEN_PATHS: [&str; 3] = ["/live", "/ready", "/metrics"];

/// Who may call `path`. Unknown paths are loopback-only, so a new endpoint is private until
/// someone decides otherwise.
pub fn audience(path: &str) -> Audience {
    if OPEN_PATHS.contains(&path) {
        Audience::Anyone
    } else {
        Audience::Loopback
    }
}

/// Whether `peer` is on the loopback interface. An IPv4-mapped loopback address (a dual-stack
/// listener's view of `127.0.0.1`) counts; a mapped non-loopback address does not.
pub fn is_loopback(peer: IpAddr) -> bool {
    peer.to_canonical().is_loopback()
}

/// Why `peer` may not call `path`, or `None` when it may. The reason is the 403's body.
pub fn refusal(path: &str, peer: IpAddr) -> Option<String> {
    match audience(path) {
        Audience::Anyone => None,
        Audience::Loopback if is_loopback(peer) => None,
        Audience::Loopback => Some(format!(
            "{path} is served only to callers on the loopback interface, not to {}: it reveals \
             the mesh's services, endpoints, identities and policies, or changes the proxy. \
             Reach it from inside the pod, or with `kubectl port-forward`; only {} are open to \
             the network\n",
            peer.to_canonical(),
            OPEN_PATHS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn probes_and_metrics_are_open_to_the_pod_network() {
        for path in OPEN_PATHS {
            assert_eq!(refusal(path, ip("10.1.2.3")), None, "{path}");
            assert_eq!(refusal(path, ip("fd00::7")), None, "{path}");
        }
    }

    #[test]
    fn state_revealing_endpoints_refuse_non_loopback_callers_saying_why() {
        for path in [
            "/config",
            "/status",
            "/log-level",
            "/anything-new",
            "/config/",
        ] {
            let reason = refusal(path, ip("10.1.2.3")).expect(path);
            assert!(
                reason.contains(path) && reason.contains("10.1.2.3"),
                "{reason}"
            );
            assert!(reason.contains("loopback"), "{reason}");
        }
    }

    #[test]
    fn loopback_callers_reach_everything_also_through_a_dual_stack_listener() {
        for peer in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(refusal("/config", ip(peer)), None, "{peer}");
        }
    }

    #[test]
    fn a_mapped_pod_address_is_not_loopback() {
        let reason = refusal("/status", ip("::ffff:10.1.2.3")).unwrap();
        assert!(reason.contains("not to 10.1.2.3"), "{reason}");
        assert!(!is_loopback(ip("::ffff:10.1.2.3")));
        assert!(!is_loopback(ip("0.0.0.0")));
    }
}
