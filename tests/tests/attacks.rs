//! Hostile clients: request smuggling, HTTP/2 Rapid Reset and CONTINUATION floods,
//! slowloris, connection floods. Each attack is refused or cut off, the proxy's memory stays
//! bounded, nothing the attacker sends reaches the app, and well-behaved clients are served
//! throughout. Every loop is bounded in count and time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strait_proxy::detect::Protocol;
use strait_proxy::transport_header::Header;
use strait_tests::backend::HttpBackend;
use strait_tests::client;
use strait_tests::h2raw::{RawH2, frame, frame_type, request_block};
use strait_tests::mesh::LocalMesh;
use strait_tests::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes on a fresh connection and reads until the proxy closes it (≤ 10 s).
async fn exchange(addr: SocketAddr, prefix: &[u8], bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(prefix).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn assert_still_serving(mesh: &LocalMesh) {
    let response = client::get(mesh.client.outbound, "web.demo", "/ok").await;
    assert_eq!(
        response.status, 200,
        "well-behaved clients are still served"
    );
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

const SMUGGLING: [(&str, &str); 7] = [
    (
        "differing Content-Length lines",
        "POST / HTTP/1.1\r\nHost: web.demo\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    ),
    (
        "obs-fold",
        "GET / HTTP/1.1\r\nHost: web.demo\r\nX-Folded: a\r\n b\r\n\r\n",
    ),
    (
        "NUL in a header value",
        "GET / HTTP/1.1\r\nHost: web.demo\r\nX-Nul: a\0b\r\n\r\n",
    ),
    (
        "a control character in a header name",
        "GET / HTTP/1.1\r\nHost: web.demo\r\nX-\x01Bad: a\r\n\r\n",
    ),
    (
        "two Host lines",
        "GET / HTTP/1.1\r\nHost: web.demo\r\nHost: admin.demo\r\n\r\n",
    ),
    (
        "a Transfer-Encoding other than chunked",
        "POST / HTTP/1.1\r\nHost: web.demo\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    ),
    (
        "a space before the header colon",
        "GET / HTTP/1.1\r\nHost: web.demo\r\nContent-Length : 5\r\n\r\nabcde",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_attempts_get_400_on_both_listeners_and_never_reach_the_app() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let mesh_prefix = Header {
        port: backend.addr.port(),
        protocol: Protocol::Http1,
    }
    .encode();
    for (what, request) in SMUGGLING {
        let outbound = exchange(mesh.client.outbound, b"", request.as_bytes()).await;
        assert!(
            outbound.starts_with("HTTP/1.1 400"),
            "outbound, {what}: {outbound}"
        );
        let inbound = exchange(mesh.server.inbound, &mesh_prefix, request.as_bytes()).await;
        assert!(
            inbound.starts_with("HTTP/1.1 400"),
            "inbound, {what}: {inbound}"
        );
    }
    assert_eq!(
        backend.requests(),
        0,
        "no smuggling attempt reached the app"
    );
    assert_still_serving(&mesh).await;
}

/// hyper's parser lets Transfer-Encoding override Content-Length and drops the latter, as
/// RFC 9112 §6.3 prescribes, and closes the connection after the response; so the bytes a
/// Content-Length-trusting server would have read as a second request are never read at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_both_length_and_encoding_smuggles_nothing() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let mesh_prefix = Header {
        port: backend.addr.port(),
        protocol: Protocol::Http1,
    }
    .encode();
    let attack = "POST / HTTP/1.1\r\nHost: web.demo\r\nContent-Length: 48\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.demo\r\n\r\n";
    for (listener, prefix) in [
        (mesh.client.outbound, &b""[..]),
        (mesh.server.inbound, &mesh_prefix[..]),
    ] {
        // `exchange` reads until the proxy closes the connection: it must, after one answer.
        let answer = exchange(listener, prefix, attack.as_bytes()).await;
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
        assert!(!answer.contains("/smuggled"), "{answer}");
    }
    assert_eq!(
        backend.requests(),
        2,
        "one POST per listener, nothing smuggled"
    );
    let answer = exchange(
        mesh.client.outbound,
        b"",
        b"POST /upload HTTP/1.1\r\nHost: web.demo\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(
        answer.to_ascii_lowercase().contains("x-body-bytes: 5"),
        "the chunked framing decided the body: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_app_receives_is_framed_one_way_only() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr), ("other", backend.addr)]);

    // The absolute-form target decides, for routing and for the Host the app sees.
    let answer = exchange(
        mesh.client.outbound,
        b"",
        b"GET http://web.demo/ HTTP/1.1\r\nHost: other.demo\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("host: web.demo"), "{answer}");
    assert!(!answer.contains("other.demo"), "{answer}");

    // Agreeing duplicate lengths reach the app as one.
    let answer = exchange(
        mesh.client.outbound,
        b"",
        b"POST /upload HTTP/1.1\r\nHost: web.demo\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nabcde",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-body-bytes: 5"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rapid_reset_flood_is_cut_off_without_turning_into_upstream_requests() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let pid = mesh.client.process.pid();
    let before = rss(pid);

    let mut attacker = RawH2::connect(mesh.client.outbound).await;
    attacker
        .send(&frame(frame_type::SETTINGS, 0x1, 0, &[]))
        .await
        .unwrap();
    let block = request_block("web.demo:80", "/slow?ms=2000");
    let mut burst = bytes::BytesMut::new();
    let mut sent = 0u32;
    let mut write_failed = false;
    for i in 0..5_000u32 {
        let stream = 1 + 2 * i;
        burst.extend_from_slice(&frame(frame_type::HEADERS, 0x1 | 0x4, stream, &block));
        // RST_STREAM(CANCEL) right behind each request.
        burst.extend_from_slice(&frame(
            frame_type::RST_STREAM,
            0,
            stream,
            &8u32.to_be_bytes(),
        ));
        if burst.len() > 64 * 1024 {
            if attacker.send(&burst).await.is_err() {
                write_failed = true;
                break;
            }
            burst.clear();
        }
        sent += 1;
    }
    if !write_failed {
        let _ = attacker.send(&burst).await;
    }
    let mut goaway = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), attacker.next_frame()).await {
            Ok(Some(f)) if f.kind == frame_type::GOAWAY => {
                goaway = Some(f);
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let goaway = goaway.expect("the flood ends with GOAWAY");
    let code = u32::from_be_bytes(goaway.payload[4..8].try_into().unwrap());
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM, after {sent} streams");

    // Give any stream that slipped through time to show up at the app.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        backend.requests() < 100,
        "{} of {sent} reset streams became upstream requests",
        backend.requests()
    );
    let grown = rss(pid).saturating_sub(before);
    assert!(grown < 32 << 20, "RSS grew by {} MiB", grown >> 20);
    assert_still_serving(&mesh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continuation_flood_is_cut_off_with_bounded_memory() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let pid = mesh.client.process.pid();
    let before = rss(pid);

    let mut attacker = RawH2::connect(mesh.client.outbound).await;
    attacker
        .send(&frame(frame_type::SETTINGS, 0x1, 0, &[]))
        .await
        .unwrap();
    // HEADERS without END_HEADERS, then CONTINUATION frames that never end the block, each
    // carrying 16 KiB of literal header fields: 64 MiB if the proxy kept reading.
    let block = request_block("web.demo:80", "/");
    attacker
        .send(&frame(frame_type::HEADERS, 0x1, 1, &block))
        .await
        .unwrap();
    let mut filler = Vec::new();
    while filler.len() < 16 * 1024 - 300 {
        // literal without indexing, new name "x-f" and a 250-byte value
        filler.extend_from_slice(&[0x00, 3, b'x', b'-', b'f', 0x7f, 250 - 127]);
        filler.extend(std::iter::repeat_n(b'a', 250));
    }
    let continuation = frame(frame_type::CONTINUATION, 0, 1, &filler);
    let mut frames_sent = 0;
    for _ in 0..4_096 {
        match tokio::time::timeout(Duration::from_secs(5), attacker.send(&continuation)).await {
            Ok(Ok(())) => frames_sent += 1,
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let mut cut_off = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), attacker.next_frame()).await {
            Ok(Some(f)) if f.kind == frame_type::GOAWAY || f.kind == frame_type::RST_STREAM => {
                cut_off = true;
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                cut_off = true;
                break;
            }
            Err(_) => break,
        }
    }
    assert!(
        cut_off,
        "the proxy ended the flood ({frames_sent} frames sent)"
    );
    assert!(
        frames_sent < 4_096,
        "the proxy stopped reading long before 64 MiB"
    );
    let grown = rss(pid).saturating_sub(before);
    assert!(grown < 32 << 20, "RSS grew by {} MiB", grown >> 20);
    assert_eq!(backend.requests(), 0);
    assert_still_serving(&mesh).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_connections_are_cut_off_while_normal_traffic_keeps_flowing() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |c| c.flag("--header-read-timeout", "2s"),
        |s| s,
    );
    let outbound = mesh.client.outbound;

    // 300 clients trickle a header byte every 100 ms, never finishing.
    let mut trickles = Vec::new();
    for _ in 0..300 {
        trickles.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(outbound).await.unwrap();
            let started = Instant::now();
            if stream
                .write_all(b"GET / HTTP/1.1\r\nHost: web.demo\r\nX-Slow: ")
                .await
                .is_err()
            {
                return started.elapsed();
            }
            for _ in 0..200 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(b"a").await.is_err() {
                    break;
                }
                let mut byte = [0u8; 1];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await
                {
                    break;
                }
            }
            started.elapsed()
        }));
    }

    // Meanwhile a normal client keeps calling.
    let mut sender = client::http1(outbound).await;
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let request = http::Request::get("/")
            .header("host", "web.demo")
            .body(client::empty())
            .unwrap();
        sender.ready().await.unwrap();
        let response = client::collect(sender.send_request(request).await.unwrap()).await;
        assert_eq!(response.status, 200);
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for trickle in trickles {
        let lasted = trickle.await.unwrap();
        assert!(
            lasted < Duration::from_secs(6),
            "a slowloris connection lasted {lasted:?} (header read timeout 2 s)"
        );
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    assert!(
        median < Duration::from_millis(200),
        "normal requests kept their latency: median {median:?}"
    );
    assert_eq!(
        backend.requests(),
        100,
        "only the normal requests reached the app"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_connection_limit_new_connections_are_closed_and_established_clients_keep_working()
{
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |c| c.flag("--max-connections", 20),
        |s| s,
    );
    let outbound = mesh.client.outbound;
    let mut established = client::http1(outbound).await;
    let get = || {
        http::Request::get("/")
            .header("host", "web.demo")
            .body(client::empty())
            .unwrap()
    };
    let first = client::collect(established.send_request(get()).await.unwrap()).await;
    assert_eq!(first.status, 200);

    let mut idle = Vec::new();
    for _ in 0..19 {
        idle.push(TcpStream::connect(outbound).await.unwrap());
    }
    // Let the proxy accept them all before the flood.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..30 {
        let mut extra = TcpStream::connect(outbound).await.unwrap();
        let _ = extra
            .write_all(b"GET / HTTP/1.1\r\nHost: web.demo\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer)).await;
        assert!(
            read.is_ok(),
            "a connection past the limit is closed at once"
        );
        assert!(
            answer.is_empty(),
            "and served nothing: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    for _ in 0..10 {
        established.ready().await.unwrap();
        let response = client::collect(established.send_request(get()).await.unwrap()).await;
        assert_eq!(response.status, 200, "the established client keeps working");
    }
    let metrics = Metrics::parse(mesh.client.admin_get("/metrics").await.text());
    assert!(metrics.sum("strait_tcp_connections_refused_total", &[]) >= 30.0);

    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_still_serving(&mesh).await;
}
