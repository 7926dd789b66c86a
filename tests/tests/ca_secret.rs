//! The CA kept in a Secret (`--ca-secret`, the chart's default): the real control plane,
//! against the stand-in API server, creates the Secret at first start, uses the winner's CA
//! when another replica created it first, reads an existing one without replacing it, refuses
//! one that holds no CA, and never reaches outside its own namespace. "Uses" is checked as a
//! proxy sees it: the control plane's TLS verifies against the Secret's `ca.crt`, and a real
//! `Certify` returns a leaf that chains to it.

use std::process::Command;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use serde_json::{Value, json};
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::store::CertStore;
use strait_proto::identity::v1::CertifyRequest;
use strait_proto::identity::v1::identity_client::IdentityClient;
use strait_tests::binaries;
use strait_tests::control_plane::ControlPlane;
use strait_tests::kube_api::{FakeApi, KnownToken, SECRETS};
use strait_tests::process::Process;
use x509_parser::prelude::{FromDer, X509Certificate};

const NAMESPACE: &str = "strait-system";
const SECRET: &str = "strait-identity";
const WEB: &str = "spiffe://cluster.local/ns/demo/sa/web";
const TOKEN: &str = "token-of-demo-web";

fn start(api: &FakeApi) -> ControlPlane {
    api.add_token(
        TOKEN,
        KnownToken {
            username: "system:serviceaccount:demo:web".into(),
            audiences: vec!["strait.dev/identity".into()],
        },
    );
    ControlPlane::start_kubernetes(
        &api.kubeconfig,
        &[
            ("--ca-secret", SECRET.into()),
            ("--namespace", NAMESPACE.into()),
        ],
    )
}

/// Runs a control plane that must refuse to start; returns its logs.
fn refused(api: &FakeApi, flags: &[(&str, &str)]) -> String {
    let mut command = Command::new(binaries::path("strait-control-plane"));
    command
        .arg("run")
        .args(["--config-source", "kubernetes"])
        .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &api.kubeconfig);
    for (flag, value) in flags {
        command.arg(flag).arg(value);
    }
    let mut process = Process::spawn(
        "strait-control-plane",
        command,
        "strait-control-plane listening",
    );
    let status = process.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "the control plane started");
    process.logs().join("\n")
}

