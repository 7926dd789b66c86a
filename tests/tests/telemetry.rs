//! What operators see, checked through the real binaries: metrics parsed back with a
//! Prometheus text-format parser and counted exactly, the output accepted by promtool, traces
//! received by an OTLP receiver with the right parent/child links, the Grafana dashboard
//! referring only to what is exported, and the metrics reference covering everything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use strait_tests::backend::HttpBackend;
use strait_tests::client;
use strait_tests::load::{Spec, count_status, drive};
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::metrics::Metrics;
use strait_tests::otlp::{self, Receiver, attribute};

const FRONTEND: &str = "spiffe://cluster.local/ns/demo/sa/frontend";
const BACKEND: &str = "spiffe://cluster.local/ns/demo/sa/backend";

fn mesh() -> MeshBuilder {
    MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-0", "backend", &[("app", "backend")])
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_and_histograms_match_the_traffic_exactly_on_both_sides() {
    let mesh = mesh().start();
    let _app = HttpBackend::start_on(mesh.workload("backend-0").app(), "backend-0").await;
    let responses = drive(mesh.proxy("frontend-1").outbound, 100, 4, |i| {
        let path = if i % 14 == 13 {
            "/status?code=500"
        } else {
            "/"
        };
        Spec::get("backend.demo", path)
    })
    .await;
    assert_eq!(count_status(&responses, 500), 7);
    assert_eq!(count_status(&responses, 200), 93);

    let outbound = Metrics::fetch(mesh.proxy("frontend-1").admin).await;
    let labels = [
        ("direction", "outbound"),
        ("service", "demo/backend:80"),
        ("route", "default"),
        ("backend", "demo/backend:80"),
        ("peer_identity", BACKEND),
        ("tls", "true"),
    ];
    assert_eq!(
        outbound.sum("strait_http_requests_total", &labels),
        100.0,
        "{}",
        outbound.text
    );
    let with = |extra: [(&'static str, &'static str); 2]| -> Vec<(&str, &str)> {
        labels.iter().copied().chain(extra).collect()
    };
    assert_eq!(
        outbound.sum(
            "strait_http_responses_total",
            &with([("status_code", "200"), ("status_class", "2xx")])
        ),
        93.0
    );
    assert_eq!(
        outbound.sum(
            "strait_http_responses_total",
            &with([("status_code", "500"), ("status_class", "5xx")])
        ),
        7.0
    );
    assert_eq!(
        outbound.histogram_count("strait_http_response_duration_seconds", &labels),
        100.0
    );

    let inbound = Metrics::fetch(mesh.proxy("backend-0").admin).await;
    let labels = [
        ("direction", "inbound"),
        ("service", "demo/backend"),
        ("peer_identity", FRONTEND),
        ("tls", "true"),
    ];
    assert_eq!(
        inbound.sum("strait_http_requests_total", &labels),
        100.0,
        "{}",
        inbound.text
    );
    let with = |extra: [(&'static str, &'static str); 1]| -> Vec<(&str, &str)> {
        labels.iter().copied().chain(extra).collect()
    };
    assert_eq!(
        inbound.sum(
            "strait_http_responses_total",
            &with([("status_code", "200")])
        ),
        93.0
    );
    assert_eq!(
        inbound.sum(
            "strait_http_responses_total",
            &with([("status_code", "500")])
        ),
        7.0
    );
    assert_eq!(
        inbound.histogram_count("strait_http_response_duration_seconds", &labels),
        100.0
    );
    assert!(inbound.sum("strait_tcp_read_bytes_total", &[("direction", "inbound")]) > 0.0);
}

fn promtool_available(test: &str) -> bool {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: promtool is missing; scripts/setup-test-tools installs it on CI"
    );
    eprintln!("SKIPPED {test}: promtool is not installed");
    false
}

