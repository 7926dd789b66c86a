//! Graceful shutdown: on SIGTERM the proxy stops accepting at once and lets in-flight
//! requests finish before it exits.

use std::time::Duration;

use http::Request;
use nix::sys::signal::Signal;
use strait_tests::backend::HttpBackend;
use strait_tests::client::{self, collect};
use strait_tests::mesh::LocalMesh;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_slow_request_finish_and_refuses_new_connections() {
    let backend = HttpBackend::start("web").await;
    let mut mesh = LocalMesh::start(&[("web", backend.addr)]);
    let outbound = mesh.client.outbound;

    let mut sender = client::http1(outbound).await;
    let in_flight = tokio::spawn(async move {
        let request = Request::get("/slow?ms=2000")
            .header("host", "web.demo")
            .body(client::empty())
            .unwrap();
        collect(sender.send_request(request).await.unwrap()).await
    });
    // Let the request reach the backend before the signal.
    for _ in 0..100 {
        if backend.requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.requests(), 1);

    mesh.client.process.signal(Signal::SIGTERM);
    let mut refused = false;
    for _ in 0..50 {
        match TcpStream::connect(outbound).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(refused, "new connections are refused once draining starts");
    assert!(
        !mesh.client.process.has_exited(),
        "the proxy waits for the in-flight request"
    );

    let response = in_flight.await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "slow done\n");

    let status = mesh.client.process.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "a drained proxy exits cleanly: {status:?}"
    );
    assert!(mesh.client.process.wait_logged(
        "shutting down: draining connections",
        Duration::from_secs(5)
    ));
}
