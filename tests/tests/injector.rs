//! The sidecar injector through the real HTTPS server of the control plane binary, with real
//! AdmissionReview JSON (a review recorded on GKE, and reviews for the pods of Istio's and
//! Linkerd's injector inputs built on it). Each answer's patch is applied with the json-patch
//! crate, and the patched pod must decode as a k8s-openapi Pod and pass the structural checks
//! of `check_injected`.
//!
//! Longer than 500 lines: a whole suite over shared admission fixtures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use strait_control_plane::inject::config::{InjectorConfig, Ipv6};
use strait_control_plane::inject::pod_settings::worker_threads;
use strait_control_plane::inject::{
    INIT_CONTAINER, INJECTED, PATH_NAMESPACE, PATH_POD, PROXIED, PROXY_CONTAINER,
    PROXY_INBOUND_PORT, TOKEN_DIR, TOKEN_VOLUME,
};
use strait_tests::admission::{
    Injector, SERVICE_NAME, ServingIdentity, apply, pod_create_review, pod_from_template, post,
    read_fixture,
};

/// The pod inside the recorded GKE review (no inject annotation of its own).
fn gke_pod() -> Value {
    read_fixture("kube-rs/admissionreview-v1-pod-create.webhook_body.json")["request"]["object"]
        .clone()
}

/// The pod the ReplicaSet of Istio's `hello` Deployment creates, annotated for injection.
fn hello_pod() -> Value {
    let mut pod = pod_from_template(&read_fixture("istio/hello-probes.yaml"));
    pod["metadata"]["annotations"] = json!({"strait.dev/inject": "enabled"});
    pod
}

/// Linkerd's injector input pod, sent as the API server sends pods (`v1`).
fn linkerd_pod() -> Value {
    let mut pod = read_fixture("linkerd2/pod-inject-enabled.yaml");
    pod["apiVersion"] = "v1".into();
    pod["spec"]["serviceAccountName"] = "nginx".into();
    pod
}

fn env_of(container: &Container) -> BTreeMap<String, Value> {
    container
        .env
        .iter()
        .flatten()
        .map(|e| {
            let value = match (&e.value, &e.value_from) {
                (Some(v), _) => Value::String(v.clone()),
                (None, Some(from)) => json!({
                    "fieldRef": from.field_ref.as_ref().map(|f| f.field_path.clone())
                }),
                (None, None) => Value::Null,
            };
            (e.name.clone(), value)
        })
        .collect()
}

