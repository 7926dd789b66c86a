//! The proxy keeps itself inside its memory limit: from `--memory-limit` or its cgroup's
//! limit it plans its connection cap and HTTP/2 windows, and past 90 % of the limit it sheds
//! new connections (counted) instead of growing into the OOM killer. Every loop is bounded in
//! count and time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use strait_proxy::detect::Protocol;
use strait_tests::backend::HttpBackend;
use strait_tests::client::{self, mesh_prefix};
use strait_tests::metrics::Metrics;
use strait_tests::process::Proxy;
use strait_tests::procstat;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn refused(metrics: &Metrics, listener: &str, reason: &str) -> f64 {
    metrics.sum(
        "strait_tcp_connections_refused_total",
        &[("listener", listener), ("reason", reason)],
    )
}

/// Whether the proxy closed `stream` without answering (within 5 s).
async fn closed_unanswered(stream: &mut TcpStream) -> bool {
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nhost: web.demo\r\n\r\n")
        .await;
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// One GET through the proxy's inbound listener (as a plaintext mesh peer) to a fresh
/// backend; what came back within 10 s.
async fn get_through_inbound(proxy: &Proxy) -> String {
    let backend = HttpBackend::start("web").await;
    let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
    stream
        .write_all(&mesh_prefix(backend.addr, Protocol::Http1))
        .await
        .unwrap();
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nhost: web.demo\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_limit_lowers_the_connection_cap_and_connections_past_it_are_closed_at_accept() {
    let proxy = Proxy::builder().flag("--memory-limit", "20Mi").start();
    let metrics = Metrics::fetch(proxy.admin).await;
    assert_eq!(
        metrics.sum("strait_memory_limit_bytes", &[]),
        f64::from(20 << 20)
    );
    // (85 % of 20 MiB − the 12 MiB reserve) / 32 KiB per connection = 159.
    const CAP: usize = 159;
    assert_eq!(metrics.sum("strait_max_connections", &[]), CAP as f64);

    // Silent connections hold their slot while detection waits for their first bytes.
    let mut held = Vec::with_capacity(CAP);
    for _ in 0..CAP {
        held.push(TcpStream::connect(proxy.outbound).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        let mut extra = TcpStream::connect(proxy.outbound).await.unwrap();
        assert!(
            closed_unanswered(&mut extra).await,
            "a connection past the planned cap of {CAP} was served"
        );
    }
    let metrics = Metrics::fetch(proxy.admin).await;
    assert_eq!(refused(&metrics, "outbound", "max-connections"), 5.0);
    assert_eq!(refused(&metrics, "outbound", "memory"), 0.0);

    // A freed slot is taken again: the next connection is held open, not closed at accept.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = TcpStream::connect(proxy.outbound).await.unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_secs(1), again.read(&mut byte))
            .await
            .is_err(),
        "a connection after a slot was freed was closed"
    );

    // The inbound listener has a cap of its own.
    let answer = get_through_inbound(&proxy).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// An HTTP/2 app that takes requests and never reads their bodies or answers: whatever a
/// client sends piles up in the proxy in front of it, as behind a stalled app.
async fn start_stalling_h2_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    let _unread = request;
                    std::future::pending::<()>().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn past_its_memory_line_a_proxy_sheds_new_connections_and_stays_under_its_limit() {
    const LIMIT: u64 = 40 << 20;
    let app = start_stalling_h2_app().await;
    let proxy = Proxy::builder().flag("--memory-limit", "40Mi").start();
    let prefix = mesh_prefix(app, Protocol::Http2);
    let mut uploads = Vec::new();
    let mut senders = Vec::new();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Each connection uploads 4 MiB to the stalled app: the proxy holds what flow control
    // lets in. Stop at the first refusal (or after 200 connections).
    for _ in 0..200 {
        if Instant::now() > deadline {
            break;
        }
        let mut stream = TcpStream::connect(proxy.inbound).await.unwrap();
        stream.write_all(&prefix).await.unwrap();
        if let Ok((mut sender, connection)) =
            http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await
        {
            tokio::spawn(connection);
            let request = Request::post("http://stalled.demo/upload")
                .body(client::full(vec![7u8; 4 << 20]))
                .unwrap();
            uploads.push(tokio::spawn(sender.send_request(request)));
            senders.push(sender);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        peak = peak.max(procstat::rss_bytes(proxy.process.pid()).unwrap());
        if refused(&Metrics::fetch(proxy.admin).await, "inbound", "memory") > 0.0 {
            break;
        }
    }
    let metrics = Metrics::fetch(proxy.admin).await;
    assert!(
        refused(&metrics, "inbound", "memory") > 0.0,
        "no connection was shed after {} uploads (peak RSS {} KiB)",
        senders.len(),
        peak / 1024
    );
    assert!(
        peak < LIMIT,
        "the proxy grew to {} KiB, past its {} KiB limit",
        peak / 1024,
        LIMIT / 1024
    );

    // Once the uploads are gone, new connections are served again.
    for upload in &uploads {
        upload.abort();
    }
    drop(senders);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = get_through_inbound(&proxy).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "after the load left, a new connection was not served: {answer}"
    );
}

/// A memory cgroup directory this test may create: cgroup v2's unified hierarchy when it has
/// the memory controller, else v1's memory hierarchy.
fn writable_memory_cgroup(name: &str) -> Option<(PathBuf, &'static str)> {
    let candidates = [
        ("/sys/fs/cgroup", "memory.max"),
        ("/sys/fs/cgroup/unified", "memory.max"),
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes"),
    ];
    candidates.into_iter().find_map(|(root, file)| {
        let controllers = std::fs::read_to_string(format!("{root}/cgroup.controllers"));
        let v1 = file == "memory.limit_in_bytes";
        if !v1 && !controllers.is_ok_and(|c| c.split_whitespace().any(|c| c == "memory")) {
            return None;
        }
        if v1
            && !std::path::Path::new(root)
                .join("memory.limit_in_bytes")
                .exists()
        {
            return None;
        }
        let dir = PathBuf::from(root).join(name);
        std::fs::create_dir(&dir).ok()?;
        Some((dir, file))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_in_a_memory_limited_cgroup_plans_for_that_limit() {
    let name = format!("strait-test-{}", std::process::id());
    let Some((dir, file)) = writable_memory_cgroup(&name) else {
        eprintln!(
            "SKIPPED: this machine has no writable memory cgroup (not root, or no controller)"
        );
        return;
    };
    std::fs::write(dir.join(file), (48u64 << 20).to_string()).unwrap();
    let mut proxy = Proxy::builder().cgroup(&dir).start();
    let metrics = Metrics::fetch(proxy.admin).await;
    let planned = metrics.sum("strait_memory_limit_bytes", &[]);
    let expected = std::fs::read_to_string(dir.join(file)).unwrap();
    proxy.process.signal(nix::sys::signal::Signal::SIGTERM);
    proxy.process.wait_exit(Duration::from_secs(30));
    let _ = std::fs::remove_dir(&dir);
    assert_eq!(planned, expected.trim().parse::<f64>().unwrap());
    assert!((planned - f64::from(48 << 20)).abs() < 65536.0, "{planned}");
    assert!(
        proxy.process.logged("cgroup"),
        "the proxy logs where its limit came from"
    );
}
