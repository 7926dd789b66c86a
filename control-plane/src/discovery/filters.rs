//! A rule's filters as the snapshot carries them: the model's [`RouteFilters`] and
//! [`BackendFilters`] in protobuf form. Mirrors name their backend as `WeightedBackend` does
//! (an entry of `OutboundService.backends`, which the snapshot builder adds).

use strait_proto::discovery::v1 as pb;

use crate::config::model::{HeaderModifier, PathModifier, RouteFilters};

/// A rule's filters; `None` when it has none, so a plain route's snapshot stays as it was.
pub(super) fn route_filters(
    filters: &RouteFilters,
    backend_name: impl Fn(&crate::config::model::ObjectKey, u16) -> String,
) -> Option<pb::RouteFilters> {
    if filters == &RouteFilters::default() {
        return None;
    }
    Some(pb::RouteFilters {
        request_headers: filters.request_headers.as_ref().map(header_modifier),
        response_headers: filters.response_headers.as_ref().map(header_modifier),
        redirect: filters.redirect.as_ref().map(|r| pb::Redirect {
            scheme: r.scheme.clone().unwrap_or_default(),
            hostname: r.hostname.clone().unwrap_or_default(),
            port: r.port.map_or(0, u32::from),
            path: r.path.as_ref().map(path_modifier),
            status: u32::from(r.status),
        }),
        rewrite: filters.rewrite.as_ref().map(|r| pb::Rewrite {
            hostname: r.hostname.clone().unwrap_or_default(),
            path: r.path.as_ref().map(path_modifier),
        }),
        mirrors: filters
            .mirrors
            .iter()
            .map(|m| pb::Mirror {
                backend: backend_name(&m.service, m.port),
                numerator: m.numerator,
                denominator: m.denominator,
            })
            .collect(),
        refused: filters.refused.clone().unwrap_or_default(),
    })
}

/// A header modifier.
pub(super) fn header_modifier(m: &HeaderModifier) -> pb::HeaderModifier {
    let headers = |list: &[(String, String)]| {
        list.iter()
            .map(|(name, value)| pb::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    };
    pb::HeaderModifier {
        set: headers(&m.set),
        add: headers(&m.add),
        remove: m.remove.clone(),
    }
}

fn path_modifier(p: &PathModifier) -> pb::PathModifier {
    pb::PathModifier {
        kind: Some(match p {
            PathModifier::Full(path) => pb::path_modifier::Kind::FullPath(path.clone()),
            PathModifier::Prefix {
                matched,
                replacement,
            } => pb::path_modifier::Kind::Prefix(pb::PrefixReplacement {
                matched: matched.clone(),
                replacement: replacement.clone(),
            }),
        }),
    }
}
