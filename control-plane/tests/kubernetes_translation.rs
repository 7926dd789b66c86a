//! The Kubernetes source's translation, from objects exactly as the API server returns them
//! (recorded fixtures in `tests/fixtures/k8s/`, see its README) to the validated model.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Value, json};
use strait_control_plane::config::model::{ObjectKey, PathMatch};
use strait_control_plane::discovery::snapshot::snapshot_for;
use strait_control_plane::kubernetes::kinds::Kind;
use strait_control_plane::kubernetes::translate::{Translation, translate};

fn fixture(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/k8s")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn json_fixture(path: &str) -> Value {
    serde_json::from_str(&fixture(path)).expect("fixture is JSON")
}

/// The YAML documents of a fixture, as the API server would return them (JSON values).
fn yaml_fixture(path: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&fixture(path))
        .expect("fixture is YAML")
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn run(objects: &[(Kind, Value)]) -> Translation {
    let borrowed: Vec<(Kind, &Value)> = objects.iter().map(|(k, v)| (*k, v)).collect();
    translate(&borrowed).expect("errors are always some object's")
}

fn kind_of(object: &Value) -> Kind {
    match object["kind"].as_str() {
        Some("Service") => Kind::Service,
        Some("HTTPRoute") => Kind::HttpRoute,
        Some("GRPCRoute") => Kind::GrpcRoute,
        Some("EndpointSlice") => Kind::EndpointSlice,
        other => panic!("unexpected kind {other:?}"),
    }
}

/// The recorded kube-system pod list, with one pod meshed the way the injector marks it.
fn recorded_pods(meshed: Option<&str>) -> Vec<(Kind, Value)> {
    let list = json_fixture("core/k8s-openapi-replays-v1-36/extracted/pod-list.response_body.json");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pod| {
            let mut pod = pod.clone();
            if Some(pod["metadata"]["name"].as_str().unwrap()) == meshed {
                pod["metadata"]["labels"]["strait.dev/proxied"] = json!("true");
                pod["metadata"]["annotations"] = json!({"strait.dev/proxy-inbound-port": "4143"});
            }
            (Kind::Pod, pod)
        })
        .collect()
}

#[test]
fn recorded_pods_become_workloads_only_once_meshed() {
    let translation = run(&recorded_pods(None));
    assert!(translation.model.workloads.is_empty());
    assert!(translation.rejected.is_empty());

    let translation = run(&recorded_pods(Some("coredns-589f44dc88-4fpns")));
    assert!(
        translation.rejected.is_empty(),
        "{:?}",
        translation.rejected
    );
    let workloads: Vec<_> = translation.model.workloads.values().collect();
    assert_eq!(workloads.len(), 1);
    let coredns = workloads[0];
    assert_eq!(
        coredns.key,
        ObjectKey::new("kube-system", "coredns-589f44dc88-4fpns")
    );
    assert_eq!(
        coredns.identity.to_string(),
        "spiffe://cluster.local/ns/kube-system/sa/coredns"
    );
    assert_eq!(coredns.address.to_string(), "10.244.0.3");
    assert_eq!(coredns.proxy_inbound_port, 4143);
    // Named TCP ports only: the UDP `dns` port is not the mesh's.
    let ports: Vec<(&str, u16)> = coredns
        .ports
        .iter()
        .map(|(n, p)| (n.as_str(), *p))
        .collect();
    assert_eq!(
        ports,
        [
            ("dns-tcp", 53),
            ("liveness-probe", 8080),
            ("metrics", 9153),
            ("readiness-probe", 8181)
        ]
    );
    assert_eq!(coredns.labels["k8s-app"], "kube-dns");
}

#[test]
fn host_network_finished_and_terminating_pods_are_not_workloads() {
    let mut objects = recorded_pods(Some("kube-proxy-hsdvx"));
    let (_, proxy) = objects
        .iter_mut()
        .find(|(_, p)| p["metadata"]["name"] == "coredns-589f44dc88-lxdzt")
        .unwrap();
    proxy["metadata"]["labels"]["strait.dev/proxied"] = json!("true");
    proxy["metadata"]["deletionTimestamp"] = json!("2026-06-15T05:00:00Z");
    assert!(run(&objects).model.workloads.is_empty());
}

