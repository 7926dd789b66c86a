//! The proxy's life beside a workload that ends (the classic mesh bug: a Job whose pod never
//! completes because its sidecar keeps running). The injector makes the proxy a native
//! sidecar (an init container with `restartPolicy: Always`), which the kubelet stops once the
//! app's containers have exited; the proxy then has to exit promptly, finishing in-flight
//! requests first but never outliving its drain deadline.
//!
//! The kubelet's part (stopping native sidecars after the main containers) is Kubernetes's;
//! what is tested here is everything the mesh contributes: the pod spec the real injector
//! produces for a Job's pod, and the real proxy binary's shutdown.

use std::time::{Duration, Instant};

use http::Request;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use strait_control_plane::inject::{INIT_CONTAINER, PATH_POD, PROXY_CONTAINER};
use strait_tests::admission::{Injector, apply, pod_create_review, read_fixture};
use strait_tests::backend::HttpBackend;
use strait_tests::client::{self, collect};
use strait_tests::mesh::LocalMesh;

/// The pod a Job's controller creates, built on the pod of the review recorded on GKE: owned
/// by a Job, `restartPolicy: Never`, with the Job controller's labels, asking for the mesh.
fn job_pod() -> Value {
    let mut pod = read_fixture("kube-rs/admissionreview-v1-pod-create.webhook_body.json")
        ["request"]["object"]
        .clone();
    pod["metadata"]["generateName"] = json!("pi-");
    pod["metadata"]["labels"] = json!({
        "batch.kubernetes.io/controller-uid": "8a5b6f1e-2f64-4d3c-9d7c-1e2f3a4b5c6d",
        "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "8a5b6f1e-2f64-4d3c-9d7c-1e2f3a4b5c6d",
        "job-name": "pi",
    });
    pod["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "batch/v1", "kind": "Job", "name": "pi",
        "uid": "8a5b6f1e-2f64-4d3c-9d7c-1e2f3a4b5c6d",
        "controller": true, "blockOwnerDeletion": true,
    }]);
    pod["metadata"]["annotations"] = json!({"strait.dev/inject": "enabled"});
    pod["spec"]["restartPolicy"] = json!("Never");
    pod
}

/// The proxy's `--drain-timeout` when nothing sets it.
fn default_drain_timeout() -> Duration {
    #[derive(clap::Parser)]
    struct Proxy {
        #[command(flatten)]
        flags: strait_proxy::flags::ProxyFlags,
    }
    let proxy = <Proxy as clap::Parser>::try_parse_from(["strait-proxy", "--mode", "pod"])
        .expect("proxy flags");
    proxy.flags.drain_timeout
}

#[tokio::test]
async fn a_jobs_pod_gets_the_proxy_as_a_native_sidecar_so_it_can_complete() {
    let injector = Injector::start("inject-job", "");
    let pod = job_pod();
    let review = pod_create_review(&pod, "batch", "job-1");
    let (status, answer) = injector.review(PATH_POD, &review).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let patched = apply(&pod, &answer);
    let spec = patched.spec.expect("a spec");

    // A pod completes when every regular container has exited: the app's containers are
    // still the only ones, so nothing the mesh added keeps the Job's pod running.
    let original: Vec<k8s_openapi::api::core::v1::Container> =
        serde_json::from_value(pod["spec"]["containers"].clone()).unwrap();
    assert_eq!(spec.containers, original, "no regular container added");
    assert_eq!(
        spec.restart_policy.as_deref(),
        Some("Never"),
        "the Job's policy kept"
    );

    // The proxy runs as a native sidecar: an init container the kubelet keeps running
    // (restartPolicy: Always) and stops after the app exits; it is started, and ready,
    // before the app, so the app's first connection is already meshed.
    let inits = spec.init_containers.expect("init containers");
    let names: Vec<&str> = inits.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, [INIT_CONTAINER, PROXY_CONTAINER]);
    assert_eq!(
        inits[0].restart_policy, None,
        "strait-init runs to completion like any init container"
    );
    let proxy = &inits[1];
    assert_eq!(proxy.restart_policy.as_deref(), Some("Always"));
    assert!(
        proxy.startup_probe.is_some(),
        "the app starts only once the proxy is ready"
    );
    // Its shutdown: the kubelet sends SIGTERM after the app has exited and waits the pod's
    // grace period; the proxy's drain deadline must fit inside it.
    let grace = pod["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    let drain = default_drain_timeout();
    assert!(
        drain < Duration::from_secs(grace),
        "drain {drain:?} within the grace period {grace}s"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_proxy_exits_at_once_on_sigterm_though_clients_hold_keep_alive_connections() {
    let backend = HttpBackend::start("web").await;
    let mut mesh = LocalMesh::start(&[("web", backend.addr)]);
    let outbound = mesh.client.outbound;

    // An app's pooled connections, HTTP/1 and HTTP/2, idle after one request each.
    let mut h1 = client::http1(outbound).await;
    let mut h2 = client::http2(outbound).await;
    for version in ["h1", "h2"] {
        let uri = if version == "h1" {
            "/"
        } else {
            "http://web.demo/"
        };
        let request = Request::get(uri)
            .header("host", "web.demo")
            .body(client::empty())
            .unwrap();
        let response = match version {
            "h1" => collect(h1.send_request(request).await.unwrap()).await,
            _ => collect(h2.send_request(request).await.unwrap()).await,
        };
        assert_eq!(response.status, 200, "{version}: {}", response.text());
    }

    let started = Instant::now();
    mesh.client.process.signal(Signal::SIGTERM);
    let status = mesh.client.process.wait_exit(Duration::from_secs(10));
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(3),
        "an idle proxy exits promptly ({took:?}), not at its 25s drain deadline"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_outlasting_the_drain_deadline_is_cut_there_and_the_proxy_exits() {
    let backend = HttpBackend::start("web").await;
    let mut mesh = LocalMesh::start_with(
        &[("web", backend.addr)],
        |client| client.flag("--drain-timeout", "1s"),
        |server| server,
    );
    let outbound = mesh.client.outbound;
    let mut sender = client::http1(outbound).await;
    let in_flight = tokio::spawn(async move {
        let request = Request::get("/slow?ms=20000")
            .header("host", "web.demo")
            .body(client::empty())
            .unwrap();
        sender.send_request(request).await
    });
    for _ in 0..100 {
        if backend.requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.requests(), 1);

    let started = Instant::now();
    mesh.client.process.signal(Signal::SIGTERM);
    let status = mesh.client.process.wait_exit(Duration::from_secs(10));
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "the proxy waited for the request until its 1s deadline, then exited ({took:?})"
    );
    assert!(
        mesh.client
            .process
            .logged("drain deadline passed; closing the remaining connections")
    );
    let cut = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the client learns its connection closed")
        .unwrap();
    assert!(cut.is_err(), "the cut request fails rather than hangs");
}
