//! Attacks through request matchers, by a tenant or a workload of the mesh, against the real
//! binaries:
//! - a route regular expression a proxy cannot compile (`(?x)/a#`: in extended mode `#`
//!   comments out the anchor's closing group) used to be accepted by the control plane and
//!   to freeze every proxy on its previous snapshot; the control plane now refuses it with
//!   file and field, and a proxy still fed one sets aside that route alone, says so in its
//!   log, `/status`, metrics and `strait check`, and applies the rest and every later change;
//! - a path that an app server resolves elsewhere than it reads (`/public/../admin`,
//!   `/public/%2e%2e/admin`, `/public/..;/admin`, `//admin`...) used to pass a rule admitting
//!   `/public`; paths are now normalised before authorization and routing, and the normal
//!   form is what the app receives.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strait_proto::discovery::v1 as pb;
use strait_proxy::detect::Protocol;
use strait_proxy::transport_header::Header;
use strait_tests::backend::HttpBackend;
use strait_tests::binaries;
use strait_tests::client;
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::metrics::Metrics;
use strait_tests::process::Proxy;
use strait_tests::snapshot::{Endpoint, TempDir, service, snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------
// Regular expressions

fn copy_example(dir: &Path) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/local");
    for entry in std::fs::read_dir(&example).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    for entry in std::fs::read_dir(example.join("tokens")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tokens.join(entry.file_name())).unwrap();
    }
}

/// `strait-control-plane validate DIR` on the shipped example plus `attack.yaml`.
fn control_plane_validate(attack: &str) -> (bool, String) {
    let dir = TempDir::new("regex-attack");
    copy_example(dir.path());
    std::fs::write(dir.path().join("attack.yaml"), attack).unwrap();
    let output = Command::new(binaries::path("strait-control-plane"))
        .arg("validate")
        .arg(dir.path())
        .output()
        .expect("running strait-control-plane validate");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn http_route(name: &str, matches: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: backend, port: 80}}]\n  rules:\n  - matches: [{matches}]\n    backendRefs: [{{name: backend, port: 80}}]\n"
    )
}

