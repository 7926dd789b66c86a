//! References from a route to Services, shared by both route kinds: the parent Service ports a
//! route attaches to (`parentRefs`) and the weighted Services a rule sends to (`backendRefs`).

use std::collections::BTreeMap;

use strait_proto::defaults;

use super::Ctx;
use super::scalars::port;
use crate::config::error::Location;
use crate::config::model::*;
use crate::config::raw;

/// Largest weight the Gateway API allows.
pub(super) const MAX_WEIGHT: i64 = 1_000_000;

/// Parent service ports a route attaches to, with the consumer namespace for cross-namespace
/// (consumer) routes.
pub(super) fn parents(
    ctx: &mut Ctx,
    location: &Location,
    route_ns: &str,
    refs: &[raw::ParentRef],
    services: &BTreeMap<ObjectKey, Service>,
) -> Vec<(ObjectKey, u16, Option<String>)> {
    if refs.is_empty() {
        ctx.err(
            location,
            "spec.parentRefs",
            "a mesh route needs a parentRef to a Service",
        );
    }
    let mut out = Vec::new();
    for (i, parent) in refs.iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        let group = parent
            .group
            .as_deref()
            .unwrap_or("gateway.networking.k8s.io");
        let kind = parent.kind.as_deref().unwrap_or("Gateway");
        if !(group.is_empty() || group == "core") || kind != "Service" {
            ctx.err(
                location,
                &field,
                format!(
                    "parent {group}/{kind} {:?} is not a Service; mesh routes attach to Services (group: \"\", kind: Service)",
                    parent.name
                ),
            );
            continue;
        }
        let namespace = parent
            .namespace
            .clone()
            .unwrap_or_else(|| route_ns.to_owned());
        let key = ObjectKey::new(&namespace, &parent.name);
        let Some(service) = services.get(&key) else {
            ctx.err(
                location,
                format!("{field}.name"),
                format!("Service {key} does not exist"),
            );
            continue;
        };
        let consumer = (namespace != route_ns).then(|| route_ns.to_owned());
        let ports: Vec<u16> = match (parent.port, &parent.section_name) {
            (Some(p), _) => match port(p) {
                Ok(p) if service.port(p).is_some() => vec![p],
                Ok(p) => {
                    ctx.err(
                        location,
                        format!("{field}.port"),
                        format!("Service {key} has no port {p}"),
                    );
                    continue;
                }
                Err(reason) => {
                    ctx.err(location, format!("{field}.port"), reason);
                    continue;
                }
            },
            (None, Some(section)) => match service
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(section))
            {
                Some(p) => vec![p.port],
                None => {
                    ctx.err(
                        location,
                        format!("{field}.sectionName"),
                        format!("Service {key} has no port named {section:?}"),
                    );
                    continue;
                }
            },
            (None, None) => service.ports.iter().map(|p| p.port).collect(),
        };
        for p in ports {
            out.push((key.clone(), p, consumer.clone()));
        }
    }
    out
}

pub(super) fn backends(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    route_ns: &str,
    refs: &[raw::BackendRef],
    services: &BTreeMap<ObjectKey, Service>,
) -> Option<Vec<WeightedBackend>> {
    if refs.is_empty() {
        ctx.err(location, field, "a rule needs at least one backendRef");
        return None;
    }
    let errors_before = ctx.errors.0.len();
    let mut out = Vec::new();
    for (i, backend) in refs.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let group = backend.group.as_deref().unwrap_or("");
        let kind = backend.kind.as_deref().unwrap_or("Service");
        if !(group.is_empty() || group == "core") || kind != "Service" {
            ctx.err(
                location,
                &field,
                format!("backend {group}/{kind} is not a Service"),
            );
            continue;
        }
        let namespace = backend
            .namespace
            .clone()
            .unwrap_or_else(|| route_ns.to_owned());
        if namespace != route_ns {
            ctx.err(
                location,
                format!("{field}.namespace"),
                "cross-namespace backends need a ReferenceGrant, which Strait does not support; route to a Service in the route's namespace",
            );
            continue;
        }
        let key = ObjectKey::new(&namespace, &backend.name);
        let Some(service) = services.get(&key) else {
            ctx.err(
                location,
                format!("{field}.name"),
                format!("Service {key} does not exist"),
            );
            continue;
        };
        let Some(p) = backend.port else {
            ctx.err(
                location,
                format!("{field}.port"),
                "required for a Service backend",
            );
            continue;
        };
        let p = match port(p) {
            Ok(p) if service.port(p).is_some() => p,
            Ok(p) => {
                ctx.err(
                    location,
                    format!("{field}.port"),
                    format!("Service {key} has no port {p}"),
                );
                continue;
            }
            Err(reason) => {
                ctx.err(location, format!("{field}.port"), reason);
                continue;
            }
        };
        let weight = backend.weight.unwrap_or(defaults::BACKEND_WEIGHT);
        if !(0..=MAX_WEIGHT).contains(&weight) {
            ctx.err(
                location,
                format!("{field}.weight"),
                format!("{weight} is out of range (0-{MAX_WEIGHT})"),
            );
            continue;
        }
        out.push(WeightedBackend {
            service: key,
            port: p,
            weight: weight as u32,
            // Parsed with the rule's filters (`super::route`), which they can refuse.
            filters: BackendFilters::default(),
        });
    }
    (ctx.errors.0.len() == errors_before).then_some(out)
}
