//! HTTP/1.1 and HTTP/2 through two real proxies (client-side outbound → server-side inbound
//! → backend), asserting content end to end.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use strait_tests::backend::{Checksum, HttpBackend, pattern_bytes};
use strait_tests::client::{self, Body, collect};
use strait_tests::mesh::LocalMesh;

const TEN_MIB: u64 = 10 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn http1_get_streams_a_10_mib_response_intact() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let mut sender = client::http1(mesh.client.outbound).await;
    let request = Request::get(format!("/download?bytes={TEN_MIB}"))
        .header("host", "web.demo")
        .body(client::empty())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut sum = Checksum::default();
    let mut len = 0u64;
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            sum.update(data);
            len += data.len() as u64;
            frames += 1;
        }
    }
    assert_eq!(len, TEN_MIB);
    assert_eq!(sum, Checksum::of_pattern(TEN_MIB));
    assert!(
        frames > 1,
        "the body streamed in pieces, not as one buffered blob"
    );
}

fn streamed_pattern(total: u64) -> Body {
    let chunks = stream::unfold(0u64, move |offset| async move {
        (offset < total).then(|| {
            let n = (total - offset).min(256 * 1024);
            let frame = Frame::data(pattern_bytes(offset, n as usize));
            (
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(frame),
                offset + n,
            )
        })
    });
    BodyExt::boxed(StreamBody::new(chunks))
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_post_streams_a_10_mib_request_intact() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let mut sender = client::http1(mesh.client.outbound).await;
    let request = Request::post("/upload")
        .header("host", "web.demo")
        .body(streamed_pattern(TEN_MIB))
        .unwrap();
    let response = collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-body-bytes"), TEN_MIB.to_string());
    assert_eq!(
        response.header("x-body-checksum"),
        Checksum::of_pattern(TEN_MIB).hex()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_keep_alive_carries_many_requests_on_one_client_connection() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let mut sender = client::http1(mesh.client.outbound).await;
    for i in 0..50 {
        sender.ready().await.unwrap();
        let request = Request::post("/echo")
            .header("host", "web.demo:80")
            .body(client::full(format!("request {i}")))
            .unwrap();
        let response = collect(sender.send_request(request).await.unwrap()).await;
        assert_eq!(response.text(), format!("request {i}"));
        assert_eq!(response.header("x-backend"), "web");
    }
    assert_eq!(backend.requests(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_responses_arrive_whole_and_in_order() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let mut sender = client::http1(mesh.client.outbound).await;
    let request = Request::get("/chunks?n=5")
        .header("host", "web.demo")
        .body(client::empty())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let mut body = response.into_body();
    let mut pieces = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.unwrap().data_ref() {
            pieces.push(String::from_utf8(data.to_vec()).unwrap());
        }
    }
    assert_eq!(
        pieces.concat(),
        "chunk-0\nchunk-1\nchunk-2\nchunk-3\nchunk-4\n"
    );
    assert!(
        pieces.len() > 1,
        "chunks written over time arrive over time: {pieces:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_requests_from_http_proxy_clients_are_routed_by_their_authority() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let mut sender = client::http1(mesh.client.outbound).await;
    let request = Request::get("http://web.demo.svc.cluster.local/hello?x=1")
        .body(client::empty())
        .unwrap();
    let response = collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!(response.status, 200);
    // The backend sees origin form and the authority in Host, as from a direct client.
    assert!(
        response.text().starts_with("GET /hello?x=1\n"),
        "{}",
        response.text()
    );
    assert!(
        response
            .text()
            .contains("host: web.demo.svc.cluster.local\n"),
        "{}",
        response.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_headers_are_not_forwarded() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let mut sender = client::http1(mesh.client.outbound).await;
    let request = Request::get("/headers")
        .header("host", "web.demo")
        .header("connection", "keep-alive, x-secret-hop")
        .header("x-secret-hop", "must not pass")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-end-to-end", "kept")
        .body(client::empty())
        .unwrap();
    let response = collect(sender.send_request(request).await.unwrap()).await;
    let seen = response.text();
    assert!(seen.contains("x-end-to-end: kept"), "{seen}");
    assert!(!seen.contains("x-secret-hop"), "{seen}");
    assert!(!seen.contains("proxy-authorization"), "{seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_carries_100_concurrent_streams_on_one_connection() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let sender = client::http2(mesh.client.outbound).await;
    let requests = (0..100).map(|i| {
        let mut sender = sender.clone();
        async move {
            let request = Request::get(format!("http://web.demo/slow?ms=1500&i={i}"))
                .body(client::empty())
                .unwrap();
            let response = collect(sender.send_request(request).await.unwrap()).await;
            (response.status, response.text())
        }
    });
    let responses = futures_util::future::join_all(requests).await;
    for (status, text) in &responses {
        assert_eq!(*status, 200);
        assert_eq!(text, "slow done\n");
    }
    assert_eq!(backend.requests(), 100);
    // All 100 were in progress at the backend at once: multiplexed end to end, not queued.
    assert_eq!(backend.max_in_flight(), 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_streams_bodies_both_ways_at_once() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let mut sender = client::http2(mesh.client.outbound).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<
        Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>,
    >(1);
    let body = BodyExt::boxed(StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    let request = Request::post("http://web.demo/echo").body(body).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let mut echoed = response.into_body();
    // Each piece comes back before the next is sent: a full-duplex stream, not buffered.
    for i in 0..5 {
        let piece = format!("piece {i};");
        tx.send(Ok(Frame::data(Bytes::from(piece.clone()))))
            .await
            .unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(5), echoed.frame())
            .await
            .expect("echo arrives while the request is still open")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), piece);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_authority_gets_a_404_that_says_why() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let response = client::get(mesh.client.outbound, "nowhere.demo:80", "/").await;
    assert_eq!(response.status, 404);
    assert_eq!(response.header("strait-proxy-error"), "no-route");
    assert!(
        response.text().contains("nowhere.demo:80"),
        "{}",
        response.text()
    );
    assert_eq!(backend.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_that_refuses_connections_gets_a_502_that_says_where() {
    // Bind and drop to find a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mesh = LocalMesh::start(&[("dead", dead)]);

    let response = client::get(mesh.client.outbound, "dead.demo", "/").await;
    assert_eq!(response.status, 502);
    assert_eq!(response.header("strait-proxy-error"), "connect-failed");
    let server_logs = mesh.server.process.logs().join("\n");
    assert!(
        server_logs.contains(&dead.to_string()),
        "the inbound proxy logs the app address it could not reach:\n{server_logs}"
    );
}

/// Waits up to `timeout` for `done`.
async fn eventually(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_client_cancels_is_cancelled_upstream_at_once() {
    let backend = HttpBackend::start("web").await;
    // The app would take 10 s to answer; a cancellation must not wait for that.
    backend
        .faults
        .delay_ms
        .store(10_000, std::sync::atomic::Ordering::SeqCst);
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    // HTTP/2: the client resets the stream (dropping the response future sends RST_STREAM).
    let mut sender = client::http2(mesh.client.outbound).await;
    let request = Request::get("http://web.demo/")
        .body(client::empty())
        .unwrap();
    let pending = tokio::spawn(async move { sender.send_request(request).await });
    assert!(eventually(Duration::from_secs(5), || backend.requests() == 1).await);
    pending.abort();
    assert!(
        eventually(Duration::from_secs(1), || backend.cancelled() == 1).await,
        "an HTTP/2 stream reset by the client still runs at the app"
    );

    // HTTP/1.1: the client closes its connection mid-request.
    let mut sender = client::http1(mesh.client.outbound).await;
    let request = Request::get("/")
        .header("host", "web.demo")
        .body(client::empty())
        .unwrap();
    let pending = tokio::spawn(async move { sender.send_request(request).await });
    assert!(eventually(Duration::from_secs(5), || backend.requests() == 2).await);
    pending.abort();
    assert!(
        eventually(Duration::from_secs(1), || backend.cancelled() == 2).await,
        "a request whose client went away still runs at the app"
    );
}
