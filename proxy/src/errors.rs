//! Every failure the proxy itself can produce for a request, and the one function that turns
//! it into a response; and [`SendError`], a failure to get an answer that says whether the
//! request came back unsent (the connection pool returns it, the retry rules classify it).
//!
//! This module sits low in the crate (see the layering in the crate's top comment): it
//! builds responses from [`crate::body`] and [`crate::reserved`] and names
//! [`crate::head_limits`] failures, and everything that fails a request depends on it.
//!
//! Each variant has a stable kebab-case name ([`ProxyError::kind`]) that appears in the
//! `strait-proxy-error` response header, in log lines and in metric labels, so an operator can
//! go from a 504 in their app to the metric and the log line.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::body::{self, Body};

/// Response header naming the proxy error behind a response the proxy generated itself.
pub use crate::reserved::PROXY_ERROR as ERROR_HEADER;

/// gRPC status codes used by the proxy (see `google.rpc.Code`).
pub mod grpc_code {
    /// `DEADLINE_EXCEEDED`
    pub const DEADLINE_EXCEEDED: u32 = 4;
    /// `NOT_FOUND`
    pub const NOT_FOUND: u32 = 5;
    /// `PERMISSION_DENIED`
    pub const PERMISSION_DENIED: u32 = 7;
    /// `RESOURCE_EXHAUSTED`
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    /// `INTERNAL`
    pub const INTERNAL: u32 = 13;
    /// `UNAVAILABLE`
    pub const UNAVAILABLE: u32 = 14;
    /// `INVALID_ARGUMENT`
    pub const INVALID_ARGUMENT: u32 = 3;
}

/// A failure of the proxy on behalf of one request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No service answers to the request's authority or original destination.
    #[error("no service in the mesh matches authority {authority:?}")]
    NoRoute {
        /// The authority the request named.
        authority: String,
    },
    /// The connection was not redirected and the request names no authority to route by.
    #[error(
        "the request names no authority (Host or :authority) and the connection has no original destination"
    )]
    NoAuthority,
    /// The request fell to the share of a route's references the control plane could not
    /// resolve (a missing Service, a reference no ReferenceGrant permits).
    #[error("route {route} sends this share of its requests to a backend that does not resolve")]
    UnresolvedBackend {
        /// The route's name.
        route: String,
    },
    /// The chosen backend has no endpoints.
    #[error("backend {backend} has no endpoints")]
    NoEndpoints {
        /// The backend's name.
        backend: String,
    },
    /// Establishing a connection failed.
    #[error("connecting to {addr} failed: {source}")]
    Connect {
        /// Where the proxy tried to connect.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Establishing a connection took longer than the connect timeout.
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// Where the proxy tried to connect.
        addr: SocketAddr,
        /// The timeout that fired.
        timeout: Duration,
    },
    /// The mTLS handshake with the peer proxy failed (wrong identity, untrusted chain...).
    #[error("mTLS handshake with {addr} failed ({reason}): {detail}")]
    Tls {
        /// The peer proxy.
        addr: SocketAddr,
        /// Why, in a word.
        reason: &'static str,
        /// Why, in a sentence.
        detail: String,
    },
    /// The whole request took longer than its timeout (`timeouts.request` or `grpc-timeout`).
    #[error("the request timed out after {0:?}")]
    RequestTimeout(Duration),
    /// One attempt took longer than `timeouts.backendRequest` and no retry was possible.
    #[error("the backend did not answer within {0:?}")]
    BackendRequestTimeout(Duration),
    /// The backend has as many requests pending as its policy allows.
    #[error("circuit breaker open: backend {backend} has {limit} requests pending, its limit")]
    BreakerOpen {
        /// The backend.
        backend: String,
        /// The pending-request limit.
        limit: u32,
    },
    /// The HTTP exchange with the upstream failed after the request was sent.
    #[error("upstream {addr} failed: {source}")]
    Upstream {
        /// The upstream address.
        addr: SocketAddr,
        /// The HTTP error.
        source: hyper::Error,
    },
    /// The upstream refused the protocol upgrade or tunnel.
    #[error("upstream {addr} did not accept the upgrade (status {status})")]
    UpgradeRefused {
        /// The upstream address.
        addr: SocketAddr,
        /// What it answered.
        status: StatusCode,
    },
    /// The request is malformed in a way the proxy will not forward.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request line is longer than the proxy accepts.
    #[error("the request line is longer than {limit} bytes")]
    RequestLineTooLong {
        /// The limit.
        limit: usize,
    },
    /// The request head is larger, or has more header fields, than the proxy accepts.
    #[error("the request head is refused: {0}")]
    RequestHeadTooLarge(crate::head_limits::HeadExcess),
    /// The client's request body broke off or was malformed (a bad chunk size, a reset
    /// stream) while the proxy was passing it on: the client's fault, never the upstream's.
    #[error("the request body is malformed or was cut off by the client: {0}")]
    ClientBody(String),
    /// The upstream's response head is larger, or has more header fields, than the proxy
    /// accepts.
    #[error("upstream {addr} sent a response head the proxy refuses: {detail}")]
    ResponseHeadTooLarge {
        /// The upstream address.
        addr: SocketAddr,
        /// How it exceeds the limits.
        detail: String,
    },
    /// Authorization policy refuses the caller; the message names no policy.
    #[error("forbidden: {}", .0.explanation())]
    Forbidden(crate::authz::DenyReason),
    /// The control plane refused the matching route rule (an unsupported or invalid filter):
    /// answering beats forwarding without a filter the route asked for.
    #[error("route {route} was refused by the control plane (see its configuration status)")]
    RouteRefused {
        /// The route's name.
        route: String,
    },
}

