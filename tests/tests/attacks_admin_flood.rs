//! Idle connections to a proxy's admin port. Without a cap they pile up until the process's
//! descriptors, shared with the data listeners, run out. The admin server holds at most 64
//! connections (more are closed at accept and counted) and closes a connection that sends no
//! complete request head within 10 s, so the port recovers by itself and the data path never
//! notices. The control plane's admin port holds the same limits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strait_tests::backend::HttpBackend;
use strait_tests::client::get;
use strait_tests::mesh::{LocalMesh, MeshBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The admin server's connection cap.
const CAP: usize = 64;
/// Connections opened beyond the cap.
const EXTRA: usize = 16;

/// Whether the server closes `stream` within `within` (EOF or reset, not silence).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// `GET /metrics` on a fresh connection; the status line, if one came within 2 s.
async fn metrics_status(admin: SocketAddr) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(admin).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        text.lines().next().map(str::to_owned)
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_to_the_admin_port_are_capped_and_timed_out_while_traffic_flows() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);
    let admin = mesh.client.admin;
    assert_eq!(
        metrics_status(admin).await.as_deref(),
        Some("HTTP/1.1 200 OK")
    );

    let mut idle = Vec::with_capacity(CAP + EXTRA);
    for _ in 0..CAP + EXTRA {
        idle.push(
            TcpStream::connect(admin)
                .await
                .expect("connecting to admin"),
        );
    }
    let opened = Instant::now();
    // Those beyond the cap are closed at once.
    let mut beyond_closed = 0;
    for stream in idle.iter_mut().skip(CAP) {
        if closed_within(stream, Duration::from_secs(2)).await {
            beyond_closed += 1;
        }
    }
    assert_eq!(
        beyond_closed, EXTRA,
        "of {EXTRA} idle connections beyond the cap of {CAP}, only {beyond_closed} were closed"
    );
    let response = get(mesh.client.outbound, "web.demo", "/").await;
    assert_eq!(response.status, 200, "the data path while admin is full");

    // The idle ones are closed by the header-read timeout, and the port answers again.
    for (i, stream) in idle.iter_mut().take(CAP).enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(20)).await,
            "idle admin connection {i} still open {:?} after it was opened",
            opened.elapsed()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if metrics_status(admin).await.as_deref() == Some("HTTP/1.1 200 OK") {
            break;
        }
        assert!(Instant::now() < deadline, "/metrics never answered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get(admin, "admin", "/metrics").await;
    assert!(
        metrics
            .text()
            .contains("strait_admin_connections_refused_total"),
        "the refusals are counted"
    );
    let response = get(mesh.client.outbound, "web.demo", "/").await;
    assert_eq!(response.status, 200, "the data path after the flood");
}

/// Fills `admin` with idle connections beyond the cap; checks the excess is closed at once,
/// the rest by the header-read timeout, and that `/metrics` answers again and counted them.
async fn flood_and_recover(admin: SocketAddr) {
    let mut idle = Vec::with_capacity(CAP + EXTRA);
    for _ in 0..CAP + EXTRA {
        idle.push(
            TcpStream::connect(admin)
                .await
                .expect("connecting to admin"),
        );
    }
    let mut beyond_closed = 0;
    for stream in idle.iter_mut().skip(CAP) {
        if closed_within(stream, Duration::from_secs(2)).await {
            beyond_closed += 1;
        }
    }
    assert_eq!(
        beyond_closed, EXTRA,
        "of {EXTRA} idle connections beyond the cap of {CAP}, only {beyond_closed} were closed"
    );
    for (i, stream) in idle.iter_mut().take(CAP).enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(20)).await,
            "idle admin connection {i} never closed"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics_status(admin).await.as_deref() != Some("HTTP/1.1 200 OK") {
        assert!(Instant::now() < deadline, "/metrics never answered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get(admin, "admin", "/metrics").await;
    assert!(
        metrics
            .text()
            .contains("strait_admin_connections_refused_total"),
        "the refusals are counted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_to_the_control_planes_admin_port_are_capped_and_timed_out() {
    let mesh = MeshBuilder::new()
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .start();
    flood_and_recover(mesh.control_plane.admin).await;
}
