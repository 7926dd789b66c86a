//! The configuration loader against a table of mistakes: each must produce an error naming
//! the exact file, document, object, field path and reason; and the shipped example passes.
//!
//! Longer than 500 lines: one test per validation rule, over shared fixtures.

use std::path::{Path, PathBuf};

use strait_control_plane::config::{self, ConfigError};

/// A valid base configuration every case starts from (one file per concern).
const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: demo}
spec:
  selector: {app: web, version: v2}
  ports:
  - {name: http, port: 80, targetPort: http}
"#;

const WORKLOADS: &str = r#"
apiVersion: strait.dev/v1alpha1
kind: Workload
metadata: {name: web-1, namespace: demo, labels: {app: web, version: v1}}
spec:
  serviceAccount: web
  address: 127.0.0.1
  ports: [{name: http, port: 18081}]
  proxy: {inboundPort: 14081}
  bootstrapToken: {sha256: "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"}
---
apiVersion: strait.dev/v1alpha1
kind: Workload
metadata: {name: web-2, namespace: demo, labels: {app: web, version: v2}}
spec:
  serviceAccount: web
  address: 127.0.0.1
  ports: [{name: http, port: 18082}]
  proxy: {inboundPort: 14082}
"#;

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: demo}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs:
    - {name: web, port: 80, weight: 90}
    - {name: web-v2, port: 80, weight: 10}
    timeouts: {request: 10s, backendRequest: 2s}
"#;

struct Case {
    name: &'static str,
    /// (file name, content) replacing or adding files of the base.
    files: Vec<(&'static str, String)>,
    file: &'static str,
    document: Option<usize>,
    object: Option<&'static str>,
    field: &'static str,
    reason: &'static str,
}

fn write_config(dir: &Path, overrides: &[(&'static str, String)]) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut files: Vec<(&str, String)> = vec![
        ("services.yaml", SERVICES.into()),
        ("workloads.yaml", WORKLOADS.into()),
        ("routes.yaml", ROUTES.into()),
    ];
    for (name, content) in overrides {
        files.retain(|(n, _)| n != name);
        files.push((name, content.clone()));
    }
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("strait-config-{}-{name}", std::process::id()))
}

fn route_with(rule: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: split, namespace: demo}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - {rule}
"#
    )
}

#[test]
fn the_base_configuration_is_valid() {
    let dir = scratch("base");
    write_config(&dir, &[]);
    let model = config::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.services.len(), 2);
    assert_eq!(model.workloads.len(), 2);
    let web = &model.services[&config::model::ObjectKey::new("demo", "web")];
    assert_eq!(web.ports[0].endpoints.len(), 2, "both workloads serve web");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shipped_local_example_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/local");
    let model = config::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(model.services.len() >= 4);
}

