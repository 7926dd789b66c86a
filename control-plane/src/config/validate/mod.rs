//! Turns parsed documents into the validated [`Model`], collecting every error at once: names,
//! ranges, durations, references between objects, duplicates and overlapping routes.
//!
//! Pure: documents in, model or errors out. Whatever needs the disk (a Workload's token file)
//! was read when the documents were loaded ([`super::load`]).
//!
//! This module walks the documents in dependency order (mesh settings, workloads, slices,
//! services, routes, policies); each kind is checked in a module of its own, and what several
//! kinds share has its own module too: [`scalars`] (names, ports, durations), [`matches`]
//! (request matches), [`backend_refs`] (a route's parent and backend Services), [`route`] (what
//! HTTPRoute and GRPCRoute rules share), [`precedence`] (route order and overlaps) and
//! [`policy_target`] (a policy's target Service).

mod authorization;
mod backend_policy;
mod backend_refs;
mod filters;
mod grpcroute;
mod httproute;
mod matches;
mod mesh;
mod policy_target;
mod precedence;
mod reference_grant;
mod route;
mod scalars;
mod service;
mod workload;

use std::collections::{BTreeMap, HashMap};

use super::error::{ConfigErrors, Location};
use super::load::Loaded;
use super::model::*;
use super::raw::{self, Document};
use super::slices;

pub use route::{RETRY_ATTEMPTS_ANNOTATION, RETRY_GRPC_CODES_ANNOTATION, STICKY_HEADER_ANNOTATION};
/// Default inbound port of a workload's proxy ([`strait_proto::defaults::PROXY_INBOUND_PORT`]).
pub use strait_proto::defaults::PROXY_INBOUND_PORT as DEFAULT_PROXY_INBOUND_PORT;

/// The errors found so far; every check adds to it and goes on, so one pass reports all.
pub(super) struct Ctx {
    pub(super) errors: ConfigErrors,
    /// Rules refused alone (an unsupported or invalid filter); their routes stay in force.
    pub(super) refused_rules: ConfigErrors,
}

impl Ctx {
    pub(super) fn err(
        &mut self,
        location: &Location,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.errors.push(location, field, reason);
    }
}

/// The object key of a document, validating its name and namespace.
fn key_of(
    ctx: &mut Ctx,
    location: &Location,
    meta: &raw::ObjectMeta,
    namespaced: bool,
) -> Option<ObjectKey> {
    let Some(name) = &meta.name else {
        ctx.err(location, "metadata.name", "required field is missing");
        return None;
    };
    if !scalars::valid_name(name) {
        ctx.err(
            location,
            "metadata.name",
            format!("{name:?} is not a valid name (lower-case letters, digits, '-' and '.')"),
        );
        return None;
    }
    let namespace = if namespaced {
        meta.namespace.clone().unwrap_or_else(|| "default".into())
    } else {
        String::new()
    };
    if namespaced && !scalars::valid_name(&namespace) {
        ctx.err(
            location,
            "metadata.namespace",
            format!("{namespace:?} is not a valid namespace name"),
        );
        return None;
    }
    Some(ObjectKey::new(&namespace, name))
}

