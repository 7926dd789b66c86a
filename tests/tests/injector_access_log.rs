//! The proxy's access log on Kubernetes, through the real injector (the control plane binary's
//! HTTPS webhook, real AdmissionReview JSON): the chart's `proxy.accessLog` (rendered by the
//! real helm into the injector configuration) and the per-pod annotation
//! `strait.dev/access-log` reach the proxy container as `STRAIT_ACCESS_LOG`; a value that is
//! neither `off` nor `json` keeps the default with one warning, and the chart's schema refuses
//! one.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use strait_control_plane::inject::config::{AccessLog, InjectorConfig};
use strait_control_plane::inject::{ACCESS_LOG, PATH_POD, PROXY_CONTAINER};
use strait_tests::admission::{Injector, apply, pod_create_review, read_fixture};
use strait_tests::chart::{render, scratch};
use strait_tests::helm::Helm;

fn pod(annotations: &[(&str, &str)]) -> Value {
    let mut pod = read_fixture("linkerd2/pod-inject-enabled.yaml");
    pod["apiVersion"] = "v1".into();
    pod["spec"]["serviceAccountName"] = "nginx".into();
    pod["metadata"]["annotations"] = json!({"strait.dev/inject": "enabled"});
    for (name, value) in annotations {
        pod["metadata"]["annotations"][*name] = (*value).into();
    }
    pod
}

/// Injects `pod`; returns the proxy's literal env and the warnings.
async fn proxy_env(injector: &Injector, pod: &Value) -> (BTreeMap<String, String>, Vec<String>) {
    let (status, answer) = injector
        .review(PATH_POD, &pod_create_review(pod, "shop", "access-log"))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
    let warnings =
        serde_json::from_value(answer["response"]["warnings"].clone()).unwrap_or_default();
    let patched = apply(pod, &answer);
    let spec = patched.spec.unwrap();
    let proxy = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == PROXY_CONTAINER)
        .cloned()
        .expect("the proxy container");
    let env = proxy
        .env
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e.name, e.value?)))
        .collect();
    (env, warnings)
}

#[tokio::test]
async fn the_access_log_annotation_turns_the_proxys_access_log_on_or_off() {
    // The default configuration: off unless the pod asks.
    let injector = Injector::start("inject-access-log", "");
    let (env, warnings) = proxy_env(&injector, &pod(&[])).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        env.get("STRAIT_ACCESS_LOG"),
        None,
        "off by default: {env:?}"
    );
    let (env, warnings) = proxy_env(&injector, &pod(&[(ACCESS_LOG, "json")])).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(env["STRAIT_ACCESS_LOG"], "json");
    drop(injector);

    // The chart's value on: every proxy logs, unless the pod turns it off.
    let injector = Injector::start("inject-access-log-on", "accessLog: json\n");
    let (env, _) = proxy_env(&injector, &pod(&[])).await;
    assert_eq!(env["STRAIT_ACCESS_LOG"], "json");
    let (env, warnings) = proxy_env(&injector, &pod(&[(ACCESS_LOG, "off")])).await;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(env.get("STRAIT_ACCESS_LOG"), None, "{env:?}");
}

#[tokio::test]
async fn a_bad_access_log_annotation_keeps_the_default_with_one_warning() {
    let injector = Injector::start("inject-access-log-bad", "");
    let (env, warnings) = proxy_env(&injector, &pod(&[(ACCESS_LOG, "yes please")])).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(ACCESS_LOG)
            && warnings[0].contains("\"yes please\"")
            && warnings[0].contains("off"),
        "{warnings:?}"
    );
    assert_eq!(env.get("STRAIT_ACCESS_LOG"), None, "{env:?}");
}

#[tokio::test]
async fn the_charts_access_log_value_reaches_the_injector_and_its_schema_refuses_others() {
    let test = "the_charts_access_log_value_reaches_the_injector_and_its_schema_refuses_others";
    let Some(helm) = Helm::find(test) else {
        return;
    };
    let dir = scratch("access-log");
    let on = dir.join("access-log.yaml");
    std::fs::write(&on, "proxy:\n  accessLog: json\n").unwrap();
    let injector_config = |files: Vec<std::path::PathBuf>| {
        let set = strait_tests::chart::ValueSet {
            name: "access-log",
            namespace: "strait-system",
            files,
        };
        render(&helm, &set).config_maps["strait-injector-config"]
            .data
            .as_ref()
            .unwrap()["proxy.yaml"]
            .clone()
    };
    let default = InjectorConfig::parse(&injector_config(vec![]), "proxy.yaml").unwrap();
    assert_eq!(default.access_log, AccessLog::Off);
    let rendered = injector_config(vec![on]);
    let config = InjectorConfig::parse(&rendered, "proxy.yaml").unwrap();
    assert_eq!(config.access_log, AccessLog::Json);

    // The rendered configuration, in the real injector, turns every proxy's access log on.
    let injector = Injector::start("inject-access-log-chart", &rendered);
    let (env, _) = proxy_env(&injector, &pod(&[])).await;
    assert_eq!(env["STRAIT_ACCESS_LOG"], "json");

    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "proxy:\n  accessLog: text\n").unwrap();
    let output = helm.template("strait-system", &[&bad]);
    assert!(!output.success, "accepted:\n{}", output.stdout);
    let said = format!("{}{}", output.stdout, output.stderr);
    assert!(
        said.contains("/proxy/accessLog") && said.contains("'off', 'json'"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