#[test]
fn every_mistake_is_reported_with_its_exact_place_and_reason() {
    let cases = vec![
        Case {
            name: "yaml syntax",
            files: vec![("routes.yaml", "apiVersion: v1\nkind: [Service\n".into())],
            file: "routes.yaml",
            document: None,
            object: None,
            field: "",
            reason: "invalid YAML",
        },
        Case {
            name: "missing kind",
            files: vec![("extra.yaml", "apiVersion: v1\nmetadata: {name: x}\nspec: {}\n".into())],
            file: "extra.yaml",
            document: Some(1),
            object: Some("<no kind> x"),
            field: "kind",
            reason: "required field is missing",
        },
        Case {
            name: "unknown kind",
            files: vec![("extra.yaml", "apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n".into())],
            file: "extra.yaml",
            document: Some(1),
            object: Some("Deployment x"),
            field: "kind",
            reason: "unknown kind \"Deployment\"",
        },
        Case {
            name: "wrong apiVersion",
            files: vec![("routes.yaml", ROUTES.replace("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta9"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "apiVersion",
            reason: "HTTPRoute is served as \"gateway.networking.k8s.io/v1\"",
        },
        Case {
            name: "unknown field",
            files: vec![("routes.yaml", ROUTES.replace("backendRefs:", "backendRef:"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.rules[0].backendRef",
            reason: "unknown field `backendRef`, expected one of",
        },
        Case {
            name: "wrong type",
            files: vec![("routes.yaml", ROUTES.replace("weight: 90", "weight: ninety"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.rules[0].backendRefs[0].weight",
            reason: "invalid type",
        },
        Case {
            name: "weight out of range",
            files: vec![("routes.yaml", ROUTES.replace("weight: 10", "weight: -5"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.rules[0].backendRefs[1].weight",
            reason: "-5 is out of range (0-1000000)",
        },
        Case {
            name: "missing parent service",
            files: vec![("routes.yaml", ROUTES.replace("name: web, port: 80}]", "name: nope, port: 80}]"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.parentRefs[0].name",
            reason: "Service demo/nope does not exist",
        },
        Case {
            name: "duplicate name",
            files: vec![("more-routes.yaml", ROUTES.into())],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "metadata.name",
            reason: "duplicate HTTPRoute demo/split: first defined in more-routes.yaml document 1",
        },
        Case {
            name: "overlapping route",
            files: vec![("more-routes.yaml", ROUTES.replace("name: split,", "name: split-too,"))],
            // Equal precedence: the alphabetically first route keeps the match.
            file: "more-routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split-too"),
            field: "spec.rules",
            reason: "overlapping route: rule demo/split-too/0 matches exactly what rule demo/split/0 of HTTPRoute demo/split already matches on Service demo/web port 80",
        },
        Case {
            name: "invalid name",
            files: vec![("routes.yaml", ROUTES.replace("name: split,", "name: Split_Route,"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/Split_Route"),
            field: "metadata.name",
            reason: "\"Split_Route\" is not a valid name",
        },
        Case {
            name: "invalid duration",
            files: vec![("routes.yaml", ROUTES.replace("request: 10s", "request: 10 seconds"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.rules[0].timeouts.request",
            reason: "\"10 seconds\" is not a duration",
        },
        Case {
            name: "backend timeout longer than request timeout",
            files: vec![("routes.yaml", ROUTES.replace("backendRequest: 2s", "backendRequest: 20s"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.rules[0].timeouts.backendRequest",
            reason: "20s is longer than timeouts.request (10s)",
        },
        Case {
            name: "bad regex",
            files: vec![("routes.yaml", route_with("matches: [{path: {type: RegularExpression, value: \"/(a\"}}]\n    backendRefs: [{name: web, port: 80}]"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.rules[0].matches[0].path.value",
            reason: "invalid regular expression",
        },
        Case {
            name: "regex whose comment would swallow its anchor",
            files: vec![("routes.yaml", route_with("matches: [{path: {type: RegularExpression, value: \"(?x)/a#\"}}]\n    backendRefs: [{name: web, port: 80}]"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.rules[0].matches[0].path.value",
            reason: "invalid regular expression \"(?x)/a#\": the x (ignore whitespace) flag is not allowed",
        },
        Case {
            name: "prefix without slash",
            files: vec![("routes.yaml", route_with("matches: [{path: {type: PathPrefix, value: api}}]\n    backendRefs: [{name: web, port: 80}]"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.rules[0].matches[0].path.value",
            reason: "\"api\" must start with '/'",
        },
        Case {
            name: "unknown method",
            files: vec![("routes.yaml", route_with("matches: [{method: FETCH}]\n    backendRefs: [{name: web, port: 80}]"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.rules[0].matches[0].method",
            reason: "\"FETCH\" is not one of GET",
        },
        Case {
            name: "retry code that is not an error",
            files: vec![("routes.yaml", route_with("backendRefs: [{name: web, port: 80}]\n    retry: {attempts: 2, codes: [503, 200]}"))],
            file: "routes.yaml",
            document: Some(1),
            object: Some("HTTPRoute demo/split"),
            field: "spec.rules[0].retry.codes[1]",
            reason: "200 is not an HTTP error status (400-599)",
        },
        Case {
            name: "service port out of range",
            files: vec![("services.yaml", SERVICES.replacen("port: 80, targetPort: http", "port: 70000, targetPort: http", 1))],
            file: "services.yaml",
            document: Some(1),
            object: Some("Service demo/web"),
            field: "spec.ports[0].port",
            reason: "70000 is not a port number (1-65535)",
        },
        Case {
            name: "workload address",
            files: vec![("workloads.yaml", WORKLOADS.replacen("address: 127.0.0.1", "address: localhost", 1))],
            file: "workloads.yaml",
            document: Some(1),
            object: Some("Workload demo/web-1"),
            field: "spec.address",
            reason: "\"localhost\" is not an IP address",
        },
        Case {
            name: "workload other address",
            files: vec![("workloads.yaml", WORKLOADS.replacen("address: 127.0.0.1\n", "address: 127.0.0.1\n  addresses: [\"::1\", \"fd00::1:\"]\n", 1))],
            file: "workloads.yaml",
            document: Some(1),
            object: Some("Workload demo/web-1"),
            field: "spec.addresses[1]",
            reason: "\"fd00::1:\" is not an IP address",
        },
        Case {
            name: "workload unknown field",
            files: vec![("workloads.yaml", WORKLOADS.replacen("address: 127.0.0.1\n", "address: 127.0.0.1\n  adresses: [\"::1\"]\n", 1))],
            file: "workloads.yaml",
            document: Some(1),
            object: Some("Workload demo/web-1"),
            field: "spec.adresses",
            reason: "unknown field `adresses`, expected one of",
        },
        Case {
            name: "workload other address repeating its address",
            files: vec![("workloads.yaml", WORKLOADS.replacen("address: 127.0.0.1\n", "address: 127.0.0.1\n  addresses: [\"127.0.0.1\"]\n", 1))],
            file: "workloads.yaml",
            document: Some(1),
            object: Some("Workload demo/web-1"),
            field: "spec.addresses[0]",
            reason: "127.0.0.1 is already the workload's spec.address",
        },
        Case {
            name: "workload port clash on another address",
            files: vec![("workloads.yaml", WORKLOADS.replacen("address: 127.0.0.1\n", "address: 127.0.0.2\n  addresses: [\"127.0.0.1\"]\n", 1).replace("port: 18082", "port: 18081"))],
            file: "workloads.yaml",
            document: Some(2),
            object: Some("Workload demo/web-2"),
            field: "spec",
            reason: "127.0.0.1:18081 (an application port) is already used by Workload demo/web-1",
        },
        Case {
            name: "workload port clash",
            files: vec![("workloads.yaml", WORKLOADS.replace("port: 18082", "port: 18081"))],
            file: "workloads.yaml",
            document: Some(2),
            object: Some("Workload demo/web-2"),
            field: "spec",
            reason: "127.0.0.1:18081 (an application port) is already used by Workload demo/web-1",
        },
        Case {
            name: "named target port missing on a workload",
            files: vec![("workloads.yaml", WORKLOADS.replace("ports: [{name: http, port: 18082}]", "ports: [{name: web, port: 18082}]"))],
            file: "workloads.yaml",
            document: Some(2),
            object: Some("Workload demo/web-2"),
            field: "spec.ports",
            reason: "selected by Service demo/web, whose port 80 targets port name \"http\", which this Workload does not declare",
        },
        Case {
            name: "bad token digest",
            files: vec![("workloads.yaml", WORKLOADS.replace("2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b", "abc"))],
            file: "workloads.yaml",
            document: Some(1),
            object: Some("Workload demo/web-1"),
            field: "spec.bootstrapToken.sha256",
            reason: "expected 64 hexadecimal characters",
        },
        Case {
            name: "authorization principal",
            files: vec![(
                "policies.yaml",
                "apiVersion: strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: demo}\nspec:\n  targetRef: {kind: Service, name: web}\n  from: [{identity: \"spiffe://other.org/ns/a/sa/b\"}]\n".into(),
            )],
            file: "policies.yaml",
            document: Some(1),
            object: Some("AuthorizationPolicy demo/p"),
            field: "spec.from[0].identity",
            reason: "spiffe://other.org/ns/a/sa/b is outside the mesh's trust domain cluster.local",
        },
        Case {
            name: "backend policy range",
            files: vec![(
                "policies.yaml",
                "apiVersion: strait.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {name: p, namespace: demo}\nspec:\n  targetRef: {kind: Service, name: web}\n  circuitBreaker: {maxEjectedPercent: 150}\n".into(),
            )],
            file: "policies.yaml",
            document: Some(1),
            object: Some("BackendPolicy demo/p"),
            field: "spec.circuitBreaker.maxEjectedPercent",
            reason: "150 is out of range (0-100)",
        },
        Case {
            name: "an EndpointSlice taking another namespace's workload address",
            files: vec![(
                "slices.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: grab, namespace: evil}\nspec:\n  ports: [{name: http, port: 80}]\n---\n\
                 apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: grab-manual, namespace: evil, labels: {kubernetes.io/service-name: grab}}\n\
                 addressType: IPv4\nendpoints: [{addresses: [127.0.0.1]}]\nports: [{name: http, port: 18081}]\n".into(),
            )],
            file: "slices.yaml",
            document: Some(2),
            object: Some("EndpointSlice evil/grab-manual"),
            field: "endpoints[0].addresses[0]",
            reason: "127.0.0.1:18081 belongs to meshed workload demo/web-1 of namespace demo; an EndpointSlice in namespace evil may not name another namespace's workload",
        },
    ];
    assert!(cases.len() >= 15);
    for (i, case) in cases.iter().enumerate() {
        let dir = scratch(&format!("case-{i}"));
        write_config(&dir, &case.files);
        let errors = match config::load(&dir) {
            Ok(_) => panic!("case {:?}: the configuration was accepted", case.name),
            Err(errors) => errors,
        };
        let matching: Vec<&ConfigError> = errors
            .0
            .iter()
            .filter(|e| {
                e.location.file == Path::new(case.file)
                    && e.location.document == case.document
                    && e.location.object.as_deref() == case.object
                    && e.field == case.field
                    && e.reason.contains(case.reason)
            })
            .collect();
        assert!(
            !matching.is_empty(),
            "case {:?}: expected {}: document {:?} ({:?}): {}: ...{}...\ngot:\n{errors}",
            case.name,
            case.file,
            case.document,
            case.object,
            case.field,
            case.reason
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn all_errors_are_reported_in_one_pass() {
    let dir = scratch("many");
    write_config(
        &dir,
        &[
            (
                "routes.yaml",
                ROUTES
                    .replace("weight: 10", "weight: -5")
                    .replace("request: 10s", "request: soon"),
            ),
            (
                "workloads.yaml",
                WORKLOADS.replacen("address: 127.0.0.1", "address: here", 1),
            ),
        ],
    );
    let errors = config::load(&dir).unwrap_err();
    let text = errors.to_string();
    assert!(errors.0.len() >= 3, "{text}");
    assert!(
        text.contains("weight")
            && text.contains("timeouts.request")
            && text.contains("spec.address"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Unset circuit-breaker fields take the defaults the proxy and docs/configuration.md state
/// (1 s base, 60 s max ejection), so a lone `maxEjectionTime` shorter than the old wrong
/// default base (5 s) is accepted.
#[test]
fn unset_circuit_breaker_fields_take_the_documented_defaults() {
    let policy = |breaker: &str| {
        format!(
            "apiVersion: strait.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: p, namespace: demo}}\nspec:\n  targetRef: {{kind: Service, name: web}}\n  circuitBreaker: {breaker}\n"
        )
    };
    let web = config::model::ObjectKey::new("demo", "web");

    let dir = scratch("breaker-defaults");
    write_config(&dir, &[("policy.yaml", policy("{consecutiveFailures: 3}"))]);
    let model = config::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    let breaker = model
        .backend_policy(&web, 80)
        .and_then(|p| p.circuit_breaker.clone())
        .expect("the policy's breaker");
    assert_eq!(breaker.consecutive_failures, 3);
    assert_eq!(breaker.base_ejection, std::time::Duration::from_secs(1));
    assert_eq!(breaker.max_ejection, std::time::Duration::from_secs(60));
    assert_eq!(breaker.max_ejected_percent, 50);

    write_config(&dir, &[("policy.yaml", policy("{maxEjectionTime: 2s}"))]);
    let model = config::load(&dir).unwrap_or_else(|e| panic!("a lone maxEjectionTime: {e}"));
    let breaker = model
        .backend_policy(&web, 80)
        .and_then(|p| p.circuit_breaker.clone())
        .expect("the policy's breaker");
    assert_eq!(breaker.max_ejection, std::time::Duration::from_secs(2));
    assert_eq!(breaker.base_ejection, std::time::Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two rules: `/bad` with `filter` (a YAML flow item), `/good` with a header modifier.
fn two_rule_route(filter: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: split, namespace: demo}}
spec:
  parentRefs: [{{group: "", kind: Service, name: web, port: 80}}]
  rules:
  - name: bad
    matches: [{{path: {{type: PathPrefix, value: /bad}}}}]
    filters: [{filter}]
    backendRefs: [{{name: web, port: 80}}]
  - name: good
    matches: [{{path: {{type: PathPrefix, value: /good}}}}]
    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-a, value: "1"}}]}}}}]
    backendRefs: [{{name: web, port: 80}}]
"#
    )
}

/// An unsupported or invalid filter refuses its rule alone, with a reason naming the rule
/// and the filter; the route's other rules stay in force (they used to refuse the whole
/// configuration: "filters are not supported yet").
#[test]
fn a_rule_with_an_unsupported_or_invalid_filter_is_refused_alone_naming_rule_and_filter() {
    let cases = [
        (
            "{type: ExtensionRef, extensionRef: {group: x.io, kind: K, name: n}}",
            "spec.rules[0].filters[0].type",
            "ExtensionRef filters are not supported",
        ),
        (
            "{type: CORS, cors: {}}",
            "spec.rules[0].filters[0].type",
            "CORS filters are not supported",
        ),
        (
            "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: strait-client-id, value: x}]}}",
            "spec.rules[0].filters[0].requestHeaderModifier.set[0]",
            "filters may not modify it",
        ),
        (
            "{type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-a, value: \"a\\r\\nx-b: 1\"}]}}",
            "spec.rules[0].filters[0].requestHeaderModifier.add[0].value",
            "is not a valid header value",
        ),
        (
            "{type: RequestRedirect, requestRedirect: {hostname: \"evil.org/x\"}}",
            "spec.rules[0].filters[0].requestRedirect.hostname",
            "is not a valid hostname",
        ),
    ];
    let dir = scratch("refused-rules");
    for (filter, field, reason) in cases {
        write_config(&dir, &[("routes.yaml", two_rule_route(filter))]);
        let model = config::load(&dir).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let [refused] = model.refused_rules.as_slice() else {
            panic!("{filter}: {:?}", model.refused_rules);
        };
        assert_eq!(refused.field, field, "{filter}");
        assert!(
            refused.reason.contains(reason),
            "{filter}: {}",
            refused.reason
        );
        assert!(
            refused.reason.contains("rule demo/split/bad is refused"),
            "{}",
            refused.reason
        );
        let rules = &model.routes[&(config::model::ObjectKey::new("demo", "web"), 80)];
        let bad = rules
            .iter()
            .find(|r| r.name == "demo/split/bad")
            .expect("the refused rule stays, answering 500");
        assert!(bad.filters.refused.is_some() && bad.backends.is_empty());
        let good = rules
            .iter()
            .find(|r| r.name == "demo/split/good")
            .expect("the other rule");
        assert!(good.filters.refused.is_none() && good.filters.request_headers.is_some());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A rule whose action is a redirect has no backendRefs (upstream's redirect fixtures).
#[test]
fn a_redirect_rule_needs_no_backend_ref() {
    let dir = scratch("redirect-only");
    write_config(
        &dir,
        &[(
            "routes.yaml",
            route_with(
                "matches: [{path: {type: PathPrefix, value: /old}}]\n    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]",
            ),
        )],
    );
    let model = config::load(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(model.refused_rules.is_empty(), "{:?}", model.refused_rules);
    let rules = &model.routes[&(config::model::ObjectKey::new("demo", "web"), 80)];
    let redirect = rules[0].filters.redirect.as_ref().expect("the redirect");
    assert_eq!(
        (redirect.hostname.as_deref(), redirect.status),
        (Some("example.org"), 301)
    );
    assert!(rules[0].backends.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
