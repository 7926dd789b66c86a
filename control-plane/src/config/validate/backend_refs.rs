//! References from a route to Services, shared by both route kinds: the parent Service ports a
//! route attaches to (`parentRefs`) and the weighted Services a rule sends to (`backendRefs`).

use std::collections::BTreeMap;

use strait_proto::defaults;

use super::Ctx;
use super::reference_grant::permits;
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

/// Why a backendRef could not be resolved: the Gateway API's `ResolvedRefs=False` reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unresolved {
    /// The Service, or its port, does not exist.
    BackendNotFound,
    /// A Service of another namespace that no ReferenceGrant opens to the route.
    RefNotPermitted,
    /// Not a Service.
    InvalidKind,
}

impl Unresolved {
    /// The condition reason.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Unresolved::BackendNotFound => "BackendNotFound",
            Unresolved::RefNotPermitted => "RefNotPermitted",
            Unresolved::InvalidKind => "InvalidKind",
        }
    }
}

/// What a rule's backendRefs resolve to.
#[derive(Debug, Default)]
pub(super) struct RuleBackends {
    /// The resolved backends.
    pub backends: Vec<WeightedBackend>,
    /// For each resolved backend, the index of its backendRef (backend filters are parsed
    /// from the reference they came with).
    pub ref_index: Vec<usize>,
    /// Summed weight of the unresolved references: that share of the rule's requests gets 500.
    pub unresolved_weight: u32,
    /// Each unresolved reference, with what the status says about it.
    pub unresolved: Vec<(Unresolved, String)>,
}

impl RuleBackends {
    /// Counts an unresolved reference: its weight goes to the 500 share.
    fn unresolve(&mut self, weight: u32, why: Unresolved, field: &str, message: String) {
        self.unresolved_weight = self.unresolved_weight.saturating_add(weight);
        self.unresolved.push((why, format!("{field}: {message}")));
    }
}

/// Who refers: the route's kind and namespace, and the Services it attaches to (a consumer
/// route may send to the Service it attaches to without a ReferenceGrant).
pub(super) struct Referrer<'a> {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: &'a str,
    /// The route's namespace.
    pub namespace: &'a str,
    /// Its parent Services.
    pub parents: &'a [ObjectKey],
    /// Every ReferenceGrant.
    pub grants: &'a [ReferenceGrant],
}

/// Whether `referrer` may send to `service` of another namespace: the parent Service it
/// attaches to (GAMMA's consumer routes), or one a ReferenceGrant in its namespace opens.
fn reference_permitted(referrer: &Referrer<'_>, service: &ObjectKey) -> bool {
    service.namespace == referrer.namespace
        || referrer.parents.contains(service)
        || permits(referrer.grants, referrer.kind, referrer.namespace, service)
}

/// Resolves a rule's backendRefs. What the schema forbids (a weight out of range, a Service
/// reference without a port) is an error; a reference the cluster cannot satisfy (a missing
/// Service or port, another namespace's Service without a grant, another kind) leaves the
/// route in force and its share of requests answered 500, as the Gateway API asks.
pub(super) fn backends(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    referrer: &Referrer<'_>,
    refs: &[raw::BackendRef],
    services: &BTreeMap<ObjectKey, Service>,
) -> Option<RuleBackends> {
    if refs.is_empty() {
        ctx.err(location, field, "a rule needs at least one backendRef");
        return None;
    }
    let errors_before = ctx.errors.0.len();
    let mut out = RuleBackends::default();
    for (i, backend) in refs.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let weight = backend.weight.unwrap_or(defaults::BACKEND_WEIGHT);
        if !(0..=MAX_WEIGHT).contains(&weight) {
            ctx.err(
                location,
                format!("{field}.weight"),
                format!("{weight} is out of range (0-{MAX_WEIGHT})"),
            );
            continue;
        }
        let weight = weight as u32;
        let group = backend.group.as_deref().unwrap_or("");
        let kind = backend.kind.as_deref().unwrap_or("Service");
        if !(group.is_empty() || group == "core") || kind != "Service" {
            out.unresolve(
                weight,
                Unresolved::InvalidKind,
                &field,
                format!("backend {group}/{kind} is not a Service"),
            );
            continue;
        }
        let Some(p) = backend.port else {
            ctx.err(
                location,
                format!("{field}.port"),
                "required for a Service backend",
            );
            continue;
        };
        let p = match port(p) {
            Ok(p) => p,
            Err(reason) => {
                ctx.err(location, format!("{field}.port"), reason);
                continue;
            }
        };
        let namespace = backend
            .namespace
            .clone()
            .unwrap_or_else(|| referrer.namespace.to_owned());
        let key = ObjectKey::new(&namespace, &backend.name);
        if !reference_permitted(referrer, &key) {
            out.unresolve(
                weight,
                Unresolved::RefNotPermitted,
                &field,
                format!(
                    "Service {key} is in another namespace and no ReferenceGrant in {namespace} permits {}s of {} to refer to it",
                    referrer.kind, referrer.namespace
                ),
            );
            continue;
        }
        match services.get(&key) {
            None => out.unresolve(
                weight,
                Unresolved::BackendNotFound,
                &field,
                format!("Service {key} does not exist"),
            ),
            Some(service) if service.port(p).is_none() => out.unresolve(
                weight,
                Unresolved::BackendNotFound,
                &field,
                format!("Service {key} has no port {p}"),
            ),
            Some(_) => {
                out.backends.push(WeightedBackend {
                    service: key,
                    port: p,
                    weight,
                    // Parsed with the rule's filters (`super::route`), which they can refuse.
                    filters: BackendFilters::default(),
                });
                out.ref_index.push(i);
            }
        }
    }
    (ctx.errors.0.len() == errors_before).then_some(out)
}