/// The recorded Service (`default/dictionary1`, port 4001 → target port name `http`) with the
/// EndpointSlice the controller would write for it.
fn dictionary(endpoints: Value) -> Vec<(Kind, Value)> {
    let service = json_fixture("core/k9s/svc.json");
    let mut slice = json_fixture("discovery/k9s/eps.json");
    slice["metadata"] = json!({
        "name": "dictionary1-x7k2p",
        "namespace": "default",
        "generateName": "dictionary1-",
        "labels": {
            "kubernetes.io/service-name": "dictionary1",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        },
        "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "dictionary1", "uid": "f1007a5c-a367-11e9-990f-42010a800218", "controller": true, "blockOwnerDeletion": true}],
    });
    slice["ports"] = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
    slice["endpoints"] = endpoints;
    let mut pods = recorded_pods(Some("coredns-589f44dc88-4fpns"));
    // The meshed pod serves dictionary1 in this story.
    pods[0].1["metadata"]["namespace"] = json!("default");
    let mut objects = vec![(Kind::Service, service), (Kind::EndpointSlice, slice)];
    objects.extend(pods);
    objects
}

fn endpoint(ip: &str, ready: bool) -> Value {
    json!({
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": ready, "terminating": false},
        "nodeName": "n-1",
        "targetRef": {"kind": "Pod", "name": format!("pod-{ip}"), "namespace": "default", "uid": "u"},
    })
}

#[test]
fn endpoint_slices_give_ready_endpoints_with_the_identities_of_meshed_pods() {
    let translation = run(&dictionary(json!([
        endpoint("10.244.0.3", true),
        endpoint("10.244.0.7", true),
        endpoint("10.244.0.8", false),
    ])));
    assert!(
        translation.rejected.is_empty(),
        "{:?}",
        translation.rejected
    );
    let service = &translation.model.services[&ObjectKey::new("default", "dictionary1")];
    assert_eq!(service.cluster_ip.unwrap().to_string(), "10.47.248.116");
    let port = service.port(4001).unwrap();
    let endpoints: Vec<(SocketAddr, Option<String>, Option<u16>, &str)> = port
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addr,
                e.identity.as_ref().map(ToString::to_string),
                e.proxy_port,
                e.workload.as_str(),
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        [
            (
                "10.244.0.3:8080".parse().unwrap(),
                Some("spiffe://cluster.local/ns/default/sa/coredns".to_owned()),
                Some(4143),
                "coredns-589f44dc88-4fpns"
            ),
            // Not meshed: reached directly, no identity to check.
            (
                "10.244.0.7:8080".parse().unwrap(),
                None,
                None,
                "pod-10.244.0.7"
            ),
        ]
    );
}

const POD_V4: &str = "10.244.0.3";
const POD_V6: &str = "fd00:10:244::3";

/// `dictionary()` made dual-stack, as a dual-stack cluster publishes it: the recorded meshed
/// pod with both families in `status.podIPs` (`podIP` stays the IPv4 one), the Service with
/// both families, and the endpointslice controller's two slices, one per address family.
fn dual_stack_dictionary() -> Vec<(Kind, Value)> {
    let mut objects = dictionary(json!([endpoint(POD_V4, true)]));
    for (kind, object) in &mut objects {
        match kind {
            Kind::Pod if object["status"]["podIP"] == POD_V4 => {
                object["status"]["podIPs"] = json!([{"ip": POD_V4}, {"ip": POD_V6}]);
            }
            Kind::Service => {
                object["spec"]["clusterIPs"] = json!(["10.47.248.116", "fd00:10:96::7a1c"]);
                object["spec"]["ipFamilies"] = json!(["IPv4", "IPv6"]);
                object["spec"]["ipFamilyPolicy"] = json!("RequireDualStack");
            }
            _ => {}
        }
    }
    let (_, v4_slice) = objects
        .iter()
        .find(|(kind, _)| *kind == Kind::EndpointSlice)
        .unwrap();
    let mut v6_slice = v4_slice.clone();
    v6_slice["metadata"]["name"] = json!("dictionary1-6mq4w");
    v6_slice["addressType"] = json!("IPv6");
    v6_slice["endpoints"] = json!([endpoint(POD_V6, true)]);
    objects.push((Kind::EndpointSlice, v6_slice));
    objects
}

