//! `GRPCRoute`: gRPC method matches (as the request path `/service/method` they amount to) and
//! header matches; retries come from annotations. The rest of its validation is shared with
//! HTTPRoute ([`super::route`]).

use strait_proto::match_regex;

use super::Ctx;
use super::filters::FilterPlace;
use super::matches::matches_list;
use super::precedence::Attached;
use super::route::{Referable, RouteFields, RouteRuleKind, route};
use crate::config::error::Location;
use crate::config::model::*;
use crate::config::raw;

/// Validates a GRPCRoute and attaches its rules.
pub(super) fn grpc_route(
    ctx: &mut Ctx,
    location: &Location,
    key: &ObjectKey,
    object: &raw::Object<raw::GrpcRouteSpec>,
    referable: &Referable<'_>,
    attached: &mut Attached,
) -> RouteStatus {
    let fields = RouteFields {
        kind: "GRPCRoute",
        metadata: &object.metadata,
        hostnames: &object.spec.hostnames,
        parent_refs: &object.spec.parent_refs,
        rules: &object.spec.rules,
    };
    route(ctx, location, key, fields, referable, attached)
}

impl RouteRuleKind for raw::GrpcRouteRule {
    type Match = raw::GrpcRouteMatch;

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    const FILTERS: FilterPlace = FilterPlace::GrpcRule;

    fn filters(&self) -> &[serde_json::Value] {
        &self.filters
    }

    fn has_session_persistence(&self) -> bool {
        // Accepted and ignored, as before the route kinds shared this code; HTTPRoute refuses
        // it. Refusing it here too would be a behaviour change of its own.
        false
    }

    fn raw_matches(&self) -> &[raw::GrpcRouteMatch] {
        &self.matches
    }

    fn route_match(
        ctx: &mut Ctx,
        location: &Location,
        field: &str,
        m: &raw::GrpcRouteMatch,
    ) -> Option<RouteMatch> {
        let errors_before = ctx.errors.0.len();
        let path = m
            .method
            .as_ref()
            .and_then(|method| grpc_path(ctx, location, &format!("{field}.method"), method));
        let headers = matches_list(ctx, location, &format!("{field}.headers"), &m.headers, true);
        (ctx.errors.0.len() == errors_before).then_some(RouteMatch {
            path,
            method: None,
            headers,
            query: Vec::new(),
        })
    }

    fn backend_refs(&self) -> &[raw::BackendRef] {
        &self.backend_refs
    }
}

/// A gRPC method match as the path match it amounts to (`/service/method`).
fn grpc_path(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    m: &raw::GrpcMethodMatch,
) -> Option<PathMatch> {
    let service = m.service.clone().unwrap_or_default();
    let method = m.method.clone().unwrap_or_default();
    match m.match_type.as_deref() {
        None | Some("Exact") => {
            let valid = |s: &str| {
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._".contains(&b))
            };
            if !valid(&service) || !valid(&method) {
                ctx.err(
                    location,
                    field,
                    "service and method must be protobuf names (letters, digits, '.', '_')",
                );
                return None;
            }
            match (service.as_str(), method.as_str()) {
                ("", "") => {
                    ctx.err(
                        location,
                        field,
                        "at least one of service and method is required",
                    );
                    None
                }
                (s, "") => Some(PathMatch::Prefix(format!("/{s}"))),
                ("", m) => Some(PathMatch::Regex(format!("/[^/]+/{}", regex::escape(m)))),
                (s, m) => Some(PathMatch::Exact(format!("/{s}/{m}"))),
            }
        }
        Some("RegularExpression") => {
            // Each part is checked on its own and spliced in as a group of its own, so neither
            // can reach into the other's place or out of the path's anchors.
            let mut part = |name: &str, pattern: String| {
                if pattern.is_empty() {
                    return Some("[^/]+".to_owned());
                }
                match match_regex::compile(&pattern) {
                    Ok(_) => Some(format!("(?:{pattern})")),
                    Err(e) => {
                        ctx.err(location, format!("{field}.{name}"), e.to_string());
                        None
                    }
                }
            };
            let (s, m) = (part("service", service), part("method", method));
            let pattern = format!("/{}/{}", s?, m?);
            match match_regex::compile(&pattern) {
                Ok(_) => Some(PathMatch::Regex(pattern)),
                Err(e) => {
                    ctx.err(location, field, e.to_string());
                    None
                }
            }
        }
        Some(other) => {
            ctx.err(
                location,
                format!("{field}.type"),
                format!("{other:?} is not a match type (Exact or RegularExpression)"),
            );
            None
        }
    }
}
