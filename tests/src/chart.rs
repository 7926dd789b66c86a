//! The chart tests' world: the value sets, rendering with the real helm, and the checks that
//! need more than one object (mounted files, selectors, schemas, certificates).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::{ServerName, UnixTime};
use serde_json::{Value, json};

use crate::admission::{self, ServingIdentity};
use crate::helm::Helm;
use crate::manifests::Rendered;

/// The control plane's name: Deployment, Service, ServiceAccount and identity.
pub const CONTROL_PLANE: &str = "strait-control-plane";

/// One way to install the chart.
pub struct ValueSet {
    /// What the set shows.
    pub name: &'static str,
    /// The release namespace.
    pub namespace: &'static str,
    /// Values files, applied in order over values.yaml.
    pub files: Vec<PathBuf>,
}

/// A file in `tests/fixtures/chart/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/chart")
        .join(name)
}

/// A fresh scratch directory for a chart test.
pub fn scratch(name: &str) -> PathBuf {
    admission::scratch(&format!("chart-{name}"))
}

/// Values supplying the mesh CA (a real anchor and a separate issuer) and the injector's
/// serving certificate, as a production install does.
pub fn supplied_identity_values(dir: &Path, namespace: &str) -> PathBuf {
    let (anchor, issuer, key) = strait_control_plane::ca::generate_pair(
        "cluster.local",
        "supplied",
        time::Duration::days(30),
        time::Duration::days(10),
    )
    .expect("generating a CA");
    let serving = ServingIdentity::generate(&format!("{CONTROL_PLANE}.{namespace}.svc"));
    let values = json!({
        "identity": {
            "generate": false,
            "trustAnchorsPEM": anchor,
            "issuer": {"certPEM": issuer, "keyPEM": key},
        },
        "injector": {"tls": {
            "certPEM": serving.cert_pem,
            "keyPEM": serving.key_pem,
            "caBundlePEM": serving.ca_pem,
        }},
        "controlPlane": {"log": "strait_control_plane=debug,info"},
    });
    let path = dir.join("supplied-identity.yaml");
    std::fs::write(&path, values.to_string()).expect("writing values");
    path
}

/// The value sets every chart test renders: the defaults, a supplied CA and serving
/// certificate (in another namespace), classic sidecars with strict mTLS and skip ports, a
/// production shape (3 replicas, PDB, resources, monitoring), the chart's own values-ha.yaml,
/// and a subchart install (`global`) with the common scheduling and proxy overrides. `dir` receives generated files.
pub fn value_sets(dir: &Path) -> Vec<ValueSet> {
    vec![
        ValueSet {
            name: "default",
            namespace: "strait-system",
            files: vec![],
        },
        ValueSet {
            name: "supplied-identity",
            namespace: "mesh",
            files: vec![supplied_identity_values(dir, "mesh")],
        },
        ValueSet {
            name: "classic-strict",
            namespace: "strait-system",
            files: vec![fixture("classic-strict.yaml")],
        },
        ValueSet {
            name: "ha",
            namespace: "strait-system",
            files: vec![fixture("ha.yaml")],
        },
        ValueSet {
            name: "values-ha",
            namespace: "strait-system",
            files: vec![crate::helm::chart_dir().join("values-ha.yaml")],
        },
        ValueSet {
            name: "subchart-overrides",
            namespace: "platform",
            files: vec![fixture("subchart-overrides.yaml")],
        },
    ]
}

/// The merged values a set installs with: values.yaml overlaid with the set's files.
pub fn values(set: &ValueSet) -> Value {
    fn merge(base: &mut Value, over: Value) {
        match (base, over) {
            (Value::Object(base), Value::Object(over)) => {
                for (k, v) in over {
                    merge(base.entry(k).or_insert(Value::Null), v);
                }
            }
            (base, over) => *base = over,
        }
    }
    let read = |path: &Path| -> Value {
        serde_saphyr::from_str(&std::fs::read_to_string(path).expect("reading values"))
            .expect("values parse")
    };
    let mut values = read(&crate::helm::chart_dir().join("values.yaml"));
    for file in &set.files {
        merge(&mut values, read(file));
    }
    values
}

/// `helm template` with the set, decoded; panics with helm's message on failure.
pub fn render(helm: &Helm, set: &ValueSet) -> Rendered {
    let files: Vec<&Path> = set.files.iter().map(PathBuf::as_path).collect();
    let output = helm.template(set.namespace, &files);
    assert!(
        output.success,
        "{}: helm template failed:\n{}",
        set.name, output.stderr
    );
    Rendered::parse(&output.stdout)
}

