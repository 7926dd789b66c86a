//! Attack: a tenant who may write EndpointSlices in its own namespace (`evil`) publishes one
//! for its own Service naming another namespace's pod address (the `demo` web pod). Proxies
//! would then reach that pod in plaintext without its identity — past its proxy, so past its
//! authorization, and from any caller that picks the tenant's Service.
//!
//! An endpoint address that belongs to a meshed pod of another namespace is refused: the
//! slice is set aside and reported as an Event on it naming the address and the pod; no proxy's
//! snapshot holds that pod's address without the pod's identity. The control plane runs on the
//! stand-in Kubernetes API (`strait_tests::kube_api`), and in local mode on files; the
//! snapshot is read from a real proxy's `/config`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strait_tests::backend::HttpBackend;
use strait_tests::client::get;
use strait_tests::control_plane::ControlPlane;
use strait_tests::kube_api::{ENDPOINT_SLICES, FakeApi, KnownToken, PODS, SERVICES};
use strait_tests::mesh::MeshBuilder;
use strait_tests::ports::free_port;
use strait_tests::process::Proxy;
use strait_tests::snapshot::TempDir;

const AUDIENCE: &str = "strait.dev/identity";
const WEB_IP: &str = "127.0.0.2";
const CLIENT_IP: &str = "127.0.0.4";
const WEB_IDENTITY: &str = "spiffe://cluster.local/ns/demo/sa/web";

fn pod(name: &str, ip: &str, service_account: &str, app_port: u16, proxy_port: u16) -> Value {
    json!({
        "metadata": {
            "name": name,
            "namespace": "demo",
            "uid": format!("uid-{name}"),
            "labels": {"app": service_account, "strait.dev/proxied": "true"},
            "annotations": {"strait.dev/proxy-inbound-port": proxy_port.to_string()},
        },
        "spec": {
            "serviceAccountName": service_account,
            "containers": [{
                "name": "app",
                "image": "example/app:1",
                "ports": [{"name": "http", "containerPort": app_port, "protocol": "TCP"}],
            }],
        },
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

fn service(namespace: &str, name: &str, cluster_ip: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-svc-{namespace}-{name}")},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}],
        },
    })
}

