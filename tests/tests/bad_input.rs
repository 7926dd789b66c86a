//! Hostile and broken clients get a clean protocol-level refusal, and the proxy keeps serving
//! everyone else.

use std::time::{Duration, Instant};

use strait_tests::backend::HttpBackend;
use strait_tests::client;
use strait_tests::h2raw::{REFUSED_STREAM, RawH2, frame, frame_type, request_block};
use strait_tests::mesh::LocalMesh;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes on a fresh connection and reads whatever comes back until the proxy
/// closes the connection (bounded by 10 s).
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn assert_still_serving(mesh: &LocalMesh) {
    let response = client::get(mesh.client.outbound, "web.demo", "/ok").await;
    assert_eq!(
        response.status, 200,
        "the proxy still serves well-behaved clients"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_header_block_gets_431() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |c| c.flag("--max-header-bytes", 16384),
        |s| s,
    );

    let big = "a".repeat(32 * 1024);
    let answer = exchange(
        mesh.client.outbound,
        format!("GET / HTTP/1.1\r\nHost: web.demo\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(backend.requests(), 0, "nothing reached the app");
    assert_still_serving(&mesh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_header_fields_get_431() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |c| c.flag("--max-headers", 20),
        |s| s,
    );

    let headers: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = exchange(
        mesh.client.outbound,
        format!("GET / HTTP/1.1\r\nHost: web.demo\r\n{headers}\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_still_serving(&mesh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_request_lines_get_400() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    for garbage in [
        &b"GET /\x01\x02 HTTP/1.1\r\nHost: web.demo\r\n\r\n"[..],
        b"GET / HTTQ/1.1\r\nHost: web.demo\r\n\r\n",
        b"GET  /double-space HTTP/1.1\r\n\r\n",
    ] {
        let answer = exchange(mesh.client.outbound, garbage).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{garbage:?} → {answer:?}"
        );
    }
    assert_eq!(backend.requests(), 0);
    assert_still_serving(&mesh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_that_are_not_http_and_name_no_destination_are_closed_without_reaching_any_app() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let answer = exchange(mesh.client.outbound, b"\x00\x01binary garbage\r\n\r\n").await;
    assert_eq!(
        answer, "",
        "closed without an answer: there is nobody to give the bytes to"
    );
    assert_eq!(backend.requests(), 0);
    assert!(mesh.client.process.wait_logged(
        "opaque connection has no original destination",
        Duration::from_secs(5)
    ));
    assert_still_serving(&mesh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_cut_off_after_the_header_read_timeout() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |c| c.flag("--header-read-timeout", "1s"),
        |s| s,
    );

    let mut slow = TcpStream::connect(mesh.client.outbound).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: web.demo\r\nX-Partial: ")
        .await
        .unwrap();
    let started = Instant::now();

    // Others are served while the slow client stalls.
    assert_still_serving(&mesh).await;

    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the proxy closed the stalled connection");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    let answer = String::from_utf8_lossy(&rest);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert_eq!(
        backend.requests(),
        1,
        "only the well-behaved request reached the app"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_client_opening_streams_past_the_limit_gets_refused_streams() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |c| c.flag("--h2-max-concurrent-streams", 10),
        |s| s,
    );

    let mut h2 = RawH2::connect(mesh.client.outbound).await;
    // Wait for the server's SETTINGS so the limit is announced before we break it.
    loop {
        let frame = h2.next_frame().await.expect("server SETTINGS");
        if frame.kind == frame_type::SETTINGS && frame.flags & 0x1 == 0 {
            h2.send(&frame_type_settings_ack()).await.unwrap();
            break;
        }
    }
    let block = request_block("web.demo:80", "/slow?ms=1500");
    let streams: Vec<u32> = (0..16).map(|i| 1 + 2 * i).collect();
    for stream in &streams {
        // END_STREAM | END_HEADERS
        h2.send(&frame(frame_type::HEADERS, 0x1 | 0x4, *stream, &block))
            .await
            .unwrap();
    }
    let mut refused = Vec::new();
    let mut answered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused.len() + answered.len() < streams.len() && Instant::now() < deadline {
        let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(10), h2.next_frame()).await
        else {
            break;
        };
        match frame.kind {
            frame_type::RST_STREAM => {
                assert_eq!(frame.error_code(), Some(REFUSED_STREAM), "{frame:?}");
                refused.push(frame.stream);
            }
            frame_type::HEADERS => answered.push(frame.stream),
            frame_type::GOAWAY => panic!("the connection itself must survive: {frame:?}"),
            _ => {}
        }
    }
    assert_eq!(
        answered.len(),
        10,
        "streams within the limit are served: {answered:?}"
    );
    assert_eq!(
        refused.len(),
        6,
        "streams past the limit are refused: {refused:?}"
    );
    assert_eq!(
        backend.max_in_flight(),
        10,
        "refused streams never reached the app"
    );
    assert_still_serving(&mesh).await;
}

fn frame_type_settings_ack() -> bytes::BytesMut {
    frame(frame_type::SETTINGS, 0x1, 0, &[])
}
