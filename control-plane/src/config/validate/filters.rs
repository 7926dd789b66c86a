//! Route and backendRef `filters` (Gateway API `HTTPRouteFilter`, `GRPCRouteFilter`): each
//! filter parsed on its own into the model's [`RouteFilters`] or [`BackendFilters`].
//!
//! A filter that is unsupported (`ExtensionRef`, `CORS`, `ExternalAuth`, an unknown type), not
//! allowed for the kind (a redirect on a GRPCRoute), repeated where the spec forbids it, or
//! invalid (a bad header name or value, a reserved header, a path or hostname that would not
//! make a valid URI) refuses its rule, never the whole route: the answer is a [`Refusal`]
//! naming the filter, and the caller sets the rule aside while the route's other rules stay
//! in force. The filters' shapes are parsed here rather than in `raw` so that one filter's
//! unknown field refuses its rule instead of failing the route's whole document.
//!
//! What a tenant's filter must never do is decided here first (and again by the proxy):
//! touch the headers the mesh reserves (`strait-client-id`, `strait-proxy-error` and their
//! look-alikes), hop-by-hop headers, `Host` or framing headers; or put CR, LF or NUL into a
//! header, path or `Location`.

use serde::Deserialize;
use std::collections::BTreeMap;

use super::matches::http_header_name;
use super::scalars::{port, valid_name};
use crate::config::model::*;

/// Most entries in one of `set`, `add`, `remove` (the Gateway API's `maxItems`).
const MAX_HEADER_ENTRIES: usize = 16;
/// Longest header name (the Gateway API's `maxLength`).
const MAX_HEADER_NAME: usize = 256;
/// Longest header value (the Gateway API's `maxLength`).
const MAX_HEADER_VALUE: usize = 4096;
/// Longest replacement path (the Gateway API's `maxLength`).
const MAX_PATH: usize = 1024;

