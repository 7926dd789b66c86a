//! Route precedence: the Gateway API's order of matches on one parent port, and overlapping
//! rules (the same match twice on one port), which are errors.

use std::collections::BTreeMap;

use super::Ctx;
use crate::config::error::Location;
use crate::config::model::*;

/// Rules attached to each parent service port, with their precedence and origin.
pub(super) type Attached = BTreeMap<(ObjectKey, u16), Vec<(RankKey, RouteRule, Location)>>;

/// Precedence rank of a match: sorts most specific first (Gateway API order: exact path,
/// then regex, then longest prefix, then method, then most headers, then most query params).
pub(super) type RankKey = (
    std::cmp::Reverse<(u8, usize, bool, usize, usize)>,
    String,
    usize,
    usize,
);

pub(super) fn rank(m: &RouteMatch, source: &str, rule: usize, index: usize) -> RankKey {
    let (kind, len) = match &m.path {
        Some(PathMatch::Exact(p)) => (3, p.len()),
        Some(PathMatch::Regex(r)) => (2, r.len()),
        Some(PathMatch::Prefix(p)) => (1, p.trim_end_matches('/').len()),
        None => (0, 0),
    };
    (
        std::cmp::Reverse((
            kind,
            len,
            m.method.is_some(),
            m.headers.len(),
            m.query.len(),
        )),
        source.to_owned(),
        rule,
        index,
    )
}

/// Sorts each service port's rules by precedence and reports matches defined twice.
pub(super) fn order_routes(
    ctx: &mut Ctx,
    attached: Attached,
) -> BTreeMap<(ObjectKey, u16), Vec<RouteRule>> {
    let mut out = BTreeMap::new();
    for (parent, mut rules) in attached {
        rules.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<RouteRule> = Vec::new();
        for (_, rule, location) in rules {
            if let Some(first) = kept.iter().find(|k| {
                k.matcher == rule.matcher && k.consumer_namespace == rule.consumer_namespace
            }) {
                ctx.err(
                    &location,
                    "spec.rules",
                    format!(
                        "overlapping route: rule {} matches exactly what rule {} of {} already matches on Service {} port {}",
                        rule.name, first.name, first.source, parent.0, parent.1
                    ),
                );
                continue;
            }
            kept.push(rule);
        }
        out.insert(parent, kept);
    }
    out
}
