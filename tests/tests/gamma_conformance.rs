//! The Gateway API mesh conformance tests (GAMMA), ours: each test mirrors one upstream mesh
//! test by its short name (`gamma_conformance::mesh_basic` is upstream's `MeshBasic`), with the
//! same route shapes, namespaces, Services and expected answers, run in local mode through real
//! proxies with mTLS (`strait_tests::gamma`), against the echo backend that reports what
//! upstream's echo server reports (`strait_tests::echo`). `mesh_frontend` and
//! `mesh_frontend_hostname` (upstream's test of the `MeshClusterIPMatching` feature) run that
//! world inside a network namespace they make, with `strait-proxy init`'s real iptables rules,
//! so an app's connections are redirected to its pod's proxy as in a pod; they need root (CI
//! runs them as root).
//!
//! Compared against kubernetes-sigs/gateway-api @ 4564255ac2c35d582249b3cdf261bdf51c8bca32
//! (v1.6.1 and later), `conformance/tests/mesh/` and `conformance/utils/weight`. Written from
//! the test descriptions and expectations there, not copied.
//!
//! Where upstream observes whether a route applied through the response header its
//! `ResponseHeaderModifier` sets (`MeshPorts`, `MeshConsumerRoute`, `MeshFrontendHostname`), so
//! does the mirror here: the header present with its value where the route applies, absent
//! where it does not, and the answering backend as upstream expects it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strait_tests::gamma::{
    Answer, CONSUMER_NS, ConformanceMesh, MESH_NS, cluster_ip, eventually, request,
};
use strait_tests::grpc::{EchoClient, EchoRequest};

fn route(name: &str, parent: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {MESH_NS}}}\nspec:\n  parentRefs:\n  - {parent}\n  rules:\n{rules}"
    )
}

/// Sends through `client` until the answer comes from `backend` in `namespace`, and fails
/// with the last answer otherwise.
async fn expect_backend(
    client: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    backend: &str,
) -> Answer {
    let answer = eventually(client, host, path, headers, |a| {
        a.status == 200 && a.backend().as_deref() == Some(backend)
    })
    .await;
    assert_eq!(
        (answer.status, answer.backend().as_deref()),
        (200, Some(backend)),
        "GET {path} (Host {host}, headers {headers:?}): {answer:?}"
    );
    answer
}

async fn expect_status(
    client: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
) {
    let answer = eventually(client, host, path, headers, |a| a.status == status).await;
    assert_eq!(
        answer.status, status,
        "GET {path} (Host {host}, headers {headers:?}): {answer:?}"
    );
}

// ---- MeshBasic --------------------------------------------------------------------------

#[tokio::test]
async fn mesh_basic() {
    let mesh = ConformanceMesh::start("").await;
    expect_status(mesh.echo_v1(), "echo", "/", &[], 200).await;
}

// ---- MeshHTTPRouteSimpleSameNamespace ---------------------------------------------------

#[tokio::test]
async fn mesh_httproute_simple_same_namespace() {
    let mesh = ConformanceMesh::start(&route(
        "gateway-conformance-mesh-test",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        "  - backendRefs: [{name: echo-v1, port: 8080}]\n",
    ))
    .await;
    let answer = expect_backend(mesh.echo_v1(), "echo", "/", &[], "echo-v1").await;
    assert_eq!(answer.echoed.unwrap().namespace, MESH_NS);
}

// ---- MeshHTTPRouteMatching --------------------------------------------------------------

#[tokio::test]
async fn mesh_httproute_matching() {
    let mesh = ConformanceMesh::start(&route(
        "mesh-matching",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        "  - matches:\n    - path: {type: PathPrefix, value: /}\n    - headers: [{name: version, value: one}]\n    backendRefs: [{name: echo-v1, port: 8080}]\n  - matches:\n    - path: {type: PathPrefix, value: /v2}\n    - headers: [{name: version, value: two}]\n    backendRefs: [{name: echo-v2, port: 8080}]\n",
    ))
    .await;
    let client = mesh.echo_v1();
    for (path, headers, backend) in [
        ("/", &[][..], "echo-v1"),
        ("/example", &[], "echo-v1"),
        ("/", &[("version", "one")], "echo-v1"),
        ("/v2", &[], "echo-v2"),
        ("/v2/example", &[], "echo-v2"),
        ("/", &[("version", "two")], "echo-v2"),
        ("/v2/", &[], "echo-v2"),
        ("/v2example", &[], "echo-v1"),
        ("/foo/v2/example", &[], "echo-v1"),
    ] {
        expect_backend(client, "echo", path, headers, backend).await;
    }
}

