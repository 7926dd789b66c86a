//! The injection decision and the JSONPatch that carries it out: a pure function of the pod,
//! whether its namespace asked for the mesh, the proxy defaults and the trust anchors.
//!
//! Nothing here does I/O or fails on what a user wrote: what the pod's annotations change is
//! decided by [`super::pod_settings`], where an unusable annotation keeps its default and
//! becomes a warning, never a reason to refuse the pod.
//!
//! Longer than 500 lines because its unit tests live beside the decision they specify (about
//! 500 lines of code: the one patch, container by container).

use std::collections::BTreeMap;
use std::num::NonZeroU16;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    LocalObjectReference, ObjectFieldSelector, Pod, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecurityContext, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::config::{AccessLog, InboundMode, InjectorConfig, Ipv6, LogFormat, PullPolicy};
use super::pod_settings::{PodSettings, pod_settings};
use super::{
    ADMIN_PORT_NAME, INBOUND_PORT_NAME, INIT_CONTAINER, INJECT, INJECTED, PROXIED, PROXY_CONTAINER,
    PROXY_INBOUND_PORT, TOKEN_DIR, TOKEN_VOLUME,
};

/// The control plane version, written into `strait.dev/injected`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The annotation `kubectl logs`/`exec` read to pick a container when none is named.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// What the injector decided for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The pod gets the mesh: apply `patch`; `warnings` go back to the user.
    Injected {
        /// The RFC 6902 patch adding the init container, the proxy and the token volume.
        patch: Patch,
        /// Problems with the pod's annotations that were worked around.
        warnings: Vec<String>,
    },
    /// The pod already has a `strait-proxy` container.
    AlreadyInjected,
    /// Neither the pod nor its namespace asked for injection.
    NotRequested,
    /// The pod opted out with `strait.dev/inject: disabled`.
    OptedOut,
    /// The pod asked for the mesh but shares the node's network namespace: its init
    /// container would rewrite the node's own NAT table, so it is admitted unchanged with
    /// [`HOST_NETWORK_WARNING`].
    HostNetwork,
}

/// What a user is told when a `hostNetwork` pod asked for the mesh and is not injected.
pub const HOST_NETWORK_WARNING: &str = "strait: not injected: the pod uses hostNetwork, so the proxy's init container would rewrite the node's own iptables rules; mesh this workload without hostNetwork or opt out with strait.dev/inject: disabled";

impl Outcome {
    /// The `result` label of `strait_injector_requests_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Injected { .. } => "injected",
            Outcome::AlreadyInjected => "already-injected",
            Outcome::NotRequested | Outcome::OptedOut => "skipped",
            Outcome::HostNetwork => "skipped-host-network",
        }
    }
}

/// The injector's own failures (never the user's): the pod is admitted unchanged.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The pod has no spec to add containers to.
    #[error("the pod has no spec")]
    NoSpec,
    /// A part of the patch could not be encoded as JSON.
    #[error("encoding the {what} as JSON: {source}")]
    Encode {
        /// Which part.
        what: &'static str,
        /// The encoder's error.
        source: serde_json::Error,
    },
}

