//! The Helm chart (`charts/strait/`) with the real helm: lint, render with several value sets,
//! decode every object into the k8s-openapi type it claims, and check that the objects fit
//! together and agree with the code (ports, RBAC, the injector's paths and config parser, the
//! CA loader, the configuration loader). The CRDs are checked against the policies in
//! `examples/`, and bad values against the values schema.
//!
//! Longer than 500 lines: a whole suite: every value set is checked by the same cross-object checks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args as _, Parser};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};
use strait_control_plane::ca::{Ca, CaFiles};
use strait_control_plane::inject::config::InjectorConfig;
use strait_control_plane::inject::{ADMIN_PORT_NAME, INJECT, PATH_NAMESPACE, PATH_POD, PROXIED};
use strait_control_plane::kubernetes::rbac::{INJECTOR_WEBHOOK, RBAC};
use strait_control_plane::settings::ControlPlaneConfig;
use strait_proxy::flags::ProxyFlags;
use strait_tests::admission;
use strait_tests::chart::{
    CONTROL_PLANE, ValueSet, closed_schema, documents, fixture, flag, flags, mounted_file,
    pod_labels, pod_spec, render, scratch, selected, the, validate_custom, value_sets, values,
    verify_serving_cert,
};
use strait_tests::helm::{Helm, repo_root};
use strait_tests::manifests::Rendered;

/// A flag's default, read from the binary's own flag definitions.
fn default_of(command: &clap::Command, flag: &str) -> String {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(flag))
        .and_then(|a| a.get_default_values().first())
        .and_then(|v| v.to_str())
        .unwrap_or_else(|| panic!("--{flag} has no default"))
        .to_owned()
}

fn default_port(command: &clap::Command, flag: &str) -> i32 {
    let addr: SocketAddr = default_of(command, flag)
        .parse()
        .expect("an address default");
    i32::from(addr.port())
}

/// The proxy's own listener ports in a pod (`--mode pod`, nothing else set).
fn proxy_pod_ports() -> (u16, u16, u16) {
    #[derive(Parser)]
    struct Proxy {
        #[command(flatten)]
        config: ProxyFlags,
    }
    let proxy = Proxy::try_parse_from(["strait-proxy", "--mode", "pod"]).expect("proxy flags");
    (
        proxy.config.outbound_addr().port(),
        proxy.config.inbound_addr().port(),
        proxy.config.admin_addr().port(),
    )
}

/// One rendering and the objects most checks look at.
struct Rendering<'a> {
    context: &'a str,
    ns: &'a str,
    values: Value,
    rendered: &'a Rendered,
    deployment: Deployment,
    service: Service,
    pod: PodSpec,
    container: Container,
    labels: BTreeMap<String, String>,
    container_ports: BTreeMap<String, i32>,
    service_ports: BTreeMap<String, (i32, IntOrString)>,
    control_plane_flags: clap::Command,
    control_plane_flags_passed: Vec<(String, String)>,
    cluster_domain: String,
    trust_domain: String,
}

