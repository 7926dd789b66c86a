//! Identities `Identity.Certify` never issues to a workload, whoever vouches for its token.
//!
//! Proxies trust the control plane by its identity: they send it their tokens and accept its
//! snapshots and trust anchors. A workload certificate for that identity would let its holder
//! stand in for the control plane, so the control plane's own identity is reserved, and with
//! it every identity in the control plane's namespace: nothing there is meshed (the chart's
//! injector skips that namespace), and a second control-plane component, or a service account
//! renamed by a later install, must not become a workload identity either.

use strait_identity::SpiffeId;

/// The identities reserved for the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedIdentities {
    control_plane: SpiffeId,
}

impl ReservedIdentities {
    /// The identities reserved by a control plane running as `control_plane`.
    pub fn new(control_plane: SpiffeId) -> Self {
        Self { control_plane }
    }

    /// Why `identity` may not be issued to a workload, or `None` when it may.
    pub fn refusal(&self, identity: &SpiffeId) -> Option<String> {
        if *identity == self.control_plane {
            return Some(format!(
                "identity {identity} is reserved for the control plane: it is the control \
                 plane's own, which proxies trust for their snapshots and trust anchors"
            ));
        }
        if identity.namespace() == self.control_plane.namespace() {
            return Some(format!(
                "identity {identity} is reserved for the control plane: every identity in \
                 namespace {} (the control plane's, {}) is; run meshed workloads in another \
                 namespace",
                identity.namespace(),
                self.control_plane
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> SpiffeId {
        text.parse().unwrap()
    }

    fn reserved() -> ReservedIdentities {
        ReservedIdentities::new(id(
            "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane",
        ))
    }

    #[test]
    fn the_control_planes_own_identity_is_reserved() {
        let reason = reserved()
            .refusal(&id(
                "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane",
            ))
            .unwrap();
        assert!(
            reason.contains("reserved for the control plane"),
            "{reason}"
        );
        assert!(reason.contains("the control plane's own"), "{reason}");
    }

    #[test]
    fn every_identity_in_the_control_planes_namespace_is_reserved() {
        let reason = reserved()
            .refusal(&id("spiffe://cluster.local/ns/strait-system/sa/default"))
            .unwrap();
        assert!(
            reason.contains("spiffe://cluster.local/ns/strait-system/sa/default")
                && reason.contains("namespace strait-system"),
            "{reason}"
        );
    }

    #[test]
    fn workloads_elsewhere_are_not_reserved_even_with_the_same_service_account_name() {
        for other in [
            "spiffe://cluster.local/ns/demo/sa/web",
            "spiffe://cluster.local/ns/evil/sa/strait-control-plane",
            "spiffe://cluster.local/ns/strait-system-2/sa/strait-control-plane",
        ] {
            assert_eq!(reserved().refusal(&id(other)), None, "{other}");
        }
    }

    #[test]
    fn what_is_reserved_follows_the_control_planes_settings() {
        let reserved = ReservedIdentities::new(id("spiffe://mesh.example/ns/mesh-control/sa/cp"));
        assert!(
            reserved
                .refusal(&id("spiffe://mesh.example/ns/mesh-control/sa/cp"))
                .is_some()
        );
        assert!(
            reserved
                .refusal(&id("spiffe://mesh.example/ns/mesh-control/sa/other"))
                .is_some()
        );
        assert_eq!(
            reserved.refusal(&id(
                "spiffe://mesh.example/ns/strait-system/sa/strait-control-plane"
            )),
            None
        );
    }
}
