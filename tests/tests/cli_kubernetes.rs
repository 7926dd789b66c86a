//! The `strait` CLI in Kubernetes: `deploy/NAME`, `pod/NAME` and `svc/NAME` targets resolved
//! through a stand-in API server (`strait_tests::kube_api`, serving recorded objects: the
//! coredns Deployment and pods of a v1.36 kind cluster, a Service and an EndpointSlice as
//! kubectl printed them), and reached through its `portforward` subresource (WebSocket,
//! `v4.channel.k8s.io`, as kube-rs and kubectl speak it) to the admin ports of a real proxy and
//! a real control plane. Meshed pods are made by the real injector's patch.

use std::process::{Command, Output};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use strait_control_plane::inject::config::InjectorConfig;
use strait_control_plane::inject::patch::{Outcome, inject};
use strait_tests::binaries;
use strait_tests::kube_api::{DEPLOYMENTS, ENDPOINT_SLICES, FakeApi, PODS, SERVICES};
use strait_tests::load::{Spec, drive};
use strait_tests::mesh::MeshBuilder;

fn fixture(path: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/k8s")
        .join(path);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("reading a fixture"))
        .expect("a JSON fixture")
}

/// The recorded coredns Deployment (kube-system, selector `k8s-app=kube-dns`).
fn coredns_deployment() -> Value {
    fixture("core/k8s-openapi-replays-v1-36/extracted/deployment-list.response_body.json")["items"]
        [0]
    .clone()
}

/// Its two recorded pods, Running and Ready, sorted by name.
fn coredns_pods() -> Vec<Value> {
    let list = fixture("core/k8s-openapi-replays-v1-36/extracted/pod-list.response_body.json");
    let mut pods: Vec<Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("coredns-")
        })
        .cloned()
        .collect();
    pods.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap().to_owned());
    assert_eq!(pods.len(), 2);
    pods
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap().to_owned()
}

/// `pod` as the real injector leaves it (native sidecar `strait-proxy`, admin port 4191).
fn meshed(pod: &Value) -> Value {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let Outcome::Injected { patch, .. } =
        inject(&typed, true, &InjectorConfig::default(), "").unwrap()
    else {
        panic!("the injector injects a pod whose namespace asked for it");
    };
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    doc
}