// ---- MeshHTTPRouteQueryParamMatching ----------------------------------------------------

#[tokio::test]
async fn mesh_httproute_query_param_matching() {
    let rule = |matches: &str, backend: &str| {
        format!("  - matches:\n{matches}    backendRefs: [{{name: {backend}, port: 8080}}]\n")
    };
    let rules = [
        rule("    - queryParams: [{name: animal, value: whale}]\n", "echo-v1"),
        rule("    - queryParams: [{name: animal, value: dolphin}]\n", "echo-v2"),
        rule(
            "    - path: {type: PathPrefix, value: /path1}\n      queryParams: [{name: animal, value: whale}]\n",
            "echo-v1",
        ),
        rule(
            "    - headers: [{name: version, value: one}]\n      queryParams: [{name: animal, value: whale}]\n",
            "echo-v2",
        ),
        rule(
            "    - path: {type: PathPrefix, value: /path3}\n      queryParams: [{name: animal, value: shark}]\n    - path: {type: PathPrefix, value: /path4}\n      headers: [{name: version, value: three}]\n      queryParams: [{name: animal, value: kraken}]\n",
            "echo-v1",
        ),
        rule("    - path: {type: PathPrefix, value: /path5}\n", "echo-v1"),
        rule("    - queryParams: [{name: animal, value: hydra}]\n", "echo-v2"),
    ]
    .concat();
    let mesh = ConformanceMesh::start(&route(
        "mesh-query-param-matching",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        &rules,
    ))
    .await;
    let client = mesh.echo_v1();
    for (path, headers, backend) in [
        ("/?animal=whale", &[][..], "echo-v1"),
        ("/?animal=dolphin", &[], "echo-v2"),
        ("/?animal=whale&otherparam=irrelevant", &[], "echo-v1"),
        ("/?animal=dolphin&color=yellow", &[], "echo-v2"),
        ("/path1?animal=whale", &[], "echo-v1"),
        ("/?animal=whale", &[("version", "one")], "echo-v2"),
        ("/path3?animal=shark", &[], "echo-v1"),
        ("/path4?animal=kraken", &[("version", "three")], "echo-v1"),
        ("/path5?animal=hydra", &[], "echo-v1"),
    ] {
        expect_backend(client, "echo", path, headers, backend).await;
    }
    // A request no rule of the attached route matches gets 404 (not the Service itself).
    for path in [
        "/?color=blue",
        "/?animal=dog",
        "/?animal=whaledolphin",
        "/",
        "/?animal=shark",
        "/path4?animal=kraken",
    ] {
        expect_status(client, "echo", path, &[], 404).await;
    }
}

// ---- MeshHTTPRouteNamedRouteRule --------------------------------------------------------

#[tokio::test]
async fn mesh_httproute_named_route_rule() {
    let mesh = ConformanceMesh::start(&route(
        "mesh-http-named-rules",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        "  - name: named-rule\n    matches: [{path: {type: PathPrefix, value: /named}}]\n    backendRefs: [{name: echo-v1, port: 8080}]\n  - matches: [{path: {type: PathPrefix, value: /unnamed}}]\n    backendRefs: [{name: echo-v2, port: 8080}]\n",
    ))
    .await;
    let client = mesh.echo_v1();
    let named = expect_backend(client, "echo", "/named", &[], "echo-v1").await;
    assert_eq!(named.echoed.unwrap().path, "/named");
    let unnamed = expect_backend(client, "echo", "/unnamed", &[], "echo-v2").await;
    assert_eq!(unnamed.echoed.unwrap().path, "/unnamed");
}

// ---- MeshTrafficSplit -------------------------------------------------------------------

