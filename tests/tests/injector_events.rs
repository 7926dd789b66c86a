//! hostNetwork pods the injector skips, reported as Kubernetes Events: the real control plane
//! (Kubernetes source, the stand-in API server) serving the injector, real AdmissionReviews of
//! hostNetwork pods asking for the mesh. Each is admitted unchanged with its warning, and an
//! `events.k8s.io/v1` Event `InjectionSkipped` says why, regarding the pod's apps/batch
//! controller (a DaemonSet here) or the pod itself; a dry-run review posts none (the webhook
//! declares `sideEffects: NoneOnDryRun`); and a burst of such pods — from one owner, or each
//! with an owner of its own as a hostile tenant could forge — yields a bounded number of Events.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strait_control_plane::inject::PATH_POD;
use strait_control_plane::inject::event_throttle::{BURST, REFILL};
use strait_control_plane::inject::skip_event::REASON;
use strait_tests::admission::{
    self, Injector, SERVICE_NAME, pod_create_review, pod_from_template, read_fixture,
};
use strait_tests::kube_api::FakeApi;

/// The control plane (Kubernetes source, the stand-in API server) serving the injector with
/// a certificate of its own and the chart's default proxy settings.
fn start(api: &FakeApi, name: &str) -> Injector {
    Injector::start_kubernetes(name, "", &api.kubeconfig)
}

/// A hostNetwork pod asking for the mesh: a node agent's, as a DaemonSet creates it (no name
/// yet, a generateName, its controller in `ownerReferences`) when `owner` is given, else a
/// bare pod named `name`.
fn host_network_pod(name: &str, owner: Option<(&str, &str, &str)>) -> Value {
    let mut pod = pod_from_template(&read_fixture("istio/hello-probes.yaml"));
    pod["metadata"]["annotations"] = json!({"strait.dev/inject": "enabled"});
    pod["spec"]["hostNetwork"] = json!(true);
    let metadata = pod["metadata"].as_object_mut().unwrap();
    match owner {
        Some((kind, owner_name, uid)) => {
            metadata.insert("generateName".into(), format!("{owner_name}-").into());
            metadata.insert(
                "ownerReferences".into(),
                json!([{
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "name": owner_name,
                    "uid": uid,
                    "controller": true,
                    "blockOwnerDeletion": true,
                }]),
            );
        }
        None => {
            metadata.remove("generateName");
            metadata.insert("name".into(), name.into());
        }
    }
    pod
}

/// Sends `review` as the API server does; checks the pod was admitted unchanged with the
/// hostNetwork warning.
async fn admitted_unchanged(running: &Injector, review: &Value) {
    let started = Instant::now();
    let (status, body) = admission::post(
        running.addr,
        &running.ca_pem,
        SERVICE_NAME,
        PATH_POD,
        review.to_string().as_bytes(),
    )
    .await
    .expect("the review is answered");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "{answer}");
    assert_eq!(response.get("patch"), None, "not injected: {answer}");
    let warnings = response["warnings"].as_array().expect("a warning");
    assert!(
        warnings.len() == 1 && warnings[0].as_str().unwrap().contains("hostNetwork"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "admission waited {:?}",
        started.elapsed()
    );
}

fn skip_events(api: &FakeApi) -> Vec<Value> {
    api.events()
        .into_iter()
        .filter(|e| e["reason"] == REASON)
        .collect()
}