fn promtool_check(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// Traffic that makes every family of metrics appear: an authorization denial, successes, a
/// retried failure, a timeout, an ejection.
async fn varied_traffic(mesh: &Mesh, apps: &[HttpBackend]) {
    let outbound = mesh.proxy("frontend-1").outbound;
    // A path the authorization policy does not cover: denied.
    let denied = client::get(outbound, "backend.demo", "/denied").await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    apps[1].faults.fail_percent.store(100, Ordering::SeqCst);
    drive(outbound, 60, 2, |_| Spec::get("backend.demo", "/")).await;
    apps[1].faults.fail_percent.store(0, Ordering::SeqCst);
    apps[0].faults.delay_ms.store(1500, Ordering::SeqCst);
    apps[1].faults.delay_ms.store(1500, Ordering::SeqCst);
    drive(outbound, 2, 2, |_| Spec::get("backend.demo", "/")).await;
    drive(outbound, 2, 2, |_| Spec::post("backend.demo", "/", b"x")).await;
}

fn varied_mesh() -> MeshBuilder {
    MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-0", "backend", &[("app", "backend")])
        .workload("backend-1", "backend", &[("app", "backend")])
        .yaml(
            "route.yaml",
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: backend-route, namespace: demo}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: backend, port: 80}]\n  rules:\n  - backendRefs: [{name: backend, port: 80}]\n    timeouts: {request: 1s, backendRequest: 500ms}\n    retry: {attempts: 2, codes: [503], backoff: 5ms}\n",
        )
        .yaml(
            "policy.yaml",
            "apiVersion: strait.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {name: backend, namespace: demo}\nspec:\n  targetRef: {group: \"\", kind: Service, name: backend}\n  circuitBreaker: {consecutiveFailures: 3}\n",
        )
        .yaml(
            "authorization.yaml",
            "apiVersion: strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: root-only, namespace: demo}\nspec:\n  targetRef: {group: \"\", kind: Service, name: backend, port: 80}\n  routes: [{path: {type: Exact, value: /}}]\n  from: [{identity: spiffe://cluster.local/ns/demo/sa/frontend}]\n",
        )
}

