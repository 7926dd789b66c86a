//! Route status on Kubernetes: the real `strait-control-plane --config-source kubernetes`,
//! against the stand-in API server, writes each HTTPRoute's and GRPCRoute's `status.parents[]`
//! through the `status` subresource — one entry per Service parentRef it serves, with
//! `controllerName: strait.dev/mesh-controller`, `Accepted`, `ResolvedRefs` and (a rule set
//! aside) `PartiallyInvalid`, `observedGeneration` the route's generation — keeping another
//! controller's entries, writing only what changed (nothing on a re-sync or a restart), keeping
//! `lastTransitionTime` of a condition that did not change, and retrying a failing API server.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strait_control_plane::kubernetes::route_status::CONTROLLER_NAME;
use strait_tests::control_plane::ControlPlane;
use strait_tests::kube_api::{FakeApi, GRPC_ROUTES, HTTP_ROUTES, SERVICES, StatusPatch};
use strait_tests::snapshot::TempDir;

const NS: &str = "demo";
const OTHER_CONTROLLER: &str = "example.net/gateway-controller";

fn service(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": NS, "uid": format!("svc-{name}")},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.14.3",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
        },
        "status": {"loadBalancer": {}},
    })
}

fn service_parent() -> Value {
    json!({"group": "", "kind": "Service", "name": "web", "port": 80})
}

fn gateway_parent() -> Value {
    json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"})
}

/// A rule as the API server returns it (defaults filled in) sending `/prefix` to `backend`.
fn rule(prefix: &str, backend: &str, filters: &Value) -> Value {
    json!({
        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
        "filters": filters,
        "backendRefs": [{"group": "", "kind": "Service", "name": backend, "port": 80, "weight": 1}],
    })
}

fn http_route(name: &str, generation: i64, parents: &[Value], rules: &[Value]) -> Value {
    json!({
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "generation": generation},
        "spec": {"parentRefs": parents, "rules": rules},
        "status": {"parents": []},
    })
}

/// Another controller's entry, as a Gateway implementation writes it.
fn other_entry() -> Value {
    json!({
        "parentRef": gateway_parent(),
        "controllerName": OTHER_CONTROLLER,
        "conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok",
            "observedGeneration": 3, "lastTransitionTime": "2026-12-01T10:00:00Z",
        }],
    })
}

fn world(api: &FakeApi) {
    api.apply(SERVICES, service("web"));
    api.apply(SERVICES, service("api"));
    let mut valid = http_route(
        "valid",
        3,
        &[gateway_parent(), service_parent()],
        &[rule("/", "api", &json!([]))],
    );
    valid["status"]["parents"] = json!([other_entry()]);
    api.apply(HTTP_ROUTES, valid);
    api.apply(
        HTTP_ROUTES,
        http_route(
            "missing",
            1,
            &[service_parent()],
            &[rule("/missing", "gone", &json!([]))],
        ),
    );
    api.apply(
        HTTP_ROUTES,
        http_route(
            "partial",
            2,
            &[service_parent()],
            &[
                rule("/kept", "api", &json!([])),
                rule(
                    "/magic",
                    "api",
                    &json!([{"type": "ExtensionRef", "extensionRef": {"group": "example.com", "kind": "Magic", "name": "m"}}]),
                ),
            ],
        ),
    );
    // Set aside for an error (hostnames mean nothing on a Service parent).
    let mut invalid = http_route(
        "invalid",
        1,
        &[service_parent()],
        &[rule("/invalid", "api", &json!([]))],
    );
    invalid["spec"]["hostnames"] = json!(["example.com"]);
    api.apply(HTTP_ROUTES, invalid);
    // Not the mesh's: attached to a Gateway only.
    api.apply(
        HTTP_ROUTES,
        http_route(
            "ingress",
            1,
            &[gateway_parent()],
            &[rule("/", "api", &json!([]))],
        ),
    );
    api.apply(
        GRPC_ROUTES,
        json!({
            "metadata": {"name": "grpc", "namespace": NS, "uid": "uid-grpc", "generation": 5},
            "spec": {
                "parentRefs": [{"group": "", "kind": "Service", "name": "api", "port": 80}],
                "rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": "api", "port": 80, "weight": 1}]}],
            },
        }),
    );
}

