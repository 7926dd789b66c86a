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
//!
//! Upstream's mesh comparison checks a redirect's status only and a header modifier's headers
//! only; the mirrors here also check the redirect's `Location` as upstream's gateway comparison
//! does, and the path the backend saw. The gRPC echo reports a call's metadata as upstream's
//! echo does (`strait_tests::echo::ECHOED_METADATA`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strait_tests::echo::{Echoed, echoed_of_grpc};
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

/// Upstream's `mesh-frontend.yaml` (a route on echo-v2 setting `X-Header-Set: set`) in the
/// intercepted world, which `MeshFrontend` and `MeshFrontendHostname` share.
async fn frontend_world() -> ConformanceMesh {
    ConformanceMesh::start_intercepted(&route(
        "mesh-split-v1",
        "{group: \"\", kind: Service, name: echo-v2}",
        &header_rule("set", "{name: echo-v2, port: 80}"),
    ))
    .await
}

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
    let mesh = frontend_world().await;
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
    let mesh = frontend_world().await;
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

// ---- What the backend saw: request header modifiers and rewrites -------------------------

/// What upstream's `ExpectedRequest` asks of the request the echo backend saw, and the backend
/// that must have answered.
struct Seen<'a> {
    backend: &'a str,
    path: &'a str,
    /// Headers the backend saw, a header's values joined by `,` as upstream joins them.
    headers: &'a [(&'a str, &'a str)],
    /// Headers the backend must not have seen.
    absent: &'a [&'a str],
}

/// How what the echo saw differs from `want` (`None`: it does not), as upstream's mesh
/// comparison checks it (backend, headers, absent headers), plus the path the backend saw.
fn echoed_mismatch(echoed: &Echoed, want: &Seen<'_>) -> Option<String> {
    let mut wrong = Vec::new();
    let backend = echoed.pod.rsplit_once('-').map(|(b, _)| b);
    if backend != Some(want.backend) {
        wrong.push(format!("answered by {}, not {}", echoed.pod, want.backend));
    }
    if echoed.path != want.path {
        wrong.push(format!("path {:?}, not {:?}", echoed.path, want.path));
    }
    for (name, value) in want.headers {
        let got = echoed
            .headers
            .get(&name.to_ascii_lowercase())
            .map(|v| v.join(","));
        if got.as_deref() != Some(*value) {
            wrong.push(format!("{name}: {got:?}, not {value:?}"));
        }
    }
    for name in want.absent {
        if let Some(got) = echoed.headers.get(&name.to_ascii_lowercase()) {
            wrong.push(format!("{name} present: {got:?}"));
        }
    }
    (!wrong.is_empty()).then(|| wrong.join("; "))
}

/// [`echoed_mismatch`] of an HTTP answer, which must be an echo's.
fn seen_mismatch(answer: &Answer, want: &Seen<'_>) -> Option<String> {
    match answer.echoed.as_ref() {
        Some(echoed) => echoed_mismatch(echoed, want),
        None => Some(format!("status {} without an echo report", answer.status)),
    }
}

/// Sends `GET path` with `headers` through `client` until the answer is as `want` says, and
/// fails with what differs otherwise.
async fn expect_seen(
    client: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    want: &Seen<'_>,
) {
    let answer = eventually(client, host, path, headers, |a| {
        seen_mismatch(a, want).is_none()
    })
    .await;
    if let Some(wrong) = seen_mismatch(&answer, want) {
        panic!("GET {path} (Host {host}, headers {headers:?}): {wrong}\n{answer:?}");
    }
}

// ---- MeshHTTPRouteRequestHeaderModifier -------------------------------------------------

/// The `RequestHeaderModifier` upstream's rules carry for each of its five path prefixes (the
/// YAML under `requestHeaderModifier:`, at the rule or at the backendRef).
fn request_header_modifiers() -> [(&'static str, &'static str); 5] {
    [
        (
            "/set",
            "set:\n- name: X-Header-Set\n  value: set-overwrites-values\n",
        ),
        (
            "/add",
            "add:\n- name: X-Header-Add\n  value: add-appends-values\n",
        ),
        ("/remove", "remove:\n- X-Header-Remove\n"),
        (
            "/multiple",
            "set:\n- name: X-Header-Set-1\n  value: header-set-1\n- name: X-Header-Set-2\n  value: header-set-2\nadd:\n- name: X-Header-Add-1\n  value: header-add-1\n- name: X-Header-Add-2\n  value: header-add-2\n- name: X-Header-Add-3\n  value: header-add-3\nremove:\n- X-Header-Remove-1\n- X-Header-Remove-2\n",
        ),
        (
            "/case-insensitivity",
            "set:\n- name: X-Header-Set\n  value: header-set\nadd:\n- name: X-Header-Add\n  value: header-add\nremove:\n- X-Header-Remove\n",
        ),
    ]
}