/// Whether `selector` (matchLabels only) selects objects labelled `labels`.
pub fn selected(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    assert!(
        selector.match_expressions.is_none(),
        "selectors here use matchLabels only"
    );
    let wanted = selector.match_labels.clone().unwrap_or_default();
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The only item of `items`.
pub fn the<T: Clone>(items: &[T], what: &str) -> T {
    assert_eq!(items.len(), 1, "exactly one {what}");
    items[0].clone()
}

/// The Deployment's pod spec.
pub fn pod_spec(deployment: &Deployment) -> PodSpec {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("a pod template")
}

/// The Deployment's pod labels.
pub fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

/// `--flag value` pairs of the control plane's arguments (after `run`).
pub fn flags(container: &Container) -> Vec<(String, String)> {
    let args = container.args.clone().expect("arguments");
    assert_eq!(args[0], "run");
    args[1..]
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair.get(1).cloned().unwrap_or_default()))
        .collect()
}

/// The value of `--name` in `flags`.
pub fn flag<'a>(flags: &'a [(String, String)], name: &str) -> &'a str {
    flags
        .iter()
        .find(|(f, _)| f == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} is not passed"))
}

/// The bytes of the file at `path` inside the control plane's container, read from the Secret
/// or ConfigMap mounted at its directory.
pub fn mounted_file(
    rendered: &Rendered,
    pod: &PodSpec,
    container: &Container,
    path: &str,
) -> Vec<u8> {
    let (dir, file) = path.rsplit_once('/').expect("an absolute path");
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {dir} for {path}"));
    assert_eq!(mount.read_only, Some(true), "{dir} is mounted read-only");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the mount's volume");
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().expect("a secret name");
        let secret = &rendered.secrets[&name];
        secret.data.as_ref().expect("data")[file].0.clone()
    } else if let Some(config_map) = &volume.config_map {
        let config_map = &rendered.config_maps[&config_map.name];
        config_map.data.as_ref().expect("data")[file]
            .clone()
            .into_bytes()
    } else {
        panic!(
            "{path}: volume {} is neither a Secret nor a ConfigMap",
            volume.name
        )
    }
}

/// Verifies `cert_pem` (leaf first) against `ca_pem` for `dns_name` with WebPKI, as the API
/// server verifies the webhook.
pub fn verify_serving_cert(ca_pem: &[u8], cert_pem: &[u8], dns_name: &str) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        strait_identity::pem::certificates(&String::from_utf8_lossy(ca_pem), "caBundle").unwrap()
    {
        roots.add(cert).unwrap();
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        strait_identity::tls::provider(),
    )
    .build()
    .unwrap();
    let chain =
        strait_identity::pem::certificates(&String::from_utf8_lossy(cert_pem), "tls.crt").unwrap();
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(dns_name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap_or_else(|e| {
            panic!("the caBundle does not verify the serving certificate for {dns_name}: {e}")
        });
}

/// The schema of a CRD's first version, closed to unknown fields the way the API server's
/// strict field validation (kubectl's default) refuses them.
pub fn closed_schema(crd: &CustomResourceDefinition) -> Value {
    fn close(schema: &mut Value) {
        let Value::Object(map) = schema else { return };
        if map.contains_key("properties")
            && !map.contains_key("x-kubernetes-preserve-unknown-fields")
        {
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
        if let Some(Value::Object(props)) = map.get_mut("properties") {
            props.values_mut().for_each(close);
        }
        if let Some(items) = map.get_mut("items") {
            close(items);
        }
    }
    let version = &crd.spec.versions[0];
    let mut schema = serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("a schema"),
    )
    .unwrap();
    close(&mut schema);
    schema
}

/// Validates a custom resource against the rendered CRD of its kind.
pub fn validate_custom(helm: &Helm, rendered: &Rendered, object: &Value) -> Result<(), String> {
    let (group, version) = object["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .expect("a group/version");
    let crd = rendered
        .crds
        .values()
        .find(|crd| crd.spec.group == group && crd.spec.names.kind == object["kind"])
        .unwrap_or_else(|| panic!("no CRD for {group} {}", object["kind"]));
    assert_eq!(crd.spec.versions[0].name, version);
    helm.validate(&closed_schema(crd), object)
}

/// The non-empty documents of a YAML file.
pub fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}
