//! What HTTPRoute and GRPCRoute rules share: route-level annotations, retries and the walk over
//! a route's rules that attaches each match to each parent port. The kinds differ only in how
//! a rule's matches read and what other fields a rule has ([`RouteRuleKind`]).

use std::collections::BTreeMap;

use strait_proto::defaults;

use super::Ctx;
use super::backend_refs::{Referrer, RuleBackends, backends, parents};
use super::filters::{FilterPlace, PrefixMatch, Refusal, backend_filters, rule_filters};
use super::matches::http_header_name;
use super::precedence::{Attached, rank};
use super::scalars::parse_duration;
use super::scalars::port;
use crate::config::error::Location;
use crate::config::model::*;
use crate::config::raw;

/// Annotation naming the header whose value pins a request to one side of a split.
pub const STICKY_HEADER_ANNOTATION: &str = "strait.dev/sticky-header";

/// Annotation listing gRPC status codes a route retries (names or numbers, comma-separated).
pub const RETRY_GRPC_CODES_ANNOTATION: &str = "strait.dev/retry-grpc-codes";

/// Annotation giving the retries of a route that has no `retry` field (GRPCRoute).
pub const RETRY_ATTEMPTS_ANNOTATION: &str = "strait.dev/retry-attempts";

pub(super) fn grpc_code(name: &str) -> Option<u32> {
    const CODES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    let name = name.trim();
    name.parse::<u32>()
        .ok()
        .filter(|n| (1..=16).contains(n))
        .or_else(|| {
            CODES
                .iter()
                .position(|c| c.eq_ignore_ascii_case(name))
                .map(|i| i as u32)
                .filter(|n| *n > 0)
        })
}

/// Route-level settings written as annotations (GRPCRoute has no retry field; stickiness has
/// no Gateway API field yet).
pub(super) struct RouteAnnotations {
    sticky_header: Option<String>,
    grpc_codes: Vec<u32>,
    attempts: Option<u32>,
}

pub(super) fn route_annotations(
    ctx: &mut Ctx,
    location: &Location,
    meta: &raw::ObjectMeta,
) -> RouteAnnotations {
    let field = |key: &str| format!("metadata.annotations[{key:?}]");
    let sticky_header = meta
        .annotations
        .get(STICKY_HEADER_ANNOTATION)
        .and_then(|h| {
            if http_header_name(h).is_some() {
                Some(h.to_ascii_lowercase())
            } else {
                ctx.err(
                    location,
                    field(STICKY_HEADER_ANNOTATION),
                    format!("{h:?} is not a valid header name"),
                );
                None
            }
        });
    let mut grpc_codes = Vec::new();
    if let Some(list) = meta.annotations.get(RETRY_GRPC_CODES_ANNOTATION) {
        for code in list.split(',').filter(|c| !c.trim().is_empty()) {
            match grpc_code(code) {
                Some(n) => grpc_codes.push(n),
                None => ctx.err(
                    location,
                    field(RETRY_GRPC_CODES_ANNOTATION),
                    format!(
                        "{:?} is not a gRPC status code name or number (1-16)",
                        code.trim()
                    ),
                ),
            }
        }
    }
    let attempts = meta
        .annotations
        .get(RETRY_ATTEMPTS_ANNOTATION)
        .and_then(|a| match a.parse::<u32>() {
            Ok(n) if n <= 10 => Some(n),
            _ => {
                ctx.err(
                    location,
                    field(RETRY_ATTEMPTS_ANNOTATION),
                    format!("{a:?} is not a number of retries (0-10)"),
                );
                None
            }
        });
    RouteAnnotations {
        sticky_header,
        grpc_codes,
        attempts,
    }
}

pub(super) fn retry(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    raw: Option<&raw::HttpRouteRetry>,
    notes: &RouteAnnotations,
) -> Option<Retry> {
    let mut retry = Retry {
        max_retries: notes.attempts.unwrap_or(0),
        http_statuses: Vec::new(),
        grpc_codes: notes.grpc_codes.clone(),
        backoff: None,
    };
    if let Some(raw) = raw {
        if let Some(attempts) = raw.attempts {
            match u32::try_from(attempts) {
                Ok(n) if n <= 10 => retry.max_retries = n,
                _ => ctx.err(
                    location,
                    format!("{field}.attempts"),
                    format!("{attempts} is out of range (0-10)"),
                ),
            }
        } else if retry.max_retries == 0 {
            retry.max_retries = defaults::ROUTE_RETRY_ATTEMPTS;
        }
        for (i, code) in raw.codes.iter().enumerate() {
            match u16::try_from(*code) {
                Ok(c) if (400..=599).contains(&c) => retry.http_statuses.push(c),
                _ => ctx.err(
                    location,
                    format!("{field}.codes[{i}]"),
                    format!("{code} is not an HTTP error status (400-599)"),
                ),
            }
        }
        retry.backoff = parse_duration(ctx, location, &format!("{field}.backoff"), &raw.backoff);
    } else if notes.grpc_codes.is_empty() && notes.attempts.is_none() {
        return None;
    }
    Some(retry)
}