async fn varied_metrics() -> Vec<Metrics> {
    let mesh = varied_mesh().start();
    let apps = [
        HttpBackend::start_on(mesh.workload("backend-0").app(), "backend-0").await,
        HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await,
    ];
    varied_traffic(&mesh, &apps).await;
    // Both backends: the balancer decides which one saw the denied request.
    vec![
        Metrics::fetch(mesh.proxy("frontend-1").admin).await,
        Metrics::fetch(mesh.proxy("backend-0").admin).await,
        Metrics::fetch(mesh.proxy("backend-1").admin).await,
        Metrics::fetch(mesh.control_plane.admin).await,
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_accepts_the_proxy_and_control_plane_metrics() {
    if !promtool_available("promtool_accepts_the_proxy_and_control_plane_metrics") {
        return;
    }
    for metrics in varied_metrics().await {
        let remarks = promtool_check(&metrics.text);
        assert!(
            remarks.trim().is_empty(),
            "promtool found problems:\n{remarks}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_expression_refers_only_to_exported_metrics_and_labels() {
    let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for metrics in &varied_metrics().await {
        for name in metrics.names() {
            let labels = exported.entry(name.clone()).or_default();
            for label in metrics.label_names(&name) {
                labels.insert(label);
            }
        }
    }
    let dashboard_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/grafana/strait-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dashboard_path).unwrap()).unwrap();
    let mut expressions = Vec::new();
    collect_exprs(&dashboard, &mut expressions);
    assert!(expressions.len() >= 15, "the dashboard has its panels");
    for expr in &expressions {
        for (name, labels) in references(expr) {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|b| exported.contains_key(*b))
                })
                .unwrap_or(&name)
                .to_owned();
            let known = exported.get(&base).unwrap_or_else(|| {
                panic!("{expr}\n  refers to {name}, which no proxy or control plane exports")
            });
            for label in labels {
                assert!(
                    known.contains(&label) || (label == "le" && name.ends_with("_bucket")),
                    "{expr}\n  uses label {label} on {name}, which carries only {known:?}"
                );
            }
        }
    }
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Metric names (identifiers starting `strait_` or `process_`) in a PromQL expression, each
/// with the label names of the selector right after it.
fn references(expr: &str) -> Vec<(String, BTreeSet<String>)> {
    let bytes = expr.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_ident(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_ident(bytes[i]) {
            i += 1;
        }
        let end = i;
        let name = &expr[start..end];
        if !(name.starts_with("strait_") || name.starts_with("process_")) {
            continue;
        }
        let mut labels = BTreeSet::new();
        if bytes.get(end) == Some(&b'{')
            && let Some(close) = expr[end..].find('}')
        {
            for matcher in expr[end + 1..end + close].split(',') {
                let label: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !label.is_empty() {
                    labels.insert(label);
                }
            }
            i = end + close;
        }
        out.push((name.to_owned(), labels));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_exported_metric_is_in_the_reference() {
    let scrapes = varied_metrics().await;
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"))
            .unwrap();
    for metrics in scrapes {
        for name in metrics.names() {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                reference.contains(&format!("`{base}`")),
                "{base} is exported but not in docs/metrics.md"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trace_links_both_proxies_spans_and_the_app_sees_the_inbound_span_as_parent() {
    let receiver = Receiver::start().await;
    let mesh = mesh()
        .proxy_flag("--trace-collector", receiver.url())
        .proxy_flag("--trace-sample-ratio", 1)
        .start();
    let _app = HttpBackend::start_on(mesh.workload("backend-0").app(), "backend-0").await;

    let response = client::get(
        mesh.proxy("frontend-1").outbound,
        "backend.demo",
        "/headers",
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = response.text();
    let traceparent = seen
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("the app saw no traceparent:\n{seen}"))
        .to_owned();

    let spans = receiver.wait_for(2, Duration::from_secs(10)).await;
    let client_span = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap_or_else(|| panic!("no client span in {spans:?}"));
    let server_span = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("no server span in {spans:?}"));
    assert_eq!(client_span.trace_id, server_span.trace_id, "one trace");
    assert_eq!(
        server_span.parent_span_id, client_span.span_id,
        "the inbound span is the outbound span's child"
    );
    assert!(
        client_span.parent_span_id.is_empty(),
        "the request started the trace"
    );
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], otlp::hex(&server_span.trace_id));
    assert_eq!(
        parts[2],
        otlp::hex(&server_span.span_id),
        "the app's parent is the inbound proxy's span"
    );
    assert_eq!(
        attribute(client_span, "strait.route").as_deref(),
        Some("default")
    );
    assert_eq!(
        attribute(client_span, "strait.backend").as_deref(),
        Some("demo/backend:80")
    );
    assert_eq!(
        attribute(client_span, "strait.retries").as_deref(),
        Some("0")
    );
    assert_eq!(
        attribute(server_span, "strait.peer_identity").as_deref(),
        Some(FRONTEND)
    );
    assert_eq!(
        attribute(client_span, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attribute(server_span, "http.response.status_code").as_deref(),
        Some("200")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incoming_sampling_decision_is_followed() {
    let receiver = Receiver::start().await;
    let mesh = mesh()
        .proxy_flag("--trace-collector", receiver.url())
        .proxy_flag("--trace-sample-ratio", 0)
        .start();
    let _app = HttpBackend::start_on(mesh.workload("backend-0").app(), "backend-0").await;
    let outbound = mesh.proxy("frontend-1").outbound;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let send = |flags: &'static str| {
        let spec = Spec::get("backend.demo", "/").header(
            "traceparent",
            &format!("00-{trace}-00f067aa0ba902b7-{flags}"),
        );
        drive(outbound, 1, 1, move |_| spec.clone())
    };
    send("00").await;
    drive(outbound, 5, 1, |_| Spec::get("backend.demo", "/")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        receiver.spans().is_empty(),
        "unsampled and ratio-0 requests export nothing"
    );

    send("01").await;
    let spans = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(
            otlp::hex(&span.trace_id),
            trace,
            "the caller's trace continues"
        );
    }
    let client_span = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    assert_eq!(otlp::hex(&client_span.parent_span_id), "00f067aa0ba902b7");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_level_can_be_read_and_changed_from_localhost() {
    let mesh = mesh().start();
    let admin = mesh.proxy("frontend-1").admin;
    assert_eq!(
        client::get(admin, "admin", "/log-level").await.text(),
        "info\n"
    );
    let put = |body: &'static str| async move {
        let mut sender = client::http1(admin).await;
        let request = http::Request::put("/log-level")
            .header("host", "admin")
            .body(client::full(body))
            .unwrap();
        client::collect(sender.send_request(request).await.unwrap()).await
    };
    let changed = put("strait_proxy=debug,info").await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_eq!(
        client::get(admin, "admin", "/log-level").await.text(),
        "strait_proxy=debug,info\n"
    );
    let invalid = put("strait_proxy=loud").await;
    assert_eq!(invalid.status, 400);
    assert!(
        invalid.text().contains("invalid log filter"),
        "{}",
        invalid.text()
    );
}