fn strait(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    Command::new(binaries::path("strait"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("running strait")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// Runs `strait` off the runtime the fake API server serves on.
async fn run(api: &FakeApi, args: &[&str]) -> Output {
    let kubeconfig = api.kubeconfig.clone();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        strait(
            &kubeconfig,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    })
    .await
    .unwrap()
}

/// The chart's Service for the control plane, in the shape of the recorded kubectl Service,
/// and its EndpointSlice (the recorded one's shape) naming `pod` as ready.
fn control_plane_service(pod: &str) -> (Value, Value) {
    let mut service = fixture("core/k9s/svc.json");
    service["metadata"] = json!({"name": "strait-control-plane", "namespace": "strait-system"});
    service["spec"]["selector"] = json!({"app.kubernetes.io/name": "strait"});
    let mut slice = fixture("discovery/k9s/eps.json");
    slice["metadata"] = json!({
        "name": "strait-control-plane-x7k2p",
        "namespace": "strait-system",
        "labels": {"kubernetes.io/service-name": "strait-control-plane"},
    });
    for endpoint in slice["endpoints"].as_array_mut().unwrap() {
        endpoint["targetRef"]["name"] = json!(pod);
        endpoint["targetRef"]["namespace"] = json!("strait-system");
    }
    (service, slice)
}

#[tokio::test(flavor = "multi_thread")]
async fn stat_check_and_proxy_config_reach_deployments_services_and_pods_through_port_forwards() {
    let mesh = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-0", "backend", &[("app", "backend")])
        .start();
    let _app =
        strait_tests::backend::HttpBackend::start_on(mesh.workload("backend-0").app(), "backend-0")
            .await;
    let api = FakeApi::start(&[]).await;

    // deploy/coredns's first ready pod is meshed; its admin port is frontend-1's proxy.
    api.apply(DEPLOYMENTS, coredns_deployment());
    let pods = coredns_pods();
    for pod in &pods {
        api.apply(PODS, meshed(pod));
    }
    let chosen = name_of(&pods[0]);
    api.serve_pod_port("kube-system", &chosen, 4191, mesh.proxy("frontend-1").admin);
    // svc/strait-control-plane's ready endpoint is a control-plane pod whose 9990 is the
    // control plane's admin port.
    let mut control_plane_pod = pods[1].clone();
    control_plane_pod["metadata"]["name"] = json!("strait-control-plane-6b9f7c-abcde");
    control_plane_pod["metadata"]["namespace"] = json!("strait-system");
    api.apply(PODS, control_plane_pod);
    let (service, slice) = control_plane_service("strait-control-plane-6b9f7c-abcde");
    api.apply(SERVICES, service);
    api.apply(ENDPOINT_SLICES, slice);
    api.serve_pod_port(
        "strait-system",
        "strait-control-plane-6b9f7c-abcde",
        9990,
        mesh.control_plane.admin,
    );

    // Traffic through frontend-1 for as long as `stat` runs (at most 20s).
    let outbound = mesh.proxy("frontend-1").outbound;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn({
        let done = done.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !done.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < deadline
            {
                drive(outbound, 50, 2, |_| Spec::get("backend.demo", "/")).await;
            }
        }
    });
    let stat = run(
        &api,
        &[
            "-o",
            "json",
            "stat",
            "deploy/coredns",
            "-n",
            "kube-system",
            "--interval",
            "1s",
        ],
    )
    .await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    assert!(stat.status.success(), "{}", text(&stat));
    let rows: Value = serde_json::from_slice(&stat.stdout).unwrap();
    assert_eq!(rows[0]["service"], "demo/backend:80", "{rows}");
    assert!(rows[0]["rps"].as_f64().unwrap() > 0.0, "{rows}");

    let check = run(
        &api,
        &[
            "check",
            "--control-plane-admin",
            "svc/strait-control-plane",
            "--proxy",
            "deploy/coredns",
            "-n",
            "kube-system",
        ],
    )
    .await;
    assert!(check.status.success(), "{}", text(&check));
    let report = text(&check);
    assert!(report.contains("in sync at snapshot"), "{report}");
    assert!(
        report.contains("svc/strait-control-plane (pod strait-system/strait-control-plane-6b9f7c-abcde port 9990) answers"),
        "{report}"
    );

    // pod/NAME, the namespace from -n, the kubeconfig from KUBECONFIG and a named context.
    let kubeconfig = api.kubeconfig.clone();
    let config = tokio::task::spawn_blocking(move || {
        Command::new(binaries::path("strait"))
            .args([
                "proxy-config",
                &format!("pod/{chosen}"),
                "-n",
                "kube-system",
            ])
            .args(["--context", "fake"])
            .env("KUBECONFIG", kubeconfig)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(config.status.success(), "{}", text(&config));
    assert!(
        text(&config).contains("service demo/backend:80"),
        "{}",
        text(&config)
    );

    let requests = api.requests();
    assert!(
        requests.iter().any(|r| r.starts_with(
            "GET /api/v1/namespaces/kube-system/pods?&labelSelector=k8s-app%3Dkube-dns"
        ) || r.starts_with(
            "GET /api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-dns"
        )),
        "the deployment's selector lists its pods: {requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/portforward?") && r.contains("ports=4191")),
        "{requests:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_targets_say_which_object_failed_and_why() {
    let api = FakeApi::start(&[]).await;
    let expect = async |args: &[&str], wanted: &str| {
        let output = run(&api, args).await;
        assert!(!output.status.success(), "{args:?} must fail");
        let said = text(&output);
        assert!(
            said.contains(wanted),
            "{args:?}: wanted {wanted:?} in:\n{said}"
        );
    };

    expect(
        &["stat", "deploy/coredns", "-n", "kube-system"],
        "deploy/coredns: no deployment coredns in namespace kube-system",
    )
    .await;

    api.apply(DEPLOYMENTS, coredns_deployment());
    let pods = coredns_pods();
    for pod in &pods {
        let mut pending = pod.clone();
        pending["status"]["phase"] = json!("Pending");
        api.apply(PODS, pending);
    }
    let (first, second) = (name_of(&pods[0]), name_of(&pods[1]));
    expect(
        &["stat", "deploy/coredns", "-n", "kube-system"],
        &format!(
            "deploy/coredns: deployment coredns in namespace kube-system has no ready pod (its selector k8s-app=kube-dns matches: {first} Pending, {second} Pending)"
        ),
    )
    .await;

    // The recorded pods as they are: coredns has no proxy.
    for pod in &pods {
        api.apply(PODS, pod.clone());
    }
    expect(
        &["proxy-config", &format!("pod/{first}"), "-n", "kube-system"],
        &format!(
            "pod/{first}: pod {first} is not meshed: it has no strait-proxy container (containers: coredns)"
        ),
    )
    .await;
    expect(
        &["stat", "deploy/coredns", "-n", "kube-system"],
        "is not meshed",
    )
    .await;

    // Meshed, but nothing listens on the pod's admin port: the kubelet's error.
    api.apply(PODS, meshed(&pods[0]));
    expect(
        &["proxy-config", &format!("pod/{first}"), "-n", "kube-system"],
        &format!(
            "pod/{first} (pod kube-system/{first} port 4191) is unreachable: error forwarding port 4191 to pod"
        ),
    )
    .await;

    // RBAC: no port-forward, then no reading deployments.
    api.forbid("pods/portforward");
    expect(
        &["proxy-config", &format!("pod/{first}"), "-n", "kube-system"],
        &format!("the API server refused the port-forward to pod kube-system/{first}: pods \"{first}\" is forbidden"),
    )
    .await;
    expect(
        &["proxy-config", &format!("pod/{first}"), "-n", "kube-system"],
        "needs `create` on `pods/portforward` in namespace kube-system",
    )
    .await;
    api.forbid("deployments");
    expect(
        &["stat", "deploy/coredns", "-n", "kube-system"],
        "deploy/coredns: the API server refused to get deployments in namespace kube-system: deployments.apps \"coredns\" is forbidden",
    )
    .await;

    // A Service without ready endpoints; a pod that is not running.
    let (service, _) = control_plane_service("none");
    api.apply(SERVICES, service);
    expect(
        &["check", "--control-plane-admin", "svc/strait-control-plane"],
        "svc/strait-control-plane: service strait-control-plane in namespace strait-system has no ready pod",
    )
    .await;
    let mut pending = pods[1].clone();
    pending["status"]["phase"] = json!("Pending");
    api.apply(PODS, pending);
    expect(
        &[
            "proxy-config",
            &format!("pod/{second}"),
            "-n",
            "kube-system",
        ],
        &format!("pod/{second}: pod {second} in namespace kube-system is Pending, not running"),
    )
    .await;

    // A context the kubeconfig does not have.
    expect(
        &["--context", "nope", "stat", "pod/x"],
        &format!(
            "no Kubernetes configuration for pod/x (--kubeconfig {} --context nope)",
            api.kubeconfig.display()
        ),
    )
    .await;
}
