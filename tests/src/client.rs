//! Test clients: plain hyper connections over TCP, so each test controls exactly which
//! protocol it speaks and on how many connections.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// Request body type of the test clients.
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A complete body.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Opens an HTTP/1.1 connection to `addr`.
pub async fn http1(addr: SocketAddr) -> http1::SendRequest<Body> {
    let stream = TcpStream::connect(addr).await.expect("connecting (HTTP/1)");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1 handshake");
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    sender
}

/// Opens an HTTP/2 (prior knowledge) connection to `addr`.
pub async fn http2(addr: SocketAddr) -> http2::SendRequest<Body> {
    let stream = TcpStream::connect(addr).await.expect("connecting (HTTP/2)");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// A response read to its end: status, headers and body.
#[derive(Debug)]
pub struct Collected {
    /// The status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Collected {
    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text, or "" when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// Reads a response to its end.
pub async fn collect(response: Response<hyper::body::Incoming>) -> Collected {
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .expect("reading the response body")
        .to_bytes();
    Collected {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Sends one HTTP/1.1 GET for `path` with `Host: host` on a fresh connection to `addr`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Collected {
    let mut sender = http1(addr).await;
    let request = Request::get(path)
        .header("host", host)
        .body(empty())
        .expect("valid request");
    collect(
        sender
            .send_request(request)
            .await
            .expect("sending the request"),
    )
    .await
}

/// The transport header a peer proxy opens a mesh connection to the app port of `app` with,
/// for tests that speak to an inbound listener directly.
pub fn mesh_prefix(app: std::net::SocketAddr, protocol: strait_proxy::detect::Protocol) -> Bytes {
    strait_proxy::transport_header::Header {
        port: app.port(),
        protocol,
    }
    .encode()
}
