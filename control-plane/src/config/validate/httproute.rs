//! `HTTPRoute`: HTTP matches (path, method, headers, query parameters), timeouts and the
//! `retry` field; the rest of its validation is shared with GRPCRoute ([`super::route`]).

use super::Ctx;
use super::filters::{FilterPlace, PrefixMatch};
use super::matches::http_match;
use super::precedence::Attached;
use super::route::{Referable, RouteFields, RouteRuleKind, route};
use super::scalars::parse_duration;
use crate::config::duration;
use crate::config::error::Location;
use crate::config::model::*;
use crate::config::raw;

/// Validates an HTTPRoute and attaches its rules.
pub(super) fn http_route(
    ctx: &mut Ctx,
    location: &Location,
    key: &ObjectKey,
    object: &raw::Object<raw::HttpRouteSpec>,
    referable: &Referable<'_>,
    attached: &mut Attached,
) -> RouteStatus {
    let fields = RouteFields {
        kind: "HTTPRoute",
        metadata: &object.metadata,
        hostnames: &object.spec.hostnames,
        parent_refs: &object.spec.parent_refs,
        rules: &object.spec.rules,
    };
    route(ctx, location, key, fields, referable, attached)
}

impl RouteRuleKind for raw::HttpRouteRule {
    type Match = raw::HttpRouteMatch;

    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    const FILTERS: FilterPlace = FilterPlace::HttpRule;

    fn filters(&self) -> &[serde_json::Value] {
        &self.filters
    }

    fn prefix_match(&self) -> PrefixMatch<'_> {
        match self.matches.as_slice() {
            // A match without a path, or without a path type, is the default `PathPrefix /`.
            [only] => match &only.path {
                None => Ok("/"),
                Some(p) if matches!(p.match_type.as_deref(), None | Some("PathPrefix")) => {
                    Ok(p.value.as_deref().unwrap_or("/"))
                }
                Some(_) => {
                    Err("ReplacePrefixMatch needs the rule's match to be of type PathPrefix")
                }
            },
            _ => Err("ReplacePrefixMatch needs a rule with exactly one match, of type PathPrefix"),
        }
    }

    fn has_session_persistence(&self) -> bool {
        self.session_persistence.is_some()
    }

    fn raw_matches(&self) -> &[raw::HttpRouteMatch] {
        &self.matches
    }

    fn route_match(
        ctx: &mut Ctx,
        location: &Location,
        field: &str,
        m: &raw::HttpRouteMatch,
    ) -> Option<RouteMatch> {
        http_match(ctx, location, field, m)
    }

    fn backend_refs(&self) -> &[raw::BackendRef] {
        &self.backend_refs
    }

    fn timeouts(&self, ctx: &mut Ctx, location: &Location, field: &str) -> Timeouts {
        let mut timeouts = Timeouts::default();
        let Some(t) = &self.timeouts else {
            return timeouts;
        };
        // "0s" disables a timeout in the Gateway API.
        timeouts.request = parse_duration(
            ctx,
            location,
            &format!("{field}.timeouts.request"),
            &t.request,
        )
        .filter(|d| !d.is_zero());
        timeouts.backend_request = parse_duration(
            ctx,
            location,
            &format!("{field}.timeouts.backendRequest"),
            &t.backend_request,
        )
        .filter(|d| !d.is_zero());
        if let (Some(request), Some(backend)) = (timeouts.request, timeouts.backend_request)
            && backend > request
        {
            ctx.err(
                location,
                format!("{field}.timeouts.backendRequest"),
                format!(
                    "{} is longer than timeouts.request ({})",
                    duration::format(backend),
                    duration::format(request)
                ),
            );
        }
        timeouts
    }

    fn retry(&self) -> Option<&raw::HttpRouteRetry> {
        self.retry.as_ref()
    }
}