/// `text` with every line indented by `spaces`.
fn indented(text: &str, spaces: usize) -> String {
    text.lines()
        .map(|line| format!("{:spaces$}{line}\n", ""))
        .collect()
}

/// Upstream's rules of `mesh-request-header-modifier`: each path prefix to echo-v1:8080 with
/// its modifier on the rule (`on_backend` false) or on the backendRef (true, the
/// `MeshHTTPRouteBackendRequestHeaderModification` shape).
fn request_header_modifier_route(on_backend: bool) -> String {
    let rules: String = request_header_modifiers()
        .into_iter()
        .map(|(prefix, modifier)| {
            let rule_match =
                format!("  - matches:\n    - path: {{type: PathPrefix, value: {prefix}}}\n");
            if on_backend {
                format!(
                    "{rule_match}    backendRefs:\n    - name: echo-v1\n      port: 8080\n      filters:\n      - type: RequestHeaderModifier\n        requestHeaderModifier:\n{}",
                    indented(modifier, 10)
                )
            } else {
                format!(
                    "{rule_match}    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier:\n{}    backendRefs:\n    - name: echo-v1\n      port: 8080\n",
                    indented(modifier, 8)
                )
            }
        })
        .collect();
    route(
        "mesh-request-header-modifier",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        &rules,
    )
}