/// Everything the injector must have added to `pod`, and nothing of the original lost.
fn check_injected(original: &Value, pod: &Pod, config: &InjectorConfig, anchors_pem: &str) {
    // A listener's addresses: both families unless IPv6 interception is disabled.
    let listen = |ipv4: &str, ipv6: &str, port| match config.ipv6 {
        Ipv6::Disabled => format!("{ipv4}:{port}"),
        Ipv6::Auto | Ipv6::Enabled => format!("{ipv4}:{port},[{ipv6}]:{port}"),
    };
    let spec = pod.spec.as_ref().expect("a spec");
    let inits = spec.init_containers.clone().unwrap_or_default();
    let original_containers: Vec<Container> =
        serde_json::from_value(original["spec"]["containers"].clone()).unwrap();

    // Order: strait-init first; the proxy right after it (native) or first of containers.
    assert_eq!(
        inits[0].name, INIT_CONTAINER,
        "strait-init is the first init container"
    );
    let proxy = if config.native_sidecar {
        assert_eq!(
            inits[1].name, PROXY_CONTAINER,
            "native sidecar right after strait-init"
        );
        assert_eq!(inits[1].restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            spec.containers, original_containers,
            "app containers untouched"
        );
        let startup = inits[1].startup_probe.as_ref().expect("a startup probe");
        assert_eq!(
            startup.http_get.as_ref().unwrap().path.as_deref(),
            Some("/ready")
        );
        inits[1].clone()
    } else {
        assert_eq!(
            spec.containers[0].name, PROXY_CONTAINER,
            "classic: proxy first"
        );
        assert_eq!(
            spec.containers[1..],
            original_containers[..],
            "app containers follow"
        );
        assert_eq!(spec.containers[0].restart_policy, None);
        assert!(!inits.iter().any(|c| c.name == PROXY_CONTAINER));
        spec.containers[0].clone()
    };

    // The init container: iptables as root with two capabilities, nothing more.
    let init = &inits[0];
    assert_eq!(init.image.as_deref(), Some(config.image.as_str()));
    let args = init.args.clone().unwrap();
    let init_ipv6 = match config.ipv6 {
        Ipv6::Auto => "auto",
        Ipv6::Enabled => "on",
        Ipv6::Disabled => "off",
    };
    assert_eq!(
        args[..11],
        [
            "init",
            "--proxy-uid",
            &config.proxy_uid.to_string(),
            "--inbound-port",
            &config.ports.inbound.to_string(),
            "--outbound-port",
            &config.ports.outbound.to_string(),
            "--admin-port",
            &config.ports.admin.to_string(),
            "--ipv6",
            init_ipv6
        ]
    );
    let sc = init.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(0));
    assert_eq!(sc.run_as_non_root, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(
        caps.add.as_deref(),
        Some(&["NET_ADMIN".to_owned(), "NET_RAW".to_owned()][..])
    );
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));

    // The proxy.
    assert_eq!(proxy.args.as_deref(), Some(&["run".to_owned()][..]));
    assert_eq!(proxy.image.as_deref(), Some(config.image.as_str()));
    let mut env = env_of(&proxy);
    let expected: BTreeMap<String, Value> = [
        ("STRAIT_MODE", json!("pod")),
        ("STRAIT_CONTROL_PLANE", json!(config.control_plane_address)),
        (
            "STRAIT_CONTROL_PLANE_IDENTITY",
            json!(config.control_plane_identity),
        ),
        ("STRAIT_TRUST_DOMAIN", json!(config.trust_domain)),
        (
            "STRAIT_NAMESPACE",
            json!({"fieldRef": "metadata.namespace"}),
        ),
        (
            "STRAIT_SERVICE_ACCOUNT",
            json!({"fieldRef": "spec.serviceAccountName"}),
        ),
        ("STRAIT_WORKLOAD", json!({"fieldRef": "metadata.name"})),
        ("STRAIT_TOKEN_FILE", json!(format!("{TOKEN_DIR}/token"))),
        (
            "STRAIT_INBOUND_MODE",
            serde_json::to_value(config.inbound_mode).unwrap(),
        ),
        ("STRAIT_LOG", json!(config.log_level)),
        (
            "STRAIT_LOG_FORMAT",
            serde_json::to_value(config.log_format).unwrap(),
        ),
        (
            "STRAIT_OUTBOUND_ADDR",
            json!(listen("127.0.0.1", "::1", config.ports.outbound)),
        ),
        (
            "STRAIT_INBOUND_ADDR",
            json!(listen("0.0.0.0", "::", config.ports.inbound)),
        ),
        (
            "STRAIT_ADMIN_ADDR",
            json!(listen("0.0.0.0", "::", config.ports.admin)),
        ),
        (
            "STRAIT_THREADS",
            json!(worker_threads(&config.resources).to_string()),
        ),
        (
            "STRAIT_OPAQUE_PORTS",
            json!(
                config
                    .opaque_ports
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let embedded = env
        .remove("STRAIT_TRUST_ANCHORS_PEM")
        .expect("the trust anchors are embedded");
    assert_eq!(env, expected);
    assert_eq!(
        strait_identity::pem::certificates(embedded.as_str().unwrap(), "env").unwrap(),
        strait_identity::pem::certificates(anchors_pem, "anchors").unwrap(),
        "the proxy gets the anchors the control plane signs with"
    );
    let ports: Vec<(String, i32)> = proxy
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            (
                "strait-inbound".to_owned(),
                i32::from(config.ports.inbound.get())
            ),
            (
                "strait-admin".to_owned(),
                i32::from(config.ports.admin.get())
            )
        ]
    );
    let admin = IntOrString::Int(i32::from(config.ports.admin.get()));
    for (probe, path) in [
        (&proxy.readiness_probe, "/ready"),
        (&proxy.liveness_probe, "/live"),
    ] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!((get.path.as_deref(), &get.port), (Some(path), &admin));
    }
    let resources = proxy.resources.as_ref().unwrap();
    let quantities =
        |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            m.iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect::<BTreeMap<_, _>>()
        };
    assert_eq!(quantities(&resources.requests), config.resources.requests);
    assert_eq!(quantities(&resources.limits), config.resources.limits);
    let sc = proxy.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(config.proxy_uid));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.add, None);
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let mounts = proxy.volume_mounts.clone().unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(
        (
            mounts[0].name.as_str(),
            mounts[0].mount_path.as_str(),
            mounts[0].read_only
        ),
        (TOKEN_VOLUME, TOKEN_DIR, Some(true))
    );

    // The token volume: the identity audience, so only the control plane accepts the token.
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == TOKEN_VOLUME)
        .expect("the token volume");
    let sources = volume.projected.as_ref().unwrap().sources.clone().unwrap();
    let token = sources[0].service_account_token.as_ref().unwrap();
    assert_eq!(
        token.audience.as_deref(),
        Some(config.token_audience.as_str())
    );
    assert_eq!(
        token.expiration_seconds,
        Some(config.token_expiration_seconds)
    );
    assert_eq!(token.path, "token");
    let original_volumes = original["spec"]["volumes"].as_array().map_or(0, Vec::len);
    assert_eq!(spec.volumes.as_ref().unwrap().len(), original_volumes + 1);

    // Metadata: what the Kubernetes source reads, the original entries kept.
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels[PROXIED], "true");
    for (k, v) in original["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
    {
        assert_eq!(&json!(labels[k]), v, "label {k} kept");
    }
    let annotations = pod.metadata.annotations.clone().unwrap();
    assert_eq!(annotations[INJECTED], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        annotations[PROXY_INBOUND_PORT],
        config.ports.inbound.to_string()
    );
    for (k, v) in original["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
    {
        assert_eq!(&json!(annotations[k]), v, "annotation {k} kept");
    }
}

/// The answer's `response`, after the checks every answer must pass.
fn allowed(status: u16, answer: &Value, uid: &str) -> Value {
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = answer["response"].clone();
    assert_eq!(response["uid"], uid, "the answer echoes request.uid");
    assert_eq!(
        response["allowed"], true,
        "the injector never refuses a pod"
    );
    response
}

#[tokio::test]
async fn a_namespace_enabled_pod_gets_init_native_sidecar_and_token_volume() {
    let injector = Injector::start("inject-native", "");
    let config = InjectorConfig::default();
    let pod = gke_pod();
    let uid = "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4";

    // The recorded review as the GKE API server sent it: the pod does not ask itself.
    let recorded = read_fixture("kube-rs/admissionreview-v1-pod-create.webhook_body.json");
    let (status, answer) = injector.review(PATH_POD, &recorded).await;
    let response = allowed(status, &answer, uid);
    assert_eq!(response.get("patch"), None, "not requested: no patch");

    // The same review from the webhook that selected the namespace.
    let (status, answer) = injector.review(PATH_NAMESPACE, &recorded).await;
    let response = allowed(status, &answer, uid);
    assert_eq!(response["patchType"], "JSONPatch");
    let patched = apply(&pod, &answer);
    check_injected(&pod, &patched, &config, &injector.trust_anchors_pem());

    // Idempotent: the patched pod, reviewed again, is left alone.
    let again = pod_create_review(
        &serde_json::to_value(&patched).unwrap(),
        "colin-coder",
        "second",
    );
    let (status, answer) = injector.review(PATH_NAMESPACE, &again).await;
    let response = allowed(status, &answer, "second");
    assert_eq!(response.get("patch"), None, "already injected: no patch");
    assert_eq!(response.get("patchType"), None);
}

#[tokio::test]
async fn a_deployments_pod_annotated_for_injection_keeps_its_probes_and_containers() {
    let injector = Injector::start("inject-hello", "");
    let pod = hello_pod();
    let review = pod_create_review(&pod, "hello", "hello-1");
    let (status, answer) = injector.review(PATH_POD, &review).await;
    allowed(status, &answer, "hello-1");
    let patched = apply(&pod, &answer);
    check_injected(
        &pod,
        &patched,
        &InjectorConfig::default(),
        &injector.trust_anchors_pem(),
    );
    // The anchors in the proxy's environment are the CA the control plane signs with.
    let proxy = &patched
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .as_ref()
        .unwrap()[1];
    let pem = env_of(proxy)["STRAIT_TRUST_ANCHORS_PEM"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        strait_identity::pem::certificates(&pem, "env").unwrap(),
        strait_identity::pem::certificates(&injector.trust_anchors_pem(), "ca").unwrap()
    );
}

#[tokio::test]
async fn classic_mode_with_strict_inbound_and_custom_ports() {
    let yaml = "nativeSidecar: false\ninboundMode: strict\nipv6: disabled\nproxyUID: 3001\nports: {outbound: 5140, inbound: 5143, admin: 5191}\nskipInboundPorts: [9090]\nskipOutboundPorts: [5432]\nlogFormat: text\nresources: {requests: {cpu: 20m}, limits: {cpu: 500m, memory: 128Mi}}\ntokenAudience: mesh.example\ntokenExpirationSeconds: 3600\n";
    let config = InjectorConfig::parse(yaml, "test").unwrap();
    let injector = Injector::start("inject-classic", yaml);
    let pod = linkerd_pod();
    let review = pod_create_review(&pod, "kube-public", "nginx-1");
    let (status, answer) = injector.review(PATH_NAMESPACE, &review).await;
    allowed(status, &answer, "nginx-1");
    let patched = apply(&pod, &answer);
    check_injected(&pod, &patched, &config, &injector.trust_anchors_pem());
    let spec = patched.spec.as_ref().unwrap();
    assert_eq!(
        spec.init_containers.as_ref().unwrap()[0]
            .args
            .as_ref()
            .unwrap()[11..],
        [
            "--skip-inbound-ports",
            "9090",
            "--skip-outbound-ports",
            "5432"
        ]
    );
    assert_eq!(
        patched.metadata.annotations.as_ref().unwrap()["kubectl.kubernetes.io/default-container"],
        "nginx",
        "kubectl still picks the app by default"
    );
}

#[tokio::test]
async fn opting_out_wins_over_the_namespace_and_other_kinds_are_let_through() {
    let injector = Injector::start("inject-optout", "");
    let mut pod = hello_pod();
    pod["metadata"]["annotations"] = json!({"strait.dev/inject": "disabled"});
    for path in [PATH_POD, PATH_NAMESPACE] {
        let (status, answer) = injector
            .review(path, &pod_create_review(&pod, "hello", "opt-out"))
            .await;
        let response = allowed(status, &answer, "opt-out");
        assert_eq!(response.get("patch"), None, "{path}: opted out");
    }

    // The round-trip review with a real operation: a CREATE of a CustomType, not a Pod.
    let mut other =
        read_fixture("kubernetes-api-testdata/admission.k8s.io.v1.AdmissionReview.json");
    other["request"]["operation"] = "CREATE".into();
    // A request from the API server carries no response (this one's would not even decode:
    // kube-rs reads `response.patch` as a list of numbers).
    other.as_object_mut().unwrap().remove("response");
    let (status, answer) = injector.review(PATH_NAMESPACE, &other).await;
    let response = allowed(status, &answer, "uidValue");
    assert_eq!(response.get("patch"), None);

    // A Pod UPDATE is not injected either.
    let mut update = pod_create_review(&hello_pod(), "hello", "update");
    update["request"]["operation"] = "UPDATE".into();
    let (status, answer) = injector.review(PATH_NAMESPACE, &update).await;
    assert_eq!(allowed(status, &answer, "update").get("patch"), None);
}

#[tokio::test]
async fn a_host_network_pod_is_admitted_unchanged_with_a_warning_saying_why() {
    let injector = Injector::start("inject-host-network", "");
    let mut pod = hello_pod();
    pod["metadata"]["annotations"] = json!({"strait.dev/inject": "enabled"});
    pod["spec"]["hostNetwork"] = json!(true);
    for path in [PATH_POD, PATH_NAMESPACE] {
        let (status, answer) = injector
            .review(path, &pod_create_review(&pod, "hello", "host-network"))
            .await;
        let response = allowed(status, &answer, "host-network");
        assert_eq!(
            response.get("patch"),
            None,
            "{path}: a hostNetwork pod gets no patch"
        );
        let warnings: Vec<String> = serde_json::from_value(response["warnings"].clone()).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("hostNetwork"), "{warnings:?}");
    }
    let metrics = strait_tests::client::get(injector.control_plane.admin, "admin", "/metrics")
        .await
        .text();
    let line = "strait_injector_requests_total{result=\"skipped-host-network\"} 2";
    assert!(metrics.contains(line), "missing {line:?} in:\n{metrics}");
}