/// Decides whether `pod` is injected and computes the patch. `namespace_enabled` says the
/// webhook's namespaceSelector chose the pod's namespace (labelled `strait.dev/inject=enabled`);
/// `anchors_pem` are the trust anchors in force, embedded in the proxy's environment.
pub fn inject(
    pod: &Pod,
    namespace_enabled: bool,
    config: &InjectorConfig,
    anchors_pem: &str,
) -> Result<Outcome, InjectError> {
    let meta = &pod.metadata;
    let asked = meta.annotations.as_ref().and_then(|a| a.get(INJECT));
    let labelled_off = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(INJECT))
        .is_some_and(|v| v == "disabled");
    match asked.map(String::as_str) {
        Some("disabled") => return Ok(Outcome::OptedOut),
        _ if labelled_off => return Ok(Outcome::OptedOut),
        Some("enabled") => {}
        _ if namespace_enabled => {}
        _ => return Ok(Outcome::NotRequested),
    }
    let spec = pod.spec.as_ref().ok_or(InjectError::NoSpec)?;
    let has_proxy = |containers: &[Container]| containers.iter().any(|c| c.name == PROXY_CONTAINER);
    if has_proxy(&spec.containers) || spec.init_containers.as_deref().is_some_and(has_proxy) {
        return Ok(Outcome::AlreadyInjected);
    }
    if spec.host_network == Some(true) {
        return Ok(Outcome::HostNetwork);
    }

    let annotation = |name: &str| meta.annotations.as_ref().and_then(|a| a.get(name));
    let (settings, warnings) = pod_settings(
        meta.annotations.as_ref().unwrap_or(&BTreeMap::new()),
        config,
    );
    // The admin port needs no skip entry: `init` never redirects it (`--admin-port`).
    let init = init_container(config, &settings);
    let proxy = proxy_container(config, &settings, anchors_pem);
    let init = encode("init container", &init)?;
    let proxy = encode("proxy container", &proxy)?;
    let volume = encode("token volume", &token_volume(config))?;

    let mut ops = Vec::new();
    let mut annotations = BTreeMap::from([
        (INJECTED.to_owned(), VERSION.to_owned()),
        (
            PROXY_INBOUND_PORT.to_owned(),
            config.ports.inbound.to_string(),
        ),
    ]);
    if !config.native_sidecar
        && annotation(DEFAULT_CONTAINER).is_none()
        && let Some(app) = spec.containers.first()
    {
        // The proxy becomes the first container; keep `kubectl logs POD` showing the app.
        annotations.insert(DEFAULT_CONTAINER.to_owned(), app.name.clone());
    }
    add_entries(
        &mut ops,
        "annotations",
        meta.annotations.is_some(),
        annotations,
    );
    add_entries(
        &mut ops,
        "labels",
        meta.labels.is_some(),
        BTreeMap::from([(PROXIED.to_owned(), "true".to_owned())]),
    );

    add_pull_secrets(&mut ops, spec.image_pull_secrets.as_deref(), config);
    match &spec.volumes {
        Some(_) => ops.push(add(&["spec", "volumes", "-"], volume)),
        None => ops.push(add(&["spec", "volumes"], Value::Array(vec![volume]))),
    }
    let sidecar_in_init = config.native_sidecar;
    match &spec.init_containers {
        Some(_) => {
            ops.push(add(&["spec", "initContainers", "0"], init));
            if sidecar_in_init {
                ops.push(add(&["spec", "initContainers", "1"], proxy.clone()));
            }
        }
        None => {
            let mut list = vec![init];
            if sidecar_in_init {
                list.push(proxy.clone());
            }
            ops.push(add(&["spec", "initContainers"], Value::Array(list)));
        }
    }
    if !sidecar_in_init {
        ops.push(add(&["spec", "containers", "0"], proxy));
    }
    Ok(Outcome::Injected {
        patch: Patch(ops),
        warnings,
    })
}

/// Adds the proxy image's pull secrets (`imagePullSecrets`) the pod does not list yet: the
/// kubelet pulls the init container and the proxy with the pod's secrets.
fn add_pull_secrets(
    ops: &mut Vec<PatchOperation>,
    existing: Option<&[LocalObjectReference]>,
    config: &InjectorConfig,
) {
    let listed = |name: &String| existing.into_iter().flatten().any(|r| &r.name == name);
    let mut missing: Vec<Value> = Vec::new();
    for name in &config.image_pull_secrets {
        if !listed(name) && !missing.iter().any(|m| m["name"] == name.as_str()) {
            missing.push(serde_json::json!({ "name": name }));
        }
    }
    match existing {
        _ if missing.is_empty() => {}
        Some(_) => {
            for secret in missing {
                ops.push(add(&["spec", "imagePullSecrets", "-"], secret));
            }
        }
        None => ops.push(add(&["spec", "imagePullSecrets"], Value::Array(missing))),
    }
}

fn encode(what: &'static str, value: &impl serde::Serialize) -> Result<Value, InjectError> {
    serde_json::to_value(value).map_err(|source| InjectError::Encode { what, source })
}

