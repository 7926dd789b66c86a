//! Every Kubernetes API permission the control plane uses, declared once: the watchers and the
//! token check use these resources, and the Helm chart's ClusterRole grants exactly this set
//! (the chart test compares the rendered role with [`RBAC`]).

/// One permission: `verbs` on `resource` in API group `group` (`""` is the core group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    /// API group; `""` for the core group.
    pub group: &'static str,
    /// Plural resource name.
    pub resource: &'static str,
    /// The verbs used on it.
    pub verbs: &'static [&'static str],
}

const WATCH: &[&str] = &["get", "list", "watch"];

/// What the control plane does with the Kubernetes API, and nothing more.
pub const RBAC: &[Permission] = &[
    // Watched into the configuration model.
    Permission {
        group: "",
        resource: "services",
        verbs: WATCH,
    },
    Permission {
        group: "",
        resource: "pods",
        verbs: WATCH,
    },
    Permission {
        group: "discovery.k8s.io",
        resource: "endpointslices",
        verbs: WATCH,
    },
    Permission {
        group: "gateway.networking.k8s.io",
        resource: "httproutes",
        verbs: WATCH,
    },
    Permission {
        group: "gateway.networking.k8s.io",
        resource: "grpcroutes",
        verbs: WATCH,
    },
    Permission {
        group: "gateway.networking.k8s.io",
        resource: "referencegrants",
        verbs: WATCH,
    },
    Permission {
        group: "strait.dev",
        resource: "backendpolicies",
        verbs: WATCH,
    },
    Permission {
        group: "strait.dev",
        resource: "authorizationpolicies",
        verbs: WATCH,
    },
    Permission {
        group: "strait.dev",
        resource: "meshconfigs",
        verbs: WATCH,
    },
    // Route status (`status.parents[]`) is written through the `status` subresource with a
    // merge patch (`kubernetes::status_writer`); nothing else of a route is written.
    Permission {
        group: "gateway.networking.k8s.io",
        resource: "httproutes/status",
        verbs: &["patch"],
    },
    Permission {
        group: "gateway.networking.k8s.io",
        resource: "grpcroutes/status",
        verbs: &["patch"],
    },
    // Bootstrap tokens of `Identity.Certify` are checked with TokenReview.
    Permission {
        group: "authentication.k8s.io",
        resource: "tokenreviews",
        verbs: &["create"],
    },
    // Invalid objects are reported as Events on them, and hostNetwork pods the injector skips
    // as Events on their workload or themselves (kube-runtime's recorder writes the
    // events.k8s.io kind: create, and patch for a series).
    Permission {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
    },
];

/// With `--ca-secret` (the chart's generated CA), in the control plane's own namespace only (a
/// Role, not the ClusterRole): `get` of that one Secret by name, and `create`, which Kubernetes
/// cannot restrict by name because the name is not known when create is authorized; the code
/// creates only the one Secret ([`crate::kubernetes::ca_secret`]).
pub const CA_SECRET: &[Permission] = &[
    Permission {
        group: "",
        resource: "secrets",
        verbs: &["get"],
    },
    Permission {
        group: "",
        resource: "secrets",
        verbs: &["create"],
    },
];

/// With `--injector-webhook` (the chart's default), in the ClusterRole restricted by
/// `resourceNames` to that one MutatingWebhookConfiguration: read it and patch its webhooks'
/// `caBundle` ([`crate::kubernetes::webhook_ca_bundle`]). Webhook configurations are
/// cluster-scoped, so no tenant can write one; the grant names the one object the control
/// plane keeps.
pub const INJECTOR_WEBHOOK: &[Permission] = &[Permission {
    group: "admissionregistration.k8s.io",
    resource: "mutatingwebhookconfigurations",
    verbs: &["get", "patch"],
}];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::kinds::Kind;

    #[test]
    fn every_watched_kind_is_granted_get_list_and_watch() {
        for kind in Kind::ALL {
            let (group, _, _, plural) = kind.gvk();
            assert!(
                RBAC.iter()
                    .any(|p| p.group == group && p.resource == plural && p.verbs == WATCH),
                "{plural}.{group} is watched but not granted"
            );
        }
        let watched = RBAC.iter().filter(|p| p.verbs == WATCH).count();
        assert_eq!(watched, Kind::ALL.len(), "a granted watch no kind uses");
    }

    #[test]
    fn route_status_is_granted_patch_of_the_status_subresource_only() {
        for kind in [Kind::HttpRoute, Kind::GrpcRoute] {
            let (group, _, _, plural) = kind.gvk();
            let status = format!("{plural}/status");
            let grants: Vec<&Permission> = RBAC
                .iter()
                .filter(|p| p.group == group && p.resource == status)
                .collect();
            assert_eq!(grants.len(), 1, "{status}");
            assert_eq!(grants[0].verbs, ["patch"]);
            assert!(
                RBAC.iter()
                    .filter(|p| p.resource == plural)
                    .all(|p| p.verbs == WATCH),
                "the route itself is only read"
            );
        }
    }
}
