//! The injector's side of the admission webhook, as the API server sees it: a control plane
//! serving the injector on loopback, AdmissionReviews built from recorded ones, and an HTTPS
//! client that verifies the serving certificate against the webhook's caBundle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::control_plane::ControlPlane;

/// The DNS name the chart's webhook reaches the injector by.
pub const SERVICE_NAME: &str = "strait-control-plane.strait-system.svc";

/// The admission fixtures (see `tests/fixtures/k8s/admission/README.md`).
pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/k8s/admission")
        .join(path)
}

/// Reads a JSON or YAML fixture into JSON.
pub fn read_fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(fixture(path))
        .unwrap_or_else(|e| panic!("reading fixture {path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parsing fixture {path}: {e}"))
}

/// A serving certificate for `dns_name` and the CA that signed it, as PEM.
pub struct ServingIdentity {
    /// The CA certificate (what a webhook's caBundle holds).
    pub ca_pem: String,
    /// The leaf certificate.
    pub cert_pem: String,
    /// The leaf's key.
    pub key_pem: String,
}

impl ServingIdentity {
    /// Generates a CA and a leaf for `dns_name`.
    pub fn generate(dns_name: &str) -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.distinguished_name
            .push(DnType::CommonName, "test webhook CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("leaf key");
        let mut leaf = CertificateParams::new(vec![dns_name.to_owned()]).expect("leaf params");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf.signed_by(&key, &issuer).expect("leaf certificate");
        Self {
            ca_pem: ca_cert.pem(),
            cert_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `tls.crt`, `tls.key` and `ca.crt` into `dir`.
    pub fn write(&self, dir: &Path) {
        std::fs::write(dir.join("tls.crt"), &self.cert_pem).expect("writing tls.crt");
        std::fs::write(dir.join("tls.key"), &self.key_pem).expect("writing tls.key");
        std::fs::write(dir.join("ca.crt"), &self.ca_pem).expect("writing ca.crt");
    }
}

/// A control plane serving the injector, in a scratch directory of its own.
pub struct Injector {
    /// The control plane process.
    pub control_plane: ControlPlane,
    /// The injector's address.
    pub addr: SocketAddr,
    /// The scratch directory: `config/` (empty local config), `ca/` (dev CA), `tls/`.
    pub dir: PathBuf,
    /// The serving certificate's CA (PEM).
    pub ca_pem: String,
}

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh scratch directory for test `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strait-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

impl Injector {
    /// Starts a control plane (development CA, empty local configuration) whose injector
    /// uses the proxy defaults in `injector_config` (YAML) and a serving certificate for
    /// [`SERVICE_NAME`].
    pub fn start(name: &str, injector_config: &str) -> Self {
        let serving = ServingIdentity::generate(SERVICE_NAME);
        Self::start_with(name, injector_config, &serving)
    }

    /// As [`Injector::start`], with a given serving certificate.
    pub fn start_with(name: &str, injector_config: &str, serving: &ServingIdentity) -> Self {
        Self::launch(name, injector_config, serving, |dir, flags| {
            ControlPlane::start(&dir.join("config"), flags)
        })
    }

    /// As [`Injector::start`], with the control plane's configuration from the Kubernetes API
    /// that `kubeconfig` reaches (the stand-in API server of `kube_api`).
    pub fn start_kubernetes(name: &str, injector_config: &str, kubeconfig: &Path) -> Self {
        let serving = ServingIdentity::generate(SERVICE_NAME);
        Self::launch(name, injector_config, &serving, |_, flags| {
            ControlPlane::start_kubernetes(kubeconfig, flags)
        })
    }

    /// Writes the injector's files into a fresh scratch directory and starts the control plane
    /// with `start(dir, injector flags)`.
    fn launch(
        name: &str,
        injector_config: &str,
        serving: &ServingIdentity,
        start: impl FnOnce(&Path, &[(&str, String)]) -> ControlPlane,
    ) -> Self {
        let dir = scratch(name);
        for sub in ["config", "tls"] {
            std::fs::create_dir_all(dir.join(sub)).expect("creating a directory");
        }
        serving.write(&dir.join("tls"));
        std::fs::write(dir.join("proxy.yaml"), injector_config).expect("writing proxy.yaml");
        let path = |p: &str| dir.join(p).display().to_string();
        let control_plane = start(
            &dir,
            &[
                ("--dev-ca", path("ca")),
                ("--injector-addr", "127.0.0.1:0".into()),
                ("--injector-cert", path("tls/tls.crt")),
                ("--injector-key", path("tls/tls.key")),
                ("--injector-config", path("proxy.yaml")),
            ],
        );
        let addr = control_plane
            .process
            .logs()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|json| json["fields"]["message"] == "injector listening")
            .and_then(|json| json["fields"]["addr"].as_str()?.parse().ok())
            .expect("the control plane logs the injector's address before it is ready");
        Self {
            control_plane,
            addr,
            dir,
            ca_pem: serving.ca_pem.clone(),
        }
    }

    /// The development CA's trust anchors, as the control plane holds them.
    pub fn trust_anchors_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca/trust-anchors.pem")).expect("reading anchors")
    }

    /// POSTs `body` to `path` over HTTPS, verifying the injector's certificate as the API
    /// server does. Returns the status and the body.
    pub async fn post(&self, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        post(self.addr, &self.ca_pem, SERVICE_NAME, path, body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// POSTs an AdmissionReview and returns the status and the decoded JSON answer.
    pub async fn review(&self, path: &str, review: &Value) -> (u16, Value) {
        let (status, body) = self.post(path, review.to_string().as_bytes()).await;
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, json)
    }
}

/// POSTs `body` to `https://<server_name><path>` at `addr`, trusting only `ca_pem`.
pub async fn post(
    addr: SocketAddr,
    ca_pem: &str,
    server_name: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let mut roots = RootCertStore::empty();
    for cert in strait_identity::pem::certificates(ca_pem, "caBundle").map_err(|e| e.to_string())? {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let mut config = ClientConfig::builder_with_provider(strait_identity::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| e.to_string())?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, server_name)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok((status, body))
}

/// An AdmissionReview for creating `pod` in `namespace`: the recorded GKE review with its
/// object, names and uid replaced (the envelope — kinds, resources, userInfo, options — stays
/// as the API server sent it).
pub fn pod_create_review(pod: &Value, namespace: &str, uid: &str) -> Value {
    let mut review = read_fixture("kube-rs/admissionreview-v1-pod-create.webhook_body.json");
    let request = &mut review["request"];
    request["uid"] = Value::String(uid.to_owned());
    request["namespace"] = Value::String(namespace.to_owned());
    // A pod with only a generateName has no name yet: the API server leaves the field out.
    let object = request.as_object_mut().expect("a request object");
    match pod["metadata"].get("name") {
        Some(name) => object.insert("name".into(), name.clone()),
        None => object.remove("name"),
    };
    let mut pod = pod.clone();
    pod["metadata"]["namespace"] = Value::String(namespace.to_owned());
    request["object"] = pod;
    review
}

/// The pod a Deployment's ReplicaSet would create from its template: the template's metadata
/// and spec, a generated name, and the fields the API server defaults before mutating
/// admission.
pub fn pod_from_template(deployment: &Value) -> Value {
    let template = &deployment["spec"]["template"];
    let name = deployment["metadata"]["name"]
        .as_str()
        .expect("a named Deployment");
    let mut metadata = template["metadata"].clone();
    metadata["generateName"] = Value::String(format!("{name}-7d4b9c8f5b-"));
    let mut spec = template["spec"].clone();
    spec["restartPolicy"] = "Always".into();
    if spec.get("serviceAccountName").is_none() {
        spec["serviceAccountName"] = "default".into();
    }
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// Decodes the answer's base64 patch, if any.
pub fn patch_of(answer: &Value) -> Option<json_patch::Patch> {
    use base64::Engine as _;
    let patch = answer["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("the patch is base64");
    Some(serde_json::from_slice(&bytes).expect("the patch is an RFC 6902 JSON patch"))
}

/// Applies the answer's patch to `pod` and decodes the result as a Pod.
pub fn apply(pod: &Value, answer: &Value) -> k8s_openapi::api::core::v1::Pod {
    let patch = patch_of(answer).expect("the answer carries a patch");
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &patch).expect("the patch applies to the pod");
    serde_json::from_value(doc).expect("the patched pod is a Pod")
}
