//! `RequestRedirect`: the `Location` a redirect answers with, by the Gateway API's rules.

use http::StatusCode;

use super::PathModifier;

/// A compiled redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `http` or `https`; `None`: the request's.
    pub scheme: Option<String>,
    /// `None`: the request's host.
    pub hostname: Option<String>,
    /// `None`: derived (see [`Redirect::port`]).
    pub port: Option<u16>,
    /// `None`: the request's path.
    pub path: Option<PathModifier>,
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
    /// The service port the route is attached to: the mesh's "listener port".
    pub service_port: u16,
}

/// What a redirect keeps of the request.
#[derive(Clone, Copy, Debug)]
pub struct Requested<'a> {
    /// The request's scheme (`http` for a plaintext app).
    pub scheme: &'a str,
    /// The request's host, without a port.
    pub host: &'a str,
    /// The request's path.
    pub path: &'a str,
    /// The request's query, kept as is.
    pub query: Option<&'a str>,
}

impl Redirect {
    /// The port of the `Location`: the filter's, else the redirect scheme's well-known port
    /// when the filter sets a scheme, else the service port (the Gateway API's listener port).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.scheme.as_deref() {
            Some("https") => 443,
            Some("http") => 80,
            _ => self.service_port,
        })
    }

    /// The `Location` for `request`. The port is left out where it is the scheme's default
    /// (80 for http, 443 for https), as the Gateway API asks.
    pub fn location(&self, request: &Requested<'_>) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(request.scheme);
        let host = self.hostname.as_deref().unwrap_or(request.host);
        let port = self.port();
        let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
        let path = match &self.path {
            Some(modifier) => modifier.apply(request.path),
            None => request.path.to_owned(),
        };
        let mut location = format!("{scheme}://{host}");
        if !default_port {
            location.push(':');
            location.push_str(&port.to_string());
        }
        location.push_str(&super::path::with_query(&path, request.query));
        location
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(scheme: Option<&str>, hostname: Option<&str>, port: Option<u16>) -> Redirect {
        Redirect {
            scheme: scheme.map(str::to_owned),
            hostname: hostname.map(str::to_owned),
            port,
            path: None,
            status: StatusCode::FOUND,
            service_port: 80,
        }
    }

    const ECHO: Requested<'static> = Requested {
        scheme: "http",
        host: "echo",
        path: "/scheme",
        query: None,
    };

    #[test]
    fn hostname_redirects_keep_scheme_port_and_path() {
        // MeshHTTPRouteRedirectHostAndStatus.
        let r = redirect(None, Some("example.org"), None);
        assert_eq!(
            r.location(&Requested {
                path: "/hostname-redirect",
                ..ECHO
            }),
            "http://example.org/hostname-redirect"
        );
        let on_8080 = Redirect {
            service_port: 8080,
            ..r
        };
        assert_eq!(on_8080.location(&ECHO), "http://example.org:8080/scheme");
    }

    #[test]
    fn a_scheme_change_takes_the_schemes_well_known_port() {
        // MeshHTTPRouteSchemeRedirect: https on service port 80 → https://echo/scheme.
        assert_eq!(
            redirect(Some("https"), None, None).location(&ECHO),
            "https://echo/scheme"
        );
        let on_8080 = Redirect {
            service_port: 8080,
            ..redirect(Some("http"), None, None)
        };
        assert_eq!(on_8080.location(&ECHO), "http://echo/scheme");
        assert_eq!(
            redirect(Some("https"), Some("example.org"), Some(8443)).location(&ECHO),
            "https://example.org:8443/scheme"
        );
    }

    #[test]
    fn explicit_ports_are_kept_unless_they_are_the_schemes_default() {
        // MeshHTTPRouteRedirectPort.
        assert_eq!(
            redirect(None, None, Some(8083)).location(&ECHO),
            "http://echo:8083/scheme"
        );
        assert_eq!(
            redirect(Some("https"), None, Some(443)).location(&ECHO),
            "https://echo/scheme"
        );
        assert_eq!(
            redirect(Some("https"), None, Some(80)).location(&ECHO),
            "https://echo:80/scheme"
        );
    }

    #[test]
    fn paths_are_replaced_and_the_query_kept() {
        // MeshHTTPRouteRedirectPath.
        let full = Redirect {
            path: Some(PathModifier::Full("/replacement-full".into())),
            ..redirect(None, None, None)
        };
        let request = Requested {
            path: "/original-full/path",
            query: Some("a=1"),
            ..ECHO
        };
        assert_eq!(full.location(&request), "http://echo/replacement-full?a=1");
        let prefix = Redirect {
            path: Some(PathModifier::Prefix {
                matched: "/original-prefix".into(),
                replacement: "/replacement-prefix".into(),
            }),
            ..redirect(None, None, None)
        };
        let request = Requested {
            path: "/original-prefix/lemon",
            ..ECHO
        };
        assert_eq!(
            prefix.location(&request),
            "http://echo/replacement-prefix/lemon"
        );
    }
}
