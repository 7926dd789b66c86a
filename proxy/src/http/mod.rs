//! HTTP plumbing shared by the inbound and outbound paths: serving client connections,
//! pooled upstream connections, hop-by-hop headers and upgrades.
//!
//! The common body type ([`crate::body`]), the head limits ([`crate::head_limits`]) and the
//! reserved headers ([`crate::reserved`]) are leaf modules below this one, so that
//! [`crate::errors`], which this module uses, can build responses from them without a cycle.

pub mod client_body;
pub mod conn_timers;
pub mod forward;
pub mod hop_by_hop;
pub mod keepalive_race;
pub mod park;
pub mod path;
pub mod server;
pub mod smuggling;
pub mod upgrade;
pub mod upstream;

use http::{HeaderValue, Request, Uri, header};

use crate::detect::Protocol;

/// The HTTP version of a connection. A request keeps its version on every hop, so what an
/// app sends is what the next app receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpVersion {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2 (gRPC included).
    Http2,
}

impl HttpVersion {
    /// The version a detected protocol implies, if it is HTTP at all.
    pub fn from_protocol(protocol: Protocol) -> Option<Self> {
        match protocol {
            Protocol::Http1 => Some(HttpVersion::Http1),
            Protocol::Http2 => Some(HttpVersion::Http2),
            Protocol::Opaque => None,
        }
    }

    /// The protocol a mesh connection carrying this version announces.
    pub fn protocol(self) -> Protocol {
        match self {
            HttpVersion::Http1 => Protocol::Http1,
            HttpVersion::Http2 => Protocol::Http2,
        }
    }
}

/// The authority a request names: the URI's (absolute-form or HTTP/2 `:authority`), else
/// the `Host` header.
pub fn authority<B>(request: &Request<B>) -> Option<&str> {
    request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

/// [`authority`] for a request already split into parts.
pub fn authority_of_parts(head: &http::request::Parts) -> Option<&str> {
    head.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| head.headers.get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// Prepares a request for an HTTP/1 upstream: the request target in origin form (an app
/// behind the proxy is not itself a proxy), and a `Host` header carrying the authority.
pub fn to_origin_form<B>(request: &mut Request<B>) {
    let uri = request.uri().clone();
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    if !request.headers().contains_key(header::HOST)
        && let Some(value) = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, value);
    }
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    *request.uri_mut() = Uri::try_from(path).unwrap_or_else(|_| Uri::from_static("/"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_prefers_the_uri_then_the_host_header() {
        let absolute = Request::get("http://api.demo:8080/x")
            .header("host", "ignored")
            .body(())
            .unwrap();
        assert_eq!(authority(&absolute), Some("api.demo:8080"));
        let origin = Request::get("/x")
            .header("host", "api.demo")
            .body(())
            .unwrap();
        assert_eq!(authority(&origin), Some("api.demo"));
        let none = Request::get("/x").body(()).unwrap();
        assert_eq!(authority(&none), None);
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_a_host_header() {
        let mut request = Request::get("http://api.demo:8080/a/b?c=d")
            .body(())
            .unwrap();
        to_origin_form(&mut request);
        assert_eq!(request.uri(), "/a/b?c=d");
        assert_eq!(request.headers()["host"], "api.demo:8080");
    }

    #[test]
    fn an_existing_host_header_is_kept() {
        let mut request = Request::get("http://api.demo/x")
            .header("host", "virtual.host")
            .body(())
            .unwrap();
        to_origin_form(&mut request);
        assert_eq!(request.headers()["host"], "virtual.host");
        assert_eq!(request.uri(), "/x");
    }
}