#[test]
fn a_route_regex_that_comments_out_its_anchor_is_refused_with_file_and_field() {
    let attack = [
        http_route(
            "freeze",
            r#"{path: {type: RegularExpression, value: "(?x)/a#"}}"#,
        ),
        http_route(
            "freeze-header",
            r#"{headers: [{type: RegularExpression, name: x-a, value: "(?ix)a#"}]}"#,
        ),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: freeze-grpc, namespace: demo}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: backend, port: 80}]\n  rules:\n  - matches: [{method: {type: RegularExpression, service: \"(?x)echo#\", method: Say}}]\n    backendRefs: [{name: backend, port: 80}]\n".to_owned(),
        "apiVersion: strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: freeze-policy, namespace: demo}\nspec:\n  targetRef: {group: \"\", kind: Service, name: backend, port: 80}\n  routes: [{path: {type: RegularExpression, value: \"(?x)/public#\"}}]\n  from: [{unauthenticated: true}]\n".to_owned(),
    ]
    .join("---\n");
    let (valid, text) = control_plane_validate(&attack);
    assert!(!valid, "the control plane accepted the attack:\n{text}");
    for (document, object, field) in [
        (
            1,
            "HTTPRoute demo/freeze",
            "spec.rules[0].matches[0].path.value",
        ),
        (
            2,
            "HTTPRoute demo/freeze-header",
            "spec.rules[0].matches[0].headers[0].value",
        ),
        (
            3,
            "GRPCRoute demo/freeze-grpc",
            "spec.rules[0].matches[0].method.service",
        ),
        (
            4,
            "AuthorizationPolicy demo/freeze-policy",
            "spec.routes[0].path.value",
        ),
    ] {
        let place = format!("attack.yaml: document {document} ({object}): {field}: ");
        let line = text
            .lines()
            .find(|l| l.contains(&place))
            .unwrap_or_else(|| panic!("no error at {place}:\n{text}"));
        assert!(
            line.contains("x (ignore whitespace) flag is not allowed"),
            "{line}"
        );
    }
}

#[test]
fn route_regexes_too_big_or_too_deep_for_a_proxy_are_refused_with_file_and_field() {
    let deep = format!("/{}a{}", "(".repeat(40), ")".repeat(40));
    let attack = [
        http_route(
            "huge",
            r#"{path: {type: RegularExpression, value: "/\\w{100}"}}"#,
        ),
        http_route(
            "deep",
            &format!(r#"{{path: {{type: RegularExpression, value: "{deep}"}}}}"#),
        ),
    ]
    .join("---\n");
    let (valid, text) = control_plane_validate(&attack);
    assert!(!valid, "the control plane accepted the attack:\n{text}");
    let huge =
        "attack.yaml: document 1 (HTTPRoute demo/huge): spec.rules[0].matches[0].path.value: ";
    let line = text
        .lines()
        .find(|l| l.contains(huge))
        .unwrap_or_else(|| panic!("no error at {huge}:\n{text}"));
    assert!(line.contains("compiles to more than"), "{line}");
    let deep =
        "attack.yaml: document 2 (HTTPRoute demo/deep): spec.rules[0].matches[0].path.value: ";
    let line = text
        .lines()
        .find(|l| l.contains(deep))
        .unwrap_or_else(|| panic!("no error at {deep}:\n{text}"));
    assert!(line.contains("nest"), "{line}");
}

/// Services `web.demo:80` and `api.demo:80` behind `server`; `api` has a first route
/// (`demo/api/0`) matching path regex `api_regex`, to `api_app` like its default route.
fn regex_snapshot(
    version: &str,
    server: &Proxy,
    apps: &[(&str, SocketAddr)],
    api_regex: &str,
) -> pb::Snapshot {
    let services = apps
        .iter()
        .map(|(name, app)| {
            let mut s = service(
                name,
                "demo",
                80,
                &[],
                &[Endpoint {
                    app: *app,
                    proxy_port: Some(server.inbound.port()),
                }],
            );
            if *name == "api" {
                let mut regex_route = s.routes[0].clone();
                regex_route.name = "demo/api/0".into();
                regex_route.matches = vec![pb::RouteMatch {
                    path: Some(pb::PathMatch {
                        kind: Some(pb::path_match::Kind::Regex(api_regex.into())),
                    }),
                    ..Default::default()
                }];
                s.routes.insert(0, regex_route);
            }
            s
        })
        .collect();
    snapshot(version, services)
}

/// Waits until the proxy has loaded its snapshot file `n` times.
fn wait_loaded(proxy: &Proxy, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy
        .process
        .count_logged("routing table loaded from snapshot file")
        < n
    {
        assert!(
            Instant::now() < deadline,
            "snapshot {n} never applied; the proxy's output:\n{}",
            proxy.process.logs().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_regex_a_proxy_cannot_compile_sets_aside_that_route_only() {
    let web = HttpBackend::start("web").await;
    let api = HttpBackend::start("api").await;
    let shop = HttpBackend::start("shop").await;
    let server = Proxy::builder().start();
    let dir = TempDir::new("regex-set-aside");
    let first = regex_snapshot("1", &server, &[("web", web.addr)], "/a.*");
    let path = dir.write_snapshot("snapshot.json", &first);
    let client = Proxy::builder().snapshot(&path).start();
    assert_eq!(
        client::get(client.outbound, "web.demo", "/").await.status,
        200
    );

    // The attack: a hand-written (or old control plane's) snapshot with one bad regex, and a
    // new service beside it.
    let attack = regex_snapshot(
        "2",
        &server,
        &[("web", web.addr), ("api", api.addr)],
        "(?x)/a#",
    );
    dir.write_snapshot("snapshot.json", &attack);
    wait_loaded(&client, 2);
    let answer = client::get(client.outbound, "api.demo", "/a").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("x-backend"), "api");
    assert_eq!(
        client::get(client.outbound, "web.demo", "/").await.status,
        200
    );

    let status: serde_json::Value =
        serde_json::from_str(&client.admin_get("/status").await.text()).unwrap();
    let set_aside = status["set_aside"]
        .as_array()
        .expect("set_aside in /status");
    assert_eq!(set_aside.len(), 1, "{status}");
    assert_eq!(set_aside[0]["kind"], "route");
    assert_eq!(set_aside[0]["service"], "demo/api:80");
    assert_eq!(set_aside[0]["entry"], "demo/api/0");
    let reason = set_aside[0]["reason"].as_str().unwrap();
    assert!(reason.contains("(?x)/a#"), "{reason}");
    let metrics = Metrics::fetch(client.admin).await;
    let labels = [
        ("kind", "route"),
        ("service", "demo/api:80"),
        ("entry", "demo/api/0"),
    ];
    assert_eq!(
        metrics.sum("strait_snapshot_set_aside", &labels),
        1.0,
        "{}",
        metrics.text
    );
    let logged = client
        .process
        .logs()
        .into_iter()
        .find(|l| l.contains("snapshot entry set aside"))
        .expect("the set-aside route is logged");
    assert!(
        logged.contains("demo/api/0") && logged.contains("WARN"),
        "{logged}"
    );
    let check = Command::new(binaries::path("strait"))
        .args(["check", "--proxy", &client.admin.to_string()])
        .output()
        .unwrap();
    let check_text = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(!check.status.success(), "{check_text}");
    assert!(
        check_text.contains("route demo/api/0 of demo/api:80 set aside"),
        "{check_text}"
    );

    // Later changes apply, and mending the route clears it.
    let later = regex_snapshot(
        "3",
        &server,
        &[("web", web.addr), ("api", api.addr), ("shop", shop.addr)],
        "/a.*",
    );
    dir.write_snapshot("snapshot.json", &later);
    wait_loaded(&client, 3);
    let answer = client::get(client.outbound, "shop.demo", "/").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("x-backend"), "shop");
    let status: serde_json::Value =
        serde_json::from_str(&client.admin_get("/status").await.text()).unwrap();
    assert_eq!(status["set_aside"], serde_json::json!([]), "{status}");
    let metrics = Metrics::fetch(client.admin).await;
    assert_eq!(metrics.sum("strait_snapshot_set_aside", &labels), 0.0);
}

// ---------------------------------------------------------------------------------------
// Path normalisation

/// A mesh whose `backend` port admits anyone, but only under `/public`.
fn public_only_mesh() -> Mesh {
    let policy = "apiVersion: strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: public-only, namespace: demo}\nspec:\n  targetRef: {group: \"\", kind: Service, name: backend, port: 80}\n  routes: [{path: {type: PathPrefix, value: /public}}]\n  from: [{unauthenticated: true}]\n";
    MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-1", "backend", &[("app", "backend")])
        .yaml("policy.yaml", policy)
        .start()
}

/// Paths an app server resolves to `/admin` (or, for `%2f`, that some servers split into
/// segments), none of which a rule admitting `/public` may let through.
const ATTACK_PATHS: [&str; 7] = [
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/..;/admin",
    "//admin",
    "/public/%2fadmin",
    "/public\\..\\admin",
];

/// Sends one raw HTTP/1.1 request with `target` straight to `backend-1`'s inbound listener,
/// as an attacker skipping its own proxy does (plaintext, the port is permissive), and
/// returns the status line.
async fn raw_to_inbound(mesh: &Mesh, target: &str) -> String {
    let backend = mesh.workload("backend-1");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", backend.proxy_port))
        .await
        .unwrap();
    let header = Header {
        port: backend.app_port,
        protocol: Protocol::Http1,
    };
    stream.write_all(&header.encode()).await.unwrap();
    raw_exchange(stream, target, "backend").await
}

/// Sends one raw HTTP/1.1 request with `target` to `addr` and returns the answer's head and
/// body as text.
async fn raw_exchange(mut stream: tokio::net::TcpStream, target: &str, host: &str) -> String {
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answers in time");
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_that_resolve_outside_an_admitted_prefix_never_reach_the_app() {
    let mesh = public_only_mesh();
    let app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;
    let frontend = mesh.proxy("frontend-1").outbound;

    for target in ATTACK_PATHS {
        let direct = raw_to_inbound(&mesh, target).await;
        let status = status_of(&direct);
        assert!(
            status.starts_with("HTTP/1.1 400") || status.starts_with("HTTP/1.1 403"),
            "{target} straight to the inbound: {direct}"
        );
        let stream = tokio::net::TcpStream::connect(frontend).await.unwrap();
        let via_proxy = raw_exchange(stream, target, "backend.demo").await;
        let status = status_of(&via_proxy);
        assert!(
            status.starts_with("HTTP/1.1 400") || status.starts_with("HTTP/1.1 403"),
            "{target} through the caller's proxy: {via_proxy}"
        );
        assert_eq!(app.requests(), 0, "{target} reached the app");
    }

    // What is legitimately under /public still passes, in its normal form.
    let direct = raw_to_inbound(&mesh, "/public/a/./b//c?x=/../admin").await;
    assert!(status_of(&direct).starts_with("HTTP/1.1 200"), "{direct}");
    assert!(
        direct.contains("GET /public/a/b/c?x=/../admin\n"),
        "the app receives the normalised path: {direct}"
    );
    let stream = tokio::net::TcpStream::connect(frontend).await.unwrap();
    let via_proxy = raw_exchange(stream, "/public/x/%2e%2e/a%2Db", "backend.demo").await;
    assert!(
        status_of(&via_proxy).starts_with("HTTP/1.1 200"),
        "{via_proxy}"
    );
    assert!(via_proxy.contains("GET /public/a-b\n"), "{via_proxy}");
    assert_eq!(app.requests(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_for_a_prefix_catches_paths_that_resolve_into_it() {
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: admin, namespace: demo}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: backend, port: 80}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /admin}}]\n    backendRefs: [{name: backend-admin, port: 80}]\n";
    let mesh = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .service("backend-admin", &[("app", "backend-admin")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-1", "backend", &[("app", "backend")])
        .workload("admin-1", "backend-admin", &[("app", "backend-admin")])
        .yaml("route.yaml", route)
        .start();
    let backend = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;
    let admin = HttpBackend::start_on(mesh.workload("admin-1").app(), "admin-1").await;
    let frontend = mesh.proxy("frontend-1").outbound;

    for target in [
        "/public/../admin",
        "/public/%2e%2e/admin/x",
        "//admin",
        "/%61dmin",
    ] {
        let stream = tokio::net::TcpStream::connect(frontend).await.unwrap();
        let answer = raw_exchange(stream, target, "backend.demo").await;
        assert!(
            status_of(&answer).starts_with("HTTP/1.1 200"),
            "{target}: {answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("x-backend: admin-1"),
            "{target} must take the /admin route: {answer}"
        );
    }
    assert_eq!(backend.requests(), 0);
    assert_eq!(admin.requests(), 4);
}
