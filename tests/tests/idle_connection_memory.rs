//! Idle HTTP/1 client connections are parked (issue 15's memory budget): once quiet, the
//! proxy lets go of hyper's buffers and waits for the client's next bytes itself, counted in
//! `strait_http1_connections_parked`. A parked connection must behave exactly like one that
//! was not: the next request, a pipelined pair and a head split across the park are answered
//! in order; the idle timeout still closes it; it can still be upgraded; draining closes it.
//!
//! Idle HTTP/2 connections give back their codec buffers and stream slabs instead (h2 patched
//! for it, `third_party/h2`): the next frames after a quiet spell must still decode against
//! the HPACK tables built before it, in both directions, and large heads and bodies must
//! still cross.
//!
//! (The memory itself is measured by the benchmark, `strait-bench idle`, not asserted here.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use nix::sys::signal::Signal;
use strait_tests::backend::{Checksum, HttpBackend, pattern_bytes, start_tcp_echo};
use strait_tests::client::{self, collect};
use strait_tests::mesh::LocalMesh;
use strait_tests::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PARKED: &str = "strait_http1_connections_parked";

/// Client connections the proxy with admin `admin` has parked now.
async fn parked(admin: SocketAddr) -> f64 {
    Metrics::fetch(admin).await.sum(PARKED, &[])
}

/// Waits (≤ 10 s) until the proxy has exactly `n` connections parked.
async fn wait_parked(admin: SocketAddr, n: f64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = parked(admin).await;
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now} connections parked after 10 s, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A GET for `/status?code={code}` on `web.demo`.
fn get_status(code: u16) -> String {
    format!("GET /status?code={code} HTTP/1.1\r\nHost: web.demo\r\n\r\n")
}

/// Reads one response (head and a `content-length` body) within 10 s; returns its status
/// line and body.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(
                stream.read(&mut byte).await.unwrap(),
                1,
                "the response head ended early: {:?}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no content-length in {head}"));
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
        let status = head.lines().next().unwrap_or_default().to_owned();
        (status, String::from_utf8(body).unwrap())
    })
    .await
    .expect("a response within 10 s")
}

/// Sends `request` and expects `/status`'s answer for `code`.
async fn exchange(stream: &mut TcpStream, code: u16) {
    stream.write_all(get_status(code).as_bytes()).await.unwrap();
    let (status, body) = read_response(stream).await;
    assert!(status.starts_with(&format!("HTTP/1.1 {code}")), "{status}");
    assert_eq!(body, format!("status {code}\n"));
}

/// Whether the proxy closes `stream` within `within` (EOF or reset, nothing else read).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_connection_answers_the_next_request_a_pipelined_pair_and_a_split_head_in_order() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let admin = mesh.client.admin;
    let mut stream = TcpStream::connect(mesh.client.outbound).await.unwrap();

    exchange(&mut stream, 200).await;
    wait_parked(admin, 1.0, "after one request").await;
    exchange(&mut stream, 201).await;

    // A pipelined pair in one write, sent to a parked connection: both answered, in order.
    wait_parked(admin, 1.0, "after the second request").await;
    let pair = format!("{}{}", get_status(202), get_status(203));
    stream.write_all(pair.as_bytes()).await.unwrap();
    for code in [202, 203] {
        let (status, body) = read_response(&mut stream).await;
        assert!(status.starts_with(&format!("HTTP/1.1 {code}")), "{status}");
        assert_eq!(body, format!("status {code}\n"));
    }

    // A head whose first bytes wake the parked connection and whose rest comes later.
    wait_parked(admin, 1.0, "after the pipelined pair").await;
    let request = get_status(207);
    let (first, rest) = request.split_at(10);
    stream.write_all(first.as_bytes()).await.unwrap();
    wait_parked(admin, 0.0, "once the first bytes of a head arrived").await;
    // Well past the park delay: a connection holding part of a head is not parked again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(parked(admin).await, 0.0, "parked with half a head unread");
    stream.write_all(rest.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert!(status.starts_with("HTTP/1.1 207"), "{status}");
    assert_eq!(body, "status 207\n");

    // And a head split on a connection that was not parked yet, the rest after the delay.
    let mut fresh = TcpStream::connect(mesh.client.outbound).await.unwrap();
    let request = get_status(205);
    let (first, rest) = request.split_at(30);
    fresh.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    fresh.write_all(rest.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut fresh).await;
    assert!(status.starts_with("HTTP/1.1 205"), "{status}");
    assert_eq!(body, "status 205\n");
    exchange(&mut stream, 206).await;
    assert_eq!(backend.requests(), 7, "every request reached the app once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_connection_is_still_closed_by_the_idle_timeout() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |c| c.flag("--http-idle-timeout", "2s"),
        |s| s,
    );
    let mut stream = TcpStream::connect(mesh.client.outbound).await.unwrap();
    exchange(&mut stream, 200).await;
    let idle_from = Instant::now();
    wait_parked(mesh.client.admin, 1.0, "after one request").await;
    assert!(
        closed_within(&mut stream, Duration::from_secs(10)).await,
        "a parked connection outlived its idle timeout by 8 s"
    );
    let lasted = idle_from.elapsed();
    assert!(
        lasted >= Duration::from_millis(1500),
        "closed after {lasted:?}, before the 2 s idle timeout"
    );
    wait_parked(mesh.client.admin, 0.0, "after the idle timeout").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parked_connection_can_still_become_a_connect_tunnel() {
    let backend = HttpBackend::start("web").await;
    let echo = start_tcp_echo().await;
    let mesh = LocalMesh::start(&[("web", backend.addr), ("tcp:9000", echo)]);
    let mut stream = TcpStream::connect(mesh.client.outbound).await.unwrap();
    exchange(&mut stream, 200).await;
    wait_parked(mesh.client.admin, 1.0, "after one request").await;

    stream
        .write_all(b"CONNECT tcp.demo:9000 HTTP/1.1\r\nHost: tcp.demo:9000\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "head ended early");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"through the tunnel").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the echo within 10 s")
        .unwrap();
    assert_eq!(answer, b"echo:through the tunnel");
}

#[tokio::test(flavor = "multi_thread")]
async fn draining_closes_parked_connections_and_the_proxy_exits() {
    let backend = HttpBackend::start("web").await;
    let mut mesh = LocalMesh::start(&[("web", backend.addr)]);
    let mut stream = TcpStream::connect(mesh.client.outbound).await.unwrap();
    exchange(&mut stream, 200).await;
    wait_parked(mesh.client.admin, 1.0, "after one request").await;

    mesh.client.process.signal(Signal::SIGTERM);
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "a parked connection was left open by draining"
    );
    let status = mesh.client.process.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "the drained proxy exits cleanly: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_begun_on_a_parked_connection_is_still_cut_off_by_the_header_read_timeout() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |c| c.flag("--header-read-timeout", "1s"),
        |s| s,
    );
    let mut stream = TcpStream::connect(mesh.client.outbound).await.unwrap();
    exchange(&mut stream, 200).await;
    wait_parked(mesh.client.admin, 1.0, "after one request").await;
    // Parked well past the header-read timeout: only a begun head is timed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    exchange(&mut stream, 201).await;
    wait_parked(mesh.client.admin, 1.0, "after the second request").await;

    stream
        .write_all(b"GET /status?code=200 HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let begun = Instant::now();
    assert!(
        closed_within(&mut stream, Duration::from_secs(10)).await,
        "a head left unfinished after parking outlived the header-read timeout"
    );
    let lasted = begun.elapsed();
    assert!(
        lasted >= Duration::from_millis(800),
        "cut off after {lasted:?}, before the 1 s header-read timeout"
    );
}

