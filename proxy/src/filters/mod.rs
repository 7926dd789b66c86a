//! Route filters (the Gateway API's `HTTPRouteFilter` and `GRPCRouteFilter`): compiled once per
//! snapshot, applied per request as pure changes to its head or its response's.
//!
//! `headers` sets, adds and removes headers (never the mesh's reserved ones), `path` computes
//! rewritten paths, `redirect` the `Location` of a redirect. Mirrors, which send, live with the
//! outbound path; this module decides nothing that needs I/O. A route without filters has
//! `None` here and pays nothing per request.

pub mod headers;
pub mod path;
pub mod redirect;

use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Uri};
use http::{HeaderValue, StatusCode, header};
use strait_proto::discovery::v1 as pb;

pub use headers::HeaderModifier;
pub use redirect::Redirect;

/// Why a route's filters could not be compiled; the route is set aside.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FilterError {
    field: String,
    reason: String,
}

impl FilterError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A new path: the whole of it, or the part a prefix match matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathModifier {
    /// `ReplaceFullPath`.
    Full(String),
    /// `ReplacePrefixMatch`.
    Prefix {
        /// The route's prefix match.
        matched: String,
        /// What replaces it.
        replacement: String,
    },
}

impl PathModifier {
    /// The new path for `path`.
    pub fn apply(&self, path: &str) -> String {
        match self {
            PathModifier::Full(full) => full.clone(),
            PathModifier::Prefix {
                matched,
                replacement,
            } => path::replace_prefix(path, matched, replacement),
        }
    }

    fn compile(m: Option<&pb::PathModifier>, field: &str) -> Result<Option<Self>, FilterError> {
        let check = |path: &str| {
            if path.is_empty()
                || path.starts_with('/')
                    && PathAndQuery::try_from(path).is_ok()
                    && !path.contains('?')
            {
                Ok(())
            } else {
                Err(FilterError::new(field, format!("{path:?} is not a path")))
            }
        };
        Ok(match m.and_then(|m| m.kind.as_ref()) {
            None => None,
            Some(pb::path_modifier::Kind::FullPath(p)) if !p.is_empty() => {
                check(p)?;
                Some(PathModifier::Full(p.clone()))
            }
            Some(pb::path_modifier::Kind::FullPath(_)) => {
                return Err(FilterError::new(field, "an empty full path"));
            }
            Some(pb::path_modifier::Kind::Prefix(p)) => {
                check(&p.replacement)?;
                check(&p.matched)?;
                Some(PathModifier::Prefix {
                    matched: p.matched.clone(),
                    replacement: p.replacement.clone(),
                })
            }
        })
    }
}

/// `URLRewrite`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// The host the backend sees.
    pub hostname: Option<Authority>,
    /// The path the backend sees.
    pub path: Option<PathModifier>,
}

/// A route's filters, compiled.
#[derive(Clone, Debug, Default)]
pub struct RouteFilters {
    /// `RequestHeaderModifier`.
    pub request_headers: Option<HeaderModifier>,
    /// `ResponseHeaderModifier`.
    pub response_headers: Option<HeaderModifier>,
    /// `RequestRedirect`: answer with it, call no backend.
    pub redirect: Option<Redirect>,
    /// `URLRewrite`.
    pub rewrite: Option<Rewrite>,
    /// Set when the control plane refused the route's rule: answer 500.
    pub refused: Option<String>,
}

/// A backendRef's filters, compiled.
#[derive(Clone, Debug, Default)]
pub struct BackendFilters {
    /// `RequestHeaderModifier`.
    pub request_headers: Option<HeaderModifier>,
    /// `ResponseHeaderModifier`.
    pub response_headers: Option<HeaderModifier>,
}

