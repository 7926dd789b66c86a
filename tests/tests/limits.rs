//! Every documented protocol limit holds on both HTTP versions and in both directions: request
//! heads from clients (bytes, field count, request line) at both listeners, response heads from
//! apps and from peer proxies; and a client's malformed body is answered as the client's fault,
//! never held against a healthy endpoint. Every loop is bounded in count and time.
//!
//! Longer than 500 lines: a whole suite: one test per documented limit, over shared helpers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use strait_proto::discovery::v1 as pb;
use strait_proxy::detect::Protocol;
use strait_proxy::transport_header::Header;
use strait_tests::backend::HttpBackend;
use strait_tests::client::{self, Body, Collected, mesh_prefix};
use strait_tests::h2raw::{RawH2, frame, frame_type, request_block};
use strait_tests::mesh::LocalMesh;
use strait_tests::metrics::Metrics;
use strait_tests::process::Proxy;
use strait_tests::snapshot::{Endpoint, TempDir, service, snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy's default `--max-header-bytes`.
const MAX_HEADER_BYTES: usize = 65_536;
/// The proxy's default `--max-headers`.
const MAX_HEADERS: usize = 100;

/// Sends raw bytes (after `prefix`) on a fresh connection and reads until the proxy closes it
/// (≤ 10 s).
async fn exchange(addr: SocketAddr, prefix: &[u8], bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(prefix).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// An HTTP/2 (prior knowledge) connection to `addr` that starts with `prefix`.
async fn h2_with_prefix(addr: SocketAddr, prefix: &[u8]) -> http2::SendRequest<Body> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(prefix).await.unwrap();
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// Sends `request` on a fresh HTTP/2 connection and returns its answer: the response, or the
/// stream's error (a reset) as text.
async fn h2_send(
    addr: SocketAddr,
    prefix: &[u8],
    request: Request<Body>,
) -> Result<Collected, String> {
    let mut sender = h2_with_prefix(addr, prefix).await;
    let sent = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer within 10 s");
    match sent {
        Ok(response) => Ok(client::collect(response).await),
        Err(error) => Err(format!("{error:?}")),
    }
}

fn get_with_headers(authority: &str, headers: &[(String, String)]) -> Request<Body> {
    let mut builder = Request::get(format!("http://{authority}/ok"));
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(client::empty()).unwrap()
}

/// One header whose value makes a head of about `bytes`.
fn one_header_of(bytes: usize) -> Vec<(String, String)> {
    vec![("x-big".to_owned(), "a".repeat(bytes))]
}

/// `count` small header fields.
fn fields(count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect()
}

async fn assert_still_serving(mesh: &LocalMesh) {
    let response = client::get(mesh.client.outbound, "web.demo", "/ok").await;
    assert_eq!(
        response.status, 200,
        "well-behaved clients are still served"
    );
}

// ---------------------------------------------------------------------------------------
// Request heads

#[tokio::test(flavor = "multi_thread")]
async fn a_100_kib_request_header_gets_431_on_http1_at_both_listeners() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let big = "a".repeat(100 * 1024);
    let request = format!("GET /ok HTTP/1.1\r\nHost: web.demo\r\nX-Big: {big}\r\n\r\n");

    let outbound = exchange(mesh.client.outbound, b"", request.as_bytes()).await;
    assert!(
        outbound.starts_with("HTTP/1.1 431"),
        "outbound: {}",
        &outbound[..outbound.len().min(200)]
    );
    let prefix = mesh_prefix(backend.addr, Protocol::Http1);
    let inbound = exchange(mesh.server.inbound, &prefix, request.as_bytes()).await;
    assert!(
        inbound.starts_with("HTTP/1.1 431"),
        "inbound: {}",
        &inbound[..inbound.len().min(200)]
    );
    assert_eq!(backend.requests(), 0, "nothing reached the app");
    assert_still_serving(&mesh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http1_request_head_one_byte_over_the_limit_gets_431_and_one_at_it_is_served() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    // "GET /ok HTTP/1.1\r\n" (18) + "Host: web.demo\r\n" (16) + "Connection: close\r\n" (19)
    // + "X-Big: " (7) + value + "\r\n" (2) + "\r\n" (2).
    let fixed = 18 + 16 + 19 + 7 + 2 + 2;
    let head = |value_len: usize| {
        format!(
            "GET /ok HTTP/1.1\r\nHost: web.demo\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(value_len)
        )
    };
    let at_limit = head(MAX_HEADER_BYTES - fixed);
    assert_eq!(at_limit.len(), MAX_HEADER_BYTES);
    let answer = exchange(mesh.client.outbound, b"", at_limit.as_bytes()).await;
    assert!(
        answer.contains(" 200 OK"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let over = head(MAX_HEADER_BYTES - fixed + 1);
    let answer = exchange(mesh.client.outbound, b"", over.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(
        backend.requests(),
        1,
        "only the head within the limit reached the app"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_request_heads_over_the_byte_limit_get_431_at_both_listeners() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let prefix = mesh_prefix(backend.addr, Protocol::Http2);
    // Just over the limit (refused by the proxy's own check, which names it) and far over it
    // (refused by h2 before the head is decoded whole).
    for size in [MAX_HEADER_BYTES + 100, 100 * 1024] {
        for (listener, addr, prefix) in [
            ("outbound", mesh.client.outbound, &b""[..]),
            ("inbound", mesh.server.inbound, &prefix[..]),
        ] {
            let request = get_with_headers("web.demo", &one_header_of(size));
            let answer = h2_send(addr, prefix, request).await;
            let answer = answer.unwrap_or_else(|e| panic!("{listener}, {size} bytes: {e}"));
            assert_eq!(
                answer.status,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{listener}, {size} bytes: {answer:?}"
            );
        }
    }
    assert_eq!(backend.requests(), 0, "nothing reached the app");
    assert_still_serving(&mesh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_requests_with_more_fields_than_max_headers_get_431_at_both_listeners() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let prefix = mesh_prefix(backend.addr, Protocol::Http2);
    for (listener, addr, prefix) in [
        ("outbound", mesh.client.outbound, &b""[..]),
        ("inbound", mesh.server.inbound, &prefix[..]),
    ] {
        // 300 small fields: within the byte limit, and within what the app's own HTTP/2
        // server takes (16 KiB by h2's measure), so only the proxy can refuse them.
        let request = get_with_headers("web.demo", &fields(300));
        let answer = h2_send(addr, prefix, request)
            .await
            .unwrap_or_else(|e| panic!("{listener}: {e}"));
        assert_eq!(
            answer.status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "{listener}: {answer:?}"
        );
        assert_eq!(
            answer.header("strait-proxy-error"),
            "request-head-too-large",
            "{listener}"
        );
        // At the limit, served.
        let request = get_with_headers("web.demo", &fields(MAX_HEADERS));
        let answer = h2_send(addr, prefix, request)
            .await
            .unwrap_or_else(|e| panic!("{listener}: {e}"));
        assert_eq!(answer.status, StatusCode::OK, "{listener}: {answer:?}");
    }
    assert_eq!(
        backend.requests(),
        2,
        "only the heads within the limit reached the app"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_line_over_the_limit_gets_414_on_both_versions_at_both_listeners() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |c| c.flag("--max-request-line-bytes", 1024),
        |s| s.flag("--max-request-line-bytes", 1024),
    );
    let path = format!("/{}", "p".repeat(2000));
    let h1_prefix = mesh_prefix(backend.addr, Protocol::Http1);
    let h2_prefix = mesh_prefix(backend.addr, Protocol::Http2);
    for (listener, addr, h1, h2) in [
        ("outbound", mesh.client.outbound, &b""[..], &b""[..]),
        (
            "inbound",
            mesh.server.inbound,
            &h1_prefix[..],
            &h2_prefix[..],
        ),
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: web.demo\r\n\r\n");
        let answer = exchange(addr, h1, request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 414"),
            "{listener}, HTTP/1: {answer}"
        );
        let request = Request::get(format!("http://web.demo{path}"))
            .body(client::empty())
            .unwrap();
        let answer = h2_send(addr, h2, request)
            .await
            .unwrap_or_else(|e| panic!("{listener}, HTTP/2: {e}"));
        assert_eq!(
            answer.status,
            StatusCode::URI_TOO_LONG,
            "{listener}, HTTP/2"
        );
        assert_eq!(answer.header("strait-proxy-error"), "request-line-too-long");
    }
    assert_eq!(backend.requests(), 0, "nothing reached the app");
    assert_still_serving(&mesh).await;
}

/// HTTP/2 error code FLOW_CONTROL_ERROR (RFC 9113 §7).
const FLOW_CONTROL_ERROR: u32 = 0x3;

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_client_sending_past_its_stream_window_is_reset_with_flow_control_error() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |c| c.flag("--h2-stream-window", 65_535),
        |s| s.flag("--h2-stream-window", 65_535),
    );
    let mut h2 = RawH2::connect(mesh.client.outbound).await;
    // A POST to a path that never reads its body: what the proxy can pass on is bounded by
    // the windows downstream (the server proxy's 64 KiB, the app's 1 MiB), so the proxy
    // grants the client little beyond its own 64 KiB.
    let mut block = request_block("web.demo:80", "/slow?ms=5000");
    block[0] = 0x83; // :method POST (static table)
    h2.send(&frame(frame_type::HEADERS, 0x4, 1, &block))
        .await
        .unwrap();
    let chunk = vec![0u8; 16_384];
    let mut sent = 0usize;
    // 4 MiB without waiting for a single WINDOW_UPDATE.
    for _ in 0..256 {
        if h2
            .send(&frame(frame_type::DATA, 0, 1, &chunk))
            .await
            .is_err()
        {
            break;
        }
        sent += chunk.len();
    }
    let mut refusal = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while refusal.is_none() && std::time::Instant::now() < deadline {
        let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(10), h2.next_frame()).await
        else {
            break;
        };
        match frame.kind {
            frame_type::RST_STREAM if frame.stream == 1 => refusal = Some(frame),
            frame_type::GOAWAY => refusal = Some(frame),
            _ => {}
        }
    }
    let refusal = refusal.unwrap_or_else(|| panic!("no reset after {sent} bytes"));
    let code = match refusal.kind {
        // GOAWAY: last stream id (4 bytes), then the error code.
        frame_type::GOAWAY => u32::from_be_bytes(refusal.payload[4..8].try_into().unwrap()),
        _ => refusal.error_code().unwrap(),
    };
    assert_eq!(code, FLOW_CONTROL_ERROR, "{refusal:?} after {sent} bytes");
    assert_still_serving(&mesh).await;
}

// ---------------------------------------------------------------------------------------
// Response heads

/// An app, or with `behind_transport_header` a fake peer proxy, whose responses carry the
/// head the request's path asks for: `/big` one 100 KiB header, `/many` 500 fields, anything
/// else a plain 200. Speaks HTTP/1 and HTTP/2; counts the connections it accepts.
struct HeadServer {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

impl HeadServer {
    async fn start(behind_transport_header: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if behind_transport_header && Header::read(&mut stream).await.is_err() {
                        return;
                    }
                    let service = hyper::service::service_fn(|request: Request<_>| async move {
                        Ok::<_, std::convert::Infallible>(head_response(request.uri().path()))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, accepted }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn head_response(path: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"body")));
    let headers = response.headers_mut();
    match path {
        "/big" => {
            headers.insert("x-big", "b".repeat(100 * 1024).parse().unwrap());
        }
        "/many" => {
            for (name, value) in fields(500) {
                headers.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
        }
        _ => {}
    }
    response
}

/// Sends GET `path` to `web.demo` through `addr` on `version` and returns the answer.
async fn get_on(addr: SocketAddr, path: &str, version: http::Version) -> Collected {
    if version == http::Version::HTTP_2 {
        let request = Request::get(format!("http://web.demo{path}"))
            .body(client::empty())
            .unwrap();
        return h2_send(addr, b"", request)
            .await
            .expect("an HTTP/2 response");
    }
    let mut sender = client::http1(addr).await;
    let request = Request::get(path)
        .header("host", "web.demo")
        .body(client::empty())
        .unwrap();
    client::collect(sender.send_request(request).await.expect("a response")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_response_head_from_the_app_becomes_a_502_naming_it_on_both_versions() {
    let app = HeadServer::start(false).await;
    let mesh = LocalMesh::start(&[("web", app.addr)]);
    let mut refused = 0.0;
    for version in [http::Version::HTTP_11, http::Version::HTTP_2] {
        for path in ["/big", "/many"] {
            let answer = get_on(mesh.client.outbound, path, version).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_GATEWAY,
                "{version:?} {path}: {:?}",
                answer.headers.keys().take(5).collect::<Vec<_>>()
            );
            assert_eq!(
                answer.header("strait-proxy-error"),
                "response-head-too-large",
                "{version:?} {path}"
            );
            refused += 1.0;
        }
        let answer = get_on(mesh.client.outbound, "/ok", version).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{version:?}: a small head passes"
        );
    }
    let metrics = Metrics::fetch(mesh.server.admin).await;
    assert_eq!(
        metrics.sum(
            "strait_http_responses_total",
            &[
                ("direction", "inbound"),
                ("error", "response-head-too-large")
            ]
        ),
        refused,
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_response_head_from_a_peer_proxy_becomes_a_502_and_its_connection_is_dropped()
{
    let peer = HeadServer::start(true).await;
    let dir = TempDir::new("limits-peer");
    let web = service(
        "web",
        "demo",
        80,
        &[],
        &[Endpoint {
            // The app behind the fake peer: only its port travels, in the transport header.
            app: "127.0.0.1:8080".parse().unwrap(),
            proxy_port: Some(peer.addr.port()),
        }],
    );
    let path = dir.write_snapshot("snapshot.json", &snapshot("1", vec![web]));
    let client = Proxy::builder().snapshot(&path).start();
    let mut refused = 0.0;
    for version in [http::Version::HTTP_11, http::Version::HTTP_2] {
        for path in ["/big", "/many"] {
            let answer = get_on(client.outbound, path, version).await;
            assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{version:?} {path}");
            assert_eq!(
                answer.header("strait-proxy-error"),
                "response-head-too-large",
                "{version:?} {path}"
            );
            refused += 1.0;
            // The next request needs a connection of its own: the one that sent the refused
            // head is not reused.
            let before = peer.accepted();
            let answer = get_on(client.outbound, "/ok", version).await;
            assert_eq!(answer.status, StatusCode::OK, "{version:?} after {path}");
            assert_eq!(
                peer.accepted() - before,
                1,
                "{version:?} {path}: the connection that sent the refused head was dropped"
            );
        }
    }
    let metrics = Metrics::fetch(client.admin).await;
    assert_eq!(
        metrics.sum(
            "strait_http_responses_total",
            &[
                ("direction", "outbound"),
                ("error", "response-head-too-large")
            ]
        ),
        refused,
        "{}",
        metrics.text
    );
}

// ---------------------------------------------------------------------------------------
// Malformed request bodies

/// Chunked bodies whose chunk size is malformed: not hex, negative, prefixed, past 2^64.
const MALFORMED_CHUNK_SIZES: [&str; 4] = ["zz", "-5", "0x5", "18446744073709551616"];

fn malformed_post(size: &str) -> String {
    format!(
        "POST /upload HTTP/1.1\r\nHost: web.demo\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabcde\r\n0\r\n\r\n"
    )
}

fn sum(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics.sum(name, labels)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_chunked_bodies_get_400_and_never_eject_a_healthy_endpoint() {
    let a = HttpBackend::start("web-a").await;
    let b = HttpBackend::start("web-b").await;
    let server = Proxy::builder().start();
    let dir = TempDir::new("limits-breaker");
    let mut web = service(
        "web",
        "demo",
        80,
        &[],
        &[
            Endpoint {
                app: a.addr,
                proxy_port: Some(server.inbound.port()),
            },
            Endpoint {
                app: b.addr,
                proxy_port: Some(server.inbound.port()),
            },
        ],
    );
    web.backends[0].policy = Some(pb::BackendPolicy {
        circuit_breaker: Some(pb::CircuitBreaker {
            consecutive_failures: 3,
            // One of the two endpoints may be ejected (the control plane's default).
            max_ejected_percent: 50,
            ..Default::default()
        }),
        ..Default::default()
    });
    let path = dir.write_snapshot("snapshot.json", &snapshot("1", vec![web]));
    let client = Proxy::builder().snapshot(&path).start();

    let mut answers = Vec::new();
    for round in 0..6 {
        for size in MALFORMED_CHUNK_SIZES {
            let answer = exchange(client.outbound, b"", malformed_post(size).as_bytes()).await;
            answers.push((round, size, answer));
        }
    }
    let sent = answers.len() as f64;
    let metrics = Metrics::fetch(client.admin).await;
    assert_eq!(
        sum(&metrics, "strait_endpoint_ejections_total", &[]),
        0.0,
        "no endpoint was ejected; answers: {:?}",
        answers
            .iter()
            .map(|(_, _, a)| a.lines().next().unwrap_or_default())
            .collect::<Vec<_>>()
    );
    for (round, size, answer) in &answers {
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "round {round}, chunk size {size}: {answer}"
        );
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("strait-proxy-error: client-body"),
            "round {round}, chunk size {size}: {answer}"
        );
    }
    assert_eq!(
        sum(
            &metrics,
            "strait_http_responses_total",
            &[("direction", "outbound"), ("error", "client-body")]
        ),
        sent,
        "{}",
        metrics.text
    );
    assert_eq!(
        sum(
            &metrics,
            "strait_http_responses_total",
            &[("direction", "outbound"), ("status_class", "5xx")]
        ),
        0.0,
        "no client fault is reported as a server error: {}",
        metrics.text
    );
    assert_eq!(sum(&metrics, "strait_http_retries_total", &[]), 0.0);
    assert!(
        client.process.logged("client-body"),
        "the client's fault is logged by its kind"
    );
    // Both endpoints still take traffic.
    let mut answered_by = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let answer = client::get(client.outbound, "web.demo", "/ok").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answered_by.insert(answer.header("x-backend").to_owned());
        if answered_by.len() == 2 {
            break;
        }
    }
    assert_eq!(
        answered_by.len(),
        2,
        "both endpoints still serve: {answered_by:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_chunked_bodies_on_a_mesh_connection_get_400_counted_as_the_clients_fault() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let prefix = mesh_prefix(backend.addr, Protocol::Http1);
    let mut sent = 0.0;
    for round in 0..5 {
        for size in MALFORMED_CHUNK_SIZES {
            let answer = exchange(
                mesh.server.inbound,
                &prefix,
                malformed_post(size).as_bytes(),
            )
            .await;
            assert!(
                answer.starts_with("HTTP/1.1 400"),
                "round {round}, chunk size {size}: {answer}"
            );
            assert!(
                answer
                    .to_ascii_lowercase()
                    .contains("strait-proxy-error: client-body"),
                "round {round}, chunk size {size}: {answer}"
            );
            sent += 1.0;
        }
    }
    let metrics = Metrics::fetch(mesh.server.admin).await;
    assert_eq!(
        sum(
            &metrics,
            "strait_http_responses_total",
            &[("direction", "inbound"), ("error", "client-body")]
        ),
        sent,
        "{}",
        metrics.text
    );
    assert_eq!(
        sum(
            &metrics,
            "strait_http_responses_total",
            &[("direction", "inbound"), ("status_class", "5xx")]
        ),
        0.0,
        "{}",
        metrics.text
    );
    assert_still_serving(&mesh).await;
}