/// A quiet spell well past the moment an idle HTTP/2 connection lets go of its buffers.
const QUIET: Duration = Duration::from_millis(300);

/// A body of `data` followed by the trailers `trailers`.
fn body_with_trailers(data: &'static str, trailers: HeaderMap) -> client::Body {
    let frames = [Frame::data(Bytes::from(data)), Frame::trailers(trailers)]
        .into_iter()
        .map(Ok::<_, Box<dyn std::error::Error + Send + Sync>>);
    BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_connection_quiet_between_requests_keeps_its_header_tables_and_carries_large_messages()
 {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let mut sender = client::http2(mesh.client.outbound).await;

    // The same header fields every round: after the first they are sent (and the backend's
    // `x-backend` answered) as references into the HPACK dynamic tables built before the
    // quiet spell. `x-big` is over one frame (16 KiB) and over the 8 KiB read buffer, so it
    // crosses in CONTINUATION frames into a buffer allocated again after the spell.
    let big = "b".repeat(20 * 1024);
    for round in 0..3 {
        tokio::time::sleep(QUIET).await;
        let request = Request::get(format!("http://web.demo/headers?round={round}"))
            .header("x-kept", "a value kept in the dynamic table")
            .header("x-round", round.to_string())
            .header("x-big", big.as_str())
            .body(client::empty())
            .unwrap();
        let response = collect(sender.send_request(request).await.unwrap()).await;
        assert_eq!(response.status, 200, "round {round}: {}", response.text());
        assert_eq!(response.header("x-backend"), "web", "round {round}");
        let text = response.text();
        assert!(
            text.starts_with(&format!("GET http://web.demo/headers?round={round}\n")),
            "round {round}: {text:.200}"
        );
        assert!(
            text.contains("\nx-kept: a value kept in the dynamic table\n"),
            "round {round}"
        );
        assert!(
            text.contains(&format!("\nx-round: {round}\n")),
            "round {round}"
        );
        assert!(
            text.contains(&format!("\nx-big: {big}\n")),
            "round {round}: x-big lost"
        );
    }

    // A 4 MiB upload and a 4 MiB download, each after a quiet spell, byte for byte.
    const FOUR_MIB: u64 = 4 * 1024 * 1024;
    tokio::time::sleep(QUIET).await;
    let chunks = futures_util::stream::iter((0..FOUR_MIB / (256 * 1024)).map(|i| {
        let frame = Frame::data(pattern_bytes(i * 256 * 1024, 256 * 1024));
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(frame)
    }));
    let request = Request::post("http://web.demo/upload")
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap();
    let response = collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-body-bytes"), FOUR_MIB.to_string());
    assert_eq!(
        response.header("x-body-checksum"),
        Checksum::of_pattern(FOUR_MIB).hex()
    );

    tokio::time::sleep(QUIET).await;
    let request = Request::get(format!("http://web.demo/download?bytes={FOUR_MIB}"))
        .body(client::empty())
        .unwrap();
    let response = collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len() as u64, FOUR_MIB);
    let mut sum = Checksum::default();
    sum.update(&response.body);
    assert_eq!(sum, Checksum::of_pattern(FOUR_MIB));

    // Trailers after a quiet spell.
    tokio::time::sleep(QUIET).await;
    let mut trailers = HeaderMap::new();
    trailers.insert("x-trailer", "after the quiet spell".parse().unwrap());
    let request = Request::post("http://web.demo/trailers")
        .body(body_with_trailers("some data", trailers))
        .unwrap();
    let response = collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "x-trailer: after the quiet spell\n");
    assert_eq!(backend.requests(), 6, "every request reached the app once");
}
