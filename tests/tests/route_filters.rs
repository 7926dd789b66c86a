//! Route filters through the real control plane and proxies (local mode, mTLS): header
//! modifiers on rules and backendRefs, redirects, rewrites, mirrors, GRPCRoute header
//! modifiers, and rules refused for their filters.
//!
//! The route shapes and expected answers follow the Gateway API's mesh conformance tests
//! (kubernetes-sigs/gateway-api `conformance/tests/mesh/`, compared at commit
//! 4564255ac2c35d582249b3cdf261bdf51c8bca32); each such test names its upstream short name.
//! Differences from upstream: every Service here has port 80 (upstream's `echo-v1` has 8080 and
//! gRPC 7070), the namespace is `demo`, and the echo app is this file's own: it answers with
//! what it received (method, path, host, headers, body) as JSON.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use strait_tests::client::{self, Collected};
use strait_tests::mesh::{Mesh, MeshBuilder};
use tokio::net::TcpListener;

// ---- the echo app and the mesh ---------------------------------------------------------

/// What an echo app saw.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    bodies: std::sync::Mutex<Vec<Bytes>>,
}

/// Starts an echo app on `addr`; with `hang`, it reads each request and never answers.
async fn echo_app(addr: SocketAddr, name: &'static str, hang: bool) -> Arc<Seen> {
    let listener = TcpListener::bind(addr).await.expect("binding the echo app");
    let seen = Arc::new(Seen::default());
    let state = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let (head, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            state.requests.fetch_add(1, Ordering::SeqCst);
                            state.bodies.lock().expect("bodies").push(body.clone());
                            if hang {
                                std::future::pending::<()>().await;
                            }
                            let mut headers: BTreeMap<String, String> = BTreeMap::new();
                            for (k, v) in &head.headers {
                                let v = v.to_str().unwrap_or("<binary>");
                                headers
                                    .entry(k.as_str().to_owned())
                                    .and_modify(|all| {
                                        all.push(',');
                                        all.push_str(v);
                                    })
                                    .or_insert_with(|| v.to_owned());
                            }
                            let host = head
                                .uri
                                .authority()
                                .map(|a| a.as_str().to_owned())
                                .or_else(|| headers.get("host").cloned())
                                .unwrap_or_default();
                            let report = serde_json::json!({
                                "backend": name,
                                "method": head.method.as_str(),
                                "path": head.uri.path_and_query().map_or("/", |p| p.as_str()),
                                "host": host,
                                "headers": headers,
                                "body": String::from_utf8_lossy(&body),
                            });
                            let mut response =
                                http::Response::new(Full::new(Bytes::from(report.to_string())));
                            response
                                .headers_mut()
                                .insert("x-app-header", http::HeaderValue::from_static("from-app"));
                            Ok::<_, Infallible>(response)
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    seen
}

/// Services `echo` (every echo workload), `echo-v1`, `echo-v2` and `echo-mirror`, their
/// workloads, a client workload `frontend-1`, and `route` (YAML) attached to them.
fn mesh(route: &str) -> Mesh {
    MeshBuilder::new()
        .service("echo", &[("app", "echo")])
        .service("echo-v1", &[("app", "echo"), ("version", "v1")])
        .service("echo-v2", &[("app", "echo"), ("version", "v2")])
        .service("echo-mirror", &[("app", "mirror")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("echo-v1", "echo", &[("app", "echo"), ("version", "v1")])
        .workload("echo-v2", "echo", &[("app", "echo"), ("version", "v2")])
        .workload("echo-mirror", "mirror", &[("app", "mirror")])
        .yaml("route.yaml", route)
        .start()
}

struct World {
    mesh: Mesh,
    mirror: Arc<Seen>,
}

async fn world(route: &str, hanging_mirror: bool) -> World {
    let mesh = mesh(route);
    echo_app(mesh.workload("echo-v1").app(), "echo-v1", false).await;
    echo_app(mesh.workload("echo-v2").app(), "echo-v2", false).await;
    let mirror = echo_app(
        mesh.workload("echo-mirror").app(),
        "echo-mirror",
        hanging_mirror,
    )
    .await;
    World { mesh, mirror }
}

/// An HTTPRoute `name` on Service `echo` port 80 with these rules (YAML list items).
fn http_route(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo, port: 80}}]\n  rules:\n{rules}"
    )
}

