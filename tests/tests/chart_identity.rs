//! The chart's identity paths, rendered with the real helm: the default (the control plane
//! creates and keeps its CA Secret, so the chart renders no CA and a Role for that Secret only)
//! and cert-manager / an external CA (issuer from a `kubernetes.io/tls` Secret, trust anchors
//! from a ConfigMap or ClusterTrustBundles, the webhook's caBundle from cert-manager's CA
//! injector). `helm template` is how Argo CD and Flux render: two renders must be the same.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{PodSpec, Volume};
use strait_control_plane::kubernetes::rbac::CA_SECRET;
use strait_tests::chart::{CONTROL_PLANE, fixture, flag, flags, pod_spec, scratch};
use strait_tests::helm::Helm;
use strait_tests::manifests::Rendered;

fn template(helm: &Helm, files: &[&Path]) -> String {
    let output = helm.template("strait-system", files);
    assert!(output.success, "helm template: {}", output.stderr);
    output.stdout
}

fn control_plane(rendered: &Rendered) -> (Deployment, PodSpec, Vec<(String, String)>) {
    let deployment = rendered
        .deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some(CONTROL_PLANE))
        .expect("the control plane Deployment")
        .clone();
    let pod = pod_spec(&deployment);
    let flags = flags(&pod.containers[0]);
    (deployment, pod, flags)
}

fn volume<'a>(pod: &'a PodSpec, name: &str) -> &'a Volume {
    pod.volumes
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

#[test]
fn every_identity_path_renders_the_same_bytes_twice() {
    let Some(helm) = Helm::find("every_identity_path_renders_the_same_bytes_twice") else {
        return;
    };
    // Every object, the webhook configuration included: the control plane makes the CA and
    // the injector's serving certificate and sets the webhook's caBundle itself.
    let default = (template(&helm, &[]), template(&helm, &[]));
    assert!(
        default.0 == default.1,
        "the default install renders differently each time"
    );
    assert!(default.0.contains("kind: MutatingWebhookConfiguration"));
    for set in ["cert-manager.yaml", "cluster-trust-bundle.yaml"] {
        let values = fixture(set);
        let first = template(&helm, &[&values]);
        let second = template(&helm, &[&values]);
        assert!(first == second, "{set}: two renders differ");
    }
}

#[test]
fn the_default_renders_no_ca_and_lets_the_control_plane_keep_one_secret() {
    let Some(helm) =
        Helm::find("the_default_renders_no_ca_and_lets_the_control_plane_keep_one_secret")
    else {
        return;
    };
    let rendered = Rendered::parse(&template(&helm, &[]));
    assert!(
        !rendered.secrets.contains_key("strait-identity"),
        "the chart renders no CA Secret"
    );
    let (_, pod, flags) = control_plane(&rendered);
    assert_eq!(flag(&flags, "--ca-secret"), "strait-identity");
    assert_eq!(flag(&flags, "--namespace"), "strait-system");
    assert_eq!(
        flag(&flags, "--issuer-cert"),
        "/var/run/strait/identity/tls.crt"
    );
    let secret = volume(&pod, "identity")
        .secret
        .as_ref()
        .expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("strait-identity"));
    assert_eq!(
        secret.optional,
        Some(true),
        "the pod starts before the Secret exists"
    );

    // RBAC: a Role in the release namespace, exactly the code's CA_SECRET permissions, `get`
    // by name only.
    let role = rendered
        .roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("strait-control-plane-ca-secret"))
        .expect("the CA Secret Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some("strait-system"));
    let rules = role.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), CA_SECRET.len());
    for (rule, permission) in rules.iter().zip(CA_SECRET) {
        assert_eq!(rule.api_groups.clone().unwrap(), [permission.group]);
        assert_eq!(rule.resources.clone().unwrap(), [permission.resource]);
        assert_eq!(rule.verbs, permission.verbs);
        if permission.verbs == ["get"] {
            assert_eq!(
                rule.resource_names.clone().unwrap(),
                ["strait-identity"],
                "get only that Secret"
            );
        }
    }
    let binding = &rendered.role_bindings[0];
    assert_eq!(binding.role_ref.name, "strait-control-plane-ca-secret");
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        (CONTROL_PLANE, Some("strait-system"))
    );
    for cluster_role in &rendered.cluster_roles {
        assert!(
            !cluster_role.rules.iter().flatten().any(|r| r
                .resources
                .iter()
                .flatten()
                .any(|res| res == "secrets")),
            "no cluster-wide Secret access"
        );
    }
}