fn add(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        value,
    })
}

/// Adds `entries` to `metadata.<field>`: one operation per key when the map exists (so keys
/// already there are kept), else one creating the map.
fn add_entries(
    ops: &mut Vec<PatchOperation>,
    field: &str,
    exists: bool,
    entries: BTreeMap<String, String>,
) {
    if exists {
        for (key, value) in entries {
            ops.push(add(&["metadata", field, &key], Value::String(value)));
        }
    } else {
        let map = entries
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        ops.push(add(&["metadata", field], Value::Object(map)));
    }
}

fn port_list(ports: &[NonZeroU16]) -> String {
    let mut seen = Vec::new();
    for port in ports {
        if !seen.contains(port) {
            seen.push(*port);
        }
    }
    seen.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn pull_policy(config: &InjectorConfig) -> String {
    match config.image_pull_policy {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
    .to_owned()
}

fn resources(settings: &PodSettings) -> ResourceRequirements {
    let quantities = |map: &BTreeMap<String, String>| {
        (!map.is_empty()).then(|| {
            map.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        })
    };
    ResourceRequirements {
        requests: quantities(&settings.resources.requests),
        limits: quantities(&settings.resources.limits),
        ..Default::default()
    }
}

/// The init container that installs the iptables redirection in the pod's network namespace.
fn init_container(config: &InjectorConfig, settings: &PodSettings) -> Container {
    let mut args = vec![
        "init".to_owned(),
        "--proxy-uid".to_owned(),
        config.proxy_uid.to_string(),
        "--inbound-port".to_owned(),
        config.ports.inbound.to_string(),
        "--outbound-port".to_owned(),
        config.ports.outbound.to_string(),
        "--admin-port".to_owned(),
        config.ports.admin.to_string(),
        "--ipv6".to_owned(),
        init_ipv6(config.ipv6).to_owned(),
    ];
    for (flag, ports) in [
        ("--skip-inbound-ports", &settings.skip_inbound_ports),
        ("--skip-outbound-ports", &settings.skip_outbound_ports),
    ] {
        if !ports.is_empty() {
            args.push(flag.to_owned());
            args.push(port_list(ports));
        }
    }
    Container {
        name: INIT_CONTAINER.to_owned(),
        image: Some(config.image.clone()),
        image_pull_policy: Some(pull_policy(config)),
        args: Some(args),
        resources: Some(resources(settings)),
        security_context: Some(SecurityContext {
            // iptables needs root and these two capabilities; nothing else.
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container runtime's default seccomp profile: what the `restricted` Pod Security
/// Standard asks for, and neither container needs a syscall it filters.
fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..Default::default()
    }
}

/// `strait-proxy init --ipv6` for the setting.
fn init_ipv6(ipv6: Ipv6) -> &'static str {
    match ipv6 {
        Ipv6::Auto => "auto",
        Ipv6::Enabled => "on",
        Ipv6::Disabled => "off",
    }
}

/// A listener's addresses: `ips` with `port`, in `STRAIT_*_ADDR` syntax. Without IPv6 the
/// proxy binds only the IPv4 one; with it, both (the proxy skips the IPv6 one by itself where
/// the pod's kernel has no IPv6).
fn listen(ipv4: &str, ipv6: &str, port: NonZeroU16, family: Ipv6) -> String {
    match family {
        Ipv6::Disabled => format!("{ipv4}:{port}"),
        Ipv6::Auto | Ipv6::Enabled => format!("{ipv4}:{port},[{ipv6}]:{port}"),
    }
}

fn env_var(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn env_field(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: field_path.to_owned(),
            }),
            ..Default::default()
        }),
    }
}