/// What differs between the rules of HTTPRoute and GRPCRoute; the rest is [`route`]'s.
pub(super) trait RouteRuleKind {
    /// The kind's raw match.
    type Match;
    /// The rule's name, if it has one.
    fn name(&self) -> Option<&str>;
    /// Which filters the kind's rules accept.
    const FILTERS: FilterPlace;
    /// The rule's raw filters.
    fn filters(&self) -> &[serde_json::Value];
    /// The rule's single `PathPrefix` match, which `ReplacePrefixMatch` replaces.
    fn prefix_match(&self) -> PrefixMatch<'_> {
        Err("ReplacePrefixMatch needs a rule with exactly one match, of type PathPrefix")
    }
    /// Whether the rule asks for session persistence (refused where the kind checks it).
    fn has_session_persistence(&self) -> bool;
    /// The rule's raw matches.
    fn raw_matches(&self) -> &[Self::Match];
    /// One raw match as the request match it amounts to, or its errors.
    fn route_match(
        ctx: &mut Ctx,
        location: &Location,
        field: &str,
        m: &Self::Match,
    ) -> Option<RouteMatch>;
    /// The rule's backends.
    fn backend_refs(&self) -> &[raw::BackendRef];
    /// The rule's timeouts (none unless the kind has the field).
    fn timeouts(&self, _ctx: &mut Ctx, _location: &Location, _field: &str) -> Timeouts {
        Timeouts::default()
    }
    /// The rule's `retry` field, if the kind has one.
    fn retry(&self) -> Option<&raw::HttpRouteRetry> {
        None
    }
}

/// The fields every route kind has, whatever its rules.
pub(super) struct RouteFields<'a, R> {
    /// `HTTPRoute` or `GRPCRoute`, for errors and rule sources.
    pub kind: &'static str,
    /// The route's object metadata (its annotations).
    pub metadata: &'a raw::ObjectMeta,
    /// `spec.hostnames`: refused for a route attached to a Service.
    pub hostnames: &'a [String],
    /// `spec.parentRefs`.
    pub parent_refs: &'a [raw::ParentRef],
    /// `spec.rules`.
    pub rules: &'a [R],
}

/// What routes refer to: the Services and the ReferenceGrants.
pub(super) struct Referable<'a> {
    /// Every Service.
    pub services: &'a BTreeMap<ObjectKey, Service>,
    /// Every ReferenceGrant.
    pub grants: &'a [ReferenceGrant],
}

