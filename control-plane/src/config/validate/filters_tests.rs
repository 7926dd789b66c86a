//! The filter parser's decisions: what each filter becomes, and what refuses its rule.

use serde_json::json;

use super::*;

fn no_mirror(_: &str, _: Option<&str>, _: Option<i64>) -> Result<(ObjectKey, u16), String> {
    Err("no such Service".into())
}

fn http_rule(filters: serde_json::Value) -> Result<RouteFilters, Refusal> {
    let filters: Vec<serde_json::Value> = serde_json::from_value(filters).unwrap();
    rule_filters(
        &filters,
        FilterPlace::HttpRule,
        Ok("/prefix"),
        &mut no_mirror,
    )
}

#[test]
fn header_modifier_names_are_lower_cased_and_kept_in_order() {
    let f = http_rule(
        json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": {
        "set": [{"name": "X-Header-Set", "value": "set-overwrites-values"}],
        "add": [{"name": "X-Header-Add", "value": "a"}],
        "remove": ["X-Header-Remove"]}}]),
    )
    .unwrap();
    let m = f.request_headers.unwrap();
    assert_eq!(
        m.set,
        vec![("x-header-set".into(), "set-overwrites-values".into())]
    );
    assert_eq!(m.add, vec![("x-header-add".into(), "a".into())]);
    assert_eq!(m.remove, vec!["x-header-remove".to_owned()]);
}

#[test]
fn reserved_and_hop_by_hop_headers_cannot_be_modified() {
    for name in [
        "strait-client-id",
        "Strait_Client_Id",
        "strait-proxy-error",
        "Host",
        "connection",
        "transfer-encoding",
        "content-length",
    ] {
        let refusal = http_rule(json!([{"type": "RequestHeaderModifier",
            "requestHeaderModifier": {"set": [{"name": name, "value": "x"}]}}]))
        .unwrap_err();
        assert!(
            refusal.reason.contains("may not modify"),
            "{name}: {refusal:?}"
        );
        let refusal = http_rule(json!([{"type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"remove": [name]}}]))
        .unwrap_err();
        assert_eq!(refusal.field, "filters[0].responseHeaderModifier.remove[0]");
    }
}

#[test]
fn header_values_with_cr_lf_or_controls_are_refused() {
    for value in [
        "a\r\nx-injected: 1",
        "a\nb",
        "nul\0",
        "",
        " lead",
        &"v".repeat(4097),
    ] {
        let refusal = http_rule(json!([{"type": "RequestHeaderModifier",
            "requestHeaderModifier": {"add": [{"name": "x-a", "value": value}]}}]))
        .unwrap_err();
        assert_eq!(
            refusal.field, "filters[0].requestHeaderModifier.add[0].value",
            "{value:?}"
        );
    }
    let refusal = http_rule(json!([{"type": "RequestHeaderModifier",
        "requestHeaderModifier": {"add": [{"name": "bad name", "value": "v"}]}}]))
    .unwrap_err();
    assert!(
        refusal.reason.contains("not a valid header name"),
        "{refusal:?}"
    );
}

#[test]
fn one_header_modified_twice_by_one_filter_is_refused() {
    let refusal = http_rule(
        json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": {
        "set": [{"name": "X-A", "value": "1"}], "remove": ["x-a"]}}]),
    )
    .unwrap_err();
    assert!(refusal.reason.contains("already modified"), "{refusal:?}");
}

#[test]
fn redirects_default_to_302_and_refuse_other_statuses() {
    let f = http_rule(json!([{"type": "RequestRedirect",
        "requestRedirect": {"hostname": "example.org"}}]))
    .unwrap();
    let r = f.redirect.unwrap();
    assert_eq!(
        (r.status, r.hostname.as_deref()),
        (302, Some("example.org"))
    );
    for status in [303, 307, 308, 301] {
        let f = http_rule(json!([{"type": "RequestRedirect",
            "requestRedirect": {"statusCode": status}}]))
        .unwrap();
        assert_eq!(f.redirect.unwrap().status, status);
    }
    let refusal = http_rule(json!([{"type": "RequestRedirect",
        "requestRedirect": {"statusCode": 200}}]))
    .unwrap_err();
    assert_eq!(refusal.field, "filters[0].requestRedirect.statusCode");
}

#[test]
fn redirect_scheme_hostname_port_and_path_must_make_a_valid_uri() {
    let bad = [
        json!({"scheme": "ftp"}),
        json!({"hostname": "evil.org/path"}),
        json!({"hostname": "*.example.org"}),
        json!({"hostname": "Example.org"}),
        json!({"hostname": "a\r\nb"}),
        json!({"port": 0}),
        json!({"port": 70000}),
        json!({"path": {"type": "ReplaceFullPath", "replaceFullPath": "no-slash"}}),
        json!({"path": {"type": "ReplaceFullPath", "replaceFullPath": "/a b"}}),
        json!({"path": {"type": "ReplaceFullPath", "replaceFullPath": "//evil.org/x"}}),
        json!({"path": {"type": "ReplaceFullPath", "replaceFullPath": "/x?y=1"}}),
        json!({"path": {"type": "ReplaceFullPath", "replaceFullPath": "/x\r\nLocation: y"}}),
        json!({"path": {"type": "ReplaceFullPath", "replaceFullPath": format!("/{}", "a".repeat(1024))}}),
        json!({"path": {"type": "ReplaceFullPath", "replacePrefixMatch": "/a"}}),
        json!({"path": {"type": "Bogus"}}),
    ];
    for redirect in bad {
        let result = http_rule(json!([{"type": "RequestRedirect", "requestRedirect": redirect}]));
        assert!(result.is_err(), "{redirect} was accepted");
    }
}