impl ProxyError {
    /// The stable name of the failure, for the response header, logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no-route",
            ProxyError::NoAuthority => "no-authority",
            ProxyError::NoEndpoints { .. } => "no-endpoints",
            ProxyError::UnresolvedBackend { .. } => "unresolved-backend",
            ProxyError::Connect { .. } => "connect-failed",
            ProxyError::ConnectTimeout { .. } => "connect-timeout",
            ProxyError::Tls { .. } => "tls-handshake-failed",
            ProxyError::RequestTimeout(_) => "request-timeout",
            ProxyError::BackendRequestTimeout(_) => "backend-request-timeout",
            ProxyError::BreakerOpen { .. } => "breaker-open",
            ProxyError::Upstream { .. } => "upstream-failed",
            ProxyError::UpgradeRefused { .. } => "upgrade-refused",
            ProxyError::BadRequest(_) => "bad-request",
            ProxyError::Forbidden(_) => "forbidden",
            ProxyError::RequestLineTooLong { .. } => "request-line-too-long",
            ProxyError::RequestHeadTooLarge(_) => "request-head-too-large",
            ProxyError::ClientBody(_) => "client-body",
            ProxyError::ResponseHeadTooLarge { .. } => "response-head-too-large",
            ProxyError::RouteRefused { .. } => "route-refused",
        }
    }

    /// The HTTP status a plain HTTP client receives.
    pub fn http_status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::NoAuthority | ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::RequestHeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::ResponseHeadTooLarge { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::NoEndpoints { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UnresolvedBackend { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Connect { .. } | ProxyError::Upstream { .. } | ProxyError::Tls { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpgradeRefused { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ConnectTimeout { .. }
            | ProxyError::RequestTimeout(_)
            | ProxyError::BackendRequestTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BreakerOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProxyError::RequestLineTooLong { .. } => StatusCode::URI_TOO_LONG,
            ProxyError::RouteRefused { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status a gRPC client receives.
    pub fn grpc_code(&self) -> u32 {
        match self {
            ProxyError::NoRoute { .. } => grpc_code::NOT_FOUND,
            ProxyError::NoAuthority | ProxyError::BadRequest(_) | ProxyError::ClientBody(_) => {
                grpc_code::INVALID_ARGUMENT
            }
            ProxyError::RequestHeadTooLarge(_) => grpc_code::RESOURCE_EXHAUSTED,
            // The same upstream would send the same head again: not UNAVAILABLE, which
            // invites a retry.
            ProxyError::ResponseHeadTooLarge { .. } | ProxyError::UnresolvedBackend { .. } => {
                grpc_code::INTERNAL
            }
            ProxyError::NoEndpoints { .. }
            | ProxyError::Connect { .. }
            | ProxyError::Tls { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UpgradeRefused { .. } => grpc_code::UNAVAILABLE,
            ProxyError::ConnectTimeout { .. }
            | ProxyError::RequestTimeout(_)
            | ProxyError::BackendRequestTimeout(_) => grpc_code::DEADLINE_EXCEEDED,
            ProxyError::BreakerOpen { .. } => grpc_code::UNAVAILABLE,
            ProxyError::Forbidden(_) => grpc_code::PERMISSION_DENIED,
            ProxyError::RequestLineTooLong { .. } => grpc_code::INVALID_ARGUMENT,
            ProxyError::RouteRefused { .. } => grpc_code::INTERNAL,
        }
    }

    /// Builds the response for this failure: for gRPC requests a trailers-only response with
    /// `grpc-status` and `grpc-message`, otherwise the HTTP status with a plain-text body
    /// explaining the failure. Both carry the `strait-proxy-error` header.
    pub fn into_response(self, grpc: bool) -> Response<Body> {
        let message = self.to_string();
        let mut response = if grpc {
            let mut response = Response::new(body::empty());
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from(self.grpc_code()));
            headers.insert("grpc-message", grpc_message(&message));
            response
        } else {
            let mut response = Response::new(body::full(format!("strait: {message}\n")));
            *response.status_mut() = self.http_status();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            response
        };
        let headers = response.headers_mut();
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.kind()));
        if let ProxyError::BadRequest(_)
        | ProxyError::RequestLineTooLong { .. }
        | ProxyError::ClientBody(_) = self
        {
            // Whatever follows a malformed request on this connection cannot be trusted to
            // be framed as the client meant it. (hyper drops the header on HTTP/2.)
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Why a request did not get a response.
#[derive(Debug)]
pub enum SendError {
    /// The request never reached the upstream (connect failed, or every connection tried was
    /// closed before writing); it is handed back and may be sent elsewhere.
    NotSent(Box<Request<Body>>, ProxyError),
    /// The request may have reached the upstream; retrying it is only safe when it is
    /// idempotent.
    Failed(ProxyError),
}

impl SendError {
    /// The error, whether or not the request came back.
    pub fn into_error(self) -> ProxyError {
        match self {
            SendError::NotSent(_, error) | SendError::Failed(error) => error,
        }
    }
}

/// Every kind [`ProxyError::kind`] can return, so a kind read back from a response header can
/// be turned into a `&'static str` for metric labels.
pub const KINDS: [&str; 20] = [
    "no-route",
    "no-authority",
    "no-endpoints",
    "unresolved-backend",
    "connect-failed",
    "connect-timeout",
    "tls-handshake-failed",
    "request-timeout",
    "backend-request-timeout",
    "breaker-open",
    "upstream-failed",
    "upgrade-refused",
    "bad-request",
    "forbidden",
    "request-line-too-long",
    "request-head-too-large",
    "client-body",
    "response-head-too-large",
    "route-refused",
    "other",
];

/// The error kind a response carries in its `strait-proxy-error` header, or "" for responses
/// the application produced.
pub fn kind_of<B>(response: &Response<B>) -> &'static str {
    match response.headers().get(ERROR_HEADER).map(|v| v.as_bytes()) {
        None => "",
        Some(value) => KINDS
            .iter()
            .find(|k| k.as_bytes() == value)
            .copied()
            .unwrap_or("other"),
    }
}

/// The gRPC status in a response's headers (a trailers-only response), if any.
pub fn grpc_status<B>(response: &Response<B>) -> Option<u32> {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Percent-encodes a gRPC status message as the gRPC HTTP/2 spec requires.
fn grpc_message(message: &str) -> HeaderValue {
    let mut encoded = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::try_from(encoded).unwrap_or_else(|_| HeaderValue::from_static("proxy error"))
}

/// Whether a request is gRPC, which decides how errors are reported to it.
pub fn is_grpc<B>(request: &http::Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..16))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect_refused() -> ProxyError {
        ProxyError::Connect {
            addr: "127.0.0.1:9".parse().unwrap(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        }
    }

    #[tokio::test]
    async fn http_errors_carry_status_header_and_an_explanation() {
        let response = ProxyError::NoRoute {
            authority: "nope.example:80".into(),
        }
        .into_response(false);
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[ERROR_HEADER], "no-route");
        use http_body_util::BodyExt as _;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("nope.example:80"), "{body}");
    }

    #[test]
    fn grpc_errors_are_trailers_only_with_a_status_and_encoded_message() {
        let response = connect_refused().into_response(true);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "14");
        assert_eq!(response.headers()[ERROR_HEADER], "connect-failed");
        let message = response.headers()["grpc-message"].to_str().unwrap();
        assert!(message.contains("127.0.0.1:9"), "{message}");
    }

    #[test]
    fn grpc_messages_percent_encode_non_printable_bytes() {
        assert_eq!(grpc_message("a%b\nc"), "a%25b%0Ac");
        assert_eq!(grpc_message("é"), "%C3%A9");
    }

    #[test]
    fn every_kind_is_listed_for_metric_labels() {
        let errors = [
            ProxyError::NoRoute {
                authority: "a".into(),
            },
            ProxyError::NoAuthority,
            ProxyError::NoEndpoints {
                backend: "b".into(),
            },
            connect_refused(),
            ProxyError::RequestTimeout(Duration::from_secs(1)),
            ProxyError::BackendRequestTimeout(Duration::from_secs(1)),
            ProxyError::BreakerOpen {
                backend: "b".into(),
                limit: 1,
            },
            ProxyError::BadRequest("x".into()),
            ProxyError::RequestLineTooLong { limit: 1 },
            ProxyError::RequestHeadTooLarge(crate::head_limits::HeadExcess::Fields {
                count: 2,
                limit: 1,
            }),
            ProxyError::ClientBody("x".into()),
            ProxyError::ResponseHeadTooLarge {
                addr: "127.0.0.1:9".parse().unwrap(),
                detail: "x".into(),
            },
        ];
        for error in errors {
            let kind = error.kind();
            assert!(KINDS.contains(&kind), "{kind}");
            assert_eq!(kind_of(&error.into_response(false)), kind);
        }
    }

    #[test]
    fn head_limits_and_client_bodies_are_the_clients_fault_and_response_heads_the_upstreams() {
        use crate::head_limits::HeadExcess;
        let head = ProxyError::RequestHeadTooLarge(HeadExcess::Bytes { size: 2, limit: 1 });
        assert_eq!(
            head.http_status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let body = ProxyError::ClientBody("invalid chunk size".into());
        assert_eq!(body.http_status(), StatusCode::BAD_REQUEST);
        let response = body.into_response(false);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let upstream = ProxyError::ResponseHeadTooLarge {
            addr: "127.0.0.1:9".parse().unwrap(),
            detail: "x".into(),
        };
        assert_eq!(upstream.http_status(), StatusCode::BAD_GATEWAY);
        assert_eq!(upstream.grpc_code(), grpc_code::INTERNAL);
    }

    #[test]
    fn grpc_requests_are_recognised_by_content_type() {
        let grpc = http::Request::builder()
            .header("content-type", "application/grpc+proto")
            .body(())
            .unwrap();
        let plain = http::Request::builder()
            .header("content-type", "application/json")
            .body(())
            .unwrap();
        assert!(is_grpc(&grpc));
        assert!(!is_grpc(&plain));
    }
}