#[tokio::test]
async fn skip_port_annotations_are_honoured_and_bad_entries_become_warnings() {
    let injector = Injector::start("inject-skip", "");
    let mut pod = hello_pod();
    pod["metadata"]["annotations"] = json!({
        "strait.dev/inject": "enabled",
        "strait.dev/skip-inbound-ports": "3333, 8081",
        "strait.dev/skip-outbound-ports": "5432,redis,99999",
    });
    let (status, answer) = injector
        .review(PATH_POD, &pod_create_review(&pod, "hello", "skip"))
        .await;
    let response = allowed(status, &answer, "skip");
    let warnings: Vec<String> = serde_json::from_value(response["warnings"].clone()).unwrap();
    assert_eq!(warnings.len(), 1, "one per annotation: {warnings:?}");
    assert!(
        warnings[0].contains("strait.dev/skip-outbound-ports")
            && warnings[0].contains("\"redis,99999\""),
        "{warnings:?}"
    );
    let patched = apply(&pod, &answer);
    check_injected(
        &pod,
        &patched,
        &InjectorConfig::default(),
        &injector.trust_anchors_pem(),
    );
    let init = &patched
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        init.args.as_ref().unwrap()[11..],
        [
            "--skip-inbound-ports",
            "3333,8081",
            "--skip-outbound-ports",
            "5432"
        ]
    );
}