/// A slice of `namespace/service` named `name` with one endpoint `ip:port`.
fn slice(namespace: &str, service: &str, name: &str, ip: &str, port: u16) -> Value {
    json!({
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("uid-{name}"),
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    })
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

/// Every `(backend, address, identity)` of a snapshot.
fn endpoints(snapshot: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for service in snapshot["services"].as_array().into_iter().flatten() {
        for backend in service["backends"].as_array().into_iter().flatten() {
            for endpoint in backend["endpoints"].as_array().into_iter().flatten() {
                out.push((
                    backend["name"].as_str().unwrap_or_default().to_owned(),
                    endpoint["address"].as_str().unwrap_or_default().to_owned(),
                    endpoint["identity"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    out
}

fn start_proxy(
    control_plane: &ControlPlane,
    anchors: &std::path::Path,
    dir: &TempDir,
    (name, ip, service_account, proxy_port, token): (&str, &str, &str, u16, &str),
) -> Proxy {
    let token_file = dir.path().join(format!("{name}.token"));
    std::fs::write(&token_file, token).unwrap();
    Proxy::builder()
        .flag("--control-plane", control_plane.grpc)
        .flag("--trust-anchors", anchors.display())
        .flag("--namespace", "demo")
        .flag("--service-account", service_account)
        .flag("--workload", name)
        .flag("--token-file", token_file.display())
        .flag("--inbound-addr", format!("{ip}:{proxy_port}"))
        .flag("--inbound-target-ip", ip)
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_slice_in_another_namespace_cannot_take_a_pods_address() {
    let api = FakeApi::start(&[]).await;
    let dir = TempDir::new("slice-attack");
    let web_app = HttpBackend::start_on(format!("{WEB_IP}:0").parse().unwrap(), "web-1").await;
    let app_port = web_app.addr.port();
    let (web_proxy_port, client_proxy_port) = (free_port(), free_port());
    let web_token = format!("projected-web-{}", fastrand::u64(..));
    let client_token = format!("projected-client-{}", fastrand::u64(..));
    for (token, account) in [(&web_token, "web"), (&client_token, "client")] {
        api.add_token(
            token,
            KnownToken {
                username: format!("system:serviceaccount:demo:{account}"),
                audiences: vec![AUDIENCE.into()],
            },
        );
    }
    api.apply(PODS, pod("web-1", WEB_IP, "web", app_port, web_proxy_port));
    api.apply(
        PODS,
        pod("client-1", CLIENT_IP, "client", 8080, client_proxy_port),
    );
    api.apply(SERVICES, service("demo", "web", "10.96.14.3"));
    api.apply(
        ENDPOINT_SLICES,
        slice("demo", "web", "web-5x2kq", WEB_IP, app_port),
    );
    // The hostile tenant's own Service, and a slice for it naming demo's pod.
    api.apply(SERVICES, service("evil", "grab", "10.96.66.6"));
    api.apply(
        ENDPOINT_SLICES,
        slice("evil", "grab", "grab-manual", WEB_IP, app_port),
    );

    let ca = dir.path().join("ca");
    let control_plane =
        ControlPlane::start_kubernetes(&api.kubeconfig, &[("--dev-ca", ca.display().to_string())]);
    let anchors = ca.join("trust-anchors.pem");
    let client = start_proxy(
        &control_plane,
        &anchors,
        &dir,
        (
            "client-1",
            CLIENT_IP,
            "client",
            client_proxy_port,
            &client_token,
        ),
    );
    let web = start_proxy(
        &control_plane,
        &anchors,
        &dir,
        ("web-1", WEB_IP, "web", web_proxy_port, &web_token),
    );
    // Both proxies: an inbound proxy admits nothing before its first snapshot.
    wait_for(
        "both proxies' certificates and snapshots",
        Duration::from_secs(20),
        || {
            [&client, &web].iter().all(|proxy| {
                proxy.process.logged("snapshot applied")
                    && proxy.process.logged("certificate installed")
            })
        },
    );

    // The client's snapshot knows the tenant's Service; demo's pod address appears only with
    // the pod's identity.
    let deadline = Instant::now() + Duration::from_secs(10);
    let snapshot = loop {
        let text = client.admin_get("/config").await.text();
        let snapshot: Value = serde_json::from_str(&text).expect("/config is JSON");
        let has_grab = snapshot["services"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["namespace"] == "evil" && s["name"] == "grab");
        if has_grab || Instant::now() > deadline {
            break snapshot;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stolen: Vec<String> = endpoints(&snapshot)
        .into_iter()
        .filter(|(_, address, identity)| {
            address.starts_with(&format!("{WEB_IP}:")) && identity != WEB_IDENTITY
        })
        .map(|(backend, address, identity)| {
            format!("{backend}: {address} with identity {identity:?}")
        })
        .collect();
    assert!(
        stolen.is_empty(),
        "the client proxy reaches demo's web pod without its identity:\n{}",
        stolen.join("\n")
    );

    // Through the tenant's Service, nothing reaches the web pod; through its own, it does.
    let response = get(client.outbound, "grab.evil.svc.cluster.local", "/").await;
    assert_ne!(
        response.header("x-backend"),
        "web-1",
        "the tenant's Service reached demo's pod ({})",
        response.status
    );
    let response = get(client.outbound, "web.demo.svc.cluster.local", "/").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.header("x-seen-client-id"),
        "spiffe://cluster.local/ns/demo/sa/client"
    );

    // The operator sees why: an Event on the slice naming the address and the pod.
    wait_for(
        "an Event about the hostile slice",
        Duration::from_secs(10),
        || {
            api.events()
                .iter()
                .any(|e| e["regarding"]["name"] == "grab-manual")
        },
    );
    let events = api.events();
    let event = events
        .iter()
        .find(|e| e["regarding"]["name"] == "grab-manual")
        .unwrap();
    assert_eq!(event["regarding"]["kind"], "EndpointSlice");
    assert_eq!(event["regarding"]["namespace"], "evil");
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.contains(WEB_IP) && note.contains("demo/web-1"),
        "the Event names the address and the pod: {note}"
    );
    assert!(
        !events.iter().any(|e| e["regarding"]["name"] == "web-5x2kq"),
        "demo's own slice is not reported: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_endpoint_slice_naming_another_namespaces_workload_is_refused_on_reload() {
    let mesh = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-1", "backend", &[("app", "backend")])
        .start();
    let backend = mesh.workload("backend-1").app();
    mesh.write_config(
        "evil.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: grab, namespace: evil}}\n\
             spec:\n  clusterIP: 10.96.66.6\n  ports: [{{name: http, port: 80}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: grab-manual, namespace: evil, labels: {{kubernetes.io/service-name: grab}}}}\n\
             addressType: IPv4\nendpoints: [{{addresses: [\"{}\"]}}]\nports: [{{name: http, port: {}}}]\n",
            backend.ip(),
            backend.port()
        ),
    );
    let proxy = mesh.proxy("frontend-1");
    let refused = mesh
        .control_plane
        .process
        .wait_logged("configuration change rejected", Duration::from_secs(5));
    let snapshot: Value =
        serde_json::from_str(&proxy.admin_get("/config").await.text()).expect("/config is JSON");
    let stolen: Vec<String> = endpoints(&snapshot)
        .into_iter()
        .filter(|(_, address, identity)| {
            *address == backend.to_string()
                && identity != "spiffe://cluster.local/ns/demo/sa/backend"
        })
        .map(|(backend, address, identity)| format!("{backend}: {address} {identity:?}"))
        .collect();
    assert!(
        stolen.is_empty(),
        "the frontend reaches demo's backend without its identity:\n{}",
        stolen.join("\n")
    );
    assert!(refused, "the control plane accepted the slice");
    let logs = mesh.control_plane.process.logs().join("\n");
    assert!(
        logs.contains("EndpointSlice evil/grab-manual")
            && logs.contains(&format!(
                "{backend} belongs to meshed workload demo/backend-1 of namespace demo"
            )),
        "the refusal names the slice, the address and the workload:\n{logs}"
    );
}