#[tokio::test]
async fn mesh_traffic_split() {
    let mesh = ConformanceMesh::start(&route(
        "mesh-split",
        "{group: \"\", kind: Service, name: echo}",
        "  - matches: [{path: {type: Exact, value: /v1}}]\n    backendRefs: [{name: echo-v1, port: 80}]\n  - matches: [{path: {type: Exact, value: /v2}}]\n    backendRefs: [{name: echo-v2, port: 80}]\n",
    ))
    .await;
    let client = mesh.echo_v1();
    expect_backend(client, "echo", "/v1", &[], "echo-v1").await;
    expect_backend(client, "echo", "/v2", &[], "echo-v2").await;
}

// ---- MeshHTTPRouteWeight ----------------------------------------------------------------

/// Upstream's weight rule (`conformance/utils/weight`): 500 requests, every backend with a
/// share within ±5 percentage points of its weight's, no traffic to a weight-0 backend; up to
/// 10 batches (`MaxTestRetries`), as the split is random per request. A batch fails with
/// probability about 1.5 % for a 70/30 split, so ten failing in a row does not happen; the
/// whole test is bounded by a minute.
async fn expect_distribution<F, Fut>(expected: &[(&str, f64)], mut batch: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    const REQUESTS: usize = 500;
    const TOLERANCE: f64 = 0.05;
    const TRIES: usize = 10;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failures = Vec::new();
    for _ in 0..TRIES {
        assert!(
            Instant::now() < deadline,
            "weighted distribution not reached in time: {failures:?}"
        );
        let backends = batch(REQUESTS).await;
        assert_eq!(backends.len(), REQUESTS, "every request answered");
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for b in backends {
            *seen.entry(b).or_default() += 1;
        }
        let wrong: Vec<String> = expected
            .iter()
            .filter_map(|(backend, share)| {
                let got = seen.get(*backend).copied().unwrap_or(0) as f64 / REQUESTS as f64;
                ((got - share).abs() > TOLERANCE)
                    .then(|| format!("{backend}: {got:.3} instead of {share}"))
            })
            .chain(
                seen.keys()
                    .filter(|b| !expected.iter().any(|(e, w)| e == b && *w > 0.0))
                    .map(|b| format!("{b}: unexpected traffic")),
            )
            .collect();
        if wrong.is_empty() {
            return;
        }
        failures.push(wrong);
    }
    panic!("weighted distribution failed {TRIES} times: {failures:?}");
}

/// `count` requests on one connection through `client`, the backend of each (or the status
/// for an answer that is not an echo's).
async fn http_batch(client: SocketAddr, count: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let answer = request(client, "echo", "/", &[]).await;
        out.push(
            answer
                .backend()
                .unwrap_or_else(|| format!("status {}", answer.status)),
        );
    }
    out
}

#[tokio::test]
async fn mesh_httproute_weight() {
    let mesh = ConformanceMesh::start(&route(
        "mesh-weighted-backends",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        "  - backendRefs:\n    - {name: echo-v1, port: 8080, weight: 70}\n    - {name: echo-v2, port: 8080, weight: 30}\n",
    ))
    .await;
    let client = mesh.echo_v1();
    expect_status(client, "echo", "/", &[], 200).await;
    expect_distribution(&[("echo-v1", 0.7), ("echo-v2", 0.3)], |n| {
        http_batch(client, n)
    })
    .await;
}

// ---- MeshGRPCRouteWeight ----------------------------------------------------------------

async fn grpc_client(client: SocketAddr) -> EchoClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{client}"))
        .unwrap()
        .origin("http://echo:7070".parse().unwrap())
        .connect()
        .await
        .expect("connecting to the proxy");
    EchoClient::new(channel)
}

async fn grpc_pod(client: &mut EchoClient<tonic::transport::Channel>) -> String {
    match client
        .say(EchoRequest {
            message: "hello".into(),
            fail_with: 0,
        })
        .await
    {
        Ok(response) => {
            let pod = response
                .metadata()
                .get("pod")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            pod.rsplit_once('-').map_or(pod, |(b, _)| b).to_owned()
        }
        Err(status) => format!("grpc status {:?}", status.code()),
    }
}

