//! A route's conditions as the Gateway API names them, for a route some or all of whose rules
//! are refused for their filters: `PartiallyInvalid=True` (reason `UnsupportedValue`, message
//! starting "Dropped Rule" and naming each refused rule and why) beside `Accepted=True` when
//! others are kept, `Accepted=False` (`UnsupportedValue`) and no `PartiallyInvalid` when none
//! is, and no `PartiallyInvalid` on a fully valid route. `strait validate` prints the same.

mod support;

use strait_control_plane::config::model::RouteCondition;
use strait_control_plane::config::status_lines;
use strait_control_plane::config::{ConfigErrors, Model};

const WORLD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec:
  ports: [{name: http, port: 80}]
"#;

const EXTENSION: &str =
    "[{type: ExtensionRef, extensionRef: {group: example.com, kind: Magic, name: m}}]";
const HEADER: &str =
    "[{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Ok, value: ok}]}}]";

fn model(routes: &str) -> Result<Model, ConfigErrors> {
    support::model(&format!("{WORLD}---\n{routes}"))
}

/// An HTTPRoute on `web` whose rules are `(name, filters)`.
fn route(rules: &[(&str, &str)]) -> String {
    let rules: String = rules
        .iter()
        .enumerate()
        .map(|(i, (name, filters))| {
            format!(
                "  - name: {name}\n    matches: [{{path: {{type: PathPrefix, value: /r{i}}}}}]\n    filters: {filters}\n    backendRefs: [{{name: web, port: 80}}]\n"
            )
        })
        .collect();
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: prod}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: web, port: 80}}]\n  rules:\n{rules}"
    )
}

fn conditions(model: &Model) -> Vec<RouteCondition> {
    support::conditions(model, "HTTPRoute", "prod", "r")
}

fn find<'a>(conditions: &'a [RouteCondition], type_: &str) -> Option<&'a RouteCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[test]
fn a_route_with_one_refused_rule_is_accepted_and_partially_invalid() {
    let model = model(&route(&[("kept", HEADER), ("magic", EXTENSION)])).unwrap();
    let c = conditions(&model);
    let accepted = find(&c, "Accepted").unwrap();
    assert!(accepted.status);
    assert_eq!(accepted.reason, "Accepted");
    let partial = find(&c, "PartiallyInvalid").expect("PartiallyInvalid");
    assert!(partial.status);
    assert_eq!(partial.reason, "UnsupportedValue");
    assert!(
        partial.message.starts_with("Dropped Rule"),
        "{}",
        partial.message
    );
    assert!(
        partial.message.contains("spec.rules[1]"),
        "{}",
        partial.message
    );
    assert!(
        partial.message.contains("(rule magic)"),
        "{}",
        partial.message
    );
    assert!(
        partial
            .message
            .contains("ExtensionRef filters are not supported"),
        "{}",
        partial.message
    );
    assert!(!partial.message.contains("kept"), "{}", partial.message);
    assert!(find(&c, "ResolvedRefs").unwrap().status);
}

#[test]
fn a_route_all_of_whose_rules_are_refused_is_not_accepted() {
    let model = model(&route(&[("a", EXTENSION), ("b", EXTENSION)])).unwrap();
    let c = conditions(&model);
    let accepted = find(&c, "Accepted").unwrap();
    assert!(!accepted.status);
    assert_eq!(accepted.reason, "UnsupportedValue");
    assert!(
        accepted.message.contains("spec.rules[0]"),
        "{}",
        accepted.message
    );
    // The spec: PartiallyInvalid is never set on a fully invalid route.
    assert!(find(&c, "PartiallyInvalid").is_none(), "{c:?}");
}

#[test]
fn a_fully_valid_route_has_no_partially_invalid_condition() {
    let model = model(&route(&[("a", HEADER), ("b", "[]")])).unwrap();
    let c = conditions(&model);
    assert!(find(&c, "Accepted").unwrap().status);
    assert!(find(&c, "PartiallyInvalid").is_none(), "{c:?}");
    assert_eq!(c.len(), 2);
}

#[test]
fn a_partially_invalid_message_names_at_most_eight_rules() {
    let rules: Vec<(String, &str)> = (0..40)
        .map(|i| (format!("rule-{i}"), EXTENSION))
        .chain([("kept".to_owned(), HEADER)])
        .collect();
    let borrowed: Vec<(&str, &str)> = rules.iter().map(|(n, f)| (n.as_str(), *f)).collect();
    let model = model(&route(&borrowed)).unwrap();
    let partial = find(&conditions(&model), "PartiallyInvalid")
        .cloned()
        .unwrap();
    assert!(
        partial.message.contains("(rule rule-7)"),
        "{}",
        partial.message
    );
    assert!(
        !partial.message.contains("(rule rule-8)"),
        "{}",
        partial.message
    );
    assert!(
        partial.message.contains("and 32 more"),
        "{}",
        partial.message
    );
}

#[test]
fn validate_prints_partially_invalid_in_text_and_json() {
    let model = model(&route(&[("kept", HEADER), ("magic", EXTENSION)])).unwrap();
    let lines = status_lines::lines(&model);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("Accepted=True, ResolvedRefs=True, PartiallyInvalid=True (UnsupportedValue: Dropped Rule"),
        "{}",
        lines[0]
    );
    let json = status_lines::json(&model);
    let conditions = &json[0]["parents"][0]["conditions"];
    assert_eq!(conditions[2]["type"], "PartiallyInvalid");
    assert_eq!(conditions[2]["status"], "True");
    assert_eq!(conditions[2]["reason"], "UnsupportedValue");
}