#[test]
fn a_dual_stack_pod_is_known_by_both_addresses_and_both_slices_carry_its_identity() {
    let translation = run(&dual_stack_dictionary());
    assert!(
        translation.rejected.is_empty(),
        "{:?}",
        translation.rejected
    );
    let pod = &translation.model.workloads[&ObjectKey::new("default", "coredns-589f44dc88-4fpns")];
    assert_eq!(pod.address.to_string(), POD_V4);
    let others: Vec<String> = pod
        .other_addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(others, [POD_V6]);

    // Both families' endpoints are the pod's: mTLS to its proxy, its identity expected.
    let service = &translation.model.services[&ObjectKey::new("default", "dictionary1")];
    let endpoints: Vec<(SocketAddr, Option<String>, Option<u16>)> = service
        .port(4001)
        .unwrap()
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addr,
                e.identity.as_ref().map(ToString::to_string),
                e.proxy_port,
            )
        })
        .collect();
    let coredns = Some("spiffe://cluster.local/ns/default/sa/coredns".to_owned());
    assert_eq!(
        endpoints,
        [
            (
                format!("{POD_V4}:8080").parse().unwrap(),
                coredns.clone(),
                Some(4143)
            ),
            (
                format!("[{POD_V6}]:8080").parse().unwrap(),
                coredns.clone(),
                Some(4143)
            ),
        ]
    );

    // A caller's snapshot sends either address to the pod's proxy with its identity, and the
    // pod's own snapshot serves the port it is called on through either address.
    let snapshot = snapshot_for(&translation.model, pod);
    for address in [format!("{POD_V4}:8080"), format!("[{POD_V6}]:8080")] {
        let direct = snapshot
            .services
            .iter()
            .find(|s| s.addresses == [address.clone()])
            .unwrap_or_else(|| panic!("no entry for {address}"));
        let endpoint = &direct.backends[0].endpoints[0];
        assert_eq!(endpoint.address, address);
        assert_eq!(Some(endpoint.identity.clone()), coredns);
        assert_eq!(endpoint.proxy_port, 4143);
    }
    let inbound: Vec<u32> = snapshot.inbound_ports.iter().map(|p| p.port).collect();
    assert_eq!(inbound, [8080]);
}

#[test]
fn a_pod_without_pod_ip_is_known_by_its_pod_ips() {
    let mut objects = recorded_pods(Some("coredns-589f44dc88-4fpns"));
    let (_, pod) = objects
        .iter_mut()
        .find(|(_, p)| p["metadata"]["name"] == "coredns-589f44dc88-4fpns")
        .unwrap();
    pod["status"].as_object_mut().unwrap().remove("podIP");
    pod["status"]["podIPs"] = json!([{"ip": POD_V6}, {"ip": POD_V4}]);
    let translation = run(&objects);
    let pod = translation
        .model
        .workloads
        .values()
        .next()
        .expect("a workload");
    assert_eq!(pod.address.to_string(), POD_V6);
    let others: Vec<String> = pod
        .other_addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(others, [POD_V4]);
}

#[test]
fn an_endpoint_slice_naming_another_namespaces_pod_by_its_ipv6_address_is_set_aside() {
    let mut objects = dual_stack_dictionary();
    let mut service = json_fixture("core/k9s/svc.json");
    service["metadata"]["namespace"] = json!("evil");
    let mut slice = json_fixture("discovery/k9s/eps.json");
    slice["metadata"] = json!({
        "name": "dictionary1-manual",
        "namespace": "evil",
        "uid": "evil-slice-uid",
        "labels": {"kubernetes.io/service-name": "dictionary1"},
    });
    slice["addressType"] = json!("IPv6");
    slice["ports"] = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
    slice["endpoints"] = json!([{"addresses": [POD_V6], "conditions": {"ready": true}}]);
    objects.push((Kind::Service, service));
    objects.push((Kind::EndpointSlice, slice));

    let translation = run(&objects);
    assert_eq!(translation.rejected.len(), 1, "{:?}", translation.rejected);
    let rejected = &translation.rejected[0];
    assert_eq!(rejected.reference.uid.as_deref(), Some("evil-slice-uid"));
    assert!(
        rejected.errors[0].reason.contains(&format!(
            "[{POD_V6}]:8080 belongs to meshed workload default/coredns-589f44dc88-4fpns"
        )),
        "{}",
        rejected.errors[0]
    );
    let evil = &translation.model.services[&ObjectKey::new("evil", "dictionary1")];
    assert!(evil.port(4001).unwrap().endpoints.is_empty());
}

#[test]
fn an_endpoint_slice_naming_another_namespaces_meshed_pod_is_set_aside() {
    let mut objects = dictionary(json!([endpoint("10.244.0.3", true)]));
    // A tenant's own Service in `evil`, and a hand-written slice for it naming the meshed pod
    // of `default`.
    let mut service = json_fixture("core/k9s/svc.json");
    service["metadata"]["namespace"] = json!("evil");
    let mut slice = json_fixture("discovery/k9s/eps.json");
    slice["metadata"] = json!({
        "name": "dictionary1-manual",
        "namespace": "evil",
        "uid": "evil-slice-uid",
        "labels": {"kubernetes.io/service-name": "dictionary1"},
    });
    slice["ports"] = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
    slice["endpoints"] = json!([{"addresses": ["10.244.0.3"], "conditions": {"ready": true}}]);
    objects.push((Kind::Service, service));
    objects.push((Kind::EndpointSlice, slice));

    let translation = run(&objects);
    assert_eq!(translation.rejected.len(), 1, "{:?}", translation.rejected);
    let rejected = &translation.rejected[0];
    assert_eq!(rejected.reference.kind.as_deref(), Some("EndpointSlice"));
    assert_eq!(rejected.reference.namespace.as_deref(), Some("evil"));
    assert_eq!(rejected.reference.uid.as_deref(), Some("evil-slice-uid"));
    let error = &rejected.errors[0];
    assert_eq!(error.field, "endpoints[0].addresses[0]");
    assert!(
        error.reason.contains(
            "10.244.0.3:8080 belongs to meshed workload default/coredns-589f44dc88-4fpns"
        ),
        "{error}"
    );
    // The tenant's Service stays, with nothing of the pod; the pod's own Service keeps it.
    let evil = &translation.model.services[&ObjectKey::new("evil", "dictionary1")];
    assert!(evil.port(4001).unwrap().endpoints.is_empty());
    let own = &translation.model.services[&ObjectKey::new("default", "dictionary1")];
    let endpoints = &own.port(4001).unwrap().endpoints;
    assert_eq!(endpoints.len(), 1);
    assert_eq!(
        endpoints[0]
            .identity
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/coredns")
    );
}