#[tokio::test]
async fn malformed_reviews_get_400_naming_the_problem_and_every_result_is_counted() {
    let injector = Injector::start("inject-malformed", "");
    let text = |body: Vec<u8>| String::from_utf8(body).unwrap();

    let (status, body) = injector.post(PATH_POD, b"not json").await;
    assert_eq!(status, 400);
    assert!(text(body).contains("not an admission.k8s.io/v1 AdmissionReview"));

    // The round-trip fixture as-is: its operation is a placeholder, not a Kubernetes verb.
    let roundtrip =
        read_fixture("kubernetes-api-testdata/admission.k8s.io.v1.AdmissionReview.json");
    let (status, body) = injector
        .post(PATH_POD, roundtrip.to_string().as_bytes())
        .await;
    let body = text(body);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("request.operation") && body.contains("operationValue"),
        "{body}"
    );

    let mut no_uid = read_fixture("kube-rs/admissionreview-v1-pod-create.webhook_body.json");
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let (status, body) = injector.post(PATH_POD, no_uid.to_string().as_bytes()).await;
    let body = text(body);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("missing field `uid`"), "{body}");

    let mut old = read_fixture("kube-rs/admissionreview-v1-pod-create.webhook_body.json");
    old["apiVersion"] = "admission.k8s.io/v1beta1".into();
    let (status, body) = injector.post(PATH_POD, old.to_string().as_bytes()).await;
    assert_eq!(status, 400);
    assert!(text(body).contains("only admission.k8s.io/v1"));

    let (status, body) = injector.post("/mutate", b"{}").await;
    assert_eq!(status, 404);
    assert!(text(body).contains("/inject"));

    // A pod the injector cannot decode is its own problem: allowed, no patch, counted.
    let mut odd = hello_pod();
    odd["spec"]["containers"] = json!("not a list");
    let (status, answer) = injector
        .review(PATH_POD, &pod_create_review(&odd, "hello", "odd"))
        .await;
    assert_eq!(allowed(status, &answer, "odd").get("patch"), None);
    assert!(injector.control_plane.process.wait_logged(
        "injection failed; the pod is admitted without the proxy",
        Duration::from_secs(5)
    ));

    // One of each other result, then the counters.
    let enabled = pod_create_review(&hello_pod(), "hello", "a");
    let (_, answer) = injector.review(PATH_POD, &enabled).await;
    let patched = apply(&hello_pod(), &answer);
    let again = pod_create_review(&serde_json::to_value(&patched).unwrap(), "hello", "b");
    injector.review(PATH_POD, &again).await;
    injector
        .review(PATH_POD, &pod_create_review(&gke_pod(), "colin-coder", "c"))
        .await;
    let metrics = strait_tests::client::get(injector.control_plane.admin, "admin", "/metrics")
        .await
        .text();
    for (result, count) in [
        ("injected", 1),
        ("already-injected", 1),
        ("skipped", 1),
        ("error", 5),
    ] {
        let line = format!("strait_injector_requests_total{{result=\"{result}\"}} {count}");
        assert!(metrics.contains(&line), "missing {line:?} in:\n{metrics}");
    }
    assert!(metrics.contains("# HELP strait_injector_requests_total"));
}

#[tokio::test]
async fn a_rotated_serving_certificate_is_served_without_a_restart() {
    let injector = Injector::start("inject-rotate", "");
    let body = pod_create_review(&hello_pod(), "hello", "rotate").to_string();
    let (status, _) = injector.post(PATH_POD, body.as_bytes()).await;
    assert_eq!(status, 200);

    // The Secret is updated: new files, signed by a new CA.
    let next = ServingIdentity::generate(SERVICE_NAME);
    next.write(&injector.dir.join("tls"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match post(
            injector.addr,
            &next.ca_pem,
            SERVICE_NAME,
            PATH_POD,
            body.as_bytes(),
        )
        .await
        {
            Ok((status, _)) => {
                assert_eq!(status, 200);
                break;
            }
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "the new certificate is not served: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let old = post(
        injector.addr,
        &injector.ca_pem,
        SERVICE_NAME,
        PATH_POD,
        body.as_bytes(),
    )
    .await;
    assert!(
        old.is_err(),
        "the old CA still verifies the injector: {old:?}"
    );
    assert!(
        injector
            .control_plane
            .process
            .logged("injector serving certificate reloaded")
    );
}