/// Validates a route and attaches each match of each valid rule to each parent port; returns
/// the route's status (meaningful when the route has no errors).
pub(super) fn route<R: RouteRuleKind>(
    ctx: &mut Ctx,
    location: &Location,
    key: &ObjectKey,
    route: RouteFields<'_, R>,
    referable: &Referable<'_>,
    attached: &mut Attached,
) -> RouteStatus {
    let services = referable.services;
    if !route.hostnames.is_empty() {
        ctx.err(
            location,
            "spec.hostnames",
            "hostnames have no meaning for a route attached to a Service (GAMMA); remove them",
        );
    }
    let parents = parents(ctx, location, &key.namespace, route.parent_refs, services);
    let mut parent_services: Vec<ObjectKey> = parents.iter().map(|(k, _, _)| k.clone()).collect();
    parent_services.dedup();
    let referrer = Referrer {
        kind: route.kind,
        namespace: &key.namespace,
        parents: &parent_services,
        grants: referable.grants,
    };
    let notes = route_annotations(ctx, location, route.metadata);
    let source = format!("{} {key}", route.kind);
    let mut unresolved = Vec::new();
    let mut dropped = Vec::new();
    for (r, rule) in route.rules.iter().enumerate() {
        let field = format!("spec.rules[{r}]");
        let rule_name = format!(
            "{key}/{}",
            rule.name().map_or_else(|| r.to_string(), str::to_owned)
        );
        let mut mirror_to = |name: &str, namespace: Option<&str>, p: Option<i64>| {
            mirror_target(&key.namespace, services, name, namespace, p)
        };
        let mut filters = rule_filters(
            rule.filters(),
            R::FILTERS,
            rule.prefix_match(),
            &mut mirror_to,
        )
        .unwrap_or_else(|refusal| refused(ctx, location, &field, &rule_name, &refusal));
        if rule.has_session_persistence() {
            ctx.err(
                location,
                format!("{field}.sessionPersistence"),
                format!("not supported; use the {STICKY_HEADER_ANNOTATION} annotation"),
            );
        }
        let matches: Vec<RouteMatch> = if rule.raw_matches().is_empty() {
            vec![RouteMatch::default()]
        } else {
            rule.raw_matches()
                .iter()
                .enumerate()
                .filter_map(|(m, raw)| {
                    R::route_match(ctx, location, &format!("{field}.matches[{m}]"), raw)
                })
                .collect()
        };
        // A rule whose action is a redirect (or that is refused) calls no backend.
        let answers_itself = filters.redirect.is_some() || filters.refused.is_some();
        let backends = if answers_itself && rule.backend_refs().is_empty() {
            Some(RuleBackends::default())
        } else {
            backends(
                ctx,
                location,
                &format!("{field}.backendRefs"),
                &referrer,
                rule.backend_refs(),
                services,
            )
            .map(|mut resolved| {
                attach_backend_filters(
                    ctx,
                    location,
                    &field,
                    &rule_name,
                    rule.backend_refs(),
                    &mut resolved,
                    &mut filters,
                );
                resolved
            })
        };
        let timeouts = rule.timeouts(ctx, location, &field);
        let retry = retry(
            ctx,
            location,
            &format!("{field}.retry"),
            rule.retry(),
            &notes,
        );
        let Some(mut backends) = backends else {
            continue;
        };
        if filters.refused.is_some() || filters.redirect.is_some() {
            backends.backends.clear();
            backends.ref_index.clear();
            backends.unresolved_weight = 0;
        }
        unresolved.extend(backends.unresolved);
        if let Some(refusal) = &filters.refused {
            dropped.push(match rule.name() {
                Some(name) => format!("{refusal} (rule {name})"),
                None => refusal.clone(),
            });
        }
        let template = RouteRule {
            name: rule_name,
            source: source.clone(),
            matcher: RouteMatch::default(),
            backends: backends.backends,
            timeouts,
            retry,
            sticky_header: notes.sticky_header.clone(),
            filters,
            consumer_namespace: None,
            unresolved_weight: backends.unresolved_weight,
        };
        attach_rule(attached, &parents, &template, r, matches, location);
    }
    let rules = Rules {
        total: route.rules.len(),
        dropped: &dropped,
    };
    status(&key.namespace, route.parent_refs, &unresolved, &rules)
}

/// A route's rules as its status tells them: how many, and each refused one described.
struct Rules<'a> {
    total: usize,
    dropped: &'a [String],
}

/// At most this many unresolved references are described in a condition's message, so a
/// route with thousands of them cannot make its status (or a status write) large.
const MAX_DESCRIBED: usize = 8;

/// `items`, the first [`MAX_DESCRIBED`] of them joined by "; ", and how many more there are.
fn described(items: &[&str]) -> String {
    let mut message = items
        .iter()
        .take(MAX_DESCRIBED)
        .copied()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > MAX_DESCRIBED {
        message.push_str(&format!("; and {} more", items.len() - MAX_DESCRIBED));
    }
    message
}

/// A valid route's status for every parentRef: `Accepted` (`False` with `UnsupportedValue`
/// when every rule is refused, as the Gateway API wants a route accepted when at least one of
/// its rules is implemented), whether its references resolve, and `PartiallyInvalid=True`
/// (`UnsupportedValue`, "Dropped Rule…") when some rules are refused and others kept; the
/// spec sets that condition only when it is true.
fn status(
    route_ns: &str,
    parent_refs: &[raw::ParentRef],
    unresolved: &[(super::backend_refs::Unresolved, String)],
    rules: &Rules<'_>,
) -> RouteStatus {
    let dropped: Vec<&str> = rules.dropped.iter().map(String::as_str).collect();
    let every_rule_dropped = !dropped.is_empty() && dropped.len() >= rules.total;
    let accepted = if every_rule_dropped {
        RouteCondition {
            type_: "Accepted".into(),
            status: false,
            reason: "UnsupportedValue".into(),
            message: format!(
                "every rule is refused (each answers 500): {}",
                described(&dropped)
            ),
        }
    } else {
        RouteCondition {
            type_: "Accepted".into(),
            status: true,
            reason: "Accepted".into(),
            message: "attached to the Service".into(),
        }
    };
    let partially_invalid = (!dropped.is_empty() && !every_rule_dropped).then(|| RouteCondition {
        type_: "PartiallyInvalid".into(),
        status: true,
        reason: "UnsupportedValue".into(),
        message: format!(
            "Dropped Rule(s) (each answers 500; the route's other rules apply): {}",
            described(&dropped)
        ),
    });
    let resolved = match unresolved.first() {
        None => RouteCondition {
            type_: "ResolvedRefs".into(),
            status: true,
            reason: "ResolvedRefs".into(),
            message: "every backendRef resolves".into(),
        },
        Some((why, _)) => {
            let messages: Vec<&str> = unresolved.iter().map(|(_, m)| m.as_str()).collect();
            RouteCondition {
                type_: "ResolvedRefs".into(),
                status: false,
                reason: why.reason().into(),
                message: format!(
                    "requests for these backends are answered 500: {}",
                    described(&messages)
                ),
            }
        }
    };
    RouteStatus {
        parents: parent_refs
            .iter()
            .map(|p| ParentStatus {
                parent: ParentRefKey {
                    group: p.group.clone().unwrap_or_default(),
                    kind: p.kind.clone().unwrap_or_else(|| "Service".into()),
                    namespace: p.namespace.clone().unwrap_or_else(|| route_ns.to_owned()),
                    name: p.name.clone(),
                    port: p.port.and_then(|port| u16::try_from(port).ok()),
                    section_name: p.section_name.clone(),
                },
                conditions: [Some(accepted.clone()), Some(resolved.clone())]
                    .into_iter()
                    .chain([partially_invalid.clone()])
                    .flatten()
                    .collect(),
            })
            .collect(),
    }
}

