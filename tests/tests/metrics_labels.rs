//! Workload and service labels on the proxies' metrics, read back from their `/metrics`
//! through a Prometheus parser: outbound series name the destination's owning workload
//! (Deployment, StatefulSet…) and inbound series the proven caller's, both name their own
//! side's; an inbound series names one Service, never a list; TCP series name the Service;
//! no instance (pod) name ever becomes a label value.

use strait_tests::backend::HttpBackend;
use strait_tests::client;
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::metrics::Metrics;

/// frontend-1 (Deployment frontend) calls backend-0 (Deployment backend, selected by two
/// Services on one port) and api-0 (StatefulSet api, one Service).
fn start() -> Mesh {
    MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .service("backend-b", &[("app", "backend")])
        .service("api", &[("app", "api")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .owner("frontend-1", "Deployment", "frontend")
        .workload("backend-0", "backend", &[("app", "backend")])
        .owner("backend-0", "Deployment", "backend")
        .workload("api-0", "api", &[("app", "api")])
        .owner("api-0", "StatefulSet", "api")
        .start()
}

const INSTANCES: [&str; 3] = ["frontend-1", "backend-0", "api-0"];

/// Sends `count` requests for `host` through frontend-1's outbound proxy, each answered 200.
async fn call(mesh: &Mesh, host: &str, count: usize) {
    for _ in 0..count {
        let response = client::get(mesh.proxy("frontend-1").outbound, host, "/").await;
        assert_eq!(response.status, 200, "GET http://{host}/: {response:?}");
    }
}

/// The `service` values of the inbound `strait_http_requests_total` series.
fn inbound_services(metrics: &Metrics) -> Vec<String> {
    let mut services: Vec<String> = metrics
        .text
        .lines()
        .filter(|l| {
            l.starts_with("strait_http_requests_total{") && l.contains(r#"direction="inbound""#)
        })
        .filter_map(|l| {
            let (_, rest) = l.split_once(r#"service=""#)?;
            rest.split_once('"').map(|(service, _)| service.to_owned())
        })
        .collect();
    services.sort();
    services.dedup();
    services
}

fn assert_no_instance_names(metrics: &Metrics, proxy: &str) {
    for line in metrics.text.lines().filter(|l| !l.starts_with('#')) {
        for instance in INSTANCES {
            assert!(
                !line.contains(instance),
                "{proxy}'s /metrics names the instance {instance:?}: {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http_series_name_the_owning_workloads_on_both_sides_and_never_an_instance() {
    let mesh = start();
    let _backend = HttpBackend::start_on(mesh.workload("backend-0").app(), "backend-0").await;
    call(&mesh, "backend.demo", 5).await;

    let outbound = Metrics::fetch(mesh.proxy("frontend-1").admin).await;
    let labels = [
        ("direction", "outbound"),
        ("service", "demo/backend:80"),
        ("src_workload", "frontend"),
        ("src_workload_namespace", "demo"),
        ("dst_workload", "backend"),
        ("dst_workload_namespace", "demo"),
    ];
    assert_eq!(
        outbound.sum("strait_http_requests_total", &labels),
        5.0,
        "{}",
        outbound.text
    );
    assert_eq!(
        outbound.sum("strait_http_responses_total", &labels),
        5.0,
        "{}",
        outbound.text
    );

    let inbound = Metrics::fetch(mesh.proxy("backend-0").admin).await;
    let labels = [
        ("direction", "inbound"),
        ("src_workload", "frontend"),
        ("src_workload_namespace", "demo"),
        ("dst_workload", "backend"),
        ("dst_workload_namespace", "demo"),
    ];
    assert_eq!(
        inbound.sum("strait_http_requests_total", &labels),
        5.0,
        "{}",
        inbound.text
    );
    assert_eq!(
        inbound.sum("strait_http_responses_total", &labels),
        5.0,
        "{}",
        inbound.text
    );
    assert_no_instance_names(&outbound, "frontend-1");
    assert_no_instance_names(&inbound, "backend-0");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inbound_series_names_the_one_service_the_request_was_addressed_to() {
    let mesh = start();
    let _backend = HttpBackend::start_on(mesh.workload("backend-0").app(), "backend-0").await;
    call(&mesh, "backend.demo", 3).await;
    call(&mesh, "backend-b.demo", 4).await;

    let inbound = Metrics::fetch(mesh.proxy("backend-0").admin).await;
    assert_eq!(
        inbound_services(&inbound),
        ["demo/backend", "demo/backend-b"],
        "{}",
        inbound.text
    );
    let count = |service| {
        inbound.sum(
            "strait_http_requests_total",
            &[("direction", "inbound"), ("service", service)],
        )
    };
    assert_eq!(count("demo/backend"), 3.0, "{}", inbound.text);
    assert_eq!(count("demo/backend-b"), 4.0, "{}", inbound.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_series_name_the_service_and_the_workloads() {
    let mesh = start();
    let _api = HttpBackend::start_on(mesh.workload("api-0").app(), "api-0").await;
    call(&mesh, "api.demo", 2).await;

    let inbound = Metrics::fetch(mesh.proxy("api-0").admin).await;
    let labels = [
        ("direction", "inbound"),
        ("service", "demo/api"),
        ("src_workload", "frontend"),
        ("src_workload_namespace", "demo"),
        ("dst_workload", "api"),
        ("dst_workload_namespace", "demo"),
    ];
    assert!(
        inbound.sum("strait_tcp_connections_opened_total", &labels) >= 1.0,
        "{}",
        inbound.text
    );
    assert!(
        inbound.sum("strait_tcp_read_bytes_total", &labels) > 0.0,
        "{}",
        inbound.text
    );

    let outbound = Metrics::fetch(mesh.proxy("frontend-1").admin).await;
    let labels = [
        ("direction", "outbound"),
        ("src_workload", "frontend"),
        ("src_workload_namespace", "demo"),
    ];
    assert!(
        outbound.sum("strait_tcp_connections_opened_total", &labels) >= 1.0,
        "{}",
        outbound.text
    );
    assert!(
        outbound
            .label_names("strait_tcp_connections_opened_total")
            .contains(&"service".to_owned()),
        "{}",
        outbound.text
    );
    assert_no_instance_names(&inbound, "api-0");
    assert_no_instance_names(&outbound, "frontend-1");
}