impl BackendFilters {
    /// Compiles a weighted backend's filters; `None` when it has none.
    pub fn compile(b: &pb::WeightedBackend, field: &str) -> Result<Option<Self>, FilterError> {
        if b.request_headers.is_none() && b.response_headers.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            request_headers: b
                .request_headers
                .as_ref()
                .map(|m| HeaderModifier::compile(m, &format!("{field}.requestHeaders")))
                .transpose()?,
            response_headers: b
                .response_headers
                .as_ref()
                .map(|m| HeaderModifier::compile(m, &format!("{field}.responseHeaders")))
                .transpose()?,
        }))
    }
}

impl RouteFilters {
    /// Compiles a snapshot route's filters (mirrors aside: the table resolves their backends).
    /// `service_port` is the port the route's service answers on (a redirect's default port).
    pub fn compile(
        f: &pb::RouteFilters,
        field: &str,
        service_port: u16,
    ) -> Result<Self, FilterError> {
        let header = |m: Option<&pb::HeaderModifier>, name: &str| {
            m.map(|m| HeaderModifier::compile(m, &format!("{field}.{name}")))
                .transpose()
        };
        let host = |h: &str, at: &str| -> Result<Option<Authority>, FilterError> {
            if h.is_empty() {
                return Ok(None);
            }
            let valid = h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            match Authority::try_from(h) {
                Ok(a) if valid => Ok(Some(a)),
                _ => Err(FilterError::new(at, format!("{h:?} is not a hostname"))),
            }
        };
        let redirect = match &f.redirect {
            None => None,
            Some(r) => {
                let at = format!("{field}.redirect");
                let scheme = match r.scheme.as_str() {
                    "" => None,
                    s @ ("http" | "https") => Some(s.to_owned()),
                    other => return Err(FilterError::new(&at, format!("scheme {other:?}"))),
                };
                let status = match r.status {
                    0 => StatusCode::FOUND,
                    s @ (301 | 302 | 303 | 307 | 308) => {
                        StatusCode::from_u16(s as u16).unwrap_or(StatusCode::FOUND)
                    }
                    other => {
                        return Err(FilterError::new(&at, format!("status {other}")));
                    }
                };
                let port =
                    match r.port {
                        0 => None,
                        p => Some(u16::try_from(p).map_err(|_| {
                            FilterError::new(&at, format!("port {p} is not a port"))
                        })?),
                    };
                Some(Redirect {
                    scheme,
                    hostname: host(&r.hostname, &at)?.map(|a| a.as_str().to_owned()),
                    port,
                    path: PathModifier::compile(r.path.as_ref(), &format!("{at}.path"))?,
                    status,
                    service_port,
                })
            }
        };
        let rewrite = match &f.rewrite {
            None => None,
            Some(r) => Some(Rewrite {
                hostname: host(&r.hostname, &format!("{field}.rewrite"))?,
                path: PathModifier::compile(r.path.as_ref(), &format!("{field}.rewrite.path"))?,
            }),
        };
        Ok(Self {
            request_headers: header(f.request_headers.as_ref(), "requestHeaders")?,
            response_headers: header(f.response_headers.as_ref(), "responseHeaders")?,
            redirect,
            rewrite,
            refused: (!f.refused.is_empty()).then(|| f.refused.clone()),
        })
    }

    /// The request changes, in the Gateway API's order: the rewrite, then the header changes.
    /// Fails only when the rewritten path makes no valid URI.
    pub fn apply_to_request(&self, head: &mut Parts) -> Result<(), http::Error> {
        if let Some(rewrite) = &self.rewrite {
            rewrite_uri(rewrite, head)?;
        }
        if let Some(m) = &self.request_headers {
            m.apply(&mut head.headers);
        }
        Ok(())
    }

    /// The redirect answering `head`, if the route redirects: its status and `Location`.
    pub fn redirect_for(&self, head: &Parts) -> Option<(StatusCode, Option<HeaderValue>)> {
        let redirect = self.redirect.as_ref()?;
        let authority = request_authority(head);
        let host = authority.as_ref().map_or("", Authority::host);
        let location = redirect.location(&redirect::Requested {
            scheme: head.uri.scheme_str().unwrap_or("http"),
            host,
            path: head.uri.path(),
            query: head.uri.query(),
        });
        Some((redirect.status, HeaderValue::try_from(location).ok()))
    }
}