/// Upstream's cases of `MeshHTTPRouteRequestHeaderModifier`, which
/// `MeshHTTPRouteBackendRequestHeaderModifier` runs too.
async fn expect_request_headers_modified(client: SocketAddr) {
    let other = ("Some-Other-Header", "val");
    for (path, sent, headers, absent) in [
        (
            "/set",
            &[other][..],
            &[other, ("X-Header-Set", "set-overwrites-values")][..],
            &[][..],
        ),
        (
            "/set",
            &[other, ("X-Header-Set", "some-other-value")],
            &[other, ("X-Header-Set", "set-overwrites-values")],
            &[],
        ),
        (
            "/add",
            &[other],
            &[other, ("X-Header-Add", "add-appends-values")],
            &[],
        ),
        (
            "/add",
            &[other, ("X-Header-Add", "some-other-value")],
            &[
                other,
                ("X-Header-Add", "some-other-value,add-appends-values"),
            ],
            &[],
        ),
        (
            "/remove",
            &[("X-Header-Remove", "val")],
            &[],
            &["X-Header-Remove"],
        ),
        (
            "/multiple",
            &[
                ("X-Header-Set-2", "set-val-2"),
                ("X-Header-Add-2", "add-val-2"),
                ("X-Header-Remove-2", "remove-val-2"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("X-Header-Set-1", "header-set-1"),
                ("X-Header-Set-2", "header-set-2"),
                ("X-Header-Add-1", "header-add-1"),
                ("X-Header-Add-2", "add-val-2,header-add-2"),
                ("X-Header-Add-3", "header-add-3"),
                ("Another-Header", "another-header-val"),
            ],
            &["X-Header-Remove-1", "X-Header-Remove-2"],
        ),
        (
            "/case-insensitivity",
            &[
                ("x-header-set", "original-val-set"),
                ("x-header-add", "original-val-add"),
                ("x-header-remove", "original-val-remove"),
                ("Another-Header", "another-header-val"),
            ],
            &[
                ("X-Header-Set", "header-set"),
                ("X-Header-Add", "original-val-add,header-add"),
                ("Another-Header", "another-header-val"),
            ],
            &["x-header-remove", "X-Header-Remove"],
        ),
    ] {
        let want = Seen {
            backend: "echo-v1",
            path,
            headers,
            absent,
        };
        expect_seen(client, "echo", path, sent, &want).await;
    }
}

#[tokio::test]
async fn mesh_http_route_request_header_modifier() {
    let mesh = ConformanceMesh::start(&request_header_modifier_route(false)).await;
    expect_request_headers_modified(mesh.echo_v1()).await;
}

// ---- MeshHTTPRouteBackendRequestHeaderModifier -------------------------------------------

#[tokio::test]
async fn mesh_http_route_backend_request_header_modifier() {
    let mesh = ConformanceMesh::start(&request_header_modifier_route(true)).await;
    expect_request_headers_modified(mesh.echo_v1()).await;
}

// ---- MeshHTTPRouteRewritePath -----------------------------------------------------------

#[tokio::test]
async fn mesh_http_route_rewrite_path() {
    let rewrite = |prefix: &str, path: &str, headers: bool| {
        let modifier = if headers {
            "    - type: RequestHeaderModifier\n      requestHeaderModifier:\n        set: [{name: X-Header-Set, value: set-overwrites-values}]\n        add: [{name: X-Header-Add, value: header-val-1}, {name: X-Header-Add-Append, value: header-val-2}]\n        remove: [X-Header-Remove]\n"
        } else {
            ""
        };
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    filters:\n    - type: URLRewrite\n      urlRewrite:\n        path: {path}\n{modifier}    backendRefs: [{{name: echo-v1, port: 80}}]\n"
        )
    };
    let rules = [
        rewrite(
            "/prefix/one",
            "{type: ReplacePrefixMatch, replacePrefixMatch: /one}",
            false,
        ),
        rewrite(
            "/strip-prefix",
            "{type: ReplacePrefixMatch, replacePrefixMatch: /}",
            false,
        ),
        rewrite(
            "/full/one",
            "{type: ReplaceFullPath, replaceFullPath: /one}",
            false,
        ),
        rewrite(
            "/full/rewrite-path-and-modify-headers",
            "{type: ReplaceFullPath, replaceFullPath: /test}",
            true,
        ),
        rewrite(
            "/prefix/rewrite-path-and-modify-headers",
            "{type: ReplacePrefixMatch, replacePrefixMatch: /prefix}",
            true,
        ),
    ]
    .concat();
    let mesh = ConformanceMesh::start(&route(
        "mesh-rewrite-path",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        &rules,
    ))
    .await;
    let client = mesh.echo_v1();
    let sent = [
        ("X-Header-Remove", "remove-val"),
        ("X-Header-Add-Append", "append-val-1"),
        ("X-Header-Set", "set-val"),
    ];
    let modified = [
        ("X-Header-Add", "header-val-1"),
        ("X-Header-Add-Append", "append-val-1,header-val-2"),
        ("X-Header-Set", "set-overwrites-values"),
    ];
    for (path, sent, seen_path, headers, absent) in [
        ("/prefix/one/two", &[][..], "/one/two", &[][..], &[][..]),
        ("/strip-prefix/three", &[], "/three", &[], &[]),
        ("/strip-prefix", &[], "/", &[], &[]),
        ("/full/one/two", &[], "/one", &[], &[]),
        (
            "/full/rewrite-path-and-modify-headers/test",
            &sent,
            "/test",
            &modified,
            &["X-Header-Remove"],
        ),
        (
            "/prefix/rewrite-path-and-modify-headers/one",
            &sent,
            "/prefix/one",
            &modified,
            &["X-Header-Remove"],
        ),
    ] {
        let want = Seen {
            backend: "echo-v1",
            path: seen_path,
            headers,
            absent,
        };
        expect_seen(client, "echo", path, sent, &want).await;
    }
}

// ---- Redirects ----------------------------------------------------------------------------

/// Upstream's `RedirectRequest`: what the `Location` of a redirect names. A field left `None`
/// takes upstream's default (its gateway comparison, as the mesh one checks the status only):
/// the request's scheme `http`, the request's path, the port the scheme implies (absent or
/// 80 for http, absent or 443 for https); the host defaults to the request's, as the spec's
/// `hostname` says ("when empty, the hostname in the Host header of the request is used").
#[derive(Clone, Copy, Default)]
struct Redirect<'a> {
    scheme: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<&'a str>,
    path: Option<&'a str>,
}