fn secret_key(secret: &Value, key: &str) -> String {
    use base64::Engine as _;
    let encoded = secret["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("the Secret has no {key}: {secret}"));
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

/// A Secret as another replica (or an operator) would have created it, with a fresh CA.
fn ca_secret() -> Value {
    let (cert, key) =
        strait_control_plane::ca::generate_self_signed("cluster.local", time::Duration::days(30))
            .unwrap();
    serde_json::to_value(strait_control_plane::kubernetes::ca_secret::secret_for(
        NAMESPACE, SECRET, &cert, &key,
    ))
    .unwrap()
}

/// Certifies `web` through the control plane's TLS verified against `anchors_pem`; returns
/// the leaf. Fails if the control plane serves another CA's certificate.
async fn certify_trusting(control_plane: &ControlPlane, anchors_pem: &str) -> Vec<u8> {
    let anchors = strait_identity::pem::certificates(anchors_pem, "ca.crt").unwrap();
    let bundle = TrustBundle::new("cluster.local", anchors).unwrap();
    let cp_identity: SpiffeId =
        format!("spiffe://cluster.local/ns/{NAMESPACE}/sa/strait-control-plane")
            .parse()
            .unwrap();
    let channel = strait_proxy::control_plane::ControlPlane::new(
        control_plane.grpc.to_string(),
        cp_identity,
        bundle,
        CertStore::new(WEB.parse().unwrap()),
    )
    .channel(false);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    IdentityClient::new(channel)
        .certify(CertifyRequest {
            token: TOKEN.into(),
            identity: WEB.into(),
            csr_der: csr,
        })
        .await
        .expect("Certify through TLS verified by the Secret's ca.crt")
        .into_inner()
        .leaf_der
}

fn assert_signed_by(leaf_der: &[u8], anchor_pem: &str) {
    let anchor = x509_parser::pem::parse_x509_pem(anchor_pem.as_bytes())
        .unwrap()
        .1;
    let anchor = anchor.parse_x509().unwrap();
    let (_, leaf) = X509Certificate::from_der(leaf_der).unwrap();
    leaf.verify_signature(Some(anchor.public_key()))
        .expect("the leaf is signed by the Secret's CA");
}

fn secret_requests(api: &FakeApi) -> Vec<String> {
    api.requests()
        .into_iter()
        .filter(|r| r.contains("/secrets"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_ca_secret_the_control_plane_creates_one_and_certifies_with_it() {
    let api = FakeApi::start(&[]).await;
    let control_plane = start(&api);
    let secret = api
        .secret(NAMESPACE, SECRET)
        .expect("the control plane created its CA Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls", "{secret}");
    let anchors = secret_key(&secret, "ca.crt");
    assert_eq!(
        anchors,
        secret_key(&secret, "tls.crt"),
        "one CA: anchor and issuer"
    );
    let leaf = certify_trusting(&control_plane, &anchors).await;
    assert_signed_by(&leaf, &anchors);
    assert!(
        control_plane.process.logged("CA loaded from its Secret")
            && control_plane
                .process
                .logs()
                .iter()
                .any(|l| l.contains("\"origin\":\"created\"")),
        "{:#?}",
        control_plane.process.logs()
    );
    // The key never reaches a log line.
    let key = secret_key(&secret, "tls.key");
    let key_body = key.lines().nth(1).expect("a PEM body line");
    assert!(
        !control_plane
            .process
            .logs()
            .iter()
            .any(|l| l.contains(key_body) || l.contains("PRIVATE KEY")),
        "the CA key was logged"
    );
    assert_eq!(
        secret_requests(&api),
        [
            format!("GET /api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}"),
            format!("POST /api/v1/namespaces/{NAMESPACE}/secrets?"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_loses_the_create_race_uses_the_winners_ca() {
    let api = FakeApi::start(&[]).await;
    let winner = ca_secret();
    api.lose_next_secret_create_to(winner.clone());
    let control_plane = start(&api);
    let stored = api.secret(NAMESPACE, SECRET).unwrap();
    assert_eq!(
        stored["data"], winner["data"],
        "the winner's Secret stays as it was"
    );
    let anchors = secret_key(&winner, "ca.crt");
    let leaf = certify_trusting(&control_plane, &anchors).await;
    assert_signed_by(&leaf, &anchors);
    assert!(
        control_plane
            .process
            .logs()
            .iter()
            .any(|l| l.contains("\"origin\":\"created-by-another-replica\"")),
        "{:#?}",
        control_plane.process.logs()
    );
    assert_eq!(
        secret_requests(&api),
        [
            format!("GET /api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}"),
            format!("POST /api/v1/namespaces/{NAMESPACE}/secrets?"),
            format!("GET /api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}"),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_ca_secret_is_read_and_never_replaced() {
    let api = FakeApi::start(&[]).await;
    let existing = ca_secret();
    api.apply(SECRETS, existing.clone());
    let control_plane = start(&api);
    let anchors = secret_key(&existing, "ca.crt");
    let leaf = certify_trusting(&control_plane, &anchors).await;
    assert_signed_by(&leaf, &anchors);
    assert_eq!(
        secret_requests(&api),
        [format!(
            "GET /api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}"
        )],
        "read, not created"
    );
    assert_eq!(
        api.secret(NAMESPACE, SECRET).unwrap()["data"],
        existing["data"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_secret_that_holds_no_ca_is_refused_by_name_and_left_alone() {
    let api = FakeApi::start(&[]).await;
    // A serving certificate, not a CA, planted under the CA Secret's name.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = CertificateParams::new(vec!["planted.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .pem();
    let planted = serde_json::to_value(strait_control_plane::kubernetes::ca_secret::secret_for(
        NAMESPACE,
        SECRET,
        &cert,
        &key.serialize_pem(),
    ))
    .unwrap();
    api.apply(SECRETS, planted.clone());
    let logs = refused(&api, &[("--ca-secret", SECRET), ("--namespace", NAMESPACE)]);
    assert!(
        logs.contains(&format!("Secret {NAMESPACE}/{SECRET} key ca.crt"))
            && logs.contains("is not a CA certificate"),
        "{logs}"
    );
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");
    assert_eq!(
        api.secret(NAMESPACE, SECRET).unwrap()["data"],
        planted["data"]
    );
    assert!(
        !secret_requests(&api).iter().any(|r| r.starts_with("POST")),
        "a refused Secret is never replaced"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ca_secret_is_never_read_or_created_outside_the_control_planes_namespace() {
    let api = FakeApi::start(&[]).await;
    api.apply(SECRETS, {
        let mut tenant = ca_secret();
        tenant["metadata"]["namespace"] = json!("tenant");
        tenant
    });
    let logs = refused(&api, &[("--ca-secret", SECRET), ("--namespace", "tenant")]);
    assert!(
        logs.contains("own namespace strait-system") && logs.contains("--namespace is tenant"),
        "{logs}"
    );
    assert_eq!(secret_requests(&api), Vec::<String>::new());
}