#[tokio::test]
async fn mesh_grpc_route_weight() {
    // echo-v3 does not exist: with weight 0 it takes no traffic and the route is accepted.
    let mesh = ConformanceMesh::start(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: mesh-grpc-weighted-backends, namespace: {MESH_NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo, port: 7070}}]\n  rules:\n  - backendRefs:\n    - {{name: echo-v1, port: 7070, weight: 70}}\n    - {{name: echo-v2, port: 7070, weight: 30}}\n    - {{name: echo-v3, port: 7070, weight: 0}}\n"
    ))
    .await;
    let mut client = grpc_client(mesh.echo_v1()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !grpc_pod(&mut client).await.starts_with("echo-") {
        assert!(Instant::now() < deadline, "the gRPC route never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    expect_distribution(&[("echo-v1", 0.7), ("echo-v2", 0.3)], |n| {
        let mut client = client.clone();
        async move {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(grpc_pod(&mut client).await);
            }
            out
        }
    })
    .await;
}

// ---- MeshPorts --------------------------------------------------------------------------

/// Upstream's `ResponseHeaderModifier` header in `MeshPorts`, `MeshConsumerRoute` and
/// `MeshFrontendHostname`: present exactly when the route applied.
const ROUTE_HEADER: &str = "x-header-set";

/// A rule setting [`ROUTE_HEADER`] to `value` on the response and sending to `backend`, as
/// upstream's routes shape it.
fn header_rule(value: &str, backend: &str) -> String {
    format!(
        "  - filters:\n    - type: ResponseHeaderModifier\n      responseHeaderModifier:\n        set: [{{name: X-Header-Set, value: {value}}}]\n    backendRefs: [{backend}]\n"
    )
}

/// Sends through `client` until `backend` answers 200 with [`ROUTE_HEADER`] set to `header`
/// (`None`: absent, the route did not apply), and fails with the last answer otherwise.
async fn expect_routed(
    client: SocketAddr,
    host: &str,
    headers: &[(&str, &str)],
    backend: &str,
    header: Option<&str>,
) -> Answer {
    let wanted = routed(backend, header);
    let answer = eventually(client, host, "/", headers, |a| route_outcome(a) == wanted).await;
    assert_eq!(
        route_outcome(&answer),
        wanted,
        "GET / (Host {host}, headers {headers:?}): {answer:?}"
    );
    answer
}

/// What [`expect_routed`] compares: the status, the backend and [`ROUTE_HEADER`]'s value.
type Outcome = (u16, Option<String>, Option<String>);

fn route_outcome(answer: &Answer) -> Outcome {
    (
        answer.status,
        answer.backend(),
        answer
            .headers
            .get(ROUTE_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    )
}

fn routed(backend: &str, header: Option<&str>) -> Outcome {
    (200, Some(backend.to_owned()), header.map(str::to_owned))
}

/// A parentRef `port` attaches the route to that Service port only; without one, to every
/// port of the Service.
#[tokio::test]
async fn mesh_ports() {
    let mesh = ConformanceMesh::start(&format!(
        "{}---\n{}",
        route(
            "mesh-split-v1",
            "{group: \"\", kind: Service, name: echo-v1, port: 80}",
            &header_rule("v1", "{name: echo-v1, port: 80}"),
        ),
        route(
            "mesh-split-v2",
            "{group: \"\", kind: Service, name: echo-v2}",
            &header_rule("v2", "{name: echo-v2, port: 80}"),
        )
    ))
    .await;
    let client = mesh.echo_v1();
    // Explicit port: the route applies to that port only.
    expect_routed(client, "echo-v1", &[], "echo-v1", Some("v1")).await;
    expect_routed(client, "echo-v1:8080", &[], "echo-v1", None).await;
    // No port: every port of the Service.
    expect_routed(client, "echo-v2", &[], "echo-v2", Some("v2")).await;
    expect_routed(client, "echo-v2:8080", &[], "echo-v2", Some("v2")).await;
}

/// `sectionName` names the Service port the route attaches to, as `port` does.
#[tokio::test]
async fn mesh_ports_section_name() {
    let mesh = ConformanceMesh::start(&route(
        "mesh-section",
        "{group: \"\", kind: Service, name: echo-v1, sectionName: http-alt}",
        "  - backendRefs: [{name: echo-v2, port: 80}]\n",
    ))
    .await;
    let client = mesh.echo_v1();
    expect_backend(client, "echo-v1:8080", "/", &[], "echo-v2").await;
    expect_backend(client, "echo-v1", "/", &[], "echo-v1").await;
}

// ---- MeshConsumerRoute ------------------------------------------------------------------

/// Upstream's consumer route: in the consumer's namespace, attached to the producer's
/// `echo-v1`, setting [`ROUTE_HEADER`] and sending to that Service (which needs no
/// ReferenceGrant). Ours adds a rule sending to another Service of the producer's namespace,
/// which needs the producer's ReferenceGrant.
fn consumer_route(grant: bool) -> String {
    let mut yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: mesh-echo-add-header, namespace: {CONSUMER_NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo-v1, namespace: {MESH_NS}}}]\n  rules:\n{}  - matches: [{{headers: [{{name: version, value: two}}]}}]\n    backendRefs: [{{name: echo-v2, namespace: {MESH_NS}, port: 80}}]\n",
        header_rule(
            "set",
            &format!("{{name: echo-v1, namespace: {MESH_NS}, port: 80}}")
        )
    );
    if grant {
        yaml.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {{name: consumers-to-echo-v2, namespace: {MESH_NS}}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {CONSUMER_NS}}}]\n  to: [{{group: \"\", kind: Service, name: echo-v2}}]\n"
        ));
    }
    yaml
}

