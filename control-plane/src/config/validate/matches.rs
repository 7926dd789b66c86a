//! Request matches shared by every kind that matches requests: HTTPRoute and GRPCRoute rules
//! (headers), HTTPRoute and AuthorizationPolicy (paths, methods, query parameters).

use strait_proto::match_regex;

use super::Ctx;
use crate::config::error::Location;
use crate::config::model::*;
use crate::config::raw;

pub(super) fn value_match(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    m: &raw::ValueMatch,
    header: bool,
) -> Option<(String, ValueMatch)> {
    if header && http_header_name(&m.name).is_none() {
        ctx.err(
            location,
            format!("{field}.name"),
            format!("{:?} is not a valid header name", m.name),
        );
        return None;
    }
    let name = if header {
        m.name.to_ascii_lowercase()
    } else {
        m.name.clone()
    };
    match m.match_type.as_deref() {
        None | Some("Exact") => Some((name, ValueMatch::Exact(m.value.clone()))),
        Some("RegularExpression") => match match_regex::compile(&m.value) {
            Ok(_) => Some((name, ValueMatch::Regex(m.value.clone()))),
            Err(e) => {
                ctx.err(location, format!("{field}.value"), e.to_string());
                None
            }
        },
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

pub(super) fn http_header_name(name: &str) -> Option<()> {
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
    .then_some(())
}

pub(super) const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

pub(super) fn http_match(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    m: &raw::HttpRouteMatch,
) -> Option<RouteMatch> {
    let errors_before = ctx.errors.0.len();
    let path = match &m.path {
        None => Some(PathMatch::Prefix("/".into())),
        Some(path) => {
            let value = path.value.clone().unwrap_or_else(|| "/".into());
            match path.match_type.as_deref() {
                None | Some("PathPrefix") | Some("Exact") if !value.starts_with('/') => {
                    ctx.err(
                        location,
                        format!("{field}.path.value"),
                        format!("{value:?} must start with '/'"),
                    );
                    None
                }
                None | Some("PathPrefix") => Some(PathMatch::Prefix(value)),
                Some("Exact") => Some(PathMatch::Exact(value)),
                Some("RegularExpression") => match match_regex::compile(&value) {
                    Ok(_) => Some(PathMatch::Regex(value)),
                    Err(e) => {
                        ctx.err(location, format!("{field}.path.value"), e.to_string());
                        None
                    }
                },
                Some(other) => {
                    ctx.err(
                        location,
                        format!("{field}.path.type"),
                        format!("{other:?} is not a path match type (Exact, PathPrefix or RegularExpression)"),
                    );
                    None
                }
            }
        }
    };
    let method = m.method.as_ref().and_then(|method| {
        if METHODS.contains(&method.as_str()) {
            Some(method.clone())
        } else {
            ctx.err(
                location,
                format!("{field}.method"),
                format!("{method:?} is not one of {}", METHODS.join(", ")),
            );
            None
        }
    });
    let headers = matches_list(ctx, location, &format!("{field}.headers"), &m.headers, true);
    let query = matches_list(
        ctx,
        location,
        &format!("{field}.queryParams"),
        &m.query_params,
        false,
    );
    if ctx.errors.0.len() > errors_before {
        return None;
    }
    // A bare "/" prefix is the catch-all; drop it so catch-alls compare equal.
    let path = path.filter(|p| *p != PathMatch::Prefix("/".into()));
    Some(RouteMatch {
        path,
        method,
        headers,
        query,
    })
}

pub(super) fn matches_list(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    list: &[raw::ValueMatch],
    header: bool,
) -> Vec<(String, ValueMatch)> {
    let mut out: Vec<(String, ValueMatch)> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let field = format!("{field}[{i}]");
        if let Some((name, value)) = value_match(ctx, location, &field, m, header) {
            if out.iter().any(|(n, _)| *n == name) {
                ctx.err(
                    location,
                    format!("{field}.name"),
                    format!("{name:?} is matched twice in one match"),
                );
                continue;
            }
            out.push((name, value));
        }
    }
    out.sort();
    out
}