/// How the answer to `GET path` with `host` differs from a redirect with `status` to
/// `want` (`None`: it does not).
fn redirect_mismatch(
    answer: &Answer,
    host: &str,
    path: &str,
    status: u16,
    want: Redirect<'_>,
) -> Option<String> {
    if answer.status != status {
        return Some(format!("status {}, not {status}", answer.status));
    }
    let Some(location) = answer.headers.get(http::header::LOCATION) else {
        return Some("no Location".to_owned());
    };
    let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
    let Ok(uri) = location.parse::<http::Uri>() else {
        return Some(format!("Location {location:?} is not a URI"));
    };
    // A relative Location resolves against the request's URL, as upstream's client does.
    let got_scheme = uri.scheme_str().unwrap_or("http");
    let request_host = host.split(':').next().unwrap_or(host);
    let got_host = uri.host().unwrap_or(request_host);
    let got_port = uri
        .port()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let scheme = want.scheme.unwrap_or("http");
    let port_ok = match want.port {
        Some(port) => got_port == port,
        None => {
            got_port.is_empty()
                || (scheme == "http" && got_port == "80")
                || (scheme == "https" && got_port == "443")
        }
    };
    let wanted_host = want.host.unwrap_or(request_host);
    let wanted_path = want.path.unwrap_or(path);
    (got_scheme != scheme || got_host != wanted_host || !port_ok || uri.path() != wanted_path)
        .then(|| {
            format!(
                "Location {location:?}, wanted scheme {scheme}, host {wanted_host}, port {:?}, path {wanted_path}",
                want.port
            )
        })
}

/// Sends `GET path` with `host` through `client`, not following redirects, until the answer
/// redirects with `status` to `want`, and fails with what differs otherwise.
async fn expect_redirect(
    client: SocketAddr,
    host: &str,
    path: &str,
    status: u16,
    want: Redirect<'_>,
) {
    let answer = eventually(client, host, path, &[], |a| {
        redirect_mismatch(a, host, path, status, want).is_none()
    })
    .await;
    if let Some(wrong) = redirect_mismatch(&answer, host, path, status, want) {
        panic!("GET {path} (Host {host}): {wrong}\n{answer:?}");
    }
}

/// A rule answering requests under `prefix` with `RequestRedirect` `redirect` (YAML flow
/// mapping) and no backendRefs, as upstream's redirect routes shape it.
fn redirect_rule(prefix: &str, redirect: &str) -> String {
    format!(
        "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    filters:\n    - type: RequestRedirect\n      requestRedirect: {redirect}\n"
    )
}

/// Upstream's `mesh-<code>-redirect`: `prefix` redirected with `statusCode: code` only, so the
/// `Location` keeps the request's scheme, host and path.
async fn expect_status_code_redirect(code: u16, prefix: &str) {
    let mesh = ConformanceMesh::start(&route(
        &format!("mesh-{code}-redirect"),
        "{group: \"\", kind: Service, name: echo, port: 80}",
        &redirect_rule(prefix, &format!("{{statusCode: {code}}}")),
    ))
    .await;
    let want = Redirect {
        path: Some(prefix),
        ..Redirect::default()
    };
    expect_redirect(mesh.echo_v1(), "echo", prefix, code, want).await;
}

// ---- MeshHTTPRoute303Redirect / 307 / 308 ---------------------------------------------------

#[tokio::test]
async fn mesh_http_route_303_redirect() {
    expect_status_code_redirect(303, "/redirect").await;
}

#[tokio::test]
async fn mesh_http_route_307_redirect() {
    expect_status_code_redirect(307, "/temporary").await;
}

#[tokio::test]
async fn mesh_http_route_308_redirect() {
    expect_status_code_redirect(308, "/permanent").await;
}

// ---- MeshHTTPRouteRedirectHostAndStatus ---------------------------------------------------

#[tokio::test]
async fn mesh_http_route_redirect_host_and_status() {
    let rules = [
        redirect_rule("/hostname-redirect", "{hostname: example.org}"),
        redirect_rule(
            "/host-and-status",
            "{statusCode: 301, hostname: example.org}",
        ),
    ]
    .concat();
    let mesh = ConformanceMesh::start(&route(
        "mesh-redirect-host-and-status",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        &rules,
    ))
    .await;
    let client = mesh.echo_v1();
    let to_example = Redirect {
        host: Some("example.org"),
        ..Redirect::default()
    };
    expect_redirect(client, "echo", "/hostname-redirect", 302, to_example).await;
    expect_redirect(client, "echo", "/host-and-status", 301, to_example).await;
}

// ---- MeshHTTPRouteRedirectPath ------------------------------------------------------------