/// The consumer's route applies to requests from the consumer's namespace only.
#[tokio::test]
async fn mesh_consumer_route() {
    let mesh = ConformanceMesh::start(&consumer_route(true)).await;
    let consumer = mesh.client(CONSUMER_NS, "echo-v1-0");
    let producer = mesh.echo_v1();
    let host = format!("echo-v1.{MESH_NS}");
    let answer = expect_routed(consumer, &host, &[], "echo-v1", Some("set")).await;
    assert_eq!(answer.echoed.unwrap().namespace, MESH_NS);
    expect_routed(consumer, &host, &[("version", "two")], "echo-v2", None).await;
    // The producer's own clients do not take the consumer's route.
    expect_routed(producer, &host, &[], "echo-v1", None).await;
    expect_routed(producer, &host, &[("version", "two")], "echo-v1", None).await;
}

/// Without the ReferenceGrant the route stays (its reference to the parent Service needs
/// none), and only the requests its ungranted rule would send get 500.
#[tokio::test]
async fn mesh_consumer_route_without_reference_grant() {
    let mesh = ConformanceMesh::start(&consumer_route(false)).await;
    let consumer = mesh.client(CONSUMER_NS, "echo-v1-0");
    let host = format!("echo-v1.{MESH_NS}");
    expect_status(consumer, &host, "/", &[("version", "two")], 500).await;
    expect_routed(consumer, &host, &[], "echo-v1", Some("set")).await;
}

// ---- MeshFrontend ---------------------------------------------------------------------------

/// A route attached to a Service applies to that Service (its frontend) only: the same app
/// dialling the Service's ClusterIP gets the route's header, dialling one of its pods' IP
/// directly does not (the proxy passes the request through to that pod unchanged). In a
/// test-made network namespace with `strait-proxy init`'s real iptables rules, so both
/// connections are redirected to the app's proxy by their original destination.
#[tokio::test]
async fn mesh_frontend() {
    if !strait_tests::netns::require_root("gamma_conformance::mesh_frontend") {
        return;
    }
    let mesh = ConformanceMesh::start_intercepted(&route(
        "mesh-split-v1",
        "{group: \"\", kind: Service, name: echo-v2}",
        &header_rule("set", "{name: echo-v2, port: 80}"),
    ))
    .await;
    let pod = mesh.echo_v2_pod_app();
    let pod_host = pod.to_string();
    for (dst, host, header) in [
        // Send to service.
        (
            SocketAddr::new(cluster_ip("echo-v2"), 80),
            "echo-v2",
            Some("set"),
        ),
        // Send to pod IP.
        (pod, pod_host.as_str(), None),
    ] {
        let wanted = routed("echo-v2", header);
        let redirected_before = mesh.app_proxy_outbound_connections();
        let answer = mesh
            .from_app(dst, host, "/", &[], {
                let wanted = wanted.clone();
                move |a| route_outcome(a) == wanted
            })
            .await;
        assert_eq!(
            route_outcome(&answer),
            wanted,
            "GET / to {dst} (Host {host}): {answer:?}"
        );
        // The answer came through the app's proxy, not around it.
        assert!(
            mesh.app_proxy_outbound_connections() > redirected_before,
            "the connection to {dst} did not reach the app's proxy"
        );
    }
}