/// Why a rule is refused: the filter's field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    /// `filters[1].requestRedirect.statusCode`, relative to the rule (or backendRef).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> Refusal {
    Refusal {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Which filters a place accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FilterPlace {
    /// An HTTPRoute rule: every supported filter.
    HttpRule,
    /// A GRPCRoute rule: header modifiers and mirrors.
    GrpcRule,
    /// A backendRef of either kind: header modifiers.
    Backend,
}

impl FilterPlace {
    fn allows(self, filter_type: &str) -> bool {
        match filter_type {
            "RequestHeaderModifier" | "ResponseHeaderModifier" => true,
            "RequestMirror" => self != FilterPlace::Backend,
            "RequestRedirect" | "URLRewrite" => self == FilterPlace::HttpRule,
            _ => false,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FilterPlace::HttpRule => "an HTTPRoute rule",
            FilterPlace::GrpcRule => "a GRPCRoute rule",
            FilterPlace::Backend => "a backendRef",
        }
    }
}

// ---- the filters' shapes, as the Gateway API writes them ---------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHeader {
    name: String,
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawHeaderModifier {
    #[serde(default)]
    set: Vec<RawHeader>,
    #[serde(default)]
    add: Vec<RawHeader>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPathModifier {
    #[serde(rename = "type")]
    modifier_type: String,
    #[serde(default)]
    replace_full_path: Option<String>,
    #[serde(default)]
    replace_prefix_match: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRedirect {
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    path: Option<RawPathModifier>,
    #[serde(default)]
    port: Option<i64>,
    #[serde(default)]
    status_code: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawRewrite {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    path: Option<RawPathModifier>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFraction {
    numerator: i64,
    #[serde(default)]
    denominator: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMirror {
    backend_ref: RawMirrorBackend,
    #[serde(default)]
    percent: Option<i64>,
    #[serde(default)]
    fraction: Option<RawFraction>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawMirrorBackend {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    port: Option<i64>,
}

/// Resolves a mirror's backendRef (`name`, `namespace`, `port`) to a Service port.
pub(super) type MirrorTarget<'a> =
    dyn FnMut(&str, Option<&str>, Option<i64>) -> Result<(ObjectKey, u16), String> + 'a;

/// What a rule's path matches say, for `ReplacePrefixMatch`: the one `PathPrefix` value, or
/// why there is none.
pub(super) type PrefixMatch<'a> = Result<&'a str, &'static str>;

/// A rule's filters, or the refusal of its rule. `prefix` is the rule's single `PathPrefix`
/// match (needed by `ReplacePrefixMatch`); `mirror_target` resolves a mirror's backendRef.
pub(super) fn rule_filters(
    filters: &[serde_json::Value],
    place: FilterPlace,
    prefix: PrefixMatch<'_>,
    mirror_target: &mut MirrorTarget<'_>,
) -> Result<RouteFilters, Refusal> {
    let mut out = RouteFilters::default();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, raw) in filters.iter().enumerate() {
        let field = format!("filters[{i}]");
        let filter_type = filter_type(raw, &field)?;
        if !place.allows(&filter_type) {
            return Err(unsupported(&field, &filter_type, place));
        }
        if filter_type != "RequestMirror"
            && let Some(first) = seen.insert(filter_type.clone(), i)
        {
            return Err(refuse(
                &field,
                format!(
                    "a second {filter_type} filter (the first is filters[{first}]); the Gateway API allows one per rule"
                ),
            ));
        }
        match filter_type.as_str() {
            "RequestHeaderModifier" => {
                out.request_headers = Some(header_modifier(raw, &field, "requestHeaderModifier")?);
            }
            "ResponseHeaderModifier" => {
                out.response_headers =
                    Some(header_modifier(raw, &field, "responseHeaderModifier")?);
            }
            "RequestRedirect" => out.redirect = Some(redirect(raw, &field, prefix)?),
            "URLRewrite" => out.rewrite = Some(rewrite(raw, &field, prefix)?),
            "RequestMirror" => out.mirrors.push(mirror(raw, &field, mirror_target)?),
            _ => return Err(unsupported(&field, &filter_type, place)),
        }
    }
    if out.redirect.is_some() && out.rewrite.is_some() {
        return Err(refuse(
            "filters",
            "RequestRedirect and URLRewrite cannot be used in the same rule",
        ));
    }
    Ok(out)
}

/// A backendRef's filters, or the refusal of its rule.
pub(super) fn backend_filters(filters: &[serde_json::Value]) -> Result<BackendFilters, Refusal> {
    let mut no_mirror = |_: &str, _: Option<&str>, _: Option<i64>| Err("not reached".to_owned());
    let all = rule_filters(
        filters,
        FilterPlace::Backend,
        Err("not reached"),
        &mut no_mirror,
    )?;
    Ok(BackendFilters {
        request_headers: all.request_headers,
        response_headers: all.response_headers,
    })
}

fn filter_type(raw: &serde_json::Value, field: &str) -> Result<String, Refusal> {
    raw.get("type")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| refuse(format!("{field}.type"), "required field is missing"))
}

fn unsupported(field: &str, filter_type: &str, place: FilterPlace) -> Refusal {
    let reason = match filter_type {
        "ExtensionRef" => "ExtensionRef filters are not supported by Strait".to_owned(),
        "CORS" | "ExternalAuth" => format!("{filter_type} filters are not supported by Strait"),
        "RequestHeaderModifier"
        | "ResponseHeaderModifier"
        | "RequestMirror"
        | "RequestRedirect"
        | "URLRewrite" => {
            format!("{filter_type} is not allowed in {}", place.describe())
        }
        other => format!("{other:?} is not a filter type Strait supports"),
    };
    refuse(format!("{field}.type"), reason)
}

/// The filter's own object (`requestRedirect` of a `RequestRedirect`), parsed.
fn body<T: serde::de::DeserializeOwned>(
    raw: &serde_json::Value,
    field: &str,
    key: &str,
) -> Result<T, Refusal> {
    let value = raw.get(key).cloned().ok_or_else(|| {
        refuse(
            format!("{field}.{key}"),
            "required for this filter type, and missing",
        )
    })?;
    let known = [
        "type",
        "requestHeaderModifier",
        "responseHeaderModifier",
        "requestRedirect",
        "urlRewrite",
        "requestMirror",
    ];
    if let Some(other) = raw
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "type" && *k != key))
    {
        let reason = if known.contains(&other.as_str()) {
            "does not belong to this filter type".to_owned()
        } else {
            "unknown field".to_owned()
        };
        return Err(refuse(format!("{field}.{other}"), reason));
    }
    serde_json::from_value(value).map_err(|e| refuse(format!("{field}.{key}"), e.to_string()))
}

fn header_modifier(
    raw: &serde_json::Value,
    field: &str,
    key: &str,
) -> Result<HeaderModifier, Refusal> {
    let m: RawHeaderModifier = body(raw, field, key)?;
    let field = format!("{field}.{key}");
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut out = HeaderModifier::default();
    let mut check_name = |list: &str, i: usize, name: &str| -> Result<String, Refusal> {
        let at = format!("{field}.{list}[{i}]");
        let lower = header_name(&at, name)?;
        if let Some(first) = names.insert(lower.clone(), at.clone()) {
            return Err(refuse(
                at,
                format!("header {name:?} is already modified by {first}"),
            ));
        }
        Ok(lower)
    };
    for (list, entries, target) in [("set", &m.set, &mut out.set), ("add", &m.add, &mut out.add)] {
        if entries.len() > MAX_HEADER_ENTRIES {
            return Err(refuse(
                format!("{field}.{list}"),
                format!("{} entries; at most {MAX_HEADER_ENTRIES}", entries.len()),
            ));
        }
        for (i, header) in entries.iter().enumerate() {
            let name = check_name(list, i, &header.name)?;
            header_value(&format!("{field}.{list}[{i}].value"), &header.value)?;
            target.push((name, header.value.clone()));
        }
    }
    if m.remove.len() > MAX_HEADER_ENTRIES {
        return Err(refuse(
            format!("{field}.remove"),
            format!("{} entries; at most {MAX_HEADER_ENTRIES}", m.remove.len()),
        ));
    }
    for (i, name) in m.remove.iter().enumerate() {
        out.remove.push(check_name("remove", i, name)?);
    }
    Ok(out)
}

/// A header name a filter may modify, lower-cased.
pub(super) fn header_name(field: &str, name: &str) -> Result<String, Refusal> {
    if name.len() > MAX_HEADER_NAME || http_header_name(name).is_none() {
        return Err(refuse(
            field,
            format!(
                "{name:?} is not a valid header name (RFC 9110 token, at most {MAX_HEADER_NAME} characters)"
            ),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if !strait_proto::header_names::filter_may_modify(&lower) {
        return Err(refuse(
            field,
            format!(
                "{name:?} is a header the mesh or the connection owns; filters may not modify it"
            ),
        ));
    }
    Ok(lower)
}

/// A header value: visible ASCII, spaces and tabs inside; no CR, LF, NUL or other controls.
pub(super) fn header_value(field: &str, value: &str) -> Result<(), Refusal> {
    if value.is_empty() || value.len() > MAX_HEADER_VALUE {
        return Err(refuse(
            field,
            format!("a header value is 1 to {MAX_HEADER_VALUE} characters"),
        ));
    }
    let bytes = value.as_bytes();
    let bad = bytes
        .iter()
        .any(|b| !(b.is_ascii_graphic() || *b == b' ' || *b == b'\t'));
    if bad || bytes[0] == b' ' || bytes[bytes.len() - 1] == b' ' {
        return Err(refuse(
            field,
            format!(
                "{value:?} is not a valid header value (visible ASCII, no CR, LF or leading or trailing space)"
            ),
        ));
    }
    Ok(())
}

fn path_modifier(
    raw: &RawPathModifier,
    field: &str,
    prefix: PrefixMatch<'_>,
) -> Result<PathModifier, Refusal> {
    match (
        raw.modifier_type.as_str(),
        &raw.replace_full_path,
        &raw.replace_prefix_match,
    ) {
        ("ReplaceFullPath", Some(path), None) => {
            uri_path(&format!("{field}.replaceFullPath"), path)?;
            Ok(PathModifier::Full(path.clone()))
        }
        ("ReplacePrefixMatch", None, Some(path)) => {
            let at = format!("{field}.replacePrefixMatch");
            // An empty replacement is the spec's way to strip the prefix.
            if !path.is_empty() {
                uri_path(&at, path)?;
            }
            let matched = prefix.map_err(|why| refuse(&at, why))?;
            Ok(PathModifier::Prefix {
                matched: matched.to_owned(),
                replacement: path.clone(),
            })
        }
        ("ReplaceFullPath" | "ReplacePrefixMatch", _, _) => Err(refuse(
            field,
            format!(
                "type {} needs its own field (replaceFullPath or replacePrefixMatch) and no other",
                raw.modifier_type
            ),
        )),
        (other, _, _) => Err(refuse(
            format!("{field}.type"),
            format!("{other:?} is not a path modifier (ReplaceFullPath or ReplacePrefixMatch)"),
        )),
    }
}

/// A path that makes a valid request target: starts with `/`, no query or fragment, no
/// whitespace or control characters, at most [`MAX_PATH`] bytes.
fn uri_path(field: &str, path: &str) -> Result<(), Refusal> {
    let valid = path.starts_with('/')
        && path.len() <= MAX_PATH
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"?#\\\"<>^`{|}".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(refuse(
            field,
            format!(
                "{path:?} is not a valid path (starts with '/', visible ASCII without '?', '#', '//' or spaces, at most {MAX_PATH} characters)"
            ),
        ))
    }
}

/// A DNS hostname as the Gateway API's `PreciseHostname` (RFC 1123, lower case, no wildcard).
fn precise_hostname(field: &str, host: &str) -> Result<(), Refusal> {
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if host.len() <= 253 && labels_ok && valid_name(host) {
        Ok(())
    } else {
        Err(refuse(
            field,
            format!(
                "{host:?} is not a valid hostname (lower-case RFC 1123 name, no wildcard, no port)"
            ),
        ))
    }
}

fn redirect(
    raw: &serde_json::Value,
    field: &str,
    prefix: PrefixMatch<'_>,
) -> Result<Redirect, Refusal> {
    let r: RawRedirect = body(raw, field, "requestRedirect")?;
    let field = format!("{field}.requestRedirect");
    let scheme = match r.scheme.as_deref() {
        None => None,
        Some(s @ ("http" | "https")) => Some(s.to_owned()),
        Some(other) => {
            return Err(refuse(
                format!("{field}.scheme"),
                format!("{other:?} is not a redirect scheme (http or https)"),
            ));
        }
    };
    if let Some(host) = &r.hostname {
        precise_hostname(&format!("{field}.hostname"), host)?;
    }
    let port = r
        .port
        .map(|p| port(p).map_err(|reason| refuse(format!("{field}.port"), reason)))
        .transpose()?;
    let path = r
        .path
        .as_ref()
        .map(|p| path_modifier(p, &format!("{field}.path"), prefix))
        .transpose()?;
    let status = match r.status_code.unwrap_or(302) {
        s @ (301 | 302 | 303 | 307 | 308) => s as u16,
        other => {
            return Err(refuse(
                format!("{field}.statusCode"),
                format!("{other} is not a redirect status (301, 302, 303, 307 or 308)"),
            ));
        }
    };
    Ok(Redirect {
        scheme,
        hostname: r.hostname,
        port,
        path,
        status,
    })
}

fn rewrite(
    raw: &serde_json::Value,
    field: &str,
    prefix: PrefixMatch<'_>,
) -> Result<Rewrite, Refusal> {
    let r: RawRewrite = body(raw, field, "urlRewrite")?;
    let field = format!("{field}.urlRewrite");
    if let Some(host) = &r.hostname {
        precise_hostname(&format!("{field}.hostname"), host)?;
    }
    let path = r
        .path
        .as_ref()
        .map(|p| path_modifier(p, &format!("{field}.path"), prefix))
        .transpose()?;
    Ok(Rewrite {
        hostname: r.hostname,
        path,
    })
}

fn mirror(
    raw: &serde_json::Value,
    field: &str,
    target: &mut MirrorTarget<'_>,
) -> Result<Mirror, Refusal> {
    let m: RawMirror = body(raw, field, "requestMirror")?;
    let field = format!("{field}.requestMirror");
    let group = m.backend_ref.group.as_deref().unwrap_or("");
    let kind = m.backend_ref.kind.as_deref().unwrap_or("Service");
    if !(group.is_empty() || group == "core") || kind != "Service" {
        return Err(refuse(
            format!("{field}.backendRef"),
            format!("backend {group}/{kind} is not a Service"),
        ));
    }
    let (service, port) = target(
        &m.backend_ref.name,
        m.backend_ref.namespace.as_deref(),
        m.backend_ref.port,
    )
    .map_err(|reason| refuse(format!("{field}.backendRef"), reason))?;
    let (numerator, denominator) = match (m.percent, &m.fraction) {
        (Some(_), Some(_)) => {
            return Err(refuse(&field, "percent and fraction cannot both be set"));
        }
        (Some(p), None) if (0..=100).contains(&p) => (p, 100),
        (Some(p), None) => {
            return Err(refuse(
                format!("{field}.percent"),
                format!("{p} is out of range (0-100)"),
            ));
        }
        (None, Some(f)) => {
            let d = f.denominator.unwrap_or(100);
            if d < 1 || f.numerator < 0 || f.numerator > d || d > i64::from(u32::MAX) {
                return Err(refuse(
                    format!("{field}.fraction"),
                    format!(
                        "{}/{d} is not a fraction (0 ≤ numerator ≤ denominator, denominator ≥ 1)",
                        f.numerator
                    ),
                ));
            }
            (f.numerator, d)
        }
        (None, None) => (100, 100),
    };
    Ok(Mirror {
        service,
        port,
        numerator: numerator as u32,
        denominator: denominator as u32,
    })
}

#[cfg(test)]
#[path = "filters_tests.rs"]
mod tests;