#[tokio::test]
async fn mesh_http_route_redirect_path() {
    let prefix = "{type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}";
    let rules = [
        redirect_rule("/original-prefix", &format!("{{path: {prefix}}}")),
        redirect_rule(
            "/full",
            "{path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}",
        ),
        redirect_rule(
            "/path-and-host",
            &format!("{{hostname: example.org, path: {prefix}}}"),
        ),
        redirect_rule(
            "/path-and-status",
            &format!("{{path: {prefix}, statusCode: 301}}"),
        ),
        redirect_rule(
            "/full-path-and-host",
            "{hostname: example.org, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}}",
        ),
        redirect_rule(
            "/full-path-and-status",
            "{path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}, statusCode: 301}",
        ),
    ]
    .concat();
    let mesh = ConformanceMesh::start(&route(
        "mesh-redirect-path",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        &rules,
    ))
    .await;
    let client = mesh.echo_v1();
    let to = |host: Option<&'static str>, path: &'static str| Redirect {
        host,
        path: Some(path),
        ..Redirect::default()
    };
    let example = Some("example.org");
    for (path, status, want) in [
        (
            "/original-prefix/lemon",
            302,
            to(None, "/replacement-prefix/lemon"),
        ),
        (
            "/full/path/original",
            302,
            to(None, "/full-path-replacement"),
        ),
        ("/path-and-host", 302, to(example, "/replacement-prefix")),
        ("/path-and-status", 301, to(None, "/replacement-prefix")),
        ("/full-path-and-host", 302, to(example, "/replacement-full")),
        ("/full-path-and-status", 301, to(None, "/replacement-full")),
    ] {
        expect_redirect(client, "echo", path, status, want).await;
    }
}

// ---- MeshHTTPRouteRedirectPort ------------------------------------------------------------

#[tokio::test]
async fn mesh_http_route_redirect_port() {
    let rules = [
        redirect_rule("/port", "{port: 8083}"),
        redirect_rule("/port-and-host", "{hostname: example.org, port: 8083}"),
        redirect_rule("/port-and-status", "{port: 8083, statusCode: 301}"),
        redirect_rule(
            "/port-and-host-and-status",
            "{port: 8083, hostname: example.org, statusCode: 302}",
        ),
    ]
    .concat();
    let mesh = ConformanceMesh::start(&route(
        "mesh-redirect-port",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        &rules,
    ))
    .await;
    let client = mesh.echo_v1();
    let to = |host: Option<&'static str>| Redirect {
        host,
        port: Some("8083"),
        ..Redirect::default()
    };
    let example = Some("example.org");
    for (path, status, want) in [
        ("/port", 302, to(None)),
        ("/port-and-host", 302, to(example)),
        ("/port-and-status", 301, to(None)),
        ("/port-and-host-and-status", 302, to(example)),
    ] {
        expect_redirect(client, "echo", path, status, want).await;
    }
}

// ---- MeshHTTPRouteSchemeRedirect ----------------------------------------------------------

#[tokio::test]
async fn mesh_http_route_scheme_redirect() {
    let rules = [
        redirect_rule("/scheme", "{scheme: \"https\"}"),
        redirect_rule(
            "/scheme-and-host",
            "{hostname: example.org, scheme: \"https\"}",
        ),
        redirect_rule("/scheme-and-status", "{scheme: \"https\", statusCode: 301}"),
        redirect_rule(
            "/scheme-and-host-and-status",
            "{scheme: \"https\", statusCode: 302, hostname: example.org}",
        ),
    ]
    .concat();
    let mesh = ConformanceMesh::start(&route(
        "mesh-redirect-scheme",
        "{group: \"\", kind: Service, name: echo, port: 80}",
        &rules,
    ))
    .await;
    let client = mesh.echo_v1();
    let to = |host: Option<&'static str>| Redirect {
        scheme: Some("https"),
        host,
        ..Redirect::default()
    };
    let example = Some("example.org");
    for (path, status, want) in [
        ("/scheme", 302, to(None)),
        ("/scheme-and-host", 302, to(example)),
        ("/scheme-and-status", 301, to(None)),
        ("/scheme-and-host-and-status", 302, to(example)),
    ] {
        expect_redirect(client, "echo", path, status, want).await;
    }
}

// ---- MeshGRPCRouteRequestHeaderModifier ---------------------------------------------------

/// A `Say` call through `client` carrying `metadata`; the pod that answered and what the gRPC
/// echo saw of the call, or the call's failure.
async fn grpc_echoed(
    client: &mut EchoClient<tonic::transport::Channel>,
    metadata: &[(&'static str, &'static str)],
) -> Result<Echoed, String> {
    let mut call = tonic::Request::new(EchoRequest {
        message: "hello".into(),
        fail_with: 0,
    });
    for (name, value) in metadata {
        call.metadata_mut()
            .append(*name, value.parse().expect("an ASCII metadata value"));
    }
    let response = client
        .say(call)
        .await
        .map_err(|status| format!("grpc status {:?}: {}", status.code(), status.message()))?;
    echoed_of_grpc(response.metadata()).ok_or_else(|| "no echo report".to_owned())
}

