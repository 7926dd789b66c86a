//! Authorization enforced by the inbound proxy, through the real control plane and proxies:
//! identity, namespace, trust-domain, any-meshed and unauthenticated principals; route-scoped
//! rules; the mesh-wide default; refusals as 403 / PERMISSION_DENIED / a closed connection,
//! each counted and logged; and policy changes applied under traffic without losing an
//! allowed request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use strait_proxy::detect::Protocol;
use strait_proxy::transport_header::Header;
use strait_tests::backend::HttpBackend;
use strait_tests::client::{self, Collected};
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn mesh_with(extra: &[(&str, &str)]) -> Mesh {
    let mut builder = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("other-1", "other", &[("app", "other")])
        .workload("backend-1", "backend", &[("app", "backend")]);
    for (file, yaml) in extra {
        builder = builder.yaml(file, yaml);
    }
    builder.start()
}

fn policy(name: &str, routes: &str, from: &str) -> String {
    format!(
        "apiVersion: strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  targetRef: {{group: \"\", kind: Service, name: backend, port: 80}}\n{routes}  from: {from}\n"
    )
}

fn mesh_config(default_authorization: &str) -> String {
    format!(
        "apiVersion: strait.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: mesh}}\nspec: {{defaultAuthorization: {default_authorization}}}\n"
    )
}

async fn get_from(mesh: &Mesh, workload: &str, path: &str) -> Collected {
    client::get(mesh.proxy(workload).outbound, "backend.demo", path).await
}