/// One rule: a `PathPrefix` match, filters (a YAML flow list) and backendRefs.
fn rule(prefix: &str, filters: &str, backends: &str) -> String {
    format!(
        "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    filters: {filters}\n    backendRefs: {backends}\n"
    )
}

const TO_V1: &str = "[{name: echo-v1, port: 80}]";
const NO_BACKENDS: &str = "[]";

/// Sends a GET for `path` with `Host: echo` and `headers` through the frontend's proxy.
async fn get(world: &World, path: &str, headers: &[(&str, &str)]) -> Collected {
    let mut sender = client::http1(world.mesh.proxy("frontend-1").outbound).await;
    let mut request = Request::get(path).header("host", "echo");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = sender
        .send_request(request.body(client::empty()).expect("request"))
        .await
        .expect("sending the request");
    client::collect(response).await
}

/// What the echo app reported.
fn report(response: &Collected) -> Value {
    assert_eq!(response.status, 200, "{response:?}");
    serde_json::from_slice(&response.body).unwrap_or_else(|e| panic!("{e}: {response:?}"))
}

fn header<'v>(report: &'v Value, name: &str) -> Option<&'v str> {
    report["headers"][name.to_ascii_lowercase()].as_str()
}

/// Checks an echo report: `present` headers with exactly these values, `absent` ones missing.
fn expect_headers(report: &Value, present: &[(&str, &str)], absent: &[&str]) {
    for (name, value) in present {
        assert_eq!(header(report, name), Some(*value), "{name} in {report}");
    }
    for name in absent {
        assert_eq!(
            header(report, name),
            None,
            "{name} should be gone: {report}"
        );
    }
}

// ---- header modifiers ------------------------------------------------------------------

/// The rules of upstream's `httproute-request-header-modifier.yaml`, as `filters` of the rule
/// (`backend: false`) or of its backendRef (`backend: true`).
fn header_modifier_rules(backend: bool) -> String {
    let cases = [
        (
            "/set",
            "{set: [{name: X-Header-Set, value: set-overwrites-values}]}",
        ),
        (
            "/add",
            "{add: [{name: X-Header-Add, value: add-appends-values}]}",
        ),
        ("/remove", "{remove: [X-Header-Remove]}"),
        (
            "/multiple",
            "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: header-add-3}], remove: [X-Header-Remove-1, X-Header-Remove-2]}",
        ),
        (
            "/case-insensitivity",
            "{set: [{name: X-Header-Set, value: header-set}], add: [{name: X-Header-Add, value: header-add}], remove: [X-Header-Remove]}",
        ),
    ];
    cases
        .iter()
        .map(|(prefix, modifier)| {
            let filter =
                format!("[{{type: RequestHeaderModifier, requestHeaderModifier: {modifier}}}]");
            if backend {
                rule(
                    prefix,
                    "[]",
                    &format!("[{{name: echo-v1, port: 80, filters: {filter}}}]"),
                )
            } else {
                rule(prefix, &filter, TO_V1)
            }
        })
        .collect()
}

/// Upstream's expectations for the header modifier rules.
async fn check_header_modifier_cases(world: &World) {
    let r = report(&get(world, "/set", &[("Some-Other-Header", "val")]).await);
    expect_headers(
        &r,
        &[
            ("Some-Other-Header", "val"),
            ("X-Header-Set", "set-overwrites-values"),
        ],
        &[],
    );
    assert_eq!(r["backend"], "echo-v1");
    let r = report(
        &get(
            world,
            "/set",
            &[
                ("Some-Other-Header", "val"),
                ("X-Header-Set", "some-other-value"),
            ],
        )
        .await,
    );
    expect_headers(&r, &[("X-Header-Set", "set-overwrites-values")], &[]);
    let r = report(&get(world, "/add", &[("Some-Other-Header", "val")]).await);
    expect_headers(&r, &[("X-Header-Add", "add-appends-values")], &[]);
    let r = report(&get(world, "/add", &[("X-Header-Add", "some-other-value")]).await);
    expect_headers(
        &r,
        &[("X-Header-Add", "some-other-value,add-appends-values")],
        &[],
    );
    let r = report(&get(world, "/remove", &[("X-Header-Remove", "val")]).await);
    expect_headers(&r, &[], &["X-Header-Remove"]);
    let r = report(
        &get(
            world,
            "/multiple",
            &[
                ("X-Header-Set-2", "set-val-2"),
                ("X-Header-Add-2", "add-val-2"),
                ("X-Header-Remove-2", "remove-val-2"),
                ("Another-Header", "another-header-val"),
            ],
        )
        .await,
    );
    expect_headers(
        &r,
        &[
            ("X-Header-Set-1", "header-set-1"),
            ("X-Header-Set-2", "header-set-2"),
            ("X-Header-Add-1", "header-add-1"),
            ("X-Header-Add-2", "add-val-2,header-add-2"),
            ("X-Header-Add-3", "header-add-3"),
            ("Another-Header", "another-header-val"),
        ],
        &["X-Header-Remove-1", "X-Header-Remove-2"],
    );
    let r = report(
        &get(
            world,
            "/case-insensitivity",
            &[
                ("x-header-set", "original-val-set"),
                ("x-header-add", "original-val-add"),
                ("x-header-remove", "original-val-remove"),
                ("Another-Header", "another-header-val"),
            ],
        )
        .await,
    );
    expect_headers(
        &r,
        &[
            ("X-Header-Set", "header-set"),
            ("X-Header-Add", "original-val-add,header-add"),
            ("Another-Header", "another-header-val"),
        ],
        &["X-Header-Remove"],
    );
}

