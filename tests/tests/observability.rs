//! What operators read: request outcomes classified once for HTTP and gRPC (a gRPC failure in
//! trailers, the proxy's own UNAVAILABLE), `strait_build_info` and the process metrics on both
//! binaries' admin ports — read back through a Prometheus text parser after real traffic from
//! real clients (tonic) through the real binaries — and the access log's lines, which a
//! caller's path and headers cannot forge.

use std::net::SocketAddr;
use std::time::Duration;

use strait_tests::backend::{HttpBackend, start_grpc};
use strait_tests::grpc::{EchoClient, EchoRequest};
use strait_tests::mesh::{LocalMesh, MeshBuilder};
use strait_tests::metrics::Metrics;
use strait_tests::ports::free_port;
use strait_tests::process::{Proxy, ProxyBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};

async fn grpc_client(outbound: SocketAddr) -> EchoClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{outbound}"))
        .unwrap()
        .origin("http://grpc.demo:80".parse().unwrap())
        .connect()
        .await
        .unwrap();
    EchoClient::new(channel)
}

fn ask(message: &str, fail_with: tonic::Code) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        fail_with: fail_with as i32,
    }
}

/// The responses of `direction` carrying every label in `labels`.
fn responses(metrics: &Metrics, direction: &str, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("direction", direction)];
    all.extend_from_slice(labels);
    metrics.sum("strait_http_responses_total", &all)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_failure_in_trailers_counts_as_a_failure_on_both_proxies() {
    let backend = start_grpc().await;
    let mesh = LocalMesh::start(&[("grpc", backend)]);
    let mut client = grpc_client(mesh.client.outbound).await;

    client.say(ask("fine", tonic::Code::Ok)).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(ask("first", tonic::Code::Ok)).await.unwrap();
    tx.send(ask("second", tonic::Code::Internal)).await.unwrap();
    let mut replies = client
        .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("the stream's headers are 200 OK")
        .into_inner();
    let first = replies.message().await.unwrap().expect("the first reply");
    assert_eq!(first.message, "first");
    let status = tokio::time::timeout(Duration::from_secs(5), replies.message())
        .await
        .expect("the stream ends")
        .expect_err("the stream ends with the status it was asked for");
    assert_eq!(status.code(), tonic::Code::Internal);
    assert_eq!(status.message(), "failing as asked: second");
    drop(tx);

    for (proxy, direction) in [(&mesh.client, "outbound"), (&mesh.server, "inbound")] {
        let metrics = Metrics::fetch(proxy.admin).await;
        assert_eq!(
            responses(
                &metrics,
                direction,
                &[("grpc_status", "13"), ("classification", "failure")]
            ),
            1.0,
            "{direction}: the stream's INTERNAL in its trailers is one failure\n{}",
            metrics.text
        );
        assert_eq!(
            responses(
                &metrics,
                direction,
                &[("grpc_status", "0"), ("classification", "success")]
            ),
            1.0,
            "{direction}: the unary call's OK is one success\n{}",
            metrics.text
        );
        assert_eq!(
            responses(&metrics, direction, &[]),
            2.0,
            "{direction}: each call counted once"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxys_own_unavailable_counts_as_a_failure_though_its_http_status_is_200() {
    // Nothing listens on the service's only endpoint.
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mesh = LocalMesh::start(&[("grpc", closed)]);
    let mut client = grpc_client(mesh.client.outbound).await;

    let status = client
        .say(ask("anyone there?", tonic::Code::Ok))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    let metrics = Metrics::fetch(mesh.client.admin).await;
    assert_eq!(
        responses(
            &metrics,
            "outbound",
            &[
                ("status_class", "2xx"),
                ("grpc_status", "14"),
                ("classification", "failure")
            ]
        ),
        1.0,
        "the proxy's UNAVAILABLE is a failure\n{}",
        metrics.text
    );
    assert_eq!(
        responses(&metrics, "outbound", &[("classification", "success")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn build_info_and_process_metrics_are_on_both_admin_ports() {
    let mesh = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("backend-0", "backend", &[("app", "backend")])
        .start();
    let proxy = Metrics::fetch(mesh.proxy("backend-0").admin).await;
    let control_plane = Metrics::fetch(mesh.control_plane.admin).await;
    for (who, metrics) in [("proxy", &proxy), ("control plane", &control_plane)] {
        assert_eq!(
            metrics.sum(
                "strait_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0,
            "{who}: strait_build_info{{version}} is 1\n{}",
            metrics.text
        );
        // A proxy that has just started may not have used a full clock tick of CPU yet.
        assert!(
            metrics
                .names()
                .contains(&"process_cpu_seconds_total".to_owned()),
            "{who}: process_cpu_seconds_total is exported\n{}",
            metrics.text
        );
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                metrics.sum(name, &[]) > 0.0,
                "{who}: {name} is exported and positive\n{}",
                metrics.text
            );
        }
    }
}

/// The access-log lines a proxy printed (its other output is tracing's JSON, with `fields`).
fn access_lines(proxy: &Proxy) -> Vec<serde_json::Value> {
    proxy
        .process
        .logs()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v.get("fields").is_none() && v.get("direction").is_some())
        .collect()
}

/// Waits up to 5 s for `proxy` to print `n` access-log lines (its output is read by another
/// thread).
fn wait_access_lines(proxy: &Proxy, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let lines = access_lines(proxy);
        if lines.len() >= n || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A path and headers a hostile caller chose to break out of a JSON line: quotes, braces and an
/// encoded newline in the path (the proxy refuses a backslash there), a tab and a non-UTF-8
/// byte in a header.
const FORGED_PATH: &str = "/a\"},{\"forged\":1}%0A{\"forged\":2}";

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_writes_one_json_line_per_request_and_callers_cannot_forge_lines() {
    let backend = HttpBackend::start("backend").await;
    let log = |b: ProxyBuilder| b.flag("--access-log", "json");
    let mesh = LocalMesh::start_with(&[("backend", backend.addr)], log, log);

    let mut stream = tokio::net::TcpStream::connect(mesh.client.outbound)
        .await
        .unwrap();
    let mut request = format!(
        "GET {FORGED_PATH} HTTP/1.1\r\nHost: backend.demo\r\nUser-Agent: ua\"}}\t{{\"forged\":3}}"
    )
    .into_bytes();
    request.extend_from_slice(b"\xff\r\nX-Request-Id: req-1\r\nConnection: close\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answers in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    for (proxy, direction) in [(&mesh.client, "outbound"), (&mesh.server, "inbound")] {
        let lines = wait_access_lines(proxy, 1);
        assert_eq!(lines.len(), 1, "{direction}: one line for one request");
        for raw in proxy.process.logs() {
            let parsed: serde_json::Value = serde_json::from_str(&raw)
                .unwrap_or_else(|e| panic!("{direction}: a line that is not JSON ({e}): {raw}"));
            assert!(
                parsed.get("forged").is_none(),
                "{direction}: a caller forged a line: {raw}"
            );
        }
        let line = &lines[0];
        assert_eq!(line["direction"], direction);
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], FORGED_PATH, "{line}");
        assert_eq!(
            line["user_agent"], "ua\"}\t{\"forged\":3}\u{fffd}",
            "{line}"
        );
        assert_eq!(line["request_id"], "req-1");
        assert_eq!(line["status"], 200);
        assert!(line["grpc_status"].is_null());
        assert!(line["response_bytes"].as_u64().unwrap() > 0, "{line}");
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0, "{line}");
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            timestamp.len() == 24 && timestamp.ends_with('Z') && timestamp.starts_with("20"),
            "{timestamp}"
        );
        assert!(line["upstream"].is_string(), "{line}");
        match direction {
            "outbound" => {
                assert_eq!(line["authority"], "backend.demo");
                assert_eq!(line["route"], "default");
            }
            _ => assert!(line["client_addr"].is_string(), "{line}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_access_log_off_no_line_is_written() {
    let backend = HttpBackend::start("backend").await;
    let off = |b: ProxyBuilder| b.flag("--access-log", "off");
    let mesh = LocalMesh::start_with(&[("backend", backend.addr)], off, off);
    let answer = strait_tests::client::get(mesh.client.outbound, "backend.demo", "/quiet").await;
    assert_eq!(answer.status, 200);
    // The response has streamed to its end on both proxies before the client got it whole;
    // give their output a moment to be read.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for proxy in [&mesh.client, &mesh.server] {
        assert!(access_lines(proxy).is_empty());
        assert!(
            !proxy.process.logged("/quiet"),
            "{:?}",
            proxy.process.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_workload_labels_come_from_proven_identities_and_headers_cannot_forge_them() {
    let mesh = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-0", "backend", &[("app", "backend")])
        .start();
    let _app = HttpBackend::start_on(mesh.workload("backend-0").app(), "backend-0").await;
    mesh.wait_meshed("frontend-1");

    let mut sender = strait_tests::client::http1(mesh.proxy("frontend-1").outbound).await;
    let request = http::Request::get("/")
        .header("host", "backend.demo")
        .header("strait-client-id", "spiffe://cluster.local/ns/evil/sa/root")
        .header("l5d-client-id", "spiffe://cluster.local/ns/evil/sa/root")
        .header(
            "x-forwarded-client-cert",
            "URI=spiffe://cluster.local/ns/evil/sa/root",
        )
        .body(strait_tests::client::empty())
        .unwrap();
    let answer = strait_tests::client::collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!(answer.status, 200);

    let outbound = Metrics::fetch(mesh.proxy("frontend-1").admin).await;
    assert_eq!(
        outbound.sum(
            "strait_http_requests_total",
            &[
                ("direction", "outbound"),
                ("peer_namespace", "demo"),
                ("peer_serviceaccount", "backend")
            ]
        ),
        1.0,
        "outbound: the destination's namespace and service account\n{}",
        outbound.text
    );
    let inbound = Metrics::fetch(mesh.proxy("backend-0").admin).await;
    assert_eq!(
        inbound.sum(
            "strait_http_requests_total",
            &[
                ("direction", "inbound"),
                ("peer_namespace", "demo"),
                ("peer_serviceaccount", "frontend")
            ]
        ),
        1.0,
        "inbound: the caller's proven namespace and service account\n{}",
        inbound.text
    );
    for metrics in [&outbound, &inbound] {
        assert!(
            !metrics.text.contains("evil"),
            "a header chose a label value:\n{}",
            metrics.text
        );
    }
}
