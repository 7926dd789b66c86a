//! Rendered Kubernetes manifests as typed objects: each YAML document is decoded into the
//! k8s-openapi type its `apiVersion`/`kind` claims, and must survive the round trip back to
//! JSON unchanged, so a misspelt or misplaced field (which k8s-openapi would silently drop)
//! fails the test. A kind the harness does not know fails too.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A Prometheus Operator PodMonitor: the fields the chart uses, and no others.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMonitor {
    /// `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// `PodMonitor`.
    pub kind: String,
    /// Object metadata.
    pub metadata: ObjectMeta,
    /// What to scrape.
    pub spec: PodMonitorSpec,
}

/// The PodMonitor's spec.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMonitorSpec {
    /// Which namespaces' pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<PodMonitorNamespaces>,
    /// Which pods.
    pub selector: LabelSelector,
    /// Which ports.
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

/// `namespaceSelector` of a PodMonitor.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMonitorNamespaces {
    /// Every namespace.
    pub any: bool,
}

/// One scraped port of a PodMonitor.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMetricsEndpoint {
    /// The container port's name.
    pub port: String,
    /// The metrics path.
    pub path: String,
    /// The scrape interval.
    pub interval: String,
}

/// One rendered object.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Manifest {
    /// apps/v1 Deployment.
    Deployment(Deployment),
    /// v1 Service.
    Service(Service),
    /// v1 ServiceAccount.
    ServiceAccount(ServiceAccount),
    /// v1 Secret.
    Secret(Secret),
    /// v1 ConfigMap.
    ConfigMap(ConfigMap),
    /// v1 Namespace.
    Namespace(Namespace),
    /// rbac.authorization.k8s.io/v1 ClusterRole.
    ClusterRole(ClusterRole),
    /// rbac.authorization.k8s.io/v1 ClusterRoleBinding.
    ClusterRoleBinding(ClusterRoleBinding),
    /// rbac.authorization.k8s.io/v1 Role.
    Role(Role),
    /// rbac.authorization.k8s.io/v1 RoleBinding.
    RoleBinding(RoleBinding),
    /// policy/v1 PodDisruptionBudget.
    PodDisruptionBudget(PodDisruptionBudget),
    /// admissionregistration.k8s.io/v1 MutatingWebhookConfiguration.
    MutatingWebhookConfiguration(MutatingWebhookConfiguration),
    /// apiextensions.k8s.io/v1 CustomResourceDefinition.
    CustomResourceDefinition(CustomResourceDefinition),
    /// monitoring.coreos.com/v1 PodMonitor.
    PodMonitor(PodMonitor),
    /// A custom resource of a kind whose CRD is known (`strait.dev`, `gateway.networking.k8s.io`),
    /// checked against that CRD's schema by the caller.
    Custom(Value),
}

/// API groups whose custom resources are kept as JSON for schema checks.
const CUSTOM_GROUPS: [&str; 3] = [
    "strait.dev/",
    "gateway.networking.k8s.io/",
    "cert-manager.io/",
];

/// Removes nulls, which k8s-openapi does not serialize back.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Decodes `document` as `T` and checks nothing was lost on the way.
fn strict<T: DeserializeOwned + serde::Serialize>(what: &str, document: &Value) -> T {
    let typed: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{what} does not decode: {e}\n{document:#}"));
    let back = serde_json::to_value(&typed).expect("re-encoding");
    let lost = lost_fields(&without_nulls(document.clone()), &back, "");
    assert!(
        lost.is_empty(),
        "{what} has fields its type does not know (dropped on decoding):\n{}",
        lost.join("\n")
    );
    typed
}

/// The paths present in `original` that `decoded` lacks or holds differently (numbers compare
/// by value: k8s-openapi keeps schema bounds as floats).
fn lost_fields(original: &Value, decoded: &Value, path: &str) -> Vec<String> {
    match (original, decoded) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .flat_map(|(k, v)| match b.get(k) {
                Some(w) => lost_fields(v, w, &format!("{path}.{k}")),
                None => vec![format!("{path}.{k}")],
            })
            .collect(),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .flat_map(|(i, (v, w))| lost_fields(v, w, &format!("{path}[{i}]")))
            .collect(),
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => Vec::new(),
        (a, b) if a == b => Vec::new(),
        (a, b) => vec![format!("{path}: {a} became {b}")],
    }
}

