//! The injector webhook's caBundle kept by the control plane (`--injector-webhook`, the chart's
//! default, as istiod keeps its webhook's): the real control plane, against the stand-in API
//! server, writes its trust anchors into every webhook's `caBundle` of the one
//! MutatingWebhookConfiguration it is named and serves the injector with a certificate that
//! verifies against that bundle for the Service's DNS name, as the API server checks it. A
//! webhook it cannot patch fails `/ready` with an error log, and is patched once it appears.
//! The chart renders the flag and a ClusterRole grant for that one object by name, and neither
//! with cert-manager.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use strait_control_plane::inject::PATH_POD;
use strait_control_plane::kubernetes::rbac::INJECTOR_WEBHOOK;
use strait_tests::admission::{self, SERVICE_NAME};
use strait_tests::chart::{CONTROL_PLANE, fixture, flag, flags, pod_spec};
use strait_tests::control_plane::ControlPlane;
use strait_tests::helm::Helm;
use strait_tests::kube_api::{FakeApi, MUTATING_WEBHOOKS};
use strait_tests::manifests::Rendered;

const WEBHOOK: &str = "strait-sidecar-injector";

/// A webhook configuration as the chart renders it by default: two webhooks, no caBundle.
fn webhook_configuration() -> Value {
    let hook = |name: &str, path: &str| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"service": {"name": CONTROL_PLANE, "namespace": "strait-system", "path": path, "port": 443}},
        })
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK},
        "webhooks": [hook("pods.inject.strait.dev", "/inject"), hook("namespaces.inject.strait.dev", "/inject/namespace-enabled")],
    })
}

fn start(api: &FakeApi, name: &str) -> (ControlPlane, PathBuf) {
    let dir = admission::scratch(name);
    let config = dir.join("proxy.yaml");
    std::fs::write(&config, "").unwrap();
    let control_plane = ControlPlane::start_kubernetes(
        &api.kubeconfig,
        &[
            ("--ca-secret", "strait-identity".into()),
            ("--namespace", "strait-system".into()),
            ("--dns-name", SERVICE_NAME.into()),
            ("--injector-addr", "127.0.0.1:0".into()),
            ("--injector-webhook", WEBHOOK.into()),
            ("--injector-config", config.display().to_string()),
        ],
    );
    (control_plane, dir)
}

/// The certificates (DER) a PEM holds: what a TLS client trusts, whatever the line endings.
fn certificates(pem: &str) -> Vec<Vec<u8>> {
    strait_identity::pem::certificates(pem, "caBundle")
        .unwrap()
        .into_iter()
        .map(|c| c.to_vec())
        .collect()
}

fn ca_bundles(api: &FakeApi) -> Vec<Option<Vec<Vec<u8>>>> {
    let stored = api
        .mutating_webhook(WEBHOOK)
        .expect("the webhook configuration");
    stored["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hook| {
            hook["clientConfig"]["caBundle"].as_str().map(|b| {
                certificates(
                    &String::from_utf8(
                        base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
                    )
                    .unwrap(),
                )
            })
        })
        .collect()
}