/// Attaches one copy of `template` per match and parent port, ranked for precedence.
fn attach_rule(
    attached: &mut Attached,
    parents: &[(ObjectKey, u16, Option<String>)],
    template: &RouteRule,
    rule_index: usize,
    matches: Vec<RouteMatch>,
    location: &Location,
) {
    for (service, port, consumer) in parents {
        for (index, matcher) in matches.iter().enumerate() {
            let rule = RouteRule {
                matcher: matcher.clone(),
                consumer_namespace: consumer.clone(),
                ..template.clone()
            };
            attached.entry((service.clone(), *port)).or_default().push((
                rank(matcher, &template.source, rule_index, index),
                rule,
                location.clone(),
            ));
        }
    }
}

/// Records a rule refused for its filters and returns the filters it keeps: only the refusal,
/// so the rule answers 500 rather than forwarding without a filter the user asked for.
fn refused(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    rule_name: &str,
    refusal: &Refusal,
) -> RouteFilters {
    let reason = format!(
        "{}; rule {rule_name} is refused (it answers 500) and the route's other rules apply",
        refusal.reason
    );
    ctx.refused_rules.push(
        location,
        format!("{field}.{}", refusal.field),
        reason.clone(),
    );
    RouteFilters {
        refused: Some(format!("{}.{}: {}", field, refusal.field, refusal.reason)),
        ..RouteFilters::default()
    }
}

/// Parses each backendRef's `filters` onto its backend; a refusal refuses the rule.
fn attach_backend_filters(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    rule_name: &str,
    refs: &[raw::BackendRef],
    resolved: &mut RuleBackends,
    filters: &mut RouteFilters,
) {
    if filters.refused.is_some() {
        return;
    }
    for (backend, &b) in resolved.backends.iter_mut().zip(&resolved.ref_index) {
        let Some(raw_filters) = refs.get(b).and_then(|raw| raw.filters.as_deref()) else {
            continue;
        };
        match backend_filters(raw_filters) {
            Ok(parsed) => backend.filters = parsed,
            Err(refusal) => {
                let refusal = Refusal {
                    field: format!("backendRefs[{b}].{}", refusal.field),
                    reason: refusal.reason,
                };
                *filters = refused(ctx, location, field, rule_name, &refusal);
                return;
            }
        }
    }
}

/// The Service port a `RequestMirror` sends to: in the route's namespace, existing, with the
/// port named.
fn mirror_target(
    route_ns: &str,
    services: &BTreeMap<ObjectKey, Service>,
    name: &str,
    namespace: Option<&str>,
    p: Option<i64>,
) -> Result<(ObjectKey, u16), String> {
    let namespace = namespace.unwrap_or(route_ns);
    if namespace != route_ns {
        return Err(format!(
            "a mirror to another namespace ({namespace}) is not supported; mirror to a Service in the route's namespace"
        ));
    }
    let key = ObjectKey::new(namespace, name);
    let service = services
        .get(&key)
        .ok_or_else(|| format!("Service {key} does not exist"))?;
    let p = port(p.ok_or("port is required for a Service backend")?)?;
    if service.port(p).is_none() {
        return Err(format!("Service {key} has no port {p}"));
    }
    Ok((key, p))
}
