//! Per-pod proxy settings through the real injector (the control plane binary's HTTPS
//! webhook, real AdmissionReview JSON from the shared fixtures): `strait.dev/*` annotations for
//! resources, worker threads, log level, opaque ports and tracing; warnings for values that
//! cannot be used; and the chart's proxy values reaching pods through the rendered injector
//! configuration (with the real helm).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};
use strait_control_plane::inject::{PATH_POD, PROXY_CONTAINER};
use strait_tests::admission::{
    Injector, apply, pod_create_review, pod_from_template, read_fixture,
};
use strait_tests::chart::{fixture, render, scratch, value_sets};
use strait_tests::helm::Helm;

/// Linkerd's injector input pod, sent as the API server sends pods, with `annotations`.
fn linkerd_pod(annotations: Value) -> Value {
    let mut pod = read_fixture("linkerd2/pod-inject-enabled.yaml");
    pod["apiVersion"] = "v1".into();
    pod["spec"]["serviceAccountName"] = "nginx".into();
    pod["metadata"]["annotations"] = annotations;
    pod["metadata"]["annotations"]["strait.dev/inject"] = "enabled".into();
    pod
}

/// Reviews `pod`, checks it was allowed and patched, returns the patched pod and the warnings.
async fn inject(injector: &Injector, pod: &Value, uid: &str) -> (Pod, Vec<String>) {
    let (status, answer) = injector
        .review(PATH_POD, &pod_create_review(pod, "shop", uid))
        .await;
    assert_eq!(status, 200, "{answer}");
    let response = &answer["response"];
    assert_eq!(response["allowed"], true, "never refused: {answer}");
    assert_eq!(response["patchType"], "JSONPatch", "injected: {answer}");
    let warnings = serde_json::from_value(response["warnings"].clone()).unwrap_or_default();
    (apply(pod, &answer), warnings)
}

fn proxy(pod: &Pod) -> Container {
    let spec = pod.spec.as_ref().unwrap();
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == PROXY_CONTAINER)
        .cloned()
        .expect("the proxy container")
}

fn env(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

fn quantities(container: &Container) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let resources = container.resources.clone().unwrap_or_default();
    let plain =
        |m: Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            m.unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        };
    (plain(resources.requests), plain(resources.limits))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn pod_annotations_set_the_proxys_resources_threads_log_opaque_ports_and_tracing() {
    let injector = Injector::start("inject-pod-settings", "");
    let pod = linkerd_pod(json!({
        "strait.dev/proxy-cpu-request": "250m",
        "strait.dev/proxy-cpu-limit": "1500m",
        "strait.dev/proxy-memory-request": "64Mi",
        "strait.dev/proxy-memory-limit": "256Mi",
        "strait.dev/proxy-log-level": "strait_proxy=debug,info",
        "strait.dev/opaque-ports": "5432,7000",
        "strait.dev/tracing": "enabled",
        "strait.dev/trace-collector": "http://otel-collector.observability:4317",
        "strait.dev/trace-sample-ratio": "0.2",
    }));
    let (patched, warnings) = inject(&injector, &pod, "settings").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    let proxy = proxy(&patched);
    let env = env(&proxy);
    assert_eq!(env["STRAIT_THREADS"], "2", "1500m rounds up to two cores");
    assert_eq!(env["STRAIT_LOG"], "strait_proxy=debug,info");
    assert_eq!(env["STRAIT_OPAQUE_PORTS"], "5432,7000");
    assert_eq!(
        env["STRAIT_TRACE_COLLECTOR"],
        "http://otel-collector.observability:4317"
    );
    assert_eq!(env["STRAIT_TRACE_SAMPLE_RATIO"], "0.2");
    assert_eq!(
        quantities(&proxy),
        (
            map(&[("cpu", "250m"), ("memory", "64Mi")]),
            map(&[("cpu", "1500m"), ("memory", "256Mi")])
        )
    );

    // Without annotations: the defaults, one thread, Linkerd's server-speaks-first ports.
    let (patched, warnings) = inject(&injector, &linkerd_pod(json!({})), "defaults").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    let env = self::env(&self::proxy(&patched));
    assert_eq!(env["STRAIT_THREADS"], "1");
    assert_eq!(
        env["STRAIT_OPAQUE_PORTS"],
        "25,587,3306,4444,5432,6379,9300,11211"
    );
    assert!(!env.contains_key("STRAIT_TRACE_COLLECTOR"));
}