// ---- MeshFrontendHostname (feature MeshClusterIPMatching) -----------------------------------

/// A route attached to a Service applies to connections to that Service's ClusterIP whatever
/// their `Host` says. An app in a test-made network namespace (`strait-proxy init`'s real
/// iptables rules) dials the ClusterIPs itself; only the redirect to its pod's proxy can
/// answer, as nothing else routes that range.
#[tokio::test]
async fn mesh_frontend_hostname() {
    if !strait_tests::netns::require_root("gamma_conformance::mesh_frontend_hostname") {
        return;
    }
    let mesh = ConformanceMesh::start_intercepted(&route(
        "mesh-split-v1",
        "{group: \"\", kind: Service, name: echo-v2}",
        &header_rule("set", "{name: echo-v2, port: 80}"),
    ))
    .await;
    for (service, host, backend, header) in [
        // echo-v2's ClusterIP with Host echo-v1: echo-v2's route applies.
        ("echo-v2", "echo-v1", "echo-v2", Some("set")),
        // echo-v1's ClusterIP with Host echo-v2: echo-v2's route does not.
        ("echo-v1", "echo-v2", "echo-v1", None),
    ] {
        let dst = SocketAddr::new(cluster_ip(service), 80);
        let wanted = routed(backend, header);
        let answer = mesh
            .from_app(dst, host, "/", &[], {
                let wanted = wanted.clone();
                move |a| route_outcome(a) == wanted
            })
            .await;
        assert_eq!(
            route_outcome(&answer),
            wanted,
            "GET / to {dst} (Host {host}): {answer:?}"
        );
        // The app's Host reaches the backend as it sent it: the ClusterIP chose the route.
        assert_eq!(answer.echoed.unwrap().host, host);
    }
}

// ---- Invalid backends (the spec's ResolvedRefs=False) ------------------------------------

/// A rule's reference to a Service that does not exist leaves the route in force; the
/// requests that rule would send get 500, the route's other rules work.
#[tokio::test]
async fn missing_backend_answers_500_for_its_share() {
    let mesh = ConformanceMesh::start(&route(
        "missing-backend",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        "  - matches: [{path: {type: PathPrefix, value: /gone}}]\n    backendRefs: [{name: echo-v9, port: 80}]\n  - backendRefs: [{name: echo-v2, port: 80}]\n",
    ))
    .await;
    let client = mesh.echo_v1();
    expect_status(client, "echo", "/gone", &[], 500).await;
    expect_backend(client, "echo", "/", &[], "echo-v2").await;
}

// ---- Route status in `strait validate` ---------------------------------------------------

/// `strait validate` prints each route's conditions per parentRef, as the control plane writes
/// them to `status.parents[]` on Kubernetes.
#[test]
fn validate_prints_each_routes_conditions() {
    let dir = strait_tests::snapshot::TempDir::new("gamma-validate");
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: echo, namespace: {MESH_NS}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\n{}",
            route(
                "weights",
                "{group: \"\", kind: Service, name: echo, port: 80}",
                "  - backendRefs: [{name: echo, port: 80}, {name: echo-v3, port: 80, weight: 0}]\n",
            )
        ),
    )
    .unwrap();
    let output = std::process::Command::new(strait_tests::binaries::path("strait"))
        .args(["validate", dir.path().to_str().unwrap()])
        .output()
        .expect("running strait validate");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "HTTPRoute {MESH_NS}/weights → Service {MESH_NS}/echo port 80: Accepted=True, ResolvedRefs=False (BackendNotFound: "
        )) && text.contains("Service gateway-conformance-mesh/echo-v3 does not exist"),
        "{text}"
    );
    let json = std::process::Command::new(strait_tests::binaries::path("strait"))
        .args(["-o", "json", "validate", dir.path().to_str().unwrap()])
        .output()
        .expect("running strait validate");
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let conditions = &parsed["routes"][0]["parents"][0]["conditions"];
    assert_eq!(conditions[0]["type"], "Accepted");
    assert_eq!(conditions[0]["status"], "True");
    assert_eq!(conditions[1]["type"], "ResolvedRefs");
    assert_eq!(conditions[1]["status"], "False");
    assert_eq!(conditions[1]["reason"], "BackendNotFound");
}
