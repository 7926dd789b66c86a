//! `AuthorizationPolicy`: who may call a Service, a port of it, or some of its routes.

use std::collections::BTreeMap;

use strait_identity::SpiffeId;

use super::Ctx;
use super::matches::http_match;
use super::policy_target::target;
use super::scalars::valid_name;
use crate::config::load::Loaded;
use crate::config::model::*;
use crate::config::raw::{self, Object};

pub(super) fn authorization_policy(
    ctx: &mut Ctx,
    item: &Loaded,
    key: &ObjectKey,
    object: &Object<raw::AuthorizationPolicySpec>,
    services: &BTreeMap<ObjectKey, Service>,
    mesh: &MeshSettings,
) -> Option<AuthorizationPolicy> {
    let location = &item.location;
    let spec = &object.spec;
    let errors_before = ctx.errors.0.len();
    let target = target(ctx, location, &key.namespace, &spec.target_ref, services);
    let routes: Vec<RouteMatch> = spec
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, m)| http_match(ctx, location, &format!("spec.routes[{i}]"), m))
        .collect();
    if spec.from.is_empty() {
        ctx.err(location, "spec.from", "list at least one principal; to deny everyone, use MeshConfig defaultAuthorization: Deny");
    }
    let mut principals = Vec::new();
    for (i, p) in spec.from.iter().enumerate() {
        let field = format!("spec.from[{i}]");
        let set = [
            p.identity.is_some(),
            p.namespace.is_some(),
            p.trust_domain.is_some(),
            p.authenticated.is_some(),
            p.unauthenticated.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            ctx.err(
                location,
                &field,
                "set exactly one of identity, namespace, trustDomain, authenticated, unauthenticated",
            );
            continue;
        }
        if let Some(identity) = &p.identity {
            match identity.parse::<SpiffeId>() {
                Ok(id) if id.trust_domain() == mesh.trust_domain => {
                    principals.push(Principal::Identity(id))
                }
                Ok(id) => ctx.err(
                    location,
                    format!("{field}.identity"),
                    format!(
                        "{id} is outside the mesh's trust domain {}",
                        mesh.trust_domain
                    ),
                ),
                Err(e) => ctx.err(location, format!("{field}.identity"), e.to_string()),
            }
        } else if let Some(ns) = &p.namespace {
            if valid_name(ns) {
                principals.push(Principal::Namespace(ns.clone()));
            } else {
                ctx.err(
                    location,
                    format!("{field}.namespace"),
                    format!("{ns:?} is not a valid namespace name"),
                );
            }
        } else if let Some(td) = &p.trust_domain {
            if SpiffeId::new(td, "a", "b").is_ok() {
                principals.push(Principal::TrustDomain(td.clone()));
            } else {
                ctx.err(
                    location,
                    format!("{field}.trustDomain"),
                    format!("{td:?} is not a valid trust domain"),
                );
            }
        } else if p.authenticated == Some(true) {
            principals.push(Principal::Authenticated);
        } else if p.unauthenticated == Some(true) {
            principals.push(Principal::Unauthenticated);
        } else {
            ctx.err(
                location,
                &field,
                "authenticated and unauthenticated can only be set to true",
            );
        }
    }
    if ctx.errors.0.len() > errors_before {
        return None;
    }
    let (service, port) = target?;
    Some(AuthorizationPolicy {
        key: key.clone(),
        service,
        port,
        routes,
        principals,
    })
}