#[tokio::test]
async fn unusable_annotations_inject_the_defaults_with_a_warning_naming_each() {
    let injector = Injector::start("inject-pod-settings-bad", "");
    let bad = [
        ("strait.dev/proxy-cpu-limit", "2 cores"),
        ("strait.dev/proxy-memory-limit", "128MB"),
        ("strait.dev/proxy-threads", "0"),
        ("strait.dev/proxy-log-level", "strait=loud"),
        ("strait.dev/opaque-ports", "mysql"),
        ("strait.dev/tracing", "on"),
        ("strait.dev/trace-sample-ratio", "1.5"),
    ];
    let mut annotations = json!({});
    for (name, value) in bad {
        annotations[name] = value.into();
    }
    let (patched, warnings) = inject(&injector, &linkerd_pod(annotations), "bad").await;
    assert_eq!(warnings.len(), bad.len(), "{warnings:#?}");
    for (name, value) in bad {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(name) && w.contains(&format!("{value:?}"))),
            "no warning names {name} = {value:?}: {warnings:#?}"
        );
    }
    assert!(warnings.iter().all(|w| w.len() <= 256), "{warnings:#?}");
    let proxy = proxy(&patched);
    let env = env(&proxy);
    assert_eq!(env["STRAIT_THREADS"], "1");
    assert_eq!(env["STRAIT_LOG"], "info");
    assert_eq!(env["STRAIT_OPAQUE_PORTS"], "0", "the bad entry left out");
    assert!(!env.contains_key("STRAIT_TRACE_COLLECTOR"));
    assert_eq!(
        quantities(&proxy),
        (
            map(&[("cpu", "100m"), ("memory", "32Mi")]),
            map(&[("memory", "128Mi")])
        )
    );
}

/// The injector configuration the chart renders for the value set `name`.
fn rendered_injector_config(helm: &Helm, dir: &Path, name: &str) -> String {
    let set = value_sets(dir)
        .into_iter()
        .find(|s| s.name == name)
        .expect("a value set");
    let rendered = render(helm, &set);
    rendered.config_maps["strait-injector-config"]
        .data
        .as_ref()
        .unwrap()["proxy.yaml"]
        .clone()
}

#[tokio::test]
async fn the_charts_proxy_values_reach_injected_pods() {
    let test = "the_charts_proxy_values_reach_injected_pods";
    let Some(helm) = Helm::find(test) else {
        return;
    };
    let dir = scratch("pod-settings");
    assert!(fixture("subchart-overrides.yaml").is_file());
    let config = rendered_injector_config(&helm, &dir, "subchart-overrides");
    let injector = Injector::start("inject-chart-values", &config);
    let mut pod = pod_from_template(&read_fixture("istio/hello-probes.yaml"));
    pod["metadata"]["annotations"] = json!({"strait.dev/inject": "enabled"});
    let (patched, warnings) = inject(&injector, &pod, "chart").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    let proxy = proxy(&patched);
    let env = env(&proxy);
    assert_eq!(
        env["STRAIT_THREADS"], "2",
        "proxy.resources.limits.cpu 1500m"
    );
    assert_eq!(env["STRAIT_OPAQUE_PORTS"], "5432,7000");
    assert_eq!(
        env["STRAIT_TRACE_COLLECTOR"],
        "http://otel-collector.observability:4317"
    );
    assert_eq!(env["STRAIT_TRACE_SAMPLE_RATIO"], "0.1");
    let pull_secrets: Vec<String> = patched
        .spec
        .as_ref()
        .unwrap()
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(pull_secrets, ["corp-registry"]);

    // A pod may still turn tracing off.
    pod["metadata"]["annotations"]["strait.dev/tracing"] = "disabled".into();
    let (patched, _) = inject(&injector, &pod, "chart-off").await;
    assert!(!self::env(&self::proxy(&patched)).contains_key("STRAIT_TRACE_COLLECTOR"));
    drop(injector);

    // The default values: one thread from the 100m request, no tracing, no pull secrets.
    let config = rendered_injector_config(&helm, &dir, "default");
    let injector = Injector::start("inject-chart-defaults", &config);
    let (patched, _) = inject(&injector, &pod, "chart-default").await;
    let env = self::env(&self::proxy(&patched));
    assert_eq!(env["STRAIT_THREADS"], "1");
    assert!(patched.spec.as_ref().unwrap().image_pull_secrets.is_none());
    let _ = std::fs::remove_dir_all(&dir);
}