#[test]
fn replace_prefix_match_takes_the_rules_prefix_and_needs_one() {
    let f = http_rule(json!([{"type": "URLRewrite", "urlRewrite": {"path":
        {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/one"}}}]))
    .unwrap();
    assert_eq!(
        f.rewrite.unwrap().path,
        Some(PathModifier::Prefix {
            matched: "/prefix".into(),
            replacement: "/one".into()
        })
    );
    let filters = vec![json!({"type": "URLRewrite", "urlRewrite": {"path":
        {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/one"}}})];
    let refusal = rule_filters(
        &filters,
        FilterPlace::HttpRule,
        Err("needs one PathPrefix match"),
        &mut no_mirror,
    )
    .unwrap_err();
    assert_eq!(
        refusal.field,
        "filters[0].urlRewrite.path.replacePrefixMatch"
    );
}

#[test]
fn unsupported_filters_are_refused_naming_the_filter() {
    for (filter, expected) in [
        (
            json!({"type": "ExtensionRef", "extensionRef": {"group": "x", "kind": "Y", "name": "z"}}),
            "ExtensionRef",
        ),
        (json!({"type": "CORS", "cors": {}}), "CORS"),
        (json!({"type": "Teleport"}), "Teleport"),
    ] {
        let refusal = http_rule(json!([filter])).unwrap_err();
        assert_eq!(refusal.field, "filters[0].type");
        assert!(refusal.reason.contains(expected), "{refusal:?}");
    }
    let refusal = http_rule(json!([{"type": "RequestHeaderModifier",
        "requestHeaderModifier": {}, "requestRedirect": {}}]))
    .unwrap_err();
    assert_eq!(refusal.field, "filters[0].requestRedirect");
}

#[test]
fn filters_the_spec_allows_once_are_refused_when_repeated() {
    let twice =
        json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x"]}});
    let refusal = http_rule(json!([twice, twice])).unwrap_err();
    assert!(
        refusal.reason.contains("second RequestHeaderModifier"),
        "{refusal:?}"
    );
    let refusal = http_rule(json!([
        {"type": "RequestRedirect", "requestRedirect": {}},
        {"type": "URLRewrite", "urlRewrite": {}}
    ]))
    .unwrap_err();
    assert!(
        refusal.reason.contains("cannot be used in the same rule"),
        "{refusal:?}"
    );
}

#[test]
fn grpc_rules_and_backends_accept_only_their_filters() {
    let redirect = vec![json!({"type": "RequestRedirect", "requestRedirect": {}})];
    let refusal =
        rule_filters(&redirect, FilterPlace::GrpcRule, Err("n/a"), &mut no_mirror).unwrap_err();
    assert!(
        refusal.reason.contains("not allowed in a GRPCRoute rule"),
        "{refusal:?}"
    );
    let mirror = vec![
        json!({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}}}),
    ];
    assert!(backend_filters(&mirror).is_err());
    let headers = vec![json!({"type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"set": [{"name": "x-b", "value": "1"}]}})];
    let f = backend_filters(&headers).unwrap();
    assert_eq!(
        f.response_headers.unwrap().set,
        vec![("x-b".into(), "1".into())]
    );
}

#[test]
fn mirror_shares_come_from_percent_or_fraction() {
    let mut target = |name: &str, _: Option<&str>, port: Option<i64>| {
        Ok((ObjectKey::new("default", name), port.unwrap() as u16))
    };
    let mut parse = |m: serde_json::Value| {
        let filters = vec![json!({"type": "RequestMirror", "requestMirror": m})];
        rule_filters(&filters, FilterPlace::HttpRule, Err("n/a"), &mut target)
    };
    let all = parse(json!({"backendRef": {"name": "m", "port": 80}})).unwrap();
    assert_eq!(
        (all.mirrors[0].numerator, all.mirrors[0].denominator),
        (100, 100)
    );
    let pct = parse(json!({"backendRef": {"name": "m", "port": 80}, "percent": 5})).unwrap();
    assert_eq!(
        (pct.mirrors[0].numerator, pct.mirrors[0].denominator),
        (5, 100)
    );
    let frac = parse(json!({"backendRef": {"name": "m", "port": 80},
        "fraction": {"numerator": 1, "denominator": 1000}}))
    .unwrap();
    assert_eq!(
        (frac.mirrors[0].numerator, frac.mirrors[0].denominator),
        (1, 1000)
    );
    for bad in [
        json!({"backendRef": {"name": "m", "port": 80}, "percent": 101}),
        json!({"backendRef": {"name": "m", "port": 80}, "fraction": {"numerator": 2, "denominator": 1}}),
        json!({"backendRef": {"name": "m", "port": 80}, "fraction": {"numerator": 1, "denominator": 0}}),
        json!({"backendRef": {"name": "m", "port": 80}, "percent": 1, "fraction": {"numerator": 1}}),
        json!({"backendRef": {"name": "m", "kind": "Pod", "port": 80}}),
    ] {
        assert!(parse(bad.clone()).is_err(), "{bad} was accepted");
    }
}