fn http_probe(path: &str, port: NonZeroU16) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(port.get())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The proxy: a native sidecar (init container, `restartPolicy: Always`) or a plain container.
fn proxy_container(
    config: &InjectorConfig,
    settings: &PodSettings,
    anchors_pem: &str,
) -> Container {
    let ports = &config.ports;
    // The outbound listener is on loopback only: iptables redirects the pod's own connections
    // there, and one reachable at the pod's address would let other pods send traffic out
    // under this pod's identity.
    let loopback = |port| listen("127.0.0.1", "::1", port, config.ipv6);
    let every_address = |port| listen("0.0.0.0", "::", port, config.ipv6);
    let inbound_mode = match config.inbound_mode {
        InboundMode::Permissive => "permissive",
        InboundMode::Strict => "strict",
    };
    let log_format = match config.log_format {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    };
    let mut env = vec![
        env_var("STRAIT_MODE", "pod"),
        env_var("STRAIT_CONTROL_PLANE", &config.control_plane_address),
        env_var(
            "STRAIT_CONTROL_PLANE_IDENTITY",
            &config.control_plane_identity,
        ),
        env_var("STRAIT_TRUST_DOMAIN", &config.trust_domain),
        env_var("STRAIT_TRUST_ANCHORS_PEM", anchors_pem),
        env_field("STRAIT_NAMESPACE", "metadata.namespace"),
        env_field("STRAIT_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        env_field("STRAIT_WORKLOAD", "metadata.name"),
        env_var("STRAIT_TOKEN_FILE", format!("{TOKEN_DIR}/token")),
        env_var("STRAIT_INBOUND_MODE", inbound_mode),
        env_var("STRAIT_LOG", &settings.log_level),
        env_var("STRAIT_LOG_FORMAT", log_format),
        env_var("STRAIT_OUTBOUND_ADDR", loopback(ports.outbound)),
        env_var("STRAIT_INBOUND_ADDR", every_address(ports.inbound)),
        env_var("STRAIT_ADMIN_ADDR", every_address(ports.admin)),
        env_var("STRAIT_THREADS", settings.threads.to_string()),
        // The flag needs a value: with no opaque port, port 0, which no connection has.
        env_var(
            "STRAIT_OPAQUE_PORTS",
            if settings.opaque_ports.is_empty() {
                "0".to_owned()
            } else {
                port_list(&settings.opaque_ports)
            },
        ),
    ];
    // Set only when on: the proxy's own default is off.
    if settings.access_log == AccessLog::Json {
        env.push(env_var("STRAIT_ACCESS_LOG", AccessLog::Json.as_str()));
    }
    if let Some(tracing) = &settings.tracing {
        env.push(env_var("STRAIT_TRACE_COLLECTOR", &tracing.collector));
        env.push(env_var(
            "STRAIT_TRACE_SAMPLE_RATIO",
            tracing.sample_ratio.to_string(),
        ));
    }
    let container_port = |name: &str, port: NonZeroU16| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(port.get()),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let native = config.native_sidecar;
    Container {
        name: PROXY_CONTAINER.to_owned(),
        image: Some(config.image.clone()),
        image_pull_policy: Some(pull_policy(config)),
        args: Some(vec!["run".into()]),
        env: Some(env),
        ports: Some(vec![
            container_port(INBOUND_PORT_NAME, ports.inbound),
            container_port(ADMIN_PORT_NAME, ports.admin),
        ]),
        readiness_probe: Some(http_probe("/ready", ports.admin)),
        liveness_probe: Some(http_probe("/live", ports.admin)),
        // As a native sidecar, the app containers start only once this probe passes.
        startup_probe: native.then(|| Probe {
            period_seconds: Some(1),
            failure_threshold: Some(120),
            ..http_probe("/ready", ports.admin)
        }),
        restart_policy: native.then(|| "Always".to_owned()),
        resources: Some(resources(settings)),
        security_context: Some(SecurityContext {
            run_as_user: Some(config.proxy_uid),
            run_as_non_root: Some(true),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["ALL".into()]),
            }),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: TOKEN_VOLUME.to_owned(),
            mount_path: TOKEN_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// The projected service-account token the proxy presents to `Identity.Certify`.
fn token_volume(config: &InjectorConfig) -> Volume {
    Volume {
        name: TOKEN_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some(config.token_audience.clone()),
                    expiration_seconds: Some(config.token_expiration_seconds),
                    path: "token".to_owned(),
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANCHORS: &str = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn app_pod(annotations: Value) -> Pod {
        pod(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        }))
    }

    /// Applies the outcome's patch and returns the patched pod.
    fn patched(original: &Pod, outcome: &Outcome) -> Pod {
        let Outcome::Injected { patch, .. } = outcome else {
            panic!("not injected: {outcome:?}")
        };
        let mut doc = serde_json::to_value(original).unwrap();
        json_patch::patch(&mut doc, patch).unwrap();
        serde_json::from_value(doc).unwrap()
    }

    fn init_args(pod: &Pod) -> Vec<String> {
        let init = &pod.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
        assert_eq!(init.name, INIT_CONTAINER);
        init.args.clone().unwrap()
    }

    #[test]
    fn the_annotation_decides_unless_the_namespace_asked() {
        let config = InjectorConfig::default();
        let enabled = app_pod(serde_json::json!({"strait.dev/inject": "enabled"}));
        let disabled = app_pod(serde_json::json!({"strait.dev/inject": "disabled"}));
        let silent = app_pod(serde_json::json!({}));
        let decide = |p: &Pod, ns| inject(p, ns, &config, ANCHORS).unwrap().result();
        assert_eq!(decide(&enabled, false), "injected");
        assert_eq!(decide(&silent, false), "skipped");
        assert_eq!(decide(&silent, true), "injected");
        assert_eq!(
            inject(&disabled, true, &config, ANCHORS).unwrap(),
            Outcome::OptedOut
        );
    }

    #[test]
    fn native_sidecar_puts_init_then_proxy_before_existing_init_containers() {
        let original = pod(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "initContainers": [{"name": "migrate", "image": "app:1"}],
                "containers": [{"name": "app", "image": "app:1"}],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }
        }));
        let outcome = inject(&original, true, &InjectorConfig::default(), ANCHORS).unwrap();
        let pod = patched(&original, &outcome);
        let spec = pod.spec.as_ref().unwrap();
        let names: Vec<_> = spec
            .init_containers
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, [INIT_CONTAINER, PROXY_CONTAINER, "migrate"]);
        assert_eq!(spec.containers.len(), 1);
        let volumes: Vec<_> = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["data", TOKEN_VOLUME]);
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "web");
        assert_eq!(labels[PROXIED], "true");
        assert_eq!(
            init_args(&pod),
            [
                "init",
                "--proxy-uid",
                "2102",
                "--inbound-port",
                "4143",
                "--outbound-port",
                "4140",
                "--admin-port",
                "4191",
                "--ipv6",
                "auto"
            ]
        );
    }

    #[test]
    fn classic_mode_puts_the_proxy_first_and_keeps_kubectl_on_the_app() {
        let config = InjectorConfig {
            native_sidecar: false,
            ..Default::default()
        };
        let original = app_pod(serde_json::json!({"strait.dev/inject": "enabled"}));
        let pod = patched(
            &original,
            &inject(&original, false, &config, ANCHORS).unwrap(),
        );
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers[0].name, PROXY_CONTAINER);
        assert_eq!(spec.containers[0].restart_policy, None);
        assert_eq!(spec.containers[0].startup_probe, None);
        assert_eq!(spec.init_containers.as_ref().unwrap().len(), 1);
        let annotations = pod.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[DEFAULT_CONTAINER], "app");
        assert_eq!(annotations[INJECTED], VERSION);
        assert_eq!(annotations[PROXY_INBOUND_PORT], "4143");
    }

    #[test]
    fn skip_ports_merge_config_and_annotations_and_bad_entries_become_warnings() {
        let port = |p| NonZeroU16::new(p).unwrap();
        let config = InjectorConfig {
            skip_inbound_ports: vec![port(9000)],
            skip_outbound_ports: vec![port(5432)],
            ..Default::default()
        };
        let original = app_pod(serde_json::json!({
            "strait.dev/inject": "enabled",
            "strait.dev/skip-inbound-ports": "8080, 9000,http,70000",
            "strait.dev/skip-outbound-ports": "6379,"
        }));
        let outcome = inject(&original, false, &config, ANCHORS).unwrap();
        let Outcome::Injected { warnings, .. } = &outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(
            warnings.len(),
            1,
            "one warning per annotation: {warnings:?}"
        );
        assert!(
            warnings[0].contains("strait.dev/skip-inbound-ports")
                && warnings[0].contains("\"http,70000\""),
            "{warnings:?}"
        );
        let args = init_args(&patched(&original, &outcome));
        assert_eq!(
            args[11..],
            [
                "--skip-inbound-ports",
                "9000,8080",
                "--skip-outbound-ports",
                "5432,6379"
            ]
        );
    }

    fn proxy_env(pod: &Pod) -> BTreeMap<String, String> {
        let spec = pod.spec.as_ref().unwrap();
        let proxy = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .find(|c| c.name == PROXY_CONTAINER)
            .unwrap();
        proxy
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect()
    }

    fn injected(config: &InjectorConfig) -> Pod {
        let original = app_pod(serde_json::json!({"strait.dev/inject": "enabled"}));
        patched(
            &original,
            &inject(&original, false, config, ANCHORS).unwrap(),
        )
    }

    #[test]
    fn by_default_init_decides_ipv6_in_the_pod_and_the_proxy_listens_on_both_families() {
        let pod = injected(&InjectorConfig::default());
        let args = init_args(&pod);
        let ipv6 = args.iter().position(|a| a == "--ipv6").unwrap();
        assert_eq!(args[ipv6 + 1], "auto");
        let env = proxy_env(&pod);
        assert_eq!(env["STRAIT_OUTBOUND_ADDR"], "127.0.0.1:4140,[::1]:4140");
        assert_eq!(env["STRAIT_INBOUND_ADDR"], "0.0.0.0:4143,[::]:4143");
        assert_eq!(env["STRAIT_ADMIN_ADDR"], "0.0.0.0:4191,[::]:4191");
    }

    #[test]
    fn ipv6_enabled_makes_init_require_the_ipv6_rules() {
        let config = InjectorConfig {
            ipv6: Ipv6::Enabled,
            ..Default::default()
        };
        let args = init_args(&injected(&config));
        assert!(args.windows(2).any(|w| w == ["--ipv6", "on"]), "{args:?}");
    }

    #[test]
    fn ipv6_disabled_keeps_an_ipv4_only_pod_on_ipv4_with_the_outbound_on_loopback() {
        let config = InjectorConfig {
            ipv6: Ipv6::Disabled,
            ..Default::default()
        };
        let pod = injected(&config);
        let args = init_args(&pod);
        assert!(args.windows(2).any(|w| w == ["--ipv6", "off"]), "{args:?}");
        let env = proxy_env(&pod);
        assert_eq!(env["STRAIT_OUTBOUND_ADDR"], "127.0.0.1:4140");
        assert_eq!(env["STRAIT_INBOUND_ADDR"], "0.0.0.0:4143");
        assert_eq!(env["STRAIT_ADMIN_ADDR"], "0.0.0.0:4191");
    }

    #[test]
    fn the_proxys_own_ports_reach_init_with_the_configured_numbers() {
        let port = |p| NonZeroU16::new(p).unwrap();
        let config = InjectorConfig {
            ports: super::super::config::Ports {
                outbound: port(5140),
                inbound: port(5143),
                admin: port(5191),
            },
            ..Default::default()
        };
        let pod = injected(&config);
        let args = init_args(&pod);
        for (flag, value) in [
            ("--outbound-port", "5140"),
            ("--inbound-port", "5143"),
            ("--admin-port", "5191"),
        ] {
            assert!(args.windows(2).any(|w| w == [flag, value]), "{args:?}");
        }
        assert!(
            !args.contains(&"--skip-inbound-ports".to_owned()),
            "{args:?}"
        );
        assert_eq!(
            proxy_env(&pod)["STRAIT_OUTBOUND_ADDR"],
            "127.0.0.1:5140,[::1]:5140"
        );
    }

    #[test]
    fn a_pod_with_a_proxy_is_left_alone() {
        let config = InjectorConfig::default();
        let original = app_pod(serde_json::json!({"strait.dev/inject": "enabled"}));
        let once = patched(
            &original,
            &inject(&original, false, &config, ANCHORS).unwrap(),
        );
        assert_eq!(
            inject(&once, false, &config, ANCHORS).unwrap(),
            Outcome::AlreadyInjected
        );
    }

    #[test]
    fn a_host_network_pod_is_never_injected_even_when_asked() {
        let config = InjectorConfig::default();
        let mut pod = app_pod(serde_json::json!({"strait.dev/inject": "enabled"}));
        pod.spec.as_mut().unwrap().host_network = Some(true);
        for namespace_enabled in [false, true] {
            assert_eq!(
                inject(&pod, namespace_enabled, &config, ANCHORS).unwrap(),
                Outcome::HostNetwork
            );
        }
        pod.spec.as_mut().unwrap().host_network = Some(false);
        assert!(matches!(
            inject(&pod, false, &config, ANCHORS).unwrap(),
            Outcome::Injected { .. }
        ));
    }

    fn proxy_container_of(pod: &Pod) -> Container {
        let spec = pod.spec.as_ref().unwrap();
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .find(|c| c.name == PROXY_CONTAINER)
            .cloned()
            .unwrap()
    }

    fn injected_with(annotations: Value, config: &InjectorConfig) -> (Pod, Vec<String>) {
        let mut annotations = annotations;
        annotations["strait.dev/inject"] = Value::from("enabled");
        let original = app_pod(annotations);
        let outcome = inject(&original, false, config, ANCHORS).unwrap();
        let Outcome::Injected { warnings, .. } = &outcome else {
            panic!("{outcome:?}")
        };
        (patched(&original, &outcome), warnings.clone())
    }

    #[test]
    fn by_default_the_proxy_gets_one_thread_and_the_default_opaque_ports() {
        let pod = injected(&InjectorConfig::default());
        let env = proxy_env(&pod);
        assert_eq!(env["STRAIT_THREADS"], "1");
        assert_eq!(
            env["STRAIT_OPAQUE_PORTS"],
            strait_proto::defaults::OPAQUE_PORTS
        );
        assert!(!env.contains_key("STRAIT_TRACE_COLLECTOR"), "{env:?}");
    }

    #[test]
    fn the_proxys_threads_and_resources_follow_its_cpu_annotations() {
        let (pod, warnings) = injected_with(
            serde_json::json!({
                "strait.dev/proxy-cpu-request": "500m",
                "strait.dev/proxy-cpu-limit": "1500m",
                "strait.dev/proxy-memory-limit": "256Mi",
            }),
            &InjectorConfig::default(),
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(proxy_env(&pod)["STRAIT_THREADS"], "2");
        let resources = proxy_container_of(&pod).resources.unwrap();
        let limits = resources.limits.unwrap();
        assert_eq!(limits["cpu"].0, "1500m");
        assert_eq!(limits["memory"].0, "256Mi");
        assert_eq!(resources.requests.unwrap()["cpu"].0, "500m");
        let (pod, _) = injected_with(
            serde_json::json!({"strait.dev/proxy-cpu-limit": "4", "strait.dev/proxy-threads": "2"}),
            &InjectorConfig::default(),
        );
        assert_eq!(
            proxy_env(&pod)["STRAIT_THREADS"],
            "2",
            "the annotation wins"
        );
    }

    #[test]
    fn the_chart_cpu_limit_sets_the_threads_of_every_pod() {
        let mut config = InjectorConfig::default();
        config.resources.limits.insert("cpu".into(), "2".into());
        assert_eq!(proxy_env(&injected(&config))["STRAIT_THREADS"], "2");
    }

    #[test]
    fn log_level_opaque_ports_and_tracing_annotations_reach_the_proxy() {
        let (pod, warnings) = injected_with(
            serde_json::json!({
                "strait.dev/proxy-log-level": "debug",
                "strait.dev/opaque-ports": "7000,7001",
                "strait.dev/tracing": "enabled",
                "strait.dev/trace-collector": "http://otel.observability:4317",
                "strait.dev/trace-sample-ratio": "0.25",
            }),
            &InjectorConfig::default(),
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        let env = proxy_env(&pod);
        assert_eq!(env["STRAIT_LOG"], "debug");
        assert_eq!(env["STRAIT_OPAQUE_PORTS"], "7000,7001");
        assert_eq!(
            env["STRAIT_TRACE_COLLECTOR"],
            "http://otel.observability:4317"
        );
        assert_eq!(env["STRAIT_TRACE_SAMPLE_RATIO"], "0.25");
    }

    #[test]
    fn an_empty_opaque_ports_annotation_leaves_every_port_to_detection() {
        let (pod, _) = injected_with(
            serde_json::json!({"strait.dev/opaque-ports": ""}),
            &InjectorConfig::default(),
        );
        // The proxy's flag needs a value; no connection has destination port 0.
        assert_eq!(proxy_env(&pod)["STRAIT_OPAQUE_PORTS"], "0");
    }

    #[test]
    fn bad_annotations_inject_the_defaults_and_warn_naming_each() {
        let (pod, warnings) = injected_with(
            serde_json::json!({
                "strait.dev/proxy-memory-limit": "128MB",
                "strait.dev/proxy-threads": "many",
                "strait.dev/proxy-log-level": "strait=loud",
                "strait.dev/trace-collector": "not a url",
            }),
            &InjectorConfig::default(),
        );
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        for name in [
            "strait.dev/proxy-memory-limit",
            "strait.dev/proxy-threads",
            "strait.dev/proxy-log-level",
            "strait.dev/trace-collector",
        ] {
            assert!(
                warnings.iter().any(|w| w.contains(name)),
                "{name}: {warnings:?}"
            );
        }
        let env = proxy_env(&pod);
        assert_eq!(env["STRAIT_THREADS"], "1");
        assert_eq!(env["STRAIT_LOG"], "info");
        assert!(!env.contains_key("STRAIT_TRACE_COLLECTOR"));
        let limits = proxy_container_of(&pod).resources.unwrap().limits.unwrap();
        assert_eq!(limits["memory"].0, "128Mi");
    }

    #[test]
    fn every_container_the_injector_adds_runs_with_the_runtime_default_seccomp_profile() {
        for native_sidecar in [true, false] {
            let config = InjectorConfig {
                native_sidecar,
                ..Default::default()
            };
            let pod = injected(&config);
            let spec = pod.spec.as_ref().unwrap();
            let added: Vec<&Container> = spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .filter(|c| c.name == PROXY_CONTAINER || c.name == INIT_CONTAINER)
                .collect();
            assert_eq!(added.len(), 2);
            for container in added {
                let profile = container
                    .security_context
                    .as_ref()
                    .and_then(|s| s.seccomp_profile.as_ref())
                    .unwrap_or_else(|| panic!("{} has no seccomp profile", container.name));
                assert_eq!(profile.type_, "RuntimeDefault", "{}", container.name);
            }
        }
    }

    #[test]
    fn the_proxy_images_pull_secrets_are_added_once_to_the_pod() {
        let config = InjectorConfig {
            image_pull_secrets: vec!["registry".into(), "mirror".into()],
            ..Default::default()
        };
        let pull_secrets = |pod: &Pod| -> Vec<String> {
            pod.spec
                .as_ref()
                .unwrap()
                .image_pull_secrets
                .iter()
                .flatten()
                .map(|r| r.name.clone())
                .collect()
        };
        assert_eq!(pull_secrets(&injected(&config)), ["registry", "mirror"]);
        let mut original = app_pod(serde_json::json!({"strait.dev/inject": "enabled"}));
        original.spec.as_mut().unwrap().image_pull_secrets = Some(vec![LocalObjectReference {
            name: "mirror".into(),
        }]);
        let pod = patched(
            &original,
            &inject(&original, false, &config, ANCHORS).unwrap(),
        );
        assert_eq!(pull_secrets(&pod), ["mirror", "registry"]);
        assert!(pull_secrets(&injected(&InjectorConfig::default())).is_empty());
    }
}