/// Upstream: MeshHTTPRouteRequestHeaderModifier.
#[tokio::test(flavor = "multi_thread")]
async fn mesh_http_route_request_header_modifier_sets_adds_and_removes_request_headers() {
    let world = world(
        &http_route(
            "mesh-request-header-modifier",
            &header_modifier_rules(false),
        ),
        false,
    )
    .await;
    check_header_modifier_cases(&world).await;
}

/// Upstream: MeshHTTPRouteBackendRequestHeaderModification.
#[tokio::test(flavor = "multi_thread")]
async fn mesh_http_route_backend_request_header_modification_applies_a_backend_refs_filters() {
    let world = world(
        &http_route("mesh-request-header-modifier", &header_modifier_rules(true)),
        false,
    )
    .await;
    check_header_modifier_cases(&world).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn response_header_modifiers_of_rule_and_backend_change_the_apps_response() {
    let response_filter = "[{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Rule, value: rule}], add: [{name: X-App-Header, value: added}]}}]";
    let backends = "[{name: echo-v1, port: 80, filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Backend, value: v1}]}}]}]";
    let world = world(
        &http_route("responses", &rule("/", response_filter, backends)),
        false,
    )
    .await;
    let response = get(&world, "/anything", &[]).await;
    assert_eq!(response.status, 200);
    let values = |name: &str| -> Vec<&str> {
        response
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(values("x-rule"), ["rule"]);
    assert_eq!(values("x-backend"), ["v1"]);
    assert_eq!(values("x-app-header"), ["from-app", "added"]);
}

// ---- redirects -------------------------------------------------------------------------

/// Sends each `(path, status, location)` case and checks the redirect.
async fn check_redirects(world: &World, cases: &[(&str, u16, &str)]) {
    for (path, status, location) in cases {
        let response = get(world, path, &[]).await;
        assert_eq!(response.status, *status, "{path}: {response:?}");
        assert_eq!(response.header("location"), *location, "{path}");
    }
}

fn redirect_rule(prefix: &str, redirect: &str) -> String {
    rule(
        prefix,
        &format!("[{{type: RequestRedirect, requestRedirect: {redirect}}}]"),
        NO_BACKENDS,
    )
}

/// Upstream: MeshHTTPRouteRedirectHostAndStatus. A redirect-only rule has no backendRefs.
#[tokio::test(flavor = "multi_thread")]
async fn mesh_http_route_redirect_host_and_status_answers_without_a_backend() {
    let rules = redirect_rule("/hostname-redirect", "{hostname: example.org}")
        + &redirect_rule(
            "/host-and-status",
            "{statusCode: 301, hostname: example.org}",
        );
    let world = world(&http_route("mesh-redirect-host-and-status", &rules), false).await;
    check_redirects(
        &world,
        &[
            (
                "/hostname-redirect",
                302,
                "http://example.org/hostname-redirect",
            ),
            (
                "/host-and-status",
                301,
                "http://example.org/host-and-status",
            ),
        ],
    )
    .await;
}

/// Upstream: MeshHTTPRouteSchemeRedirect, MeshHTTPRouteRedirectPort and the provisional
/// 303/307/308 redirect tests, in one route.
#[tokio::test(flavor = "multi_thread")]
async fn mesh_http_route_scheme_and_port_redirects_follow_the_default_port_rules() {
    let rules = [
        redirect_rule("/scheme", "{scheme: https}"),
        redirect_rule("/scheme-and-host", "{hostname: example.org, scheme: https}"),
        redirect_rule("/scheme-and-status", "{scheme: https, statusCode: 301}"),
        redirect_rule(
            "/scheme-and-host-and-status",
            "{scheme: https, statusCode: 302, hostname: example.org}",
        ),
        redirect_rule("/port", "{port: 8083}"),
        redirect_rule("/port-and-host", "{hostname: example.org, port: 8083}"),
        redirect_rule("/port-and-status", "{port: 8083, statusCode: 301}"),
        redirect_rule(
            "/port-and-host-and-status",
            "{port: 8083, hostname: example.org, statusCode: 302}",
        ),
        redirect_rule("/redirect-303", "{statusCode: 303}"),
        redirect_rule("/redirect-307", "{statusCode: 307}"),
        redirect_rule("/redirect-308", "{statusCode: 308}"),
    ]
    .concat();
    let world = world(&http_route("mesh-redirect-scheme-and-port", &rules), false).await;
    check_redirects(
        &world,
        &[
            ("/scheme", 302, "https://echo/scheme"),
            (
                "/scheme-and-host",
                302,
                "https://example.org/scheme-and-host",
            ),
            ("/scheme-and-status", 301, "https://echo/scheme-and-status"),
            (
                "/scheme-and-host-and-status",
                302,
                "https://example.org/scheme-and-host-and-status",
            ),
            ("/port", 302, "http://echo:8083/port"),
            (
                "/port-and-host",
                302,
                "http://example.org:8083/port-and-host",
            ),
            ("/port-and-status", 301, "http://echo:8083/port-and-status"),
            (
                "/port-and-host-and-status",
                302,
                "http://example.org:8083/port-and-host-and-status",
            ),
            ("/redirect-303", 303, "http://echo/redirect-303"),
            ("/redirect-307", 307, "http://echo/redirect-307"),
            (
                "/redirect-308?keep=1",
                308,
                "http://echo/redirect-308?keep=1",
            ),
        ],
    )
    .await;
}

/// Upstream: MeshHTTPRouteRedirectPath.
#[tokio::test(flavor = "multi_thread")]
async fn mesh_http_route_redirect_path_replaces_the_prefix_or_the_full_path() {
    let prefix = "path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}";
    let full = "path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}";
    let rules = [
        redirect_rule("/original-prefix", &format!("{{{prefix}}}")),
        redirect_rule(
            "/full",
            "{path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}",
        ),
        redirect_rule(
            "/path-and-host",
            &format!("{{hostname: example.org, {prefix}}}"),
        ),
        redirect_rule(
            "/path-and-status",
            &format!("{{{prefix}, statusCode: 301}}"),
        ),
        redirect_rule(
            "/full-path-and-host",
            &format!("{{hostname: example.org, {full}}}"),
        ),
        redirect_rule(
            "/full-path-and-status",
            &format!("{{{full}, statusCode: 301}}"),
        ),
    ]
    .concat();
    let world = world(&http_route("mesh-redirect-path", &rules), false).await;
    check_redirects(
        &world,
        &[
            (
                "/original-prefix/lemon",
                302,
                "http://echo/replacement-prefix/lemon",
            ),
            (
                "/full/path/original",
                302,
                "http://echo/full-path-replacement",
            ),
            (
                "/path-and-host",
                302,
                "http://example.org/replacement-prefix",
            ),
            ("/path-and-status", 301, "http://echo/replacement-prefix"),
            (
                "/full-path-and-host",
                302,
                "http://example.org/replacement-full",
            ),
            ("/full-path-and-status", 301, "http://echo/replacement-full"),
        ],
    )
    .await;
}

// ---- rewrites --------------------------------------------------------------------------

/// Upstream: MeshHTTPRouteRewritePath.
#[tokio::test(flavor = "multi_thread")]
async fn mesh_http_route_rewrite_path_changes_the_path_the_backend_sees() {
    let rewrite = |path: &str| format!("{{type: URLRewrite, urlRewrite: {{path: {path}}}}}");
    let headers = "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}], add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}], remove: [X-Header-Remove]}}";
    let rules = [
        rule(
            "/prefix/one",
            &format!(
                "[{}]",
                rewrite("{type: ReplacePrefixMatch, replacePrefixMatch: /one}")
            ),
            TO_V1,
        ),
        rule(
            "/strip-prefix",
            &format!(
                "[{}]",
                rewrite("{type: ReplacePrefixMatch, replacePrefixMatch: /}")
            ),
            TO_V1,
        ),
        rule(
            "/full/one",
            &format!(
                "[{}]",
                rewrite("{type: ReplaceFullPath, replaceFullPath: /one}")
            ),
            TO_V1,
        ),
        rule(
            "/full/rewrite-path-and-modify-headers",
            &format!(
                "[{}, {headers}]",
                rewrite("{type: ReplaceFullPath, replaceFullPath: /test}")
            ),
            TO_V1,
        ),
        rule(
            "/prefix/rewrite-path-and-modify-headers",
            &format!(
                "[{}, {headers}]",
                rewrite("{type: ReplacePrefixMatch, replacePrefixMatch: /prefix}")
            ),
            TO_V1,
        ),
        rule(
            "/host",
            "[{type: URLRewrite, urlRewrite: {hostname: rewritten.example.org}}]",
            TO_V1,
        ),
    ]
    .concat();
    let world = world(&http_route("mesh-rewrite-path", &rules), false).await;
    for (path, expected) in [
        ("/prefix/one/two", "/one/two"),
        ("/strip-prefix/three", "/three"),
        ("/strip-prefix", "/"),
        ("/full/one/two", "/one"),
        ("/full/rewrite-path-and-modify-headers", "/test"),
        ("/prefix/rewrite-path-and-modify-headers/one", "/prefix/one"),
        ("/prefix/one/two?q=1", "/one/two?q=1"),
    ] {
        let r = report(
            &get(
                &world,
                path,
                &[
                    ("X-Header-Add-Append", "append-val-1"),
                    ("X-Header-Remove", "remove-val"),
                ],
            )
            .await,
        );
        assert_eq!(r["path"], expected, "{path}: {r}");
        if path.contains("modify-headers") {
            expect_headers(
                &r,
                &[
                    ("X-Header-Set", "set-overwrites-values"),
                    ("X-Header-Add", "header-val-1"),
                    ("X-Header-Add-Append", "append-val-1,header-val-2"),
                ],
                &["X-Header-Remove"],
            );
        }
    }
    let r = report(&get(&world, "/host/x", &[]).await);
    assert_eq!(r["host"], "rewritten.example.org", "{r}");
}

// ---- GRPCRoute -------------------------------------------------------------------------

/// A gRPC-shaped HTTP/2 call (the echo app answers any path) with `x-test-case: case`.
async fn grpc_call(world: &World, case: &str, headers: &[(&str, &str)]) -> Value {
    let mut sender = client::http2(world.mesh.proxy("frontend-1").outbound).await;
    let mut request =
        Request::post("http://echo/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("x-test-case", case);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = sender
        .send_request(
            request
                .body(client::full(&b"\0\0\0\0\0"[..]))
                .expect("request"),
        )
        .await
        .expect("sending the call");
    report(&client::collect(response).await)
}

/// Upstream: MeshGRPCRouteRequestHeaderModifier.
#[tokio::test(flavor = "multi_thread")]
async fn mesh_grpc_route_request_header_modifier_changes_call_metadata() {
    let grpc_rule = |case: &str, modifier: &str, backend: &str| {
        format!(
            "  - matches: [{{headers: [{{name: x-test-case, value: {case}}}]}}]\n    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {modifier}}}]\n    backendRefs: [{{name: {backend}, port: 80}}]\n"
        )
    };
    let rules = [
        grpc_rule("set", "{set: [{name: x-header-set, value: set-overwrites-values}]}", "echo-v1"),
        grpc_rule("add", "{add: [{name: x-header-add, value: add-appends-values}]}", "echo-v1"),
        grpc_rule("remove", "{remove: [x-header-remove]}", "echo-v1"),
        grpc_rule(
            "multi",
            "{set: [{name: x-header-set-1, value: header-set-1}, {name: x-header-set-2, value: header-set-2}], add: [{name: x-header-add-1, value: header-add-1}, {name: x-header-add-2, value: header-add-2}], remove: [x-header-remove-1, x-header-remove-2]}",
            "echo-v2",
        ),
    ]
    .concat();
    let route = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: grpc-request-header-modifier, namespace: demo}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo, port: 80}}]\n  rules:\n{rules}"
    );
    let world = world(&route, false).await;
    let r = grpc_call(&world, "set", &[("x-header-set", "some-other-value")]).await;
    expect_headers(&r, &[("x-header-set", "set-overwrites-values")], &[]);
    let r = grpc_call(&world, "add", &[("x-header-add", "some-other-value")]).await;
    expect_headers(
        &r,
        &[("x-header-add", "some-other-value,add-appends-values")],
        &[],
    );
    let r = grpc_call(&world, "remove", &[("x-header-remove", "val")]).await;
    expect_headers(&r, &[], &["x-header-remove"]);
    let r = grpc_call(
        &world,
        "multi",
        &[
            ("x-header-set-2", "set-val-2"),
            ("x-header-add-2", "add-val-2"),
            ("x-header-remove-2", "remove-val-2"),
        ],
    )
    .await;
    expect_headers(
        &r,
        &[
            ("x-header-set-1", "header-set-1"),
            ("x-header-set-2", "header-set-2"),
            ("x-header-add-1", "header-add-1"),
            ("x-header-add-2", "add-val-2,header-add-2"),
        ],
        &["x-header-remove-1", "x-header-remove-2"],
    );
    assert_eq!(r["backend"], "echo-v2");
}