/// Waits (up to 10 s) until an Event regards `name`, and returns it.
async fn event_regarding(api: &FakeApi, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(event) = skip_events(api)
            .into_iter()
            .find(|e| e["regarding"]["name"] == name)
        {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "no {REASON} Event regarding {name}: {:#?}",
            api.events()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no new Event has arrived for a second (at most 15 s), and returns them all.
async fn settled_events(api: &FakeApi) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = skip_events(api).len();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = skip_events(api).len();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
    }
    skip_events(api)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_network_pod_is_admitted_unchanged_and_an_event_on_its_owner_says_why() {
    let api = FakeApi::start(&[]).await;
    let running = start(&api, "injector-events");

    // A dry run first: admitted the same, but no Event (the webhook is dry-run aware).
    let mut dry = pod_create_review(
        &host_network_pod("", Some(("DaemonSet", "dry-agent", "uid-dry"))),
        "monitoring",
        "dry-run",
    );
    dry["request"]["dryRun"] = json!(true);
    admitted_unchanged(&running, &dry).await;

    let uid = "5f0a7c1e-2b4d-4c3e-9a8f-0d1e2f3a4b5c";
    let daemon_set_pod = host_network_pod("", Some(("DaemonSet", "node-agent", uid)));
    admitted_unchanged(
        &running,
        &pod_create_review(&daemon_set_pod, "monitoring", "daemon-set"),
    )
    .await;
    let event = event_regarding(&api, "node-agent").await;
    assert_eq!(event["apiVersion"], "events.k8s.io/v1", "{event:#}");
    assert_eq!(event["type"], "Warning", "{event:#}");
    assert_eq!(event["reportingController"], "strait-control-plane");
    assert_eq!(event["metadata"]["namespace"], "monitoring", "{event:#}");
    assert_eq!(
        (
            &event["regarding"]["kind"],
            &event["regarding"]["apiVersion"],
            &event["regarding"]["namespace"],
            &event["regarding"]["uid"],
        ),
        (
            &json!("DaemonSet"),
            &json!("apps/v1"),
            &json!("monitoring"),
            &json!(uid)
        ),
        "{event:#}"
    );
    let note = event["note"].as_str().expect("a note");
    assert!(
        note.contains("hostNetwork") && note.contains("node-agent-") && note.len() <= 1024,
        "{note}"
    );

    // A bare pod: the Event regards the pod itself, by name, in its namespace.
    admitted_unchanged(
        &running,
        &pod_create_review(&host_network_pod("debug-shell", None), "ops", "bare"),
    )
    .await;
    let event = event_regarding(&api, "debug-shell").await;
    assert_eq!(event["regarding"]["kind"], "Pod", "{event:#}");
    assert_eq!(event["regarding"]["namespace"], "ops", "{event:#}");
    assert_eq!(event["metadata"]["namespace"], "ops", "{event:#}");

    // Events are posted in order by one worker: the dry run, sent first, posted none.
    assert!(
        !skip_events(&api)
            .iter()
            .any(|e| e["regarding"]["name"] == "dry-agent"),
        "{:#?}",
        api.events()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_host_network_pods_yields_a_bounded_number_of_events() {
    let api = FakeApi::start(&[]).await;
    let running = start(&api, "injector-events-burst");
    const PODS: usize = 40;

    // One DaemonSet's pods: one Event for the DaemonSet.
    for i in 0..PODS {
        let pod = host_network_pod("", Some(("DaemonSet", "node-agent", "uid-agent")));
        admitted_unchanged(
            &running,
            &pod_create_review(&pod, "monitoring", &format!("agent-{i}")),
        )
        .await;
    }
    let events = settled_events(&api).await;
    assert_eq!(events.len(), 1, "{PODS} pods of one DaemonSet: {events:#?}");

    // Pods each naming an owner of its own (forgeable by whoever creates pods): at most the
    // global burst (and what refilled while they came), however many owners.
    let started = Instant::now();
    for i in 0..PODS {
        let owner = format!("forged-{i}");
        let pod = host_network_pod("", Some(("ReplicaSet", &owner, &format!("uid-{i}"))));
        admitted_unchanged(
            &running,
            &pod_create_review(&pod, "tenant", &format!("forged-{i}")),
        )
        .await;
    }
    let refilled = started.elapsed().as_secs_f64() / REFILL.as_secs_f64();
    let bound = BURST as usize + refilled.ceil() as usize;
    let forged = settled_events(&api)
        .await
        .into_iter()
        .filter(|e| e["metadata"]["namespace"] == "tenant")
        .count();
    assert!(
        forged >= 1 && forged <= bound && bound < PODS,
        "{forged} Events for {PODS} owners; at most {bound} may be posted"
    );
}
