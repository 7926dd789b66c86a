//! Route matching: which of a service's routes a request takes.
//!
//! The control plane sends routes already in Gateway API precedence order, one match per
//! route entry, so the decision here is "the first route with a matching match wins". The
//! matchers are compiled once per snapshot (regexes included) and are pure functions of the
//! request head.

use http::request::Parts;
use regex::Regex;
use strait_proto::discovery::v1 as pb;

/// A compiled request matcher; every condition present must hold.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    path: Option<PathMatch>,
    method: Option<http::Method>,
    headers: Vec<(http::HeaderName, ValueMatch)>,
    query: Vec<(String, ValueMatch)>,
}

#[derive(Clone, Debug)]
enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Clone, Debug)]
enum ValueMatch {
    Exact(String),
    Regex(Regex),
}

impl ValueMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(expected) => value == expected,
            ValueMatch::Regex(regex) => regex.is_match(value),
        }
    }
}

/// Why a match from a snapshot could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct MatchError {
    field: String,
    reason: String,
}

fn error(field: &str, reason: impl std::fmt::Display) -> MatchError {
    MatchError {
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

/// Compiles a regex anchored to the whole value, as the Gateway API's `RegularExpression`
/// match type is implemented by its conformant meshes, with the same function, anchoring and
/// limits the control plane validated it with.
fn full_regex(field: &str, pattern: &str) -> Result<Regex, MatchError> {
    strait_proto::match_regex::compile(pattern).map_err(|e| error(field, e))
}

fn value_match(
    field: &str,
    value: Option<&pb::header_match::Value>,
) -> Result<ValueMatch, MatchError> {
    match value {
        Some(pb::header_match::Value::Exact(v)) => Ok(ValueMatch::Exact(v.clone())),
        Some(pb::header_match::Value::Regex(r)) => Ok(ValueMatch::Regex(full_regex(field, r)?)),
        None => Err(error(field, "no value to match")),
    }
}

impl Matcher {
    /// Compiles a snapshot match. gRPC matches become path matches on `/service/method`.
    pub fn compile(m: &pb::RouteMatch) -> Result<Self, MatchError> {
        let mut path = match m.path.as_ref().and_then(|p| p.kind.as_ref()) {
            None => None,
            Some(pb::path_match::Kind::Exact(p)) => Some(PathMatch::Exact(p.clone())),
            Some(pb::path_match::Kind::Prefix(p)) => Some(PathMatch::Prefix(p.clone())),
            Some(pb::path_match::Kind::Regex(r)) => {
                Some(PathMatch::Regex(full_regex("path.regex", r)?))
            }
        };
        if let Some(grpc) = &m.grpc {
            if path.is_some() {
                return Err(error(
                    "grpc",
                    "a match cannot have both a path and a gRPC method",
                ));
            }
            path = Some(match (grpc.service.as_str(), grpc.method.as_str()) {
                ("", "") => PathMatch::Prefix("/".into()),
                (service, "") => PathMatch::Prefix(format!("/{service}/")),
                (service, method) if !service.is_empty() => {
                    PathMatch::Exact(format!("/{service}/{method}"))
                }
                (_, method) => PathMatch::Regex(full_regex(
                    "grpc.method",
                    &format!("/[^/]+/{}", regex::escape(method)),
                )?),
            });
        }
        let method = match m.method.as_str() {
            "" => None,
            method => Some(
                http::Method::from_bytes(method.as_bytes())
                    .map_err(|e| error("method", format!("{method:?}: {e}")))?,
            ),
        };
        let headers = m
            .headers
            .iter()
            .map(|h| {
                let name = http::HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|e| error("headers.name", format!("{:?}: {e}", h.name)))?;
                Ok((name, value_match("headers.value", h.value.as_ref())?))
            })
            .collect::<Result<_, MatchError>>()?;
        let query = m
            .query_params
            .iter()
            .map(|q| {
                let value = q.value.as_ref().map(|v| match v {
                    pb::query_param_match::Value::Exact(e) => {
                        pb::header_match::Value::Exact(e.clone())
                    }
                    pb::query_param_match::Value::Regex(r) => {
                        pb::header_match::Value::Regex(r.clone())
                    }
                });
                Ok((
                    q.name.clone(),
                    value_match("queryParams.value", value.as_ref())?,
                ))
            })
            .collect::<Result<_, MatchError>>()?;
        Ok(Self {
            path,
            method,
            headers,
            query,
        })
    }

    /// Whether the request head satisfies every condition.
    pub fn matches(&self, head: &Parts) -> bool {
        if let Some(method) = &self.method
            && head.method != method
        {
            return false;
        }
        if let Some(path) = &self.path
            && !path_matches(path, head.uri.path())
        {
            return false;
        }
        let headers_match = self.headers.iter().all(|(name, value)| {
            head.headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| value.matches(v))
        });
        headers_match
            && self
                .query
                .iter()
                .all(|(name, value)| query_matches(head, name, value))
    }
}

fn path_matches(path_match: &PathMatch, path: &str) -> bool {
    match path_match {
        PathMatch::Exact(expected) => path == expected,
        // Gateway API prefixes match whole path segments: `/api` matches `/api` and `/api/x`
        // but not `/apix`.
        PathMatch::Prefix(prefix) => {
            let prefix = prefix.trim_end_matches('/');
            prefix.is_empty()
                || (path.starts_with(prefix)
                    && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
        }
        PathMatch::Regex(regex) => regex.is_match(path),
    }
}

fn query_matches(head: &Parts, name: &str, value: &ValueMatch) -> bool {
    head.uri.query().is_some_and(|query| {
        query.split('&').any(|pair| {
            let (key, val) = pair.split_once('=').unwrap_or((pair, ""));
            key == name && value.matches(val)
        })
    })
}

/// The index of the first route any of whose matchers accepts the request. A route with no
/// matchers accepts everything.
pub fn select<'r, R>(
    routes: &'r [R],
    matchers: impl Fn(&R) -> &[Matcher],
    head: &Parts,
) -> Option<&'r R> {
    routes.iter().find(|route| accepts(matchers(route), head))
}