#[test]
fn gamma_conformance_routes_attach_to_their_service() {
    let mut objects: Vec<(Kind, Value)> =
        yaml_fixture("core/gateway-api-conformance-mesh-manifests.yaml")
            .into_iter()
            .filter(|o| o["kind"] == "Service")
            .map(|o| (kind_of(&o), o))
            .collect();
    for route in yaml_fixture("gateway-api/conformance/mesh/mesh-split.yaml") {
        objects.push((kind_of(&route), route));
    }
    let translation = run(&objects);
    assert!(
        translation.rejected.is_empty(),
        "{:?}",
        translation.rejected
    );
    let echo = ObjectKey::new("gateway-conformance-mesh", "echo");
    let rules = &translation.model.routes[&(echo, 80)];
    let summary: Vec<(Option<PathMatch>, String)> = rules
        .iter()
        .map(|r| (r.matcher.path.clone(), r.backends[0].service.name.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (Some(PathMatch::Exact("/v1".into())), "echo-v1".to_owned()),
            (Some(PathMatch::Exact("/v2".into())), "echo-v2".to_owned()),
        ]
    );
}

#[test]
fn an_invalid_route_is_set_aside_with_its_errors_and_the_rest_stays() {
    let mut objects: Vec<(Kind, Value)> =
        yaml_fixture("core/gateway-api-conformance-mesh-manifests.yaml")
            .into_iter()
            .filter(|o| o["kind"] == "Service")
            .map(|o| (kind_of(&o), o))
            .collect();
    let weights = yaml_fixture("gateway-api/conformance/mesh/httproute-weight.yaml");
    let mut broken = weights[0].clone();
    broken["metadata"]["name"] = json!("broken-weights");
    broken["metadata"]["uid"] = json!("0d1b2c3a");
    broken["spec"]["rules"][0]["backendRefs"][1]["weight"] = json!(-30);
    // A route for a Gateway is another controller's; the mesh neither uses nor reports it.
    let mut gateway_route = weights[0].clone();
    gateway_route["metadata"]["name"] = json!("north-south");
    gateway_route["spec"]["parentRefs"] = json!([{"name": "public-gateway"}]);
    for route in yaml_fixture("gateway-api/conformance/mesh/mesh-split.yaml")
        .into_iter()
        .chain([broken, gateway_route])
    {
        objects.push((kind_of(&route), route));
    }
    let translation = run(&objects);
    assert_eq!(translation.rejected.len(), 1, "{:?}", translation.rejected);
    let rejected = &translation.rejected[0];
    assert_eq!(rejected.reference.name.as_deref(), Some("broken-weights"));
    assert_eq!(rejected.reference.kind.as_deref(), Some("HTTPRoute"));
    assert_eq!(rejected.reference.uid.as_deref(), Some("0d1b2c3a"));
    let error = rejected.errors[0].to_string();
    assert!(
        error.contains("kubernetes (HTTPRoute gateway-conformance-mesh/broken-weights)")
            && error.contains("spec.rules[0].backendRefs[1].weight"),
        "{error}"
    );
    // The valid route is in force.
    let echo = ObjectKey::new("gateway-conformance-mesh", "echo");
    assert_eq!(translation.model.routes[&(echo, 80)].len(), 2);
}

#[test]
fn services_the_mesh_cannot_carry_are_left_out_quietly() {
    let mut dns = json_fixture("core/k9s/svc.json");
    dns["metadata"]["name"] = json!("kube-dns");
    dns["spec"]["ports"] =
        json!([{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}]);
    let mut external = json_fixture("core/k9s/svc.json");
    external["metadata"]["name"] = json!("payments");
    external["spec"] = json!({"type": "ExternalName", "externalName": "pay.example.com"});
    let translation = run(&[(Kind::Service, dns), (Kind::Service, external)]);
    assert!(translation.model.services.is_empty());
    assert!(translation.rejected.is_empty());
}