fn request_authority(head: &Parts) -> Option<Authority> {
    head.uri.authority().cloned().or_else(|| {
        head.headers
            .get(header::HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
    })
}

/// Rewrites the request's path (keeping its query) and host: the URI's authority when it has
/// one (HTTP/2, absolute form), else the `Host` header.
fn rewrite_uri(rewrite: &Rewrite, head: &mut Parts) -> Result<(), http::Error> {
    let mut parts = head.uri.clone().into_parts();
    if let Some(modifier) = &rewrite.path {
        let path = modifier.apply(head.uri.path());
        parts.path_and_query = Some(PathAndQuery::try_from(path::with_query(
            &path,
            head.uri.query(),
        ))?);
    }
    if let Some(host) = &rewrite.hostname {
        if parts.authority.is_some() {
            parts.authority = Some(host.clone());
        } else {
            head.headers
                .insert(header::HOST, HeaderValue::from_str(host.as_str())?);
        }
    }
    head.uri = Uri::from_parts(parts)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, host: Option<&str>) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn rewrites_change_path_and_host_and_keep_the_query() {
        let filters = RouteFilters {
            rewrite: Some(Rewrite {
                hostname: Some(Authority::from_static("example.org")),
                path: Some(PathModifier::Prefix {
                    matched: "/prefix/one".into(),
                    replacement: "/one".into(),
                }),
            }),
            ..Default::default()
        };
        let mut h1 = head("/prefix/one/two?x=1", Some("echo:80"));
        filters.apply_to_request(&mut h1).unwrap();
        assert_eq!(h1.uri.to_string(), "/one/two?x=1");
        assert_eq!(h1.headers["host"], "example.org");
        let mut h2 = head("http://echo:80/prefix/one", None);
        filters.apply_to_request(&mut h2).unwrap();
        assert_eq!(h2.uri.to_string(), "http://example.org/one");
    }

    #[test]
    fn redirects_read_host_from_the_uri_or_the_host_header() {
        let filters = RouteFilters {
            redirect: Some(Redirect {
                scheme: None,
                hostname: None,
                port: Some(8083),
                path: None,
                status: StatusCode::MOVED_PERMANENTLY,
                service_port: 80,
            }),
            ..Default::default()
        };
        let (status, location) = filters
            .redirect_for(&head("/port?q", Some("echo:80")))
            .unwrap();
        assert_eq!(status, 301);
        assert_eq!(location.unwrap(), "http://echo:8083/port?q");
        let (_, location) = filters
            .redirect_for(&head("http://[::1]:80/p", None))
            .unwrap();
        assert_eq!(location.unwrap(), "http://[::1]:8083/p");
    }

    #[test]
    fn snapshots_with_invalid_filters_do_not_compile() {
        let bad_status = pb::RouteFilters {
            redirect: Some(pb::Redirect {
                status: 200,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(RouteFilters::compile(&bad_status, "filters", 80).is_err());
        let bad_host = pb::RouteFilters {
            rewrite: Some(pb::Rewrite {
                hostname: "evil.org/x".into(),
                path: None,
            }),
            ..Default::default()
        };
        assert!(RouteFilters::compile(&bad_host, "filters", 80).is_err());
        let bad_path = pb::RouteFilters {
            rewrite: Some(pb::Rewrite {
                hostname: String::new(),
                path: Some(pb::PathModifier {
                    kind: Some(pb::path_modifier::Kind::FullPath("/a\r\nb".into())),
                }),
            }),
            ..Default::default()
        };
        assert!(RouteFilters::compile(&bad_path, "filters", 80).is_err());
    }
}