/// Whether a route with these matchers takes the request: none (a catch-all), or any one.
pub fn accepts(matchers: &[Matcher], head: &Parts) -> bool {
    matchers.is_empty() || matchers.iter().any(|m| m.matches(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn path(kind: pb::path_match::Kind) -> pb::RouteMatch {
        pb::RouteMatch {
            path: Some(pb::PathMatch { kind: Some(kind) }),
            ..Default::default()
        }
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        let m = Matcher::compile(&path(pb::path_match::Kind::Prefix("/api".into()))).unwrap();
        assert!(m.matches(&head("GET", "/api", &[])));
        assert!(m.matches(&head("GET", "/api/users?x=1", &[])));
        assert!(!m.matches(&head("GET", "/apix", &[])));
        let trailing =
            Matcher::compile(&path(pb::path_match::Kind::Prefix("/api/".into()))).unwrap();
        assert!(trailing.matches(&head("GET", "/api", &[])));
        let root = Matcher::compile(&path(pb::path_match::Kind::Prefix("/".into()))).unwrap();
        assert!(root.matches(&head("GET", "/anything", &[])));
    }

    #[test]
    fn exact_and_regex_paths_match_the_whole_path() {
        let exact = Matcher::compile(&path(pb::path_match::Kind::Exact("/a".into()))).unwrap();
        assert!(exact.matches(&head("GET", "/a?q", &[])));
        assert!(!exact.matches(&head("GET", "/a/b", &[])));
        let regex =
            Matcher::compile(&path(pb::path_match::Kind::Regex("/v[0-9]+/.*".into()))).unwrap();
        assert!(regex.matches(&head("GET", "/v2/items", &[])));
        assert!(
            !regex.matches(&head("GET", "/x/v2/items", &[])),
            "anchored at the start"
        );
    }

    #[test]
    fn method_headers_and_query_must_all_hold() {
        let m = Matcher::compile(&pb::RouteMatch {
            method: "POST".into(),
            headers: vec![pb::HeaderMatch {
                name: "x-canary".into(),
                value: Some(pb::header_match::Value::Exact("yes".into())),
            }],
            query_params: vec![pb::QueryParamMatch {
                name: "debug".into(),
                value: Some(pb::query_param_match::Value::Regex("1|true".into())),
            }],
            ..Default::default()
        })
        .unwrap();
        assert!(m.matches(&head("POST", "/?debug=true", &[("x-canary", "yes")])));
        assert!(!m.matches(&head("GET", "/?debug=true", &[("x-canary", "yes")])));
        assert!(!m.matches(&head("POST", "/?debug=true", &[("x-canary", "no")])));
        assert!(!m.matches(&head("POST", "/?debug=truex", &[("x-canary", "yes")])));
        assert!(!m.matches(&head("POST", "/", &[("x-canary", "yes")])));
    }

    #[test]
    fn grpc_matches_become_paths() {
        let method = Matcher::compile(&pb::RouteMatch {
            grpc: Some(pb::GrpcMethodMatch {
                service: "echo.Echo".into(),
                method: "Say".into(),
            }),
            ..Default::default()
        })
        .unwrap();
        assert!(method.matches(&head("POST", "/echo.Echo/Say", &[])));
        assert!(!method.matches(&head("POST", "/echo.Echo/Other", &[])));
        let service = Matcher::compile(&pb::RouteMatch {
            grpc: Some(pb::GrpcMethodMatch {
                service: "echo.Echo".into(),
                method: String::new(),
            }),
            ..Default::default()
        })
        .unwrap();
        assert!(service.matches(&head("POST", "/echo.Echo/Other", &[])));
        let any_service = Matcher::compile(&pb::RouteMatch {
            grpc: Some(pb::GrpcMethodMatch {
                service: String::new(),
                method: "Say".into(),
            }),
            ..Default::default()
        })
        .unwrap();
        assert!(any_service.matches(&head("POST", "/a.B/Say", &[])));
        assert!(!any_service.matches(&head("POST", "/a.B/Sayx", &[])));
    }

    #[test]
    fn invalid_matches_are_refused_naming_the_field() {
        let bad_regex =
            Matcher::compile(&path(pb::path_match::Kind::Regex("(".into()))).unwrap_err();
        assert!(
            bad_regex.to_string().starts_with("path.regex"),
            "{bad_regex}"
        );
        let bad_method = Matcher::compile(&pb::RouteMatch {
            method: "GE T".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(bad_method.to_string().contains("GE T"), "{bad_method}");
    }

    #[test]
    fn the_first_matching_route_wins_and_empty_matchers_match_all() {
        let routes = vec![
            (
                "exact",
                vec![Matcher::compile(&path(pb::path_match::Kind::Exact("/a".into()))).unwrap()],
            ),
            ("default", vec![]),
        ];
        let pick = |uri| select(&routes, |r| &r.1, &head("GET", uri, &[])).map(|r| r.0);
        assert_eq!(pick("/a"), Some("exact"));
        assert_eq!(pick("/b"), Some("default"));
    }
}