fn secret_anchors(api: &FakeApi) -> String {
    let secret = api
        .secret("strait-system", "strait-identity")
        .expect("the CA Secret");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["ca.crt"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

fn injector_addr(control_plane: &ControlPlane) -> std::net::SocketAddr {
    control_plane
        .process
        .logs()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|json| json["fields"]["message"] == "injector listening")
        .and_then(|json| json["fields"]["addr"].as_str()?.parse().ok())
        .expect("the injector's address")
}

/// Sends a pod's review as the API server would: TLS verified against `ca_bundle` for the
/// Service's DNS name.
async fn review_trusting(control_plane: &ControlPlane, ca_bundle: &str) -> Result<u16, String> {
    let mut pod = admission::pod_from_template(&admission::read_fixture("istio/hello-probes.yaml"));
    pod["metadata"]["annotations"] = json!({"strait.dev/inject": "enabled"});
    let review = admission::pod_create_review(&pod, "hello", "webhook-ca-bundle");
    admission::post(
        injector_addr(control_plane),
        ca_bundle,
        SERVICE_NAME,
        PATH_POD,
        review.to_string().as_bytes(),
    )
    .await
    .map(|(status, _)| status)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_sets_the_webhook_ca_bundle_to_its_anchors_and_serves_a_certificate_it_verifies()
 {
    let api = FakeApi::start(&[]).await;
    api.apply(MUTATING_WEBHOOKS, webhook_configuration());
    let (control_plane, _dir) = start(&api, "webhook-ca-bundle");

    // Set before the control plane is listening, on every webhook, to the CA Secret's anchors.
    let anchors = secret_anchors(&api);
    assert_eq!(ca_bundles(&api), vec![Some(certificates(&anchors)); 2]);
    assert_eq!(
        review_trusting(&control_plane, &anchors).await,
        Ok(200),
        "the API server, trusting the caBundle, reaches the injector"
    );
    // Another CA's bundle does not verify it: the injector serves the mesh CA's certificate.
    let other =
        strait_control_plane::ca::generate_self_signed("cluster.local", time::Duration::days(1))
            .unwrap()
            .0;
    let refused = review_trusting(&control_plane, &other).await;
    assert!(refused.is_err(), "{refused:?}");

    // Only that one object, read and patched by name, and nothing else of its kind.
    let webhook_requests: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.contains("mutatingwebhookconfigurations"))
        .collect();
    assert!(!webhook_requests.is_empty());
    for request in &webhook_requests {
        let path = request.split_once(' ').unwrap().1;
        let path = path.split('?').next().unwrap();
        assert_eq!(
            path,
            format!("{}/{WEBHOOK}", MUTATING_WEBHOOKS.path),
            "{request}"
        );
    }
    assert!(
        webhook_requests.iter().any(|r| r.starts_with("PATCH ")),
        "{webhook_requests:?}"
    );
    let ready = strait_tests::client::get(control_plane.admin, "admin", "/ready").await;
    assert_eq!(ready.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_the_control_plane_cannot_patch_fails_readiness_loudly_until_it_is_patched() {
    let api = FakeApi::start(&[]).await;
    // No webhook configuration yet: the read answers 404.
    let (control_plane, _dir) = start(&api, "webhook-ca-bundle-missing");
    assert!(
        control_plane
            .process
            .logged("the injector webhook's caBundle could not be set"),
        "an error says why"
    );
    let ready = strait_tests::client::get(control_plane.admin, "admin", "/ready").await;
    assert_eq!(ready.status, 503);
    assert!(
        String::from_utf8_lossy(&ready.body).contains("caBundle"),
        "{:?}",
        ready.body
    );

    api.apply(MUTATING_WEBHOOKS, webhook_configuration());
    let anchors = secret_anchors(&api);
    let deadline = Instant::now() + Duration::from_secs(20);
    while ca_bundles(&api) != vec![Some(certificates(&anchors)); 2] {
        assert!(
            Instant::now() < deadline,
            "the retry did not set the caBundle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while strait_tests::client::get(control_plane.admin, "admin", "/ready")
        .await
        .status
        != 200
    {
        assert!(Instant::now() < deadline, "/ready did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_chart_has_the_control_plane_keep_the_default_webhook_and_grants_only_that_one() {
    let Some(helm) = Helm::find(
        "the_chart_has_the_control_plane_keep_the_default_webhook_and_grants_only_that_one",
    ) else {
        return;
    };
    let render = |files: &[&std::path::Path]| {
        let output = helm.template("strait-system", files);
        assert!(output.success, "helm template: {}", output.stderr);
        Rendered::parse(&output.stdout)
    };
    let named_rules = |rendered: &Rendered| {
        rendered
            .cluster_roles
            .iter()
            .flat_map(|r| r.rules.clone().unwrap_or_default())
            .filter(|rule| {
                rule.resources
                    .iter()
                    .flatten()
                    .any(|r| r == "mutatingwebhookconfigurations")
            })
            .collect::<Vec<_>>()
    };

    let rendered = render(&[]);
    let deployment = &rendered.deployments[0];
    let pod = pod_spec(deployment);
    let passed = flags(&pod.containers[0]);
    assert_eq!(flag(&passed, "--injector-webhook"), WEBHOOK);
    assert_eq!(rendered.webhooks[0].metadata.name.as_deref(), Some(WEBHOOK));
    assert!(
        !pod.volumes
            .iter()
            .flatten()
            .any(|v| v.name == "injector-tls"),
        "no serving certificate Secret is mounted"
    );
    let rules = named_rules(&rendered);
    assert_eq!(rules.len(), INJECTOR_WEBHOOK.len());
    for (rule, permission) in rules.iter().zip(INJECTOR_WEBHOOK) {
        assert_eq!(rule.api_groups.clone().unwrap(), [permission.group]);
        assert_eq!(rule.resources.clone().unwrap(), [permission.resource]);
        assert_eq!(rule.verbs, permission.verbs);
        assert_eq!(
            rule.resource_names.clone().unwrap(),
            [WEBHOOK],
            "that one object only"
        );
    }

    // With cert-manager, its CA injector fills the caBundle: the control plane must not fight
    // it, so neither the flag nor the grant is rendered.
    let rendered = render(&[&fixture("cert-manager.yaml")]);
    let pod = pod_spec(&rendered.deployments[0]);
    assert!(
        !flags(&pod.containers[0])
            .iter()
            .any(|(f, _)| f == "--injector-webhook")
    );
    assert!(named_rules(&rendered).is_empty());
}