fn start(api: &FakeApi, dir: &TempDir) -> ControlPlane {
    ControlPlane::start_kubernetes(
        &api.kubeconfig,
        &[("--dev-ca", dir.path().join("ca").display().to_string())],
    )
}

fn successful(api: &FakeApi) -> Vec<StatusPatch> {
    api.route_status_patches()
        .into_iter()
        .filter(|p| p.code == 200)
        .collect()
}

/// Waits until `done` holds (at most `timeout`), then says whether it did.
async fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// The stored route's parent entries written by `controller`.
fn entries(api: &FakeApi, kind: &str, name: &str, controller: &str) -> Vec<Value> {
    let collection = if kind == "GRPCRoute" {
        GRPC_ROUTES
    } else {
        HTTP_ROUTES
    };
    api.object(collection, NS, name).expect("the route")["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["controllerName"] == controller)
        .collect()
}

fn condition<'a>(entry: &'a Value, type_: &str) -> &'a Value {
    entry["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {entry}"))
}

fn has_condition(entry: &Value, type_: &str) -> bool {
    entry["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == type_))
}

fn written(api: &FakeApi) -> bool {
    ["valid", "missing", "partial", "invalid"]
        .iter()
        .all(|name| entries(api, "HTTPRoute", name, CONTROLLER_NAME).len() == 1)
        && entries(api, "GRPCRoute", "grpc", CONTROLLER_NAME).len() == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_writes_each_routes_status_and_keeps_other_controllers_entries() {
    let api = FakeApi::start(&[]).await;
    let dir = TempDir::new("route-status");
    world(&api);
    let control_plane = start(&api, &dir);
    assert!(
        wait_for(Duration::from_secs(20), || written(&api)).await,
        "status written for every route: {:#?}",
        api.route_status_patches()
    );

    // The valid route: accepted, resolved, and the Gateway controller's entry untouched.
    let valid = &entries(&api, "HTTPRoute", "valid", CONTROLLER_NAME)[0];
    assert_eq!(valid["parentRef"], service_parent());
    for type_ in ["Accepted", "ResolvedRefs"] {
        let c = condition(valid, type_);
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("True"), Some(type_)),
            "{valid}"
        );
        assert_eq!(c["observedGeneration"], 3, "{valid}");
        assert!(
            c["lastTransitionTime"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{c}"
        );
    }
    assert!(!has_condition(valid, "PartiallyInvalid"), "{valid}");
    assert_eq!(
        entries(&api, "HTTPRoute", "valid", OTHER_CONTROLLER),
        [other_entry()]
    );

    // A missing backend: accepted, ResolvedRefs=False with BackendNotFound.
    let missing = &entries(&api, "HTTPRoute", "missing", CONTROLLER_NAME)[0];
    assert_eq!(condition(missing, "Accepted")["status"], "True");
    let resolved = condition(missing, "ResolvedRefs");
    assert_eq!(
        (resolved["status"].as_str(), resolved["reason"].as_str()),
        (Some("False"), Some("BackendNotFound"))
    );
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .contains("Service demo/gone does not exist"),
        "{resolved}"
    );

    // A refused rule: accepted and PartiallyInvalid.
    let partial = &entries(&api, "HTTPRoute", "partial", CONTROLLER_NAME)[0];
    assert_eq!(condition(partial, "Accepted")["status"], "True");
    let invalid_rule = condition(partial, "PartiallyInvalid");
    assert_eq!(
        (
            invalid_rule["status"].as_str(),
            invalid_rule["reason"].as_str()
        ),
        (Some("True"), Some("UnsupportedValue"))
    );
    assert!(
        invalid_rule["message"]
            .as_str()
            .unwrap()
            .starts_with("Dropped Rule"),
        "{invalid_rule}"
    );
    assert_eq!(invalid_rule["observedGeneration"], 2);

    // A route set aside for an error: not accepted, and why.
    let invalid = &entries(&api, "HTTPRoute", "invalid", CONTROLLER_NAME)[0];
    let accepted = condition(invalid, "Accepted");
    assert_eq!(accepted["status"], "False", "{invalid}");
    assert!(
        accepted["message"].as_str().unwrap().contains("hostnames"),
        "{accepted}"
    );

    // GRPCRoutes too; a Gateway-only route is not the mesh's and gets nothing.
    let grpc = &entries(&api, "GRPCRoute", "grpc", CONTROLLER_NAME)[0];
    assert_eq!(condition(grpc, "Accepted")["observedGeneration"], 5);
    assert!(
        !api.route_status_patches()
            .iter()
            .any(|p| p.name == "ingress"),
        "a Gateway-only route was patched"
    );
    // Every write is conditional on the version the control plane read.
    for patch in successful(&api) {
        assert!(
            patch.body["metadata"]["resourceVersion"].is_string(),
            "{:?}",
            patch.body
        );
    }
    drop(control_plane);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_route_is_not_written_again_and_a_changed_one_keeps_its_unchanged_times() {
    let api = FakeApi::start(&[]).await;
    let dir = TempDir::new("route-status-resync");
    world(&api);
    let control_plane = start(&api, &dir);
    assert!(wait_for(Duration::from_secs(20), || written(&api)).await);
    // Let any in-flight write land, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = successful(&api).len();
    assert_eq!(
        first,
        5,
        "one write per served route: {:#?}",
        successful(&api)
    );

    // A re-sync: objects re-applied unchanged (same generation) and an unrelated change.
    let valid = api.object(HTTP_ROUTES, NS, "valid").unwrap();
    api.apply(HTTP_ROUTES, valid);
    let mut web = service("web");
    web["metadata"]["labels"] = json!({"touched": "yes"});
    api.apply(SERVICES, web);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(successful(&api).len(), first, "{:#?}", successful(&api));

    // A restarted control plane finds every status already right and writes nothing.
    drop(control_plane);
    let control_plane = start(&api, &dir);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(successful(&api).len(), first, "{:#?}", successful(&api));

    // The missing backend's route fixed (a new generation): one write, ResolvedRefs now True
    // with a new time, Accepted (unchanged but for its generation) keeps its time.
    let before = entries(&api, "HTTPRoute", "missing", CONTROLLER_NAME)[0].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut fixed = api.object(HTTP_ROUTES, NS, "missing").unwrap();
    fixed["metadata"]["generation"] = json!(2);
    fixed["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("api");
    api.apply(HTTP_ROUTES, fixed);
    assert!(
        wait_for(Duration::from_secs(10), || {
            entries(&api, "HTTPRoute", "missing", CONTROLLER_NAME)
                .first()
                .is_some_and(|e| condition(e, "ResolvedRefs")["status"] == "True")
        })
        .await
    );
    let after = entries(&api, "HTTPRoute", "missing", CONTROLLER_NAME)[0].clone();
    assert_eq!(condition(&after, "Accepted")["observedGeneration"], 2);
    assert_eq!(
        condition(&after, "Accepted")["lastTransitionTime"],
        condition(&before, "Accepted")["lastTransitionTime"]
    );
    assert_ne!(
        condition(&after, "ResolvedRefs")["lastTransitionTime"],
        condition(&before, "ResolvedRefs")["lastTransitionTime"]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(successful(&api).len(), first + 1, "{:#?}", successful(&api));
    drop(control_plane);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_api_server_is_retried_with_a_warning_and_no_write_storm() {
    let api = FakeApi::start(&[]).await;
    let dir = TempDir::new("route-status-failing");
    api.fail_route_status_patches(8);
    world(&api);
    let control_plane = start(&api, &dir);
    assert!(
        wait_for(Duration::from_secs(30), || written(&api)).await,
        "{:#?}",
        api.route_status_patches()
    );
    let failed = api
        .route_status_patches()
        .iter()
        .filter(|p| p.code == 500)
        .count();
    assert_eq!(failed, 8);
    assert!(
        control_plane
            .process
            .logged("writing a route's status failed; retrying"),
        "a warning for the failing writes"
    );
    // Bounded: never more than a few writes in flight per round, and no write storm.
    assert!(
        api.route_status_patches().len() < 40,
        "{:#?}",
        api.route_status_patches()
    );
}