#[test]
fn the_cert_manager_path_mounts_the_issuer_secret_and_config_map_anchors_and_cert_manager_fills_the_ca_bundle()
 {
    let Some(helm) = Helm::find(
        "the_cert_manager_path_mounts_the_issuer_secret_and_config_map_anchors_and_cert_manager_fills_the_ca_bundle",
    ) else {
        return;
    };
    let rendered = Rendered::parse(&template(&helm, &[&fixture("cert-manager.yaml")]));
    assert!(rendered.secrets.is_empty(), "no key material rendered");
    assert!(rendered.roles.is_empty(), "no Secret access needed");
    let (_, pod, flags) = control_plane(&rendered);
    assert!(!flags.iter().any(|(f, _)| f == "--ca-secret"));
    assert_eq!(
        flag(&flags, "--issuer-cert"),
        "/var/run/strait/identity/tls.crt"
    );
    assert_eq!(
        flag(&flags, "--issuer-key"),
        "/var/run/strait/identity/tls.key"
    );
    assert_eq!(
        flag(&flags, "--trust-anchors"),
        "/var/run/strait/trust-anchors/ca.crt"
    );
    let issuer = volume(&pod, "identity").secret.as_ref().unwrap();
    assert_eq!(issuer.secret_name.as_deref(), Some("strait-issuer"));
    assert_eq!(issuer.optional, None, "the external Secret must exist");
    let anchors = volume(&pod, "trust-anchors").config_map.as_ref().unwrap();
    assert_eq!(anchors.name, "strait-trust-anchors");
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "trust-anchors")
        .expect("the anchors are mounted");
    assert_eq!(mount.mount_path, "/var/run/strait/trust-anchors");

    // The webhook: no caBundle of the chart's, cert-manager's CA injector fills it from the
    // Certificate whose Secret the injector serves.
    let webhook = &rendered.webhooks[0];
    assert_eq!(
        webhook.metadata.annotations.as_ref().unwrap()["cert-manager.io/inject-ca-from"],
        "strait-system/strait-injector"
    );
    for hook in webhook.webhooks.iter().flatten() {
        assert!(hook.client_config.ca_bundle.is_none(), "{}", hook.name);
    }
    let certificate = rendered
        .custom
        .iter()
        .find(|o| o["kind"] == "Certificate")
        .expect("a cert-manager Certificate");
    assert_eq!(certificate["metadata"]["name"], "strait-injector");
    assert_eq!(certificate["spec"]["secretName"], "strait-injector-tls");
    assert_eq!(
        certificate["spec"]["issuerRef"]["name"],
        "strait-injector-issuer"
    );
    assert!(
        certificate["spec"]["dnsNames"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "strait-control-plane.strait-system.svc"),
        "the name the API server calls"
    );
    let served = volume(&pod, "injector-tls").secret.as_ref().unwrap();
    assert_eq!(served.secret_name.as_deref(), Some("strait-injector-tls"));
}

#[test]
fn cluster_trust_bundles_reach_the_control_plane_through_a_projected_volume() {
    let Some(helm) =
        Helm::find("cluster_trust_bundles_reach_the_control_plane_through_a_projected_volume")
    else {
        return;
    };
    let rendered = Rendered::parse(&template(&helm, &[&fixture("cluster-trust-bundle.yaml")]));
    let (_, pod, flags) = control_plane(&rendered);
    assert_eq!(
        flag(&flags, "--trust-anchors"),
        "/var/run/strait/trust-anchors/ca-bundle.pem"
    );
    let projected = volume(&pod, "trust-anchors").projected.as_ref().unwrap();
    let source = projected.sources.as_ref().unwrap()[0]
        .cluster_trust_bundle
        .as_ref()
        .expect("a clusterTrustBundle source");
    assert_eq!(source.path, "ca-bundle.pem");
    assert_eq!(source.signer_name.as_deref(), Some("example.com/strait"));
    assert_eq!(
        source
            .label_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["strait.dev/trust-anchors"],
        "true"
    );
    assert_eq!(source.name, None);
}

#[test]
fn contradictory_identity_values_are_refused_at_install() {
    let Some(helm) = Helm::find("contradictory_identity_values_are_refused_at_install") else {
        return;
    };
    let dir = scratch("identity-refusals");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, yaml, expected) in [
        (
            "generated CA with anchors from a ConfigMap",
            "identity:\n  trustAnchors:\n    source: configMap\n    configMap:\n      name: x\n",
            "/identity/trustAnchors/source",
        ),
        (
            "a ConfigMap source without a name",
            "identity:\n  generate: false\n  issuerSecret: issuer\n  trustAnchors:\n    source: configMap\n",
            "/identity/trustAnchors/configMap/name",
        ),
        (
            "cert-manager without an issuer",
            "injector:\n  tls:\n    certManager:\n      enabled: true\n",
            "issuerRef.name is required",
        ),
    ] {
        let path = dir.join(format!("{}.yaml", name.replace(' ', "-")));
        std::fs::write(&path, yaml).unwrap();
        let output = helm.template("strait-system", &[&path]);
        assert!(!output.success, "{name}: rendered");
        assert!(
            output.stderr.contains(expected),
            "{name}: {}",
            output.stderr
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
