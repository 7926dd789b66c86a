//! The Gateway API's rules for a route's references, as the model and snapshots carry them: a
//! reference the cluster cannot satisfy leaves the route accepted with `ResolvedRefs=False`
//! and its share of requests answered 500; consumer routes may send to the Service they attach
//! to; ReferenceGrants open other namespaces' Services; a port with routes attached answers
//! 404 to requests none of them match.

mod support;

use strait_control_plane::config::model::{ObjectKey, RouteCondition};
use strait_control_plane::config::{ConfigErrors, Model};
use strait_control_plane::discovery::snapshot::outbound_services;
use support::conditions;

const WORLD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec:
  ports: [{name: http, port: 80}, {name: admin, port: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: prod}
spec:
  ports: [{name: http, port: 80}]
"#;

fn model(routes: &str) -> Result<Model, ConfigErrors> {
    support::model(&format!("{WORLD}---\n{routes}"))
}

fn condition<'a>(conditions: &'a [RouteCondition], type_: &str) -> &'a RouteCondition {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {conditions:?}"))
}

fn route(ns: &str, parent: &str, backend_refs: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: {ns}}}\nspec:\n  parentRefs: [{parent}]\n  rules:\n  - backendRefs: {backend_refs}\n"
    )
}

#[test]
fn a_weight_zero_reference_to_a_missing_service_leaves_the_route_accepted() {
    let model = model(&route(
        "prod",
        "{group: \"\", kind: Service, name: web, port: 80}",
        "[{name: api, port: 80, weight: 70}, {name: gone, port: 80, weight: 0}]",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let rules = &model.routes[&(ObjectKey::new("prod", "web"), 80)];
    assert_eq!(rules[0].backends.len(), 1);
    assert_eq!(rules[0].unresolved_weight, 0);
    let c = conditions(&model, "HTTPRoute", "prod", "r");
    assert!(condition(&c, "Accepted").status);
    let resolved = condition(&c, "ResolvedRefs");
    assert!(!resolved.status);
    assert_eq!(resolved.reason, "BackendNotFound");
    assert!(
        resolved
            .message
            .contains("Service prod/gone does not exist")
    );
}

#[test]
fn a_missing_service_or_port_takes_its_weight_as_the_unresolved_share() {
    let model = model(&route(
        "prod",
        "{group: \"\", kind: Service, name: web, port: 80}",
        "[{name: api, port: 80, weight: 3}, {name: gone, port: 80, weight: 1}, {name: api, port: 81, weight: 2}]",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let rule = &model.routes[&(ObjectKey::new("prod", "web"), 80)][0];
    assert_eq!(rule.unresolved_weight, 3);
    let services = outbound_services(&model, "prod");
    let web = services
        .iter()
        .find(|s| s.name == "web" && s.port == 80)
        .unwrap();
    let weights: Vec<(&str, u32)> = web.routes[0]
        .backends
        .iter()
        .map(|b| (b.backend.as_str(), b.weight))
        .collect();
    assert_eq!(weights, [("prod/api:80", 3), ("", 3)]);
}

#[test]
fn a_cross_namespace_reference_without_a_grant_is_not_permitted_but_the_route_stays() {
    let model = model(&route(
        "web",
        "{group: \"\", kind: Service, name: web, namespace: prod}",
        "[{name: api, namespace: prod, port: 80}]",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let resolved = condition(&conditions(&model, "HTTPRoute", "web", "r"), "ResolvedRefs").clone();
    assert!(!resolved.status);
    assert_eq!(resolved.reason, "RefNotPermitted");
    // The rule answers 500 (its only reference is unresolved).
    let rule = &model.routes[&(ObjectKey::new("prod", "web"), 80)][0];
    assert!(rule.backends.is_empty());
    assert_eq!(rule.consumer_namespace.as_deref(), Some("web"));
}

#[test]
fn a_consumer_route_may_send_to_the_service_it_attaches_to() {
    let model = model(&route(
        "web",
        "{group: \"\", kind: Service, name: web, namespace: prod}",
        "[{name: web, namespace: prod, port: 80}]",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(condition(&conditions(&model, "HTTPRoute", "web", "r"), "ResolvedRefs").status);
}

#[test]
fn a_reference_grant_opens_its_namespace_to_the_routes_it_names() {
    let grant = |kind: &str, api: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/{api}\nkind: ReferenceGrant\nmetadata: {{name: g, namespace: prod}}\nspec:\n  from: [{{group: gateway.networking.k8s.io, kind: {kind}, namespace: web}}]\n  to: [{{group: \"\", kind: Service, name: api}}]\n"
        )
    };
    let consumer = route(
        "web",
        "{group: \"\", kind: Service, name: web, namespace: prod}",
        "[{name: api, namespace: prod, port: 80}]",
    );
    for api in ["v1", "v1beta1"] {
        let model = model(&format!("{consumer}{}", grant("HTTPRoute", api)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            condition(&conditions(&model, "HTTPRoute", "web", "r"), "ResolvedRefs").status,
            "{api}"
        );
    }
    let model =
        model(&format!("{consumer}{}", grant("GRPCRoute", "v1"))).unwrap_or_else(|e| panic!("{e}"));
    assert!(!condition(&conditions(&model, "HTTPRoute", "web", "r"), "ResolvedRefs").status);
}

#[test]
fn a_reference_grant_with_a_mistake_is_reported_with_its_field() {
    let errors = model(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: prod}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: Web_NS}]\n  to: [{group: \"\", kind: Service}]\n",
    )
    .unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("spec.from[0].namespace: \"Web_NS\" is not a valid namespace name"),
        "{text}"
    );
}

#[test]
fn a_port_with_routes_attached_keeps_its_default_route_for_connections_only() {
    let model = model(&route(
        "prod",
        "{group: \"\", kind: Service, name: web, port: 80}",
        "[{name: api, port: 80}]",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let services = outbound_services(&model, "prod");
    let port = |p: u32| {
        services
            .iter()
            .find(|s| s.name == "web" && s.port == p)
            .unwrap()
    };
    let with_routes = port(80).routes.last().unwrap();
    assert_eq!(with_routes.name, "default");
    assert!(with_routes.opaque_only, "requests no route matches get 404");
    let without = port(9000).routes.last().unwrap();
    assert!(
        !without.opaque_only,
        "a port without routes goes to the Service"
    );
}

#[test]
fn use_default_gateways_of_gateway_api_1_6_is_accepted() {
    let text = route(
        "prod",
        "{group: \"\", kind: Service, name: web, port: 80}",
        "[{name: api, port: 80}]",
    )
    .replace("spec:\n", "spec:\n  useDefaultGateways: None\n");
    model(&text).unwrap_or_else(|e| panic!("{e}"));
}

/// From the Kubernetes API, a ReferenceGrant counts as from a file: the route it opens a
/// Service to resolves.
#[test]
fn a_reference_grant_from_the_kubernetes_api_opens_its_namespace() {
    use strait_control_plane::kubernetes::kinds::Kind;
    use strait_control_plane::kubernetes::translate::translate;
    let service = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "api", "namespace": "prod", "uid": "1"},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    });
    let route = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "web", "uid": "2"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "api", "namespace": "prod"}],
            "rules": [{"backendRefs": [{"name": "api", "namespace": "prod", "port": 80}]}],
        },
    });
    let resolved = |objects: &[(Kind, &serde_json::Value)]| {
        let translation = translate(objects).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            translation.rejected.is_empty(),
            "{:?}",
            translation.rejected
        );
        condition(
            &conditions(&translation.model, "HTTPRoute", "web", "r"),
            "ResolvedRefs",
        )
        .status
    };
    assert!(resolved(&[
        (Kind::Service, &service),
        (Kind::HttpRoute, &route)
    ]));
    let grant = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "ReferenceGrant",
        "metadata": {"name": "g", "namespace": "prod", "uid": "3"},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "web"}],
            "to": [{"group": "", "kind": "Service"}],
        },
    });
    let other = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": "prod", "uid": "4"},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    });
    let mut to_db = route.clone();
    to_db["spec"]["rules"][0]["backendRefs"][0]["name"] = "db".into();
    assert!(!resolved(&[
        (Kind::Service, &service),
        (Kind::Service, &other),
        (Kind::HttpRoute, &to_db),
    ]));
    assert!(resolved(&[
        (Kind::Service, &service),
        (Kind::Service, &other),
        (Kind::HttpRoute, &to_db),
        (Kind::ReferenceGrant, &grant),
    ]));
}