impl<'a> Rendering<'a> {
    fn new(set: &'a ValueSet, rendered: &'a Rendered) -> Self {
        let values = values(set);
        let deployment = the(&rendered.deployments, "Deployment");
        let service = the(&rendered.services, "Service");
        let pod = pod_spec(&deployment);
        let container = the(&pod.containers, "container");
        let container_ports = container
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap(), p.container_port))
            .collect();
        let service_ports = service
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .map(|p| {
                (
                    p.name.clone().unwrap(),
                    (p.port, p.target_port.clone().unwrap()),
                )
            })
            .collect();
        Self {
            context: set.name,
            ns: set.namespace,
            cluster_domain: values["clusterDomain"].as_str().unwrap().to_owned(),
            trust_domain: values["mesh"]["trustDomain"].as_str().unwrap().to_owned(),
            values,
            rendered,
            labels: pod_labels(&deployment),
            control_plane_flags_passed: flags(&container),
            control_plane_flags: ControlPlaneConfig::augment_args(clap::Command::new("run")),
            deployment,
            service,
            pod,
            container,
            container_ports,
            service_ports,
        }
    }

    /// The file at the path `flag` names, as mounted into the control plane.
    fn mounted(&self, flag_name: &str) -> Vec<u8> {
        mounted_file(
            self.rendered,
            &self.pod,
            &self.container,
            flag(&self.control_plane_flags_passed, flag_name),
        )
    }

    /// The webhook whose caBundle the control plane keeps (`--injector-webhook`), if any.
    fn kept_webhook(&self) -> Option<String> {
        self.control_plane_flags_passed
            .iter()
            .find(|(f, _)| f == "--injector-webhook")
            .map(|(_, v)| v.clone())
    }

    /// Every check one rendering must pass.
    fn check(&self, helm: &Helm) {
        self.objects_and_selectors();
        self.control_plane_container();
        self.identity_secret();
        self.injector_config();
        self.webhook();
        self.rbac();
        self.mesh_config(helm);
        self.monitoring();
    }

    /// Namespaces, names, selectors, replicas, the PodDisruptionBudget, spreading.
    fn objects_and_selectors(&self) {
        let Rendering {
            context,
            ns,
            values,
            rendered,
            deployment,
            service,
            labels,
            ..
        } = self;
        let (ns, context) = (*ns, *context);
        // Every namespaced object lands in the release namespace.
        let account = the(&rendered.service_accounts, "ServiceAccount");
        for meta in [&deployment.metadata, &service.metadata, &account.metadata] {
            assert_eq!(meta.namespace.as_deref(), Some(ns), "{context}");
            assert_eq!(meta.name.as_deref(), Some(CONTROL_PLANE));
        }

        // Selectors select the pods.
        let spec = deployment.spec.clone().unwrap();
        assert!(
            selected(&spec.selector, labels),
            "{context}: Deployment selector"
        );
        let service_selector = LabelSelector {
            match_labels: service.spec.as_ref().and_then(|s| s.selector.clone()),
            ..Default::default()
        };
        assert!(
            selected(&service_selector, labels),
            "{context}: Service selector"
        );
        assert_eq!(labels.get(INJECT).map(String::as_str), Some("disabled"));
        let replicas = values["controlPlane"]["replicas"].as_i64().unwrap() as i32;
        assert_eq!(spec.replicas, Some(replicas), "{context}");
        // A budget only where it protects something: more than one replica.
        let budget = &values["controlPlane"]["podDisruptionBudget"];
        let pdb_enabled = budget["enabled"] == true && replicas > 1;
        assert_eq!(rendered.pdbs.len(), usize::from(pdb_enabled), "{context}");
        let count = |v: &Value| match v {
            Value::Number(n) => Some(IntOrString::Int(n.as_i64().unwrap() as i32)),
            Value::String(s) => Some(IntOrString::String(s.clone())),
            _ => None,
        };
        for pdb in &rendered.pdbs {
            let pdb_spec = pdb.spec.as_ref().unwrap();
            assert!(selected(pdb_spec.selector.as_ref().unwrap(), labels));
            match count(&budget["minAvailable"]) {
                Some(min) => {
                    assert_eq!(pdb_spec.min_available, Some(min), "{context}");
                    assert_eq!(pdb_spec.max_unavailable, None, "{context}");
                }
                None => {
                    assert_eq!(pdb_spec.max_unavailable, count(&budget["maxUnavailable"]));
                    assert_eq!(pdb_spec.min_available, None, "{context}");
                }
            }
        }

        // Scheduling values reach the pod template as given.
        let pod = pod_spec(deployment);
        let cp = &values["controlPlane"];
        let or_empty = |v: &Value, empty: Value| if v.is_null() { empty } else { v.clone() };
        assert_eq!(
            json!(pod.node_selector.clone().unwrap_or_default()),
            or_empty(&cp["nodeSelector"], json!({})),
            "{context}"
        );
        assert_eq!(
            serde_json::to_value(pod.tolerations.clone().unwrap_or_default()).unwrap(),
            or_empty(&cp["tolerations"], json!([])),
            "{context}"
        );
        assert_eq!(
            json!(pod.priority_class_name.clone().unwrap_or_default()),
            or_empty(&cp["priorityClassName"], json!("")),
            "{context}"
        );
        for (key, value) in cp["podLabels"].as_object().into_iter().flatten() {
            assert_eq!(
                labels.get(key).map(String::as_str),
                value.as_str(),
                "{context}"
            );
        }
        let spread = pod.topology_spread_constraints.clone().unwrap_or_default();
        let wanted = cp["topologySpreadConstraints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(spread.len(), wanted.len(), "{context}");
        for (constraint, want) in spread.iter().zip(&wanted) {
            assert_eq!(json!(constraint.topology_key), want["topologyKey"]);
            assert_eq!(json!(constraint.max_skew), want["maxSkew"]);
            assert_eq!(
                json!(constraint.when_unsatisfiable),
                want["whenUnsatisfiable"]
            );
            // Given or filled in by the chart, the selector picks the control plane's pods.
            assert!(
                selected(constraint.label_selector.as_ref().unwrap(), labels),
                "{context}: a topology spread constraint that selects other pods"
            );
        }
        if replicas > 1 && values["controlPlane"]["affinity"] == json!({}) {
            let affinity = pod_spec(deployment).affinity.expect("spread replicas");
            let terms = affinity
                .pod_anti_affinity
                .unwrap()
                .preferred_during_scheduling_ignored_during_execution
                .unwrap();
            assert!(selected(
                terms[0].pod_affinity_term.label_selector.as_ref().unwrap(),
                labels
            ));
        }
    }

    /// Ports, flags, probes, security contexts and resources of the control plane.
    fn control_plane_container(&self) {
        let Rendering {
            context,
            ns,
            values,
            pod,
            container,
            container_ports,
            service_ports,
            control_plane_flags,
            control_plane_flags_passed,
            cluster_domain,
            ..
        } = self;
        let (ns, context, cluster_domain) = (*ns, *context, cluster_domain.as_str());
        // The container: ports named and numbered as the code's defaults, and the listener flags
        // bind exactly those ports.
        assert_eq!(pod.service_account_name.as_deref(), Some(CONTROL_PLANE));
        for (port_name, flag_name) in [
            ("grpc", "grpc-addr"),
            ("admin", "admin-addr"),
            ("injector", "injector-addr"),
        ] {
            let default = default_port(control_plane_flags, flag_name);
            assert_eq!(
                container_ports[port_name], default,
                "{context}: {port_name}"
            );
            let bound: SocketAddr = flag(control_plane_flags_passed, &format!("--{flag_name}"))
                .parse()
                .unwrap();
            assert_eq!(i32::from(bound.port()), default);
            assert!(
                bound.ip().is_unspecified(),
                "the pod listens on all addresses"
            );
        }
        for (passed, _) in control_plane_flags_passed.iter() {
            let known = control_plane_flags
                .get_arguments()
                .any(|a| a.get_long() == Some(&passed[2..]));
            assert!(known, "{context}: the control plane has no flag {passed}");
        }
        assert_eq!(
            flag(control_plane_flags_passed, "--config-source"),
            "kubernetes"
        );
        assert_eq!(flag(control_plane_flags_passed, "--namespace"), ns);
        assert_eq!(
            flag(control_plane_flags_passed, "--service-account"),
            CONTROL_PLANE
        );
        assert_eq!(flag(control_plane_flags_passed, "--log-format"), "json");
        assert_eq!(
            flag(control_plane_flags_passed, "--log"),
            values["controlPlane"]["log"]
        );
        assert_eq!(
            flag(control_plane_flags_passed, "--token-audience"),
            values["identity"]["tokenAudience"]
        );
        for (passed, value) in [
            ("--max-grpc-connections", "maxGrpcConnections"),
            (
                "--max-connections-per-identity",
                "maxConnectionsPerIdentity",
            ),
        ] {
            assert_eq!(
                flag(control_plane_flags_passed, passed),
                values["controlPlane"][value].to_string(),
                "{context}: {passed}"
            );
        }
        let dns: Vec<&str> = control_plane_flags_passed
            .iter()
            .filter(|(f, _)| f == "--dns-name")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(
            dns,
            [
                format!("{CONTROL_PLANE}.{ns}.svc"),
                format!("{CONTROL_PLANE}.{ns}.svc.{cluster_domain}")
            ]
        );

        // Probes on the admin port; hardened security contexts.
        for (probe, path) in [
            (&container.readiness_probe, "/ready"),
            (&container.liveness_probe, "/live"),
        ] {
            let get = probe.as_ref().unwrap().http_get.clone().unwrap();
            assert_eq!(get.path.as_deref(), Some(path));
            assert_eq!(get.port, IntOrString::String("admin".into()));
        }
        let pod_security = pod.security_context.clone().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_ne!(pod_security.run_as_user, Some(0));
        assert_eq!(
            pod_security.seccomp_profile.unwrap().type_,
            "RuntimeDefault"
        );
        let security = container.security_context.clone().unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(
            security.capabilities.unwrap().drop,
            Some(vec!["ALL".to_owned()])
        );
        assert_eq!(security.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let resources = container.resources.clone().unwrap();
        let quantities = |m: Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >| { serde_json::to_value(m.unwrap_or_default()).unwrap() };
        assert_eq!(
            quantities(resources.requests),
            values["controlPlane"]["resources"]["requests"],
            "{context}"
        );
        assert_eq!(
            quantities(resources.limits),
            values["controlPlane"]["resources"]["limits"]
        );

        // The Service names real container ports; proxies and the API server reach it on the
        // ports the rest of the chart says.
        for (name, (_, target)) in service_ports.iter() {
            let IntOrString::String(target) = target else {
                panic!("{context}: Service port {name} targets a number, not a named port")
            };
            assert!(
                container_ports.contains_key(target),
                "{context}: Service port {name} targets {target}, which the container does not have"
            );
        }
        assert_eq!(
            service_ports["grpc"].0,
            default_port(control_plane_flags, "grpc-addr")
        );
        assert_eq!(service_ports["injector"].0, 443);
    }

    /// The mounted CA loads with the control plane's CA loader.
    fn identity_secret(&self) {
        let Rendering {
            context,
            ns: _,
            values,
            trust_domain,
            ..
        } = self;
        let (context, trust_domain) = (*context, trust_domain.as_str());
        // Generated: the control plane creates the Secret at first start; nothing to load
        // here (tests/tests/chart_identity.rs and ca_secret.rs cover that path).
        if values["identity"]["generate"] == true {
            assert!(
                !self.rendered.secrets.contains_key("strait-identity"),
                "{context}: the chart renders no CA"
            );
            assert_eq!(
                flag(&self.control_plane_flags_passed, "--ca-secret"),
                "strait-identity"
            );
            if self.kept_webhook().is_none() {
                self.mounted("--injector-key");
            }
            return;
        }
        // Every file the flags name is mounted from the right Secret or ConfigMap.
        let read = |flag_name: &str| self.mounted(flag_name);
        let anchors = read("--trust-anchors");
        let issuer = read("--issuer-cert");
        let issuer_key = read("--issuer-key");
        if self.kept_webhook().is_none() {
            read("--injector-key");
        }

        // The identity Secret loads with the control plane's own CA loader and signs leaves.
        let dir = scratch(&format!("{context}-ca"));
        let files = CaFiles::in_dir(&dir);
        std::fs::write(&files.trust_anchors, &anchors).unwrap();
        std::fs::write(&files.issuer_cert, &issuer).unwrap();
        std::fs::write(&files.issuer_key, &issuer_key).unwrap();
        let ca = Ca::load(&files, Duration::from_secs(3600))
            .unwrap_or_else(|e| panic!("{context}: the identity Secret does not load: {e}"));
        let id: strait_identity::SpiffeId = format!("spiffe://{trust_domain}/ns/demo/sa/web")
            .parse()
            .unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let issued = ca.sign(csr.der(), &id).expect("the chart's CA signs");
        assert_eq!(
            strait_identity::leaf::check(
                &issued.leaf,
                trust_domain,
                strait_identity::leaf::Usage::Client
            )
            .unwrap(),
            id
        );
        assert_eq!(
            anchors,
            values["identity"]["trustAnchorsPEM"]
                .as_str()
                .unwrap()
                .as_bytes()
        );
        assert_eq!(
            issued.chain.len(),
            1,
            "the supplied issuer sits below the anchor"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The injector's ConfigMap, read with its own parser.
    fn injector_config(&self) {
        let Rendering {
            context,
            ns,
            values,
            service_ports,
            cluster_domain,
            trust_domain,
            ..
        } = self;
        let (ns, context, cluster_domain, trust_domain) = (
            *ns,
            *context,
            cluster_domain.as_str(),
            trust_domain.as_str(),
        );
        let injector_config = String::from_utf8(self.mounted("--injector-config")).unwrap();
        // The injector's configuration parses with the injector's own parser and says what the
        // values say.
        let config = InjectorConfig::parse(&injector_config, "proxy.yaml")
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        let proxy = &values["proxy"];
        assert_eq!(
            config.control_plane_address,
            format!(
                "{CONTROL_PLANE}.{ns}.svc.{cluster_domain}:{}",
                service_ports["grpc"].0
            )
        );
        assert_eq!(
            config.control_plane_identity,
            format!("spiffe://{trust_domain}/ns/{ns}/sa/{CONTROL_PLANE}")
        );
        assert_eq!(config.trust_domain, trust_domain);
        let tag = proxy["image"]["tag"].as_str().filter(|t| !t.is_empty());
        assert_eq!(
            config.image,
            format!(
                "{}:{}",
                proxy["image"]["repository"].as_str().unwrap(),
                tag.unwrap_or(env!("CARGO_PKG_VERSION"))
            )
        );
        assert_eq!(
            serde_json::to_value(config.image_pull_policy).unwrap(),
            proxy["image"]["pullPolicy"]
        );
        assert_eq!(json!(config.proxy_uid), proxy["uid"]);
        assert_eq!(serde_json::to_value(config.ports).unwrap(), proxy["ports"]);
        assert_eq!(json!(config.log_level), proxy["logLevel"]);
        assert_eq!(
            serde_json::to_value(config.log_format).unwrap(),
            proxy["logFormat"]
        );
        assert_eq!(
            serde_json::to_value(config.inbound_mode).unwrap(),
            proxy["inboundMode"]
        );
        assert_eq!(serde_json::to_value(config.ipv6).unwrap(), proxy["ipv6"]);
        assert_eq!(
            serde_json::to_value(&config.skip_inbound_ports).unwrap(),
            proxy["skipInboundPorts"]
        );
        assert_eq!(
            serde_json::to_value(&config.skip_outbound_ports).unwrap(),
            proxy["skipOutboundPorts"]
        );
        assert_eq!(json!(config.native_sidecar), proxy["nativeSidecar"]);
        assert_eq!(
            serde_json::to_value(&config.opaque_ports).unwrap(),
            proxy["opaquePorts"]
        );
        assert_eq!(
            serde_json::to_value(&config.tracing).unwrap(),
            proxy["tracing"],
            "{context}"
        );
        assert_eq!(
            json!(config.image_pull_secrets),
            proxy.get("imagePullSecrets").cloned().unwrap_or(json!([])),
            "{context}"
        );
        assert_eq!(
            serde_json::to_value(&config.resources).unwrap(),
            proxy["resources"]
        );
        assert_eq!(
            json!(config.token_audience),
            values["identity"]["tokenAudience"]
        );
        assert_eq!(
            json!(config.token_expiration_seconds),
            values["identity"]["tokenExpirationSeconds"]
        );
        if context == "default" {
            assert_eq!(
                config,
                InjectorConfig::default(),
                "the injector's defaults are the chart's defaults"
            );
            let (outbound, inbound, admin) = proxy_pod_ports();
            assert_eq!(
                (
                    config.ports.outbound.get(),
                    config.ports.inbound.get(),
                    config.ports.admin.get()
                ),
                (outbound, inbound, admin),
                "the chart's proxy ports are the proxy's own defaults"
            );
        }
    }

    /// The MutatingWebhookConfiguration and the serving certificate.
    fn webhook(&self) {
        let Rendering {
            context,
            ns,
            values,
            rendered,
            service_ports,
            ..
        } = self;
        let (ns, context) = (*ns, *context);
        // The webhook: both entries call the injector through the Service, with a caBundle that
        // verifies the serving certificate for the Service's name; or, by default, none: the
        // control plane serves its own certificate and sets the caBundle of the webhook it is
        // named (--injector-webhook).
        let webhook_config = the(&rendered.webhooks, "MutatingWebhookConfiguration");
        let webhooks = webhook_config.webhooks.clone().unwrap();
        assert_eq!(webhooks.len(), 2);
        let kept = self.kept_webhook();
        if let Some(kept) = &kept {
            assert_eq!(
                webhook_config.metadata.name.as_ref(),
                Some(kept),
                "{context}"
            );
            assert!(
                !rendered.secrets.contains_key("strait-injector-tls"),
                "{context}"
            );
            assert!(
                webhooks.iter().all(|w| w.client_config.ca_bundle.is_none()),
                "{context}: the chart renders no caBundle the control plane keeps"
            );
        }
        let serving = kept.is_none().then(|| {
            let tls = &rendered.secrets["strait-injector-tls"];
            assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
            (self.mounted("--injector-cert"), tls)
        });
        let mut excluded = vec![ns.to_owned(), "kube-system".to_owned()];
        for extra in values["injector"]["excludeNamespaces"].as_array().unwrap() {
            excluded.push(extra.as_str().unwrap().to_owned());
        }
        let mut paths = BTreeSet::new();
        for webhook in &webhooks {
            let client = &webhook.client_config;
            let target = client.service.clone().expect("a Service reference");
            assert_eq!(
                (target.name.as_str(), target.namespace.as_str()),
                (CONTROL_PLANE, ns)
            );
            assert_eq!(target.port, Some(service_ports["injector"].0));
            let path = target.path.clone().unwrap();
            paths.insert(path.clone());
            assert_eq!(
                webhook.failure_policy.as_ref(),
                values["injector"]["failurePolicy"]
                    .as_str()
                    .map(str::to_owned)
                    .as_ref()
            );
            assert_eq!(
                webhook.timeout_seconds.map(i64::from),
                values["injector"]["timeoutSeconds"].as_i64()
            );
            // Dry-run aware: a skipped hostNetwork pod's Event is not posted for a dry run.
            assert_eq!(webhook.side_effects, "NoneOnDryRun");
            assert_eq!(webhook.admission_review_versions, ["v1"]);
            let rules = webhook.rules.clone().unwrap();
            let rule = the(&rules, "rule");
            assert_eq!(rule.operations, Some(vec!["CREATE".to_owned()]));
            assert_eq!(rule.api_groups, Some(vec![String::new()]));
            assert_eq!(rule.resources, Some(vec!["pods".to_owned()]));
            let expressions = webhook
                .namespace_selector
                .clone()
                .unwrap()
                .match_expressions
                .unwrap();
            let names = expressions
                .iter()
                .find(|e| e.key == "kubernetes.io/metadata.name")
                .expect("namespaces excluded by name");
            assert_eq!(names.operator, "NotIn");
            assert_eq!(names.values.clone().unwrap(), excluded, "{context}");
            let inject = expressions.iter().find(|e| e.key == INJECT).unwrap();
            let expected_operator = if path == PATH_NAMESPACE {
                "In"
            } else {
                "NotIn"
            };
            assert_eq!(inject.operator, expected_operator, "{path}");
            assert_eq!(inject.values.clone().unwrap(), ["enabled"]);
            let object = webhook
                .object_selector
                .clone()
                .unwrap()
                .match_expressions
                .unwrap();
            assert_eq!(
                (object[0].key.as_str(), object[0].operator.as_str()),
                (INJECT, "NotIn")
            );
            assert_eq!(object[0].values.clone().unwrap(), ["disabled"]);

            let Some((serving_cert, tls)) = &serving else {
                continue;
            };
            let ca_bundle = client.ca_bundle.clone().expect("a caBundle").0;
            assert_eq!(
                ca_bundle,
                tls.data.as_ref().unwrap()["ca.crt"].0,
                "the Secret's ca.crt is the caBundle"
            );
            verify_serving_cert(
                &ca_bundle,
                serving_cert,
                &format!("{CONTROL_PLANE}.{ns}.svc"),
            );
        }
        assert_eq!(
            paths,
            BTreeSet::from([PATH_POD.to_owned(), PATH_NAMESPACE.to_owned()])
        );
    }

    /// The ClusterRole grants exactly what the code declares.
    fn rbac(&self) {
        let Rendering {
            context,
            ns,
            rendered,
            ..
        } = self;
        let (ns, context) = (*ns, *context);
        // RBAC: exactly the permissions the control plane declares, bound to its account; the
        // one named grant is the webhook it keeps (INJECTOR_WEBHOOK), only when it keeps one.
        let kept = self.kept_webhook();
        let role = the(&rendered.cluster_roles, "ClusterRole");
        let granted: BTreeSet<(String, String, String)> = role
            .rules
            .iter()
            .flatten()
            .flat_map(|rule| {
                assert!(rule.non_resource_urls.is_none());
                let webhook_rule = rule
                    .resources
                    .iter()
                    .flatten()
                    .any(|r| r == "mutatingwebhookconfigurations");
                assert_eq!(
                    rule.resource_names.as_deref(),
                    webhook_rule
                        .then(|| kept.as_ref().map(std::slice::from_ref))
                        .flatten(),
                    "{context}: only the kept webhook is granted, by name"
                );
                let groups = rule.api_groups.clone().unwrap_or_default();
                let resources = rule.resources.clone().unwrap_or_default();
                let verbs = rule.verbs.clone();
                groups.into_iter().flat_map(move |g| {
                    let verbs = verbs.clone();
                    resources.clone().into_iter().flat_map(move |r| {
                        let g = g.clone();
                        verbs
                            .clone()
                            .into_iter()
                            .map(move |v| (g.clone(), r.clone(), v))
                    })
                })
            })
            .collect();
        let declared: BTreeSet<(String, String, String)> = RBAC
            .iter()
            .chain(kept.iter().flat_map(|_| INJECTOR_WEBHOOK))
            .flat_map(|p| {
                p.verbs
                    .iter()
                    .map(|v| (p.group.to_owned(), p.resource.to_owned(), (*v).to_owned()))
            })
            .collect();
        assert_eq!(
            granted, declared,
            "{context}: RBAC grants exactly what the code uses"
        );
        assert!(!granted.iter().any(|(_, r, v)| r == "*" || v == "*"));
        let binding = the(&rendered.cluster_role_bindings, "ClusterRoleBinding");
        assert_eq!(binding.role_ref.kind, "ClusterRole");
        assert_eq!(Some(binding.role_ref.name.clone()), role.metadata.name);
        let subject = the(binding.subjects.as_deref().unwrap(), "subject");
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", CONTROL_PLANE, Some(ns))
        );
    }

    /// The `default` MeshConfig.
    fn mesh_config(&self, helm: &Helm) {
        let Rendering {
            context,
            values,
            rendered,
            trust_domain,
            ..
        } = self;
        let (context, trust_domain) = (*context, trust_domain.as_str());
        // The default MeshConfig: valid for its CRD, and read by the control plane's loader as the
        // values say.
        let mesh = the(&rendered.custom, "custom resource");
        assert_eq!(mesh["kind"], "MeshConfig");
        assert_eq!(mesh["metadata"]["name"], "default");
        validate_custom(helm, rendered, &mesh).unwrap_or_else(|e| panic!("{context}: {e}"));
        let dir = scratch(&format!("{context}-mesh"));
        std::fs::write(dir.join("mesh.yaml"), mesh.to_string()).unwrap();
        let model = strait_control_plane::config::load(&dir)
            .unwrap_or_else(|e| panic!("{context}: the control plane refuses the MeshConfig: {e}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(model.mesh.trust_domain, trust_domain);
        let pascal = |kebab: &str| {
            kebab
                .split('-')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect::<String>()
        };
        assert_eq!(
            format!("{:?}", model.mesh.inbound_mode),
            pascal(values["mesh"]["inboundMode"].as_str().unwrap())
        );
        assert_eq!(
            format!("{:?}", model.mesh.default_authorization),
            pascal(values["mesh"]["defaultAuthorization"].as_str().unwrap())
        );
    }

    /// The dashboard ConfigMap and the PodMonitors.
    fn monitoring(&self) {
        let Rendering {
            values,
            rendered,
            labels,
            container_ports,
            ..
        } = self;
        // Monitoring objects, when asked for.
        let monitoring = &values["monitoring"];
        let dashboard = rendered.config_maps.get("strait-dashboard");
        assert_eq!(
            dashboard.is_some(),
            monitoring["grafanaDashboard"]["enabled"] == true
        );
        if let Some(dashboard) = dashboard {
            let shipped =
                std::fs::read_to_string(repo_root().join("examples/grafana/strait-dashboard.json"))
                    .unwrap();
            let data = dashboard.data.as_ref().unwrap();
            assert_eq!(data["strait-dashboard.json"].trim(), shipped.trim());
            assert_eq!(
                dashboard.metadata.labels.as_ref().unwrap()["grafana_dashboard"],
                "1"
            );
        }
        assert_eq!(
            rendered.pod_monitors.len(),
            if monitoring["podMonitor"]["enabled"] == true {
                2
            } else {
                0
            }
        );
        for monitor in &rendered.pod_monitors {
            let endpoint = the(&monitor.spec.pod_metrics_endpoints, "endpoint");
            assert_eq!(
                json!(endpoint.interval),
                monitoring["podMonitor"]["interval"]
            );
            match monitor.metadata.name.as_deref() {
                Some("strait-proxies") => {
                    assert_eq!(
                        monitor.spec.selector.match_labels.clone().unwrap(),
                        BTreeMap::from([(PROXIED.to_owned(), "true".to_owned())])
                    );
                    assert_eq!(endpoint.port, ADMIN_PORT_NAME);
                }
                Some("strait-control-plane") => {
                    assert!(selected(&monitor.spec.selector, labels));
                    assert!(container_ports.contains_key(&endpoint.port));
                }
                other => panic!("unexpected PodMonitor {other:?}"),
            }
        }
    }
}

#[test]
fn helm_lint_is_clean_for_every_value_set() {
    let Some(helm) = Helm::find("helm_lint_is_clean_for_every_value_set") else {
        return;
    };
    let dir = scratch("lint");
    for set in value_sets(&dir) {
        let files: Vec<&Path> = set.files.iter().map(PathBuf::as_path).collect();
        for strict in [false, true] {
            let output = helm.lint(strict, &files);
            assert!(
                output.success,
                "{} (strict {strict}): helm lint failed:\n{}{}",
                set.name, output.stdout, output.stderr
            );
            assert!(
                output
                    .stdout
                    .contains("1 chart(s) linted, 0 chart(s) failed"),
                "{}",
                output.stdout
            );
            assert!(
                !output.stdout.contains("[WARNING]") && !output.stdout.contains("[ERROR]"),
                "{} (strict {strict}):\n{}",
                set.name,
                output.stdout
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_install_notes_warn_loudly_about_a_generated_ca_only() {
    let Some(helm) = Helm::find("the_install_notes_warn_loudly_about_a_generated_ca_only") else {
        return;
    };
    let dir = scratch("notes");
    for set in value_sets(&dir).into_iter().take(2) {
        let chart = strait_tests::helm::chart_dir().display().to_string();
        let mut args = vec![
            "install".to_owned(),
            "strait".to_owned(),
            chart,
            "--namespace".to_owned(),
            set.namespace.to_owned(),
            "--dry-run=client".to_owned(),
        ];
        for file in &set.files {
            args.push("--values".to_owned());
            args.push(file.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = helm.run(&args);
        assert!(output.success, "{}: {}", set.name, output.stderr);
        let notes = &output.stdout[output.stdout.find("NOTES:").expect("install notes")..];
        let warned = notes.contains("WARNING: QUICK-START IDENTITY, NOT FOR PRODUCTION.");
        assert_eq!(
            warned,
            values(&set)["identity"]["generate"] == true,
            "{}:\n{notes}",
            set.name
        );
        assert!(notes.contains(&format!(
            "kubectl -n {} rollout status deploy/{CONTROL_PLANE}",
            set.namespace
        )));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_value_set_renders_typed_objects_that_fit_together_and_the_code() {
    let Some(helm) =
        Helm::find("every_value_set_renders_typed_objects_that_fit_together_and_the_code")
    else {
        return;
    };
    let dir = scratch("render");
    for set in value_sets(&dir) {
        let rendered = render(&helm, &set);
        Rendering::new(&set, &rendered).check(&helm);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_crds_accept_the_example_policies_and_every_field_the_control_plane_reads() {
    let test = "the_crds_accept_the_example_policies_and_every_field_the_control_plane_reads";
    let Some(helm) = Helm::find(test) else {
        return;
    };
    let dir = scratch("crds");
    let rendered = render(&helm, &value_sets(&dir).remove(0));
    let _ = std::fs::remove_dir_all(&dir);
    let kinds: BTreeMap<String, (String, String)> = rendered
        .crds
        .values()
        .map(|crd| {
            (
                crd.spec.names.kind.clone(),
                (crd.spec.group.clone(), crd.spec.scope.clone()),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([
            (
                "AuthorizationPolicy".to_owned(),
                ("strait.dev".to_owned(), "Namespaced".to_owned())
            ),
            (
                "BackendPolicy".to_owned(),
                ("strait.dev".to_owned(), "Namespaced".to_owned())
            ),
            (
                "MeshConfig".to_owned(),
                ("strait.dev".to_owned(), "Cluster".to_owned())
            ),
        ])
    );

    // The examples' strait.dev documents are valid for the CRDs.
    let root = repo_root();
    let mut checked = 0;
    for file in [
        "examples/local/policies.yaml",
        "examples/local/mesh.yaml",
        "examples/kubernetes/policies.yaml",
    ] {
        for doc in documents(&root.join(file)) {
            if doc["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("strait.dev/"))
            {
                validate_custom(&helm, &rendered, &doc)
                    .unwrap_or_else(|e| panic!("{file}: {} is refused: {e}", doc["kind"]));
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 5);

    // A file setting every CRD field once: the loader accepts it, the CRDs accept it, and it
    // covers every property the CRDs define, so the two agree on names and types.
    let every = fixture("every-policy-field.yaml");
    let dir = scratch("every-field");
    std::fs::copy(&every, dir.join("policies.yaml")).unwrap();
    strait_control_plane::config::load(&dir)
        .unwrap_or_else(|e| panic!("the control plane refuses {}: {e}", every.display()));
    let _ = std::fs::remove_dir_all(&dir);
    fn paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = format!("{prefix}.{k}");
                    out.insert(path.clone());
                    paths(v, &path, out);
                }
            }
            Value::Array(items) => items
                .iter()
                .for_each(|v| paths(v, &format!("{prefix}[]"), out)),
            _ => {}
        }
    }
    fn schema_paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        if let Some(props) = schema["properties"].as_object() {
            for (k, v) in props {
                let path = format!("{prefix}.{k}");
                out.insert(path.clone());
                schema_paths(v, &path, out);
            }
        }
        if schema.get("items").is_some() {
            schema_paths(&schema["items"], &format!("{prefix}[]"), out);
        }
    }
    for doc in documents(&every) {
        if !doc["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("strait.dev/"))
        {
            continue;
        }
        validate_custom(&helm, &rendered, &doc)
            .unwrap_or_else(|e| panic!("every-policy-field.yaml: {} is refused: {e}", doc["kind"]));
        let crd = rendered
            .crds
            .values()
            .find(|c| c.spec.names.kind == doc["kind"])
            .unwrap();
        let mut defined = BTreeSet::new();
        schema_paths(
            &closed_schema(crd)["properties"]["spec"],
            "spec",
            &mut defined,
        );
        let mut used = BTreeSet::new();
        paths(&doc["spec"], "spec", &mut used);
        let missing: Vec<_> = defined.difference(&used).collect();
        assert!(
            missing.is_empty(),
            "every-policy-field.yaml does not set {} fields: {missing:?}",
            doc["kind"]
        );
    }

    // Wrong types, unknown fields, bad enums and "exactly one" violations are refused, and
    // helm's validator names the field.
    let backend = documents(&root.join("examples/local/policies.yaml")).remove(0);
    let authorization = documents(&root.join("examples/local/policies.yaml")).remove(1);
    let with = |doc: &Value, pointer: &str, value: Value| {
        let mut doc = doc.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        doc.pointer_mut(parent).unwrap()[key] = value;
        doc
    };
    for (doc, field, expect) in [
        (
            with(&backend, "/spec/maxPendingRequests", json!("many")),
            "/spec/maxPendingRequests",
            "want integer",
        ),
        (
            with(
                &backend,
                "/spec/circuitBreaker/consecutiveFailures",
                json!(0),
            ),
            "/spec/circuitBreaker/consecutiveFailures",
            "minimum",
        ),
        (
            with(&backend, "/spec/loadBalancer", json!("Random")),
            "/spec/loadBalancer",
            "must be one of 'PeakEWMA', 'RoundRobin'",
        ),
        (
            with(&backend, "/spec/connectTimeout", json!("1 second")),
            "/spec/connectTimeout",
            "pattern",
        ),
        (
            with(
                &backend,
                "/spec/circuitBreaker/consecutiveFailure",
                json!(3),
            ),
            "/spec/circuitBreaker",
            "consecutiveFailure",
        ),
        (
            with(&authorization, "/spec/targetRef/port", json!("http")),
            "/spec/targetRef/port",
            "want integer",
        ),
        (
            with(
                &authorization,
                "/spec/from",
                json!([{"identity": "spiffe://cluster.local/ns/a/sa/b", "namespace": "a"}]),
            ),
            "/spec/from/0",
            "maxProperties",
        ),
        (
            with(&authorization, "/spec/from", json!([])),
            "/spec/from",
            "minItems",
        ),
    ] {
        let error = validate_custom(&helm, &rendered, &doc).expect_err(&format!(
            "{field} = {} is accepted",
            doc.pointer(field).map_or(Value::Null, Clone::clone)
        ));
        assert!(
            error.contains(field) && error.contains(expect),
            "the error for {field} should name it and say {expect:?}:\n{error}"
        );
    }
}

#[test]
fn invalid_values_are_refused_at_install_with_the_schemas_message() {
    let test = "invalid_values_are_refused_at_install_with_the_schemas_message";
    let Some(helm) = Helm::find(test) else {
        return;
    };
    let dir = scratch("invalid");
    for (name, values, expect) in [
        (
            "wrong type",
            "proxy:\n  uid: two\n",
            &["/proxy/uid", "want integer"][..],
        ),
        (
            "unknown key",
            "proxy:\n  colour: blue\n",
            &["/proxy", "colour"][..],
        ),
        (
            "bad enum",
            "injector:\n  failurePolicy: Sometimes\n",
            &["/injector/failurePolicy", "must be one of 'Ignore', 'Fail'"][..],
        ),
        (
            "ipv6 enum",
            "proxy:\n  ipv6: \"on\"\n",
            &["/proxy/ipv6", "'auto', 'enabled', 'disabled'"][..],
        ),
        (
            "port 0",
            "proxy:\n  ports:\n    admin: 0\n",
            &["/proxy/ports/admin", "minimum"][..],
        ),
        (
            "port 70000",
            "proxy:\n  ports:\n    inbound: 70000\n",
            &["/proxy/ports/inbound", "maximum"][..],
        ),
        (
            "mesh enum",
            "mesh:\n  defaultAuthorization: Deny\n",
            &["/mesh/defaultAuthorization", "'allow-all'"][..],
        ),
        (
            "no identity",
            "identity:\n  generate: false\n",
            &["/identity/trustAnchorsPEM", "pattern"][..],
        ),
        (
            "half a certificate",
            "injector:\n  tls:\n    certPEM: \"-----BEGIN CERTIFICATE-----\"\n",
            &["/injector/tls/keyPEM"][..],
        ),
        (
            "short token",
            "identity:\n  tokenExpirationSeconds: 60\n",
            &["/identity/tokenExpirationSeconds", "minimum"][..],
        ),
    ] {
        let file = dir.join(format!("{}.yaml", name.replace(' ', "-")));
        std::fs::write(&file, values).unwrap();
        for output in [
            helm.template("strait-system", &[&file]),
            helm.lint(false, &[&file]),
        ] {
            assert!(!output.success, "{name}: accepted:\n{}", output.stdout);
            let said = format!("{}{}", output.stdout, output.stderr);
            assert!(
                said.contains("values don't meet the specifications of the schema"),
                "{name}: not refused by the schema:\n{said}"
            );
            for needle in expect {
                assert!(
                    said.contains(needle),
                    "{name}: the message lacks {needle:?}:\n{said}"
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_rendered_secrets_and_injector_config_run_the_real_control_plane() {
    let test = "the_rendered_secrets_and_injector_config_run_the_real_control_plane";
    let Some(helm) = Helm::find(test) else {
        return;
    };
    let dir = scratch("run");
    // The set whose CA the chart renders (by default the control plane creates it).
    let set = value_sets(&dir).remove(1);
    let rendered = render(&helm, &set);
    let secret =
        |name: &str, key: &str| rendered.secrets[name].data.as_ref().unwrap()[key].0.clone();
    for sub in ["identity", "tls", "config"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for key in ["trust-anchors.pem", "issuer.crt", "issuer.key"] {
        std::fs::write(
            dir.join("identity").join(key),
            secret("strait-identity", key),
        )
        .unwrap();
    }
    for key in ["tls.crt", "tls.key"] {
        std::fs::write(
            dir.join("tls").join(key),
            secret("strait-injector-tls", key),
        )
        .unwrap();
    }
    let proxy_yaml = rendered.config_maps["strait-injector-config"]
        .data
        .as_ref()
        .unwrap()["proxy.yaml"]
        .clone();
    std::fs::write(dir.join("proxy.yaml"), &proxy_yaml).unwrap();
    let path = |p: &str| dir.join(p).display().to_string();
    let control_plane = strait_tests::control_plane::ControlPlane::start(
        &dir.join("config"),
        &[
            ("--trust-anchors", path("identity/trust-anchors.pem")),
            ("--issuer-cert", path("identity/issuer.crt")),
            ("--issuer-key", path("identity/issuer.key")),
            ("--injector-addr", "127.0.0.1:0".into()),
            ("--injector-cert", path("tls/tls.crt")),
            ("--injector-key", path("tls/tls.key")),
            ("--injector-config", path("proxy.yaml")),
        ],
    );
    let addr: SocketAddr = control_plane
        .process
        .logs()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|json| json["fields"]["message"] == "injector listening")
        .and_then(|json| json["fields"]["addr"].as_str()?.parse().ok())
        .expect("the injector's address");

    // The API server's view: the webhook's caBundle, the Service's DNS name.
    let ca_bundle = rendered.webhooks[0].webhooks.as_ref().unwrap()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap()
        .0;
    let mut pod = admission::pod_from_template(&admission::read_fixture("istio/hello-probes.yaml"));
    pod["metadata"]["annotations"] = json!({"strait.dev/inject": "enabled"});
    let review = admission::pod_create_review(&pod, "hello", "chart");
    let (status, body) = admission::post(
        addr,
        &String::from_utf8(ca_bundle).unwrap(),
        &format!("{CONTROL_PLANE}.{}.svc", set.namespace),
        PATH_POD,
        review.to_string().as_bytes(),
    )
    .await
    .expect("the API server's request succeeds");
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["uid"], "chart");
    let patched = admission::apply(&pod, &answer);
    let proxy = &patched.spec.unwrap().init_containers.unwrap()[1];
    let anchors = proxy
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "STRAIT_TRUST_ANCHORS_PEM")
        .and_then(|e| e.value.clone())
        .unwrap();
    assert_eq!(
        strait_identity::pem::certificates(&anchors, "env").unwrap(),
        strait_identity::pem::certificates(
            &String::from_utf8(secret("strait-identity", "trust-anchors.pem")).unwrap(),
            "secret"
        )
        .unwrap(),
        "pods get the chart's trust anchors"
    );
    drop(control_plane);
    let _ = std::fs::remove_dir_all(&dir);
}
