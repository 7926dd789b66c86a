//! The control plane's Kubernetes source, end to end without a cluster: the real
//! `strait-control-plane --config-source kubernetes` watches a stand-in API server
//! (`strait_tests::kube_api`, HTTPS, list/watch/TokenReview/Events as the API server answers
//! them) through kube-rs, certifies real proxies with TokenReview, and streams them the mesh
//! the API objects describe — following additions, updates and deletions as they happen.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strait_tests::backend::HttpBackend;
use strait_tests::client::get;
use strait_tests::control_plane::ControlPlane;
use strait_tests::kube_api::{
    ENDPOINT_SLICES, FakeApi, GRPC_ROUTES, HTTP_ROUTES, KnownToken, PODS, SERVICES,
};
use strait_tests::ports::free_port;
use strait_tests::process::Proxy;
use strait_tests::snapshot::TempDir;

const AUDIENCE: &str = "strait.dev/identity";

/// A pod the way the API server returns it once the injector has meshed it and the kubelet
/// has started it.
fn pod(name: &str, ip: &str, service_account: &str, app_port: u16, proxy_port: u16) -> Value {
    json!({
        "metadata": {
            "name": name,
            "generateName": format!("{}-", name.rsplit_once('-').map_or(name, |(base, _)| base)),
            "namespace": "demo",
            "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "labels": {"app": service_account, "strait.dev/proxied": "true"},
            "annotations": {
                "strait.dev/injected": "0.1.0",
                "strait.dev/proxy-inbound-port": proxy_port.to_string(),
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{service_account}-7d4b9c"), "uid": "rs-uid", "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{
                "name": "app",
                "image": "example/app:1",
                "ports": [{"name": "http", "containerPort": app_port, "protocol": "TCP"}],
            }, {
                "name": "strait-proxy",
                "image": "ghcr.io/strait-mesh/strait-proxy:0.1.0",
                "ports": [
                    {"name": "strait-inbound", "containerPort": proxy_port, "protocol": "TCP"},
                    {"name": "strait-admin", "containerPort": 4191, "protocol": "TCP"},
                ],
            }],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

fn service() -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "demo", "uid": "svc-uid", "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.14.3",
            "clusterIPs": ["10.96.14.3"],
            "ipFamilies": ["IPv4"],
            "selector": {"app": "web"},
            "sessionAffinity": "None",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
        },
        "status": {"loadBalancer": {}},
    })
}

/// The slice the endpointslice controller writes for `web`, with `(ip, pod, ready)` endpoints.
fn slice(port: u16, endpoints: &[(&str, &str, bool)]) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, pod, ready)| {
            json!({
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": ready, "terminating": false},
                "nodeName": "node-1",
                "targetRef": {"kind": "Pod", "name": pod, "namespace": "demo", "uid": format!("uid-{pod}")},
            })
        })
        .collect();
    json!({
        "metadata": {
            "name": "web-5x2kq",
            "generateName": "web-",
            "namespace": "demo",
            "labels": {
                "kubernetes.io/service-name": "web",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-uid", "controller": true, "blockOwnerDeletion": true}],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    })
}

/// An HTTPRoute as the API server returns it: the CRD's defaults filled in.
fn route(name: &str, backend: &str, parent_kind: Option<&str>) -> Value {
    let parent = match parent_kind {
        Some(kind) => json!({"group": "", "kind": kind, "name": "web", "port": 80}),
        None => json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}),
    };
    json!({
        "metadata": {"name": name, "namespace": "demo", "uid": format!("uid-{name}"), "generation": 1},
        "spec": {
            "parentRefs": [parent],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"group": "", "kind": "Service", "name": backend, "port": 80, "weight": 1}],
                "timeouts": {"request": "5s"},
            }],
        },
        "status": {"parents": []},
    })
}

/// One pod's app and proxy on its own loopback address.
struct PodUnderTest {
    ip: &'static str,
    name: &'static str,
    service_account: &'static str,
    proxy_port: u16,
    token: String,
}

impl PodUnderTest {
    fn new(ip: &'static str, name: &'static str, service_account: &'static str) -> Self {
        Self {
            ip,
            name,
            service_account,
            proxy_port: free_port(),
            token: format!("projected-token-{name}-{}", fastrand::u64(..)),
        }
    }