/// Builds the model from loaded documents. Errors in one object never hide errors in another.
pub fn build_model<'a>(
    loaded: impl IntoIterator<Item = &'a Loaded>,
) -> Result<Model, ConfigErrors> {
    let mut ctx = Ctx {
        errors: ConfigErrors::default(),
        refused_rules: ConfigErrors::default(),
    };
    let mut model = Model::default();
    let mut seen: HashMap<(&'static str, ObjectKey), Location> = HashMap::new();
    let mut keyed: Vec<(&Loaded, ObjectKey)> = Vec::new();

    for item in loaded {
        let kind = item.document.kind();
        let namespaced = !matches!(item.document, Document::MeshConfig(_));
        let Some(key) = key_of(
            &mut ctx,
            &item.location,
            item.document.metadata(),
            namespaced,
        ) else {
            continue;
        };
        if let Some(first) = seen.get(&(kind, key.clone())) {
            let first = format!(
                "{}{}",
                first.file.display(),
                first
                    .document
                    .map(|d| format!(" document {d}"))
                    .unwrap_or_default()
            );
            ctx.err(
                &item.location,
                "metadata.name",
                format!("duplicate {kind} {key}: first defined in {first}"),
            );
            continue;
        }
        seen.insert((kind, key.clone()), item.location.clone());
        keyed.push((item, key));
    }

    // Mesh settings first: the trust domain shapes every identity.
    let mesh_configs: Vec<_> = keyed
        .iter()
        .filter_map(|(item, _)| match &item.document {
            Document::MeshConfig(o) => Some((*item, o)),
            _ => None,
        })
        .collect();
    if let Some((item, object)) = mesh_configs.first() {
        model.mesh = mesh::mesh_settings(&mut ctx, &item.location, object);
    }
    for (item, _) in mesh_configs.iter().skip(1) {
        ctx.err(&item.location, "", "only one MeshConfig is allowed");
    }

    for (item, key) in &keyed {
        if let Document::Workload(object) = &item.document
            && let Some(workload) =
                workload::workload(&mut ctx, item, key, object, &model.mesh.trust_domain)
        {
            model.workloads.insert(key.clone(), workload);
        }
    }
    workload::check_workload_addresses(&mut ctx, &keyed, &model.workloads);

    let slice_documents: Vec<_> = keyed
        .iter()
        .filter_map(|(item, key)| match &item.document {
            Document::EndpointSlice(slice) => Some((&item.location, key, slice)),
            _ => None,
        })
        .collect();
    let slices = slices::index(&slice_documents, &model.workloads, &mut ctx.errors);

    let mut declared_ports = BTreeMap::new();
    for (item, key) in &keyed {
        if let Document::Service(object) = &item.document {
            declared_ports.insert(
                key.clone(),
                object.spec.ports.iter().map(|p| p.name.clone()).collect(),
            );
            if let Some(service) = service::service(
                &mut ctx,
                item,
                key,
                object,
                &model.workloads,
                &slices,
                &keyed,
            ) {
                model.services.insert(key.clone(), service);
            }
        }
    }
    slices.check_references(&declared_ports, &mut ctx.errors);

    for (item, key) in &keyed {
        if let Document::ReferenceGrant(object) = &item.document
            && let Some(grant) =
                reference_grant::reference_grant(&mut ctx, &item.location, key, object)
        {
            model.reference_grants.push(grant);
        }
    }

    let mut attached: precedence::Attached = BTreeMap::new();
    let referable = route::Referable {
        services: &model.services,
        grants: &model.reference_grants,
    };
    let mut route_status = BTreeMap::new();
    for (item, key) in &keyed {
        let status = match &item.document {
            Document::HttpRoute(object) => httproute::http_route(
                &mut ctx,
                &item.location,
                key,
                object,
                &referable,
                &mut attached,
            ),
            Document::GrpcRoute(object) => grpcroute::grpc_route(
                &mut ctx,
                &item.location,
                key,
                object,
                &referable,
                &mut attached,
            ),
            _ => continue,
        };
        route_status.insert((item.document.kind().to_owned(), key.clone()), status);
    }
    model.route_status = route_status;
    model.routes = precedence::order_routes(&mut ctx, attached);

    for (item, key) in &keyed {
        match &item.document {
            Document::BackendPolicy(object) => {
                if let Some((target, policy)) =
                    backend_policy::backend_policy(&mut ctx, item, key, object, &model.services)
                {
                    let described = format!(
                        "another BackendPolicy already targets Service {}{}",
                        target.0,
                        target.1.map(|p| format!(" port {p}")).unwrap_or_default()
                    );
                    match model.backend_policies.entry(target) {
                        std::collections::btree_map::Entry::Occupied(_) => {
                            ctx.err(&item.location, "spec.targetRef", described)
                        }
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert(policy);
                        }
                    }
                }
            }
            Document::AuthorizationPolicy(object) => {
                if let Some(policy) = authorization::authorization_policy(
                    &mut ctx,
                    item,
                    key,
                    object,
                    &model.services,
                    &model.mesh,
                ) {
                    model.authorization_policies.push(policy);
                }
            }
            _ => {}
        }
    }

    if ctx.errors.is_empty() {
        model.refused_rules = ctx.refused_rules.0;
        Ok(model)
    } else {
        Err(ctx.errors)
    }
}