// ---- refused rules ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_with_an_unsupported_or_forbidden_filter_answers_500_and_the_routes_other_rules_apply()
 {
    let rules = [
        rule("/extension", "[{type: ExtensionRef, extensionRef: {group: example.com, kind: Magic, name: m}}]", TO_V1),
        rule("/forge-identity", "[{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: strait-client-id, value: spiffe://cluster.local/ns/demo/sa/admin}]}}]", TO_V1),
        rule("/ok", "[{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Ok, value: ok-value}]}}]", TO_V1),
    ]
    .concat();
    let world = world(&http_route("partly-refused", &rules), false).await;
    for path in ["/extension", "/forge-identity"] {
        let response = get(&world, path, &[]).await;
        assert_eq!(response.status, 500, "{path}: {response:?}");
        assert_eq!(
            response.header("strait-proxy-error"),
            "route-refused",
            "{path}"
        );
    }
    let r = report(&get(&world, "/ok", &[]).await);
    expect_headers(
        &r,
        &[
            ("X-Ok", "ok-value"),
            (
                "strait-client-id",
                "spiffe://cluster.local/ns/demo/sa/frontend",
            ),
        ],
        &[],
    );
}

// ---- mirrors ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_gets_a_copy_of_each_request_and_its_small_body() {
    let mirror =
        "[{type: RequestMirror, requestMirror: {backendRef: {name: echo-mirror, port: 80}}}]";
    let world = world(&http_route("mirrored", &rule("/", mirror, TO_V1)), false).await;
    let mut sender = client::http1(world.mesh.proxy("frontend-1").outbound).await;
    let request = Request::post("/orders")
        .header("host", "echo")
        .body(client::full(&b"order-1"[..]))
        .expect("request");
    let r = report(&client::collect(sender.send_request(request).await.expect("send")).await);
    assert_eq!(
        (r["backend"].as_str(), r["body"].as_str()),
        (Some("echo-v1"), Some("order-1"))
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while world.mirror.requests.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(world.mirror.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        world.mirror.bodies.lock().unwrap()[0],
        Bytes::from_static(b"order-1")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_mirror_neither_delays_the_real_requests_nor_holds_more_than_64_copies() {
    let mirror = "[{type: RequestMirror, requestMirror: {backendRef: {name: echo-mirror, port: 80}, percent: 100}}]";
    let world = world(&http_route("mirrored", &rule("/", mirror, TO_V1)), true).await;
    let started = Instant::now();
    let n = 150;
    for i in 0..n {
        let r = report(&get(&world, &format!("/r{i}"), &[]).await);
        assert_eq!(r["backend"], "echo-v1");
    }
    let elapsed = started.elapsed();
    // Every copy hangs for the mirror timeout (5 s); the real requests did not wait for them.
    assert!(
        elapsed < Duration::from_secs(4),
        "{n} requests took {elapsed:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copies = world.mirror.requests.load(Ordering::SeqCst);
    assert_eq!(copies, 64, "copies in flight are capped at 64 per proxy");
}