    fn start_proxy(&self, control_plane: &ControlPlane, anchors: &Path, dir: &TempDir) -> Proxy {
        let token_file = dir.path().join(format!("{}.token", self.name));
        std::fs::write(&token_file, &self.token).expect("writing the token");
        Proxy::builder()
            .flag("--control-plane", control_plane.grpc)
            .flag("--trust-anchors", anchors.display())
            .flag("--namespace", "demo")
            .flag("--service-account", self.service_account)
            .flag("--workload", self.name)
            .flag("--token-file", token_file.display())
            .flag("--inbound-addr", format!("{}:{}", self.ip, self.proxy_port))
            .flag("--inbound-target-ip", self.ip)
            .start()
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Sends `n` requests to `web` through `client` and counts them by backend.
async fn spread(client: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut by_backend = BTreeMap::new();
    for _ in 0..n {
        let response = get(client, "web.demo.svc.cluster.local", "/").await;
        let key = if response.status == 200 {
            response.header("x-backend").to_owned()
        } else {
            format!("status {}", response.status)
        };
        *by_backend.entry(key).or_default() += 1;
    }
    by_backend
}

/// Retries `spread` until `expected(counts)` holds, within `timeout`.
async fn spread_until(
    client: SocketAddr,
    timeout: Duration,
    expected: impl Fn(&BTreeMap<String, usize>) -> bool,
) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let counts = spread(client, 20).await;
        if expected(&counts) || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_follows_the_kubernetes_api_with_proxies_certified_by_token_review() {
    // The cluster has no GRPCRoute CRD installed: that kind counts as empty.
    let api = FakeApi::start(&[GRPC_ROUTES]).await;
    let dir = TempDir::new("kube-source");
    let client_pod = PodUnderTest::new("127.0.0.4", "client-6f7d8-abcde", "client");
    let web_1 = PodUnderTest::new("127.0.0.2", "web-7d4b9c-x1", "web");
    let web_2 = PodUnderTest::new("127.0.0.3", "web-7d4b9c-x2", "web");
    let backend_1 = HttpBackend::start_on("127.0.0.2:0".parse().unwrap(), "web-1").await;
    let port = backend_1.addr.port();
    let backend_2 =
        HttpBackend::start_on(SocketAddr::new("127.0.0.3".parse().unwrap(), port), "web-2").await;

    for pod in [&client_pod, &web_1, &web_2] {
        api.add_token(
            &pod.token,
            KnownToken {
                username: format!("system:serviceaccount:demo:{}", pod.service_account),
                audiences: vec![AUDIENCE.into()],
            },
        );
    }
    api.apply(SERVICES, service());
    api.apply(
        ENDPOINT_SLICES,
        slice(port, &[("127.0.0.2", web_1.name, true)]),
    );
    for pod in [&client_pod, &web_1] {
        api.apply(PODS, pod_object(pod, port));
    }
    api.apply(HTTP_ROUTES, route("web", "web", Some("Service")));
    // A reference to a missing Service is no error (it answers 500, GAMMA); a weight the
    // schema forbids is.
    let mut typo = route("typo", "wbe", Some("Service"));
    typo["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(2_000_000);
    api.apply(HTTP_ROUTES, typo);
    api.apply(HTTP_ROUTES, route("ingress", "web", None));

    let ca = dir.path().join("ca");
    let control_plane =
        ControlPlane::start_kubernetes(&api.kubeconfig, &[("--dev-ca", ca.display().to_string())]);
    let anchors = ca.join("trust-anchors.pem");
    let client = client_pod.start_proxy(&control_plane, &anchors, &dir);
    let web_proxy_1 = web_1.start_proxy(&control_plane, &anchors, &dir);
    for proxy in [&client, &web_proxy_1] {
        wait_for(
            "a certificate and a snapshot",
            Duration::from_secs(20),
            || {
                proxy.process.logged("certificate installed")
                    && proxy.process.logged("snapshot applied")
            },
        );
    }

    // Identities come from TokenReview, asked for the mesh's audience.
    let reviews = api.token_reviews();
    assert!(reviews.len() >= 2, "{reviews:?}");
    for review in &reviews {
        assert_eq!(review["spec"]["audiences"], json!([AUDIENCE]), "{review}");
    }

    // The route with a typo is reported on itself, and only it: the Gateway's route is not ours.
    wait_for(
        "an Event about the invalid route",
        Duration::from_secs(10),
        || {
            api.events()
                .iter()
                .any(|e| e["regarding"]["name"] == "typo")
        },
    );
    let events = api.events();
    let event = events
        .iter()
        .find(|e| e["regarding"]["name"] == "typo")
        .unwrap();
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "InvalidConfiguration");
    assert_eq!(event["regarding"]["kind"], "HTTPRoute");
    assert_eq!(event["regarding"]["uid"], "uid-typo");
    let note = event["note"].as_str().unwrap();
    assert!(
        note.contains("spec.rules[0].backendRefs[0].weight") && note.contains("2000000"),
        "{note}"
    );
    assert!(
        !events.iter().any(|e| e["regarding"]["name"] == "ingress"),
        "{events:?}"
    );

    // Traffic crosses the mesh with the client's proven identity.
    let response = get(client.outbound, "web.demo.svc.cluster.local", "/").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-backend"), "web-1");
    assert_eq!(
        response.header("x-seen-client-id"),
        "spiffe://cluster.local/ns/demo/sa/client"
    );

    // A second replica becomes ready: the slice gains it, traffic spreads to it.
    let web_proxy_2 = web_2.start_proxy(&control_plane, &anchors, &dir);
    api.apply(PODS, pod_object(&web_2, port));
    wait_for(
        "the second replica's certificate",
        Duration::from_secs(20),
        || web_proxy_2.process.logged("certificate installed"),
    );
    api.apply(
        ENDPOINT_SLICES,
        slice(
            port,
            &[
                ("127.0.0.2", web_1.name, true),
                ("127.0.0.3", web_2.name, true),
            ],
        ),
    );
    let counts = spread_until(client.outbound, Duration::from_secs(10), |c| {
        c.get("web-1").is_some() && c.get("web-2").is_some()
    })
    .await;
    assert!(
        counts.contains_key("web-1") && counts.contains_key("web-2"),
        "{counts:?}"
    );
    assert_eq!(
        counts.values().sum::<usize>(),
        counts["web-1"] + counts["web-2"],
        "{counts:?}"
    );

    // The first replica stops being ready, then its pod is deleted: no request goes to it.
    api.apply(
        ENDPOINT_SLICES,
        slice(
            port,
            &[
                ("127.0.0.2", web_1.name, false),
                ("127.0.0.3", web_2.name, true),
            ],
        ),
    );
    api.delete(PODS, "demo", web_1.name);
    let counts = spread_until(client.outbound, Duration::from_secs(10), |c| {
        c.len() == 1 && c.contains_key("web-2")
    })
    .await;
    assert_eq!(counts.keys().collect::<Vec<_>>(), ["web-2"], "{counts:?}");

    // Fixing the typo brings that route in; deleting the Service takes its routes away.
    api.apply(HTTP_ROUTES, route("typo", "web", Some("Service")));
    api.delete(SERVICES, "demo", "web");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    while Instant::now() < deadline {
        last = get(client.outbound, "web.demo.svc.cluster.local", "/")
            .await
            .status
            .as_u16();
        if last == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 404, "a deleted Service is no longer routed");
    drop(backend_2);
}

fn pod_object(pod: &PodUnderTest, app_port: u16) -> Value {
    self::pod(
        pod.name,
        pod.ip,
        pod.service_account,
        app_port,
        pod.proxy_port,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_or_an_unknown_token_gets_no_certificate() {
    let api = FakeApi::start(&[]).await;
    let dir = TempDir::new("kube-tokens");
    let wrong_audience = PodUnderTest::new("127.0.0.5", "web-aud", "web");
    let unknown = PodUnderTest::new("127.0.0.6", "web-unknown", "web");
    api.add_token(
        &wrong_audience.token,
        KnownToken {
            username: "system:serviceaccount:demo:web".into(),
            audiences: vec!["https://kubernetes.default.svc".into()],
        },
    );
    for pod in [&wrong_audience, &unknown] {
        api.apply(PODS, pod_object(pod, 8080));
    }
    let ca = dir.path().join("ca");
    let control_plane =
        ControlPlane::start_kubernetes(&api.kubeconfig, &[("--dev-ca", ca.display().to_string())]);
    let anchors = ca.join("trust-anchors.pem");
    let proxies: Vec<Proxy> = [&wrong_audience, &unknown]
        .iter()
        .map(|pod| pod.start_proxy(&control_plane, &anchors, &dir))
        .collect();
    wait_for("both refusals", Duration::from_secs(15), || {
        control_plane
            .process
            .logged("is invalid for the target audiences")
            && control_plane
                .process
                .logged("invalid bearer token, square/go-jose")
    });
    for proxy in &proxies {
        assert!(!proxy.process.logged("certificate installed"));
        // The token never appears in what the proxy or the control plane print.
        for pod in [&wrong_audience, &unknown] {
            assert!(!proxy.process.logged(&pod.token));
            assert!(!control_plane.process.logged(&pod.token));
        }
    }
    let metrics = strait_tests::metrics::Metrics::fetch(control_plane.admin).await;
    assert!(
        metrics.sum("strait_identity_certificates_refused_total", &[]) >= 2.0,
        "{:?}",
        metrics.names()
    );
}