/// A plaintext HTTP/1.1 request straight to the backend's inbound listener, as a client
/// outside the mesh (in permissive mode) sends it.
async fn plaintext_get(mesh: &Mesh, path: &str) -> String {
    let mut stream = plaintext_connection(mesh, Protocol::Http1).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the inbound proxy answers in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn plaintext_connection(mesh: &Mesh, protocol: Protocol) -> tokio::net::TcpStream {
    let backend = mesh.workload("backend-1");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", backend.proxy_port))
        .await
        .unwrap();
    let header = Header {
        port: backend.app_port,
        protocol,
    };
    stream.write_all(&header.encode()).await.unwrap();
    stream
}

async fn denied(mesh: &Mesh, policy: &str, reason: &str) -> f64 {
    let text = mesh.proxy("backend-1").admin_get("/metrics").await.text();
    Metrics::parse(text).sum(
        "strait_inbound_denied_total",
        &[("policy", policy), ("reason", reason)],
    )
}

/// Waits until every proxy has applied one more snapshot than `before` counted.
fn wait_applied(mesh: &Mesh, before: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while mesh
        .proxy("backend-1")
        .process
        .count_logged("snapshot applied")
        <= before
    {
        assert!(
            Instant::now() < deadline,
            "the change never reached the proxy"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn applied(mesh: &Mesh) -> usize {
    mesh.proxy("backend-1")
        .process
        .count_logged("snapshot applied")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_policy_admits_its_caller_and_refuses_everyone_else() {
    let only_frontend = policy(
        "only-frontend",
        "",
        "[{identity: spiffe://cluster.local/ns/demo/sa/frontend}]",
    );
    let mesh = mesh_with(&[("policy.yaml", &only_frontend)]);
    let app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;

    assert_eq!(get_from(&mesh, "frontend-1", "/").await.status, 200);
    let refused = get_from(&mesh, "other-1", "/private?token=hunter2").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.header("strait-proxy-error"), "forbidden");
    assert!(
        !refused.text().contains("only-frontend"),
        "the refusal names no policy: {}",
        refused.text()
    );
    let plaintext = plaintext_get(&mesh, "/").await;
    assert!(plaintext.starts_with("HTTP/1.1 403"), "{plaintext}");
    assert_eq!(app.requests(), 1, "refused requests never reach the app");

    assert_eq!(
        denied(&mesh, "demo/only-frontend", "identity-not-allowed").await,
        1.0
    );
    assert_eq!(
        denied(&mesh, "demo/only-frontend", "unauthenticated").await,
        1.0
    );
    let logs = mesh.proxy("backend-1").process.logs().join("\n");
    let line = logs
        .lines()
        .find(|l| l.contains("inbound request denied by authorization policy"))
        .expect("a refusal is logged");
    assert!(
        line.contains("spiffe://cluster.local/ns/demo/sa/other") && line.contains("/private"),
        "{line}"
    );
    assert!(!logs.contains("hunter2"), "query strings are never logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_callers_are_refused_with_permission_denied() {
    let only_frontend = policy(
        "only-frontend",
        "",
        "[{identity: spiffe://cluster.local/ns/demo/sa/frontend}]",
    );
    let mesh = mesh_with(&[("policy.yaml", &only_frontend)]);
    let _app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;

    let mut sender = client::http2(mesh.proxy("other-1").outbound).await;
    let request = http::Request::post("http://backend.demo/echo.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(client::full(&b"\0\0\0\0\0"[..]))
        .unwrap();
    let response = client::collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("grpc-status"), "7", "PERMISSION_DENIED");
    assert_eq!(response.header("strait-proxy-error"), "forbidden");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_opaque_connection_is_closed_before_reaching_the_app() {
    let only_frontend = policy(
        "only-frontend",
        "",
        "[{identity: spiffe://cluster.local/ns/demo/sa/frontend}]",
    );
    let mesh = mesh_with(&[("policy.yaml", &only_frontend)]);
    let app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;

    let mut stream = plaintext_connection(&mesh, Protocol::Opaque).await;
    // Bytes that are not HTTP: an opaque claim on a port that declares no protocol is checked
    // by detection, and HTTP bytes would be served (and authorized) as HTTP.
    let _ = stream.write_all(b"\x00\x01 a binary protocol\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the connection is closed in time");
    assert!(read.is_err() || answer.is_empty(), "{answer:?}");
    assert_eq!(app.open_connections(), 0);
    assert_eq!(app.requests(), 0);
    assert_eq!(
        denied(&mesh, "demo/only-frontend", "unauthenticated").await,
        1.0
    );
    assert!(mesh.proxy("backend-1").process.wait_logged(
        "inbound connection denied by authorization policy",
        Duration::from_secs(5)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_and_trust_domain_principals_admit_whole_groups_of_callers() {
    let same_namespace = policy("demo-namespace", "", "[{namespace: demo}]");
    let mesh = mesh_with(&[("policy.yaml", &same_namespace)]);
    let _app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;
    assert_eq!(get_from(&mesh, "frontend-1", "/").await.status, 200);
    assert_eq!(get_from(&mesh, "other-1", "/").await.status, 200);
    assert!(plaintext_get(&mesh, "/").await.starts_with("HTTP/1.1 403"));

    let before = applied(&mesh);
    let other_namespace = policy("prod-namespace", "", "[{namespace: prod}]");
    mesh.write_config("policy.yaml", &other_namespace);
    wait_applied(&mesh, before);
    assert_eq!(get_from(&mesh, "frontend-1", "/").await.status, 403);

    let before = applied(&mesh);
    let trust_domain = policy("our-domain", "", "[{trustDomain: cluster.local}]");
    mesh.write_config("policy.yaml", &trust_domain);
    wait_applied(&mesh, before);
    assert_eq!(get_from(&mesh, "other-1", "/").await.status, 200);

    let before = applied(&mesh);
    let foreign_domain = policy("their-domain", "", "[{trustDomain: example.org}]");
    mesh.write_config("policy.yaml", &foreign_domain);
    wait_applied(&mesh, before);
    assert_eq!(get_from(&mesh, "other-1", "/").await.status, 403);
    assert_eq!(
        denied(&mesh, "demo/their-domain", "identity-not-allowed").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn route_rules_open_some_paths_to_plaintext_callers_and_keep_the_rest_closed() {
    let rules = format!(
        "{}---\n{}",
        policy(
            "public-health",
            "  routes: [{path: {type: PathPrefix, value: /health}}]\n",
            "[{unauthenticated: true}]"
        ),
        policy("meshed-only", "", "[{authenticated: true}]")
    );
    let mesh = mesh_with(&[("policy.yaml", &rules)]);
    let _app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;

    assert!(
        plaintext_get(&mesh, "/health/ready")
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        plaintext_get(&mesh, "/orders")
            .await
            .starts_with("HTTP/1.1 403")
    );
    assert_eq!(get_from(&mesh, "other-1", "/orders").await.status, 200);
    assert_eq!(get_from(&mesh, "frontend-1", "/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mesh_default_applies_to_ports_no_policy_covers() {
    let mesh = mesh_with(&[("defaults.yaml", &mesh_config("AllAuthenticated"))]);
    let _app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;
    assert_eq!(get_from(&mesh, "frontend-1", "/").await.status, 200);
    assert!(plaintext_get(&mesh, "/").await.starts_with("HTTP/1.1 403"));
    assert_eq!(denied(&mesh, "default", "unauthenticated").await, 1.0);

    let before = applied(&mesh);
    mesh.write_config("defaults.yaml", &mesh_config("Deny"));
    wait_applied(&mesh, before);
    let refused = get_from(&mesh, "frontend-1", "/").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(denied(&mesh, "default", "default-deny").await, 1.0);

    let before = applied(&mesh);
    mesh.write_config("defaults.yaml", &mesh_config("AllowAll"));
    wait_applied(&mesh, before);
    assert!(plaintext_get(&mesh, "/").await.starts_with("HTTP/1.1 200"));
}

/// Clients keep calling while the policy changes twice; every request of the caller the
/// policy always allows succeeds, and the other caller's fate follows the policy.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_change_under_traffic_drops_no_allowed_request() {
    let frontend_only = policy(
        "callers",
        "",
        "[{identity: spiffe://cluster.local/ns/demo/sa/frontend}]",
    );
    let both = policy(
        "callers",
        "",
        "[{identity: spiffe://cluster.local/ns/demo/sa/frontend}, {identity: spiffe://cluster.local/ns/demo/sa/other}]",
    );
    let mesh = mesh_with(&[("policy.yaml", &frontend_only)]);
    let _app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;
    let frontend = mesh.proxy("frontend-1").outbound;
    let other = mesh.proxy("other-1").outbound;

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let ok = Arc::new(AtomicU32::new(0));
    let traffic = tokio::spawn(keep_calling(frontend, stop, ok.clone()));

    wait_for_more(&ok, 10).await;
    assert_eq!(status_of(other).await, 403);
    let before = applied(&mesh);
    mesh.write_config("policy.yaml", &both);
    wait_applied(&mesh, before);
    wait_for_more(&ok, 10).await;
    assert_eq!(status_of(other).await, 200);
    let before = applied(&mesh);
    mesh.write_config("policy.yaml", &frontend_only);
    wait_applied(&mesh, before);
    wait_for_more(&ok, 10).await;
    assert_eq!(status_of(other).await, 403);

    stop_tx.send(true).unwrap();
    let failed = traffic.await.unwrap();
    assert!(failed.is_empty(), "allowed requests failed: {failed:?}");
}

/// Waits until `n` more requests succeeded, so traffic demonstrably flows across each change.
async fn wait_for_more(ok: &AtomicU32, n: u32) {
    let target = ok.load(Ordering::SeqCst) + n;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ok.load(Ordering::SeqCst) < target {
        assert!(Instant::now() < deadline, "traffic stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn status_of(outbound: SocketAddr) -> http::StatusCode {
    client::get(outbound, "backend.demo", "/").await.status
}

/// Sends requests on one keep-alive connection until told to stop (or 5 000 requests, or
/// 60 s), counting successes in `ok`; returns the failures' statuses.
async fn keep_calling(
    outbound: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
    ok: Arc<AtomicU32>,
) -> Vec<http::StatusCode> {
    let mut sender = client::http1(outbound).await;
    let mut failed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..5_000 {
        if *stop.borrow() || Instant::now() > deadline {
            break;
        }
        let request = http::Request::get("/")
            .header("host", "backend.demo")
            .body(client::empty())
            .unwrap();
        sender.ready().await.unwrap();
        let response = client::collect(sender.send_request(request).await.unwrap()).await;
        if response.status == 200 {
            ok.fetch_add(1, Ordering::SeqCst);
        } else {
            failed.push(response.status);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    failed
}