/// Parses every document of a multi-document YAML stream.
pub fn parse(yaml: &str) -> Vec<Manifest> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .unwrap_or_else(|e| panic!("the rendered YAML does not parse: {e}"));
    documents
        .into_iter()
        .filter(|d| !d.is_null())
        .map(|document| {
            let api_version = document["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let kind = document["kind"].as_str().unwrap_or_default().to_owned();
            let what = format!(
                "{api_version} {kind} {}",
                document["metadata"]["name"].as_str().unwrap_or("(no name)")
            );
            match (api_version.as_str(), kind.as_str()) {
                ("apps/v1", "Deployment") => Manifest::Deployment(strict(&what, &document)),
                ("v1", "Service") => Manifest::Service(strict(&what, &document)),
                ("v1", "ServiceAccount") => Manifest::ServiceAccount(strict(&what, &document)),
                ("v1", "Secret") => Manifest::Secret(strict(&what, &document)),
                ("v1", "ConfigMap") => Manifest::ConfigMap(strict(&what, &document)),
                ("v1", "Namespace") => Manifest::Namespace(strict(&what, &document)),
                ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                    Manifest::ClusterRole(strict(&what, &document))
                }
                ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                    Manifest::ClusterRoleBinding(strict(&what, &document))
                }
                ("rbac.authorization.k8s.io/v1", "Role") => {
                    Manifest::Role(strict(&what, &document))
                }
                ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                    Manifest::RoleBinding(strict(&what, &document))
                }
                ("policy/v1", "PodDisruptionBudget") => {
                    Manifest::PodDisruptionBudget(strict(&what, &document))
                }
                ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
                    Manifest::MutatingWebhookConfiguration(strict(&what, &document))
                }
                ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                    Manifest::CustomResourceDefinition(strict(&what, &document))
                }
                ("monitoring.coreos.com/v1", "PodMonitor") => {
                    Manifest::PodMonitor(strict(&what, &document))
                }
                (group, _) if CUSTOM_GROUPS.iter().any(|g| group.starts_with(g)) => {
                    Manifest::Custom(document)
                }
                _ => panic!("{what}: a kind the chart tests do not know"),
            }
        })
        .collect()
}

/// The rendered objects by kind, for structural checks.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Deployments.
    pub deployments: Vec<Deployment>,
    /// Services.
    pub services: Vec<Service>,
    /// ServiceAccounts.
    pub service_accounts: Vec<ServiceAccount>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, Secret>,
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// ClusterRoles.
    pub cluster_roles: Vec<ClusterRole>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Roles.
    pub roles: Vec<Role>,
    /// RoleBindings.
    pub role_bindings: Vec<RoleBinding>,
    /// PodDisruptionBudgets.
    pub pdbs: Vec<PodDisruptionBudget>,
    /// MutatingWebhookConfigurations.
    pub webhooks: Vec<MutatingWebhookConfiguration>,
    /// CustomResourceDefinitions by name.
    pub crds: BTreeMap<String, CustomResourceDefinition>,
    /// PodMonitors.
    pub pod_monitors: Vec<PodMonitor>,
    /// Custom resources.
    pub custom: Vec<Value>,
}

impl Rendered {
    /// Parses and sorts a multi-document YAML stream.
    pub fn parse(yaml: &str) -> Self {
        let mut rendered = Self::default();
        for manifest in parse(yaml) {
            let name = |meta: &ObjectMeta| meta.name.clone().expect("every object has a name");
            match manifest {
                Manifest::Deployment(o) => rendered.deployments.push(o),
                Manifest::Service(o) => rendered.services.push(o),
                Manifest::ServiceAccount(o) => rendered.service_accounts.push(o),
                Manifest::Secret(o) => {
                    rendered.secrets.insert(name(&o.metadata), o);
                }
                Manifest::ConfigMap(o) => {
                    rendered.config_maps.insert(name(&o.metadata), o);
                }
                Manifest::Namespace(o) => rendered.namespaces.push(o),
                Manifest::ClusterRole(o) => rendered.cluster_roles.push(o),
                Manifest::ClusterRoleBinding(o) => rendered.cluster_role_bindings.push(o),
                Manifest::Role(o) => rendered.roles.push(o),
                Manifest::RoleBinding(o) => rendered.role_bindings.push(o),
                Manifest::PodDisruptionBudget(o) => rendered.pdbs.push(o),
                Manifest::MutatingWebhookConfiguration(o) => rendered.webhooks.push(o),
                Manifest::CustomResourceDefinition(o) => {
                    rendered.crds.insert(name(&o.metadata), o);
                }
                Manifest::PodMonitor(o) => rendered.pod_monitors.push(o),
                Manifest::Custom(o) => rendered.custom.push(o),
            }
        }
        rendered
    }
}