/// Upstream's GRPCRoute `grpc-request-header-modifier`: calls to `echo:7070` with
/// `x-test-case` set, from echo-v1 (and echo-v2 for `multi`), reach the backend with the
/// rule's `RequestHeaderModifier` applied.
#[tokio::test]
async fn mesh_grpc_route_request_header_modifier() {
    let grpc_rule = |case: &str, modifier: &str, backend: &str| {
        format!(
            "  - matches: [{{headers: [{{name: x-test-case, value: {case}}}]}}]\n    filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {modifier}\n    backendRefs: [{{name: {backend}, port: 7070}}]\n"
        )
    };
    let rules = [
        grpc_rule(
            "set",
            "{set: [{name: x-header-set, value: set-overwrites-values}]}",
            "echo-v1",
        ),
        grpc_rule(
            "add",
            "{add: [{name: x-header-add, value: add-appends-values}]}",
            "echo-v1",
        ),
        grpc_rule("remove", "{remove: [x-header-remove]}", "echo-v1"),
        grpc_rule(
            "multi",
            "{set: [{name: x-header-set-1, value: header-set-1}, {name: x-header-set-2, value: header-set-2}], add: [{name: x-header-add-1, value: header-add-1}, {name: x-header-add-2, value: header-add-2}], remove: [x-header-remove-1, x-header-remove-2]}",
            "echo-v2",
        ),
    ]
    .concat();
    let mesh = ConformanceMesh::start(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: grpc-request-header-modifier, namespace: {MESH_NS}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: echo, port: 7070}}]\n  rules:\n{rules}"
    ))
    .await;
    let from_v1 = mesh.echo_v1();
    let from_v2 = mesh.client(MESH_NS, "echo-v2-0");
    for (from, case, sent, backend, headers, absent) in [
        (
            from_v1,
            "set",
            &[
                ("some-other-header", "this-header-should-be-set"),
                ("x-header-set", "this-value-should-be-overwritten"),
            ][..],
            "echo-v1",
            &[
                ("x-test-case", "set"),
                ("some-other-header", "this-header-should-be-set"),
                ("x-header-set", "set-overwrites-values"),
            ][..],
            &[][..],
        ),
        (
            from_v1,
            "add",
            &[("x-header-add", "this-value-should-be-appended")],
            "echo-v1",
            &[
                ("x-test-case", "add"),
                (
                    "x-header-add",
                    "this-value-should-be-appended,add-appends-values",
                ),
            ],
            &[],
        ),
        (
            from_v1,
            "remove",
            &[("x-header-remove", "this-should-be-removed")],
            "echo-v1",
            &[("x-test-case", "remove")],
            &["x-header-remove"],
        ),
        (
            from_v2,
            "multi",
            &[
                ("x-header-set-2", "set-header-2"),
                ("x-header-add-2", "add-header-2"),
                ("x-header-remove-2", "should-be-removed-2"),
            ],
            "echo-v2",
            &[
                ("x-test-case", "multi"),
                ("x-header-set-1", "header-set-1"),
                ("x-header-set-2", "header-set-2"),
                ("x-header-add-1", "header-add-1"),
                ("x-header-add-2", "add-header-2,header-add-2"),
            ],
            &["x-header-remove-1", "x-header-remove-2"],
        ),
    ] {
        let want = Seen {
            backend,
            path: "/strait.test.v1.Echo/Say",
            headers,
            absent,
        };
        let mut metadata = vec![("x-test-case", case)];
        metadata.extend_from_slice(sent);
        let mut client = grpc_client(from).await;
        // Upstream's eventually-consistent retry, bounded as `eventually` bounds it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = grpc_echoed(&mut client, &metadata).await;
        while last
            .as_ref()
            .map_or(true, |e| echoed_mismatch(e, &want).is_some())
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            last = grpc_echoed(&mut client, &metadata).await;
        }
        let echoed = last.unwrap_or_else(|e| panic!("gRPC call x-test-case: {case}: {e}"));
        if let Some(wrong) = echoed_mismatch(&echoed, &want) {
            panic!("gRPC call x-test-case: {case} with {sent:?}: {wrong}\n{echoed:?}");
        }
        assert_eq!(echoed.host, "echo:7070", "the call's :authority");
    }
}
