//! `ReferenceGrant` (`gateway.networking.k8s.io`): which routes of other namespaces may send to
//! a namespace's Services. Only the `Service` targets matter to the mesh; a grant for other
//! kinds (a Gateway's Secrets) is valid and simply never matches a route's backend.

use super::Ctx;
use super::scalars::valid_name;
use crate::config::error::Location;
use crate::config::model::*;
use crate::config::raw;

/// The Gateway API's group, which every route kind a grant names belongs to.
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Validates a ReferenceGrant.
pub(super) fn reference_grant(
    ctx: &mut Ctx,
    location: &Location,
    key: &ObjectKey,
    object: &raw::Object<raw::ReferenceGrantSpec>,
) -> Option<ReferenceGrant> {
    let errors_before = ctx.errors.0.len();
    if object.spec.from.is_empty() {
        ctx.err(
            location,
            "spec.from",
            "a ReferenceGrant needs at least one from entry",
        );
    }
    if object.spec.to.is_empty() {
        ctx.err(
            location,
            "spec.to",
            "a ReferenceGrant needs at least one to entry",
        );
    }
    let mut from = Vec::new();
    for (i, f) in object.spec.from.iter().enumerate() {
        if !valid_name(&f.namespace) {
            ctx.err(
                location,
                format!("spec.from[{i}].namespace"),
                format!("{:?} is not a valid namespace name", f.namespace),
            );
            continue;
        }
        from.push(GrantFrom {
            group: f.group.clone(),
            kind: f.kind.clone(),
            namespace: f.namespace.clone(),
        });
    }
    let mut to = Vec::new();
    for (i, t) in object.spec.to.iter().enumerate() {
        if let Some(name) = &t.name
            && !valid_name(name)
        {
            ctx.err(
                location,
                format!("spec.to[{i}].name"),
                format!("{name:?} is not a valid name"),
            );
            continue;
        }
        to.push(GrantTo {
            group: if t.group == "core" {
                String::new()
            } else {
                t.group.clone()
            },
            kind: t.kind.clone(),
            name: t.name.clone(),
        });
    }
    (ctx.errors.0.len() == errors_before).then(|| ReferenceGrant {
        key: key.clone(),
        from,
        to,
    })
}

/// Whether a grant in `service`'s namespace lets a `route_kind` of `route_namespace` refer to
/// `service` (the Gateway API's rule: a grant in the target's namespace, `from` naming the
/// route's group, kind and namespace, `to` naming the Service or every Service).
pub fn permits(
    grants: &[ReferenceGrant],
    route_kind: &str,
    route_namespace: &str,
    service: &ObjectKey,
) -> bool {
    grants
        .iter()
        .filter(|g| g.key.namespace == service.namespace)
        .any(|g| {
            g.from.iter().any(|f| {
                f.group == GATEWAY_GROUP && f.kind == route_kind && f.namespace == route_namespace
            }) && g.to.iter().any(|t| {
                t.group.is_empty()
                    && t.kind == "Service"
                    && t.name.as_deref().is_none_or(|n| n == service.name)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(ns: &str, kind: &str, from_ns: &str, name: Option<&str>) -> ReferenceGrant {
        ReferenceGrant {
            key: ObjectKey::new(ns, "g"),
            from: vec![GrantFrom {
                group: GATEWAY_GROUP.into(),
                kind: kind.into(),
                namespace: from_ns.into(),
            }],
            to: vec![GrantTo {
                group: String::new(),
                kind: "Service".into(),
                name: name.map(Into::into),
            }],
        }
    }

    #[test]
    fn a_grant_permits_only_its_route_kind_namespace_and_service() {
        let svc = ObjectKey::new("prod", "api");
        let grants = [grant("prod", "HTTPRoute", "web", Some("api"))];
        assert!(permits(&grants, "HTTPRoute", "web", &svc));
        assert!(!permits(&grants, "GRPCRoute", "web", &svc));
        assert!(!permits(&grants, "HTTPRoute", "other", &svc));
        assert!(!permits(
            &grants,
            "HTTPRoute",
            "web",
            &ObjectKey::new("prod", "db")
        ));
    }

    #[test]
    fn a_grant_counts_only_in_the_target_namespace() {
        let grants = [grant("web", "HTTPRoute", "web", None)];
        assert!(!permits(
            &grants,
            "HTTPRoute",
            "web",
            &ObjectKey::new("prod", "api")
        ));
    }

    #[test]
    fn a_grant_without_a_name_covers_every_service_of_its_namespace() {
        let grants = [grant("prod", "HTTPRoute", "web", None)];
        assert!(permits(
            &grants,
            "HTTPRoute",
            "web",
            &ObjectKey::new("prod", "db")
        ));
    }
}
