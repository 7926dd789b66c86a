//! The control plane as the source of truth, through the real binaries: configuration changes
//! on disk reach the proxies within a second, invalid changes are rejected while the last good
//! configuration stays in force, endpoint changes never drop requests in flight, and a
//! control-plane restart costs no request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use strait_tests::backend::HttpBackend;
use strait_tests::client;
use strait_tests::control_plane::ControlPlane;
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::ports::free_port;

fn canary_route(v1: u32, v2: u32) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: canary, namespace: demo}}
spec:
  parentRefs: [{{group: "", kind: Service, name: backend, port: 80}}]
  rules:
  - backendRefs:
    - {{name: backend-v1, port: 80, weight: {v1}}}
    - {{name: backend-v2, port: 80, weight: {v2}}}
"#
    )
}

fn canary_mesh(v1: u32, v2: u32) -> MeshBuilder {
    MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .service("backend-v1", &[("app", "backend"), ("version", "v1")])
        .service("backend-v2", &[("app", "backend"), ("version", "v2")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload(
            "backend-v1",
            "backend",
            &[("app", "backend"), ("version", "v1")],
        )
        .workload(
            "backend-v2",
            "backend",
            &[("app", "backend"), ("version", "v2")],
        )
        .yaml("route.yaml", &canary_route(v1, v2))
}

async fn start_backends(mesh: &Mesh) -> Vec<HttpBackend> {
    let mut apps = Vec::new();
    for name in ["backend-v1", "backend-v2"] {
        apps.push(HttpBackend::start_on(mesh.workload(name).app(), name).await);
    }
    apps
}

/// Sends `n` requests and counts which backend answered each.
async fn split(mesh: &Mesh, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut sender = client::http1(mesh.proxy("frontend-1").outbound).await;
    for _ in 0..n {
        sender.ready().await.unwrap();
        let request = http::Request::get("/")
            .header("host", "backend.demo")
            .body(client::empty())
            .unwrap();
        let response = client::collect(sender.send_request(request).await.unwrap()).await;
        assert_eq!(response.status, 200, "{}", response.text());
        *counts
            .entry(response.header("x-backend").to_owned())
            .or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn a_weight_change_on_disk_reaches_the_proxies_within_a_second_and_a_bad_one_changes_nothing()
{
    let mesh = canary_mesh(100, 0).start();
    let _apps = start_backends(&mesh).await;
    assert_eq!(split(&mesh, 20).await.get("backend-v1"), Some(&20));

    // Cut over to v2 on disk while requests keep flowing.
    let written = Instant::now();
    mesh.write_config("route.yaml", &canary_route(0, 100));
    let outbound = mesh.proxy("frontend-1").outbound;
    loop {
        let response = client::get(outbound, "backend.demo", "/").await;
        assert_eq!(response.status, 200);
        if response.header("x-backend") == "backend-v2" {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "the change took over a second to take effect"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(split(&mesh, 20).await.get("backend-v2"), Some(&20));

    // An invalid change is rejected with its reason; traffic keeps the last good split.
    mesh.write_config(
        "route.yaml",
        &canary_route(0, 100).replace("weight: 100", "weight: lots"),
    );
    assert!(
        mesh.control_plane
            .process
            .wait_logged("configuration change rejected", Duration::from_secs(5))
    );
    let logs = mesh.control_plane.process.logs().join("\n");
    assert!(
        logs.contains(
            "route.yaml: document 1 (HTTPRoute demo/canary): spec.rules[0].backendRefs[1].weight"
        ),
        "{logs}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(split(&mesh, 20).await.get("backend-v2"), Some(&20));
    let metrics = client::get(mesh.control_plane.admin, "admin", "/metrics")
        .await
        .text();
    assert!(
        metrics.contains(r#"strait_config_reloads_total{result="failure"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"strait_config_reloads_total{result="success"} 1"#),
        "{metrics}"
    );

    // The proxy reports the version it runs in /config.
    let config = mesh.proxy("frontend-1").admin_get("/config").await.text();
    let snapshot: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert!(
        snapshot["version"].as_str().is_some_and(|v| v.len() == 16),
        "{config}"
    );
}

fn one_backend_service(workloads: &[&str]) -> MeshBuilder {
    let mut builder = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")]);
    for name in workloads {
        builder = builder.workload(name, "backend", &[("app", "backend")]);
    }
    builder
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_an_endpoint_does_not_drop_the_requests_already_in_flight() {
    let mesh = one_backend_service(&["backend-a", "backend-b"]).start();
    let a = HttpBackend::start_on(mesh.workload("backend-a").app(), "backend-a").await;
    let b = HttpBackend::start_on(mesh.workload("backend-b").app(), "backend-b").await;
    let outbound = mesh.proxy("frontend-1").outbound;

    // Slow requests in flight to both endpoints (round robin spreads them).
    let in_flight: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(
                async move { client::get(outbound, "backend.demo", "/slow?ms=1500").await },
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.requests() + b.requests() < 6 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        a.requests() > 0 && b.requests() > 0,
        "both endpoints have requests in flight"
    );

    // Remove backend-b from the configuration while its requests are still running.
    let yaml = std::fs::read_to_string(mesh.config_dir.join("mesh.yaml")).unwrap();
    let without_b: String = yaml
        .split("---\n")
        .filter(|doc| !doc.contains("name: backend-b,"))
        .collect::<Vec<_>>()
        .join("---\n");
    mesh.write_config("mesh.yaml", &without_b);
    let frontend = &mesh.proxy("frontend-1").process;
    let deadline = Instant::now() + Duration::from_secs(5);
    while frontend.count_logged("snapshot applied") < 2 {
        assert!(
            Instant::now() < deadline,
            "the frontend's proxy never got the new snapshot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b_before = b.requests();

    for request in in_flight {
        let response = request.await.unwrap();
        assert_eq!(
            response.status,
            200,
            "an in-flight request was dropped: {}",
            response.text()
        );
        assert_eq!(response.text(), "slow done\n");
    }
    // New requests go to the remaining endpoint only.
    for _ in 0..10 {
        let response = client::get(outbound, "backend.demo", "/").await;
        assert_eq!(response.header("x-backend"), "backend-a");
    }
    assert_eq!(
        b.requests(),
        b_before,
        "the removed endpoint received no new request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_control_plane_restart_under_traffic_fails_no_request_and_the_proxies_resync() {
    let port = free_port();
    let mut mesh = canary_mesh(100, 0)
        .control_plane_flag("--grpc-addr", format!("127.0.0.1:{port}"))
        .start();
    let _apps = start_backends(&mesh).await;
    let outbound = mesh.proxy("frontend-1").outbound;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let traffic = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            for _ in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let response = client::get(outbound, "backend.demo", "/").await;
                let counter = if response.status == 200 { &ok } else { &failed };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    mesh.control_plane.process.signal(Signal::SIGKILL);
    mesh.control_plane.process.wait_exit(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests_while_down = ok.load(Ordering::SeqCst);
    mesh.write_config("route.yaml", &canary_route(0, 100));
    // Same address, same configuration directory, same development CA.
    let restarted = ControlPlane::start(
        &mesh.config_dir,
        &[
            ("--grpc-addr", format!("127.0.0.1:{port}")),
            ("--dev-ca", mesh.ca_dir.display().to_string()),
        ],
    );
    mesh.control_plane = restarted;

    // The proxies reconnect and apply the configuration changed while it was down.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = client::get(outbound, "backend.demo", "/").await;
        if response.header("x-backend") == "backend-v2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never resynced with the restarted control plane"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    traffic.await.unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed across the restart"
    );
    assert!(
        ok.load(Ordering::SeqCst) > requests_while_down,
        "traffic kept flowing"
    );
    let metrics = mesh.proxy("frontend-1").admin_get("/metrics").await.text();
    assert!(
        metrics.contains("strait_discovery_connected 1"),
        "{metrics}"
    );
}
