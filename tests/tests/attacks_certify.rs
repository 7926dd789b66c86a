//! Attack: whoever holds a bootstrap token for the control plane's own service account asks
//! `Identity.Certify` for the control plane's identity. With that certificate it could serve
//! proxies snapshots and trust anchors, since a proxy trusts the control plane by identity.
//!
//! The control plane refuses to issue any identity it reserves: its own, and every identity in
//! its own namespace. That holds whoever vouches for the token: local tokens from `Workload`
//! objects, or the Kubernetes API server's TokenReview.

use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::store::CertStore;
use strait_proto::identity::v1::CertifyRequest;
use strait_proto::identity::v1::identity_client::IdentityClient;
use strait_tests::control_plane::ControlPlane;
use strait_tests::kube_api::{FakeApi, KnownToken};
use strait_tests::mesh::MeshBuilder;
use strait_tests::metrics::Metrics;
use strait_tests::snapshot::TempDir;
use tonic::Code;

const CONTROL_PLANE: &str = "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane";
const FRONTEND: &str = "spiffe://cluster.local/ns/demo/sa/frontend";

fn identity_client(
    grpc: std::net::SocketAddr,
    anchors: &std::path::Path,
    control_plane: &str,
) -> IdentityClient<tonic::transport::Channel> {
    let anchors = strait_identity::pem::read_certificates(anchors).unwrap();
    let bundle = TrustBundle::new("cluster.local", anchors).unwrap();
    let store = CertStore::new(FRONTEND.parse().unwrap());
    let channel = strait_proxy::control_plane::ControlPlane::new(
        grpc.to_string(),
        control_plane.parse::<SpiffeId>().unwrap(),
        bundle,
        store,
    );
    IdentityClient::new(channel.channel(false))
}

fn csr() -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

fn hex(digest: [u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `Workload` at `address` in `namespace` running as `service_account`, whose token is
/// `token`.
fn workload_yaml(
    name: &str,
    address: &str,
    namespace: &str,
    service_account: &str,
    token: &str,
) -> String {
    format!(
        "---\napiVersion: strait.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec:\n  serviceAccount: {service_account}\n  address: {address}\n  \
         bootstrapToken: {{sha256: {}}}\n",
        hex(strait_control_plane::tokens::sha256(token.as_bytes()))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_the_control_planes_service_account_gets_no_certificate() {
    let impostor_token = format!("impostor-{}", fastrand::u64(..));
    let neighbour_token = format!("neighbour-{}", fastrand::u64(..));
    let mesh = MeshBuilder::new()
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .yaml(
            "impostors.yaml",
            &format!(
                "{}{}",
                workload_yaml(
                    "impostor",
                    "127.0.0.5",
                    "strait-system",
                    "strait-control-plane",
                    &impostor_token
                ),
                workload_yaml(
                    "neighbour",
                    "127.0.0.6",
                    "strait-system",
                    "metrics-agent",
                    &neighbour_token
                ),
            ),
        )
        .start();
    let mut client = identity_client(mesh.control_plane.grpc, &mesh.anchors, CONTROL_PLANE);

    for (token, identity) in [
        (&impostor_token, CONTROL_PLANE),
        (
            &neighbour_token,
            "spiffe://cluster.local/ns/strait-system/sa/metrics-agent",
        ),
    ] {
        let outcome = client
            .certify(CertifyRequest {
                token: token.clone(),
                identity: identity.into(),
                csr_der: csr(),
            })
            .await;
        let status = match outcome {
            Ok(_) => panic!("the control plane issued a certificate for {identity}"),
            Err(status) => status,
        };
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains(identity)
                && status.message().contains("reserved for the control plane"),
            "the refusal names the identity and why: {:?}",
            status.message()
        );
        assert!(!status.message().contains(token.as_str()));
    }

    // Ordinary workloads are certified as before.
    let issued = client
        .certify(CertifyRequest {
            token: mesh.workload("frontend-1").token.clone(),
            identity: FRONTEND.into(),
            csr_der: csr(),
        })
        .await;
    assert!(issued.is_ok(), "{issued:?}");

    let metrics = Metrics::fetch(mesh.control_plane.admin).await;
    assert_eq!(
        metrics.sum(
            "strait_identity_certificates_refused_total",
            &[("reason", "reserved-identity")]
        ),
        2.0
    );
    assert!(
        mesh.control_plane
            .process
            .wait_logged("reserved-identity", Duration::from_secs(5))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_review_vouching_for_the_control_planes_account_gets_no_certificate() {
    // The control plane runs under the identity its settings give, not the default one.
    const OWN: &str = "spiffe://cluster.local/ns/mesh-control/sa/strait";
    let api = FakeApi::start(&[]).await;
    let dir = TempDir::new("certify-reserved");
    let token = format!("projected-{}", fastrand::u64(..));
    let ordinary = format!("projected-web-{}", fastrand::u64(..));
    for (token, username) in [
        (&token, "system:serviceaccount:mesh-control:strait"),
        (&ordinary, "system:serviceaccount:demo:web"),
    ] {
        api.add_token(
            token,
            KnownToken {
                username: username.into(),
                audiences: vec!["strait.dev/identity".into()],
            },
        );
    }
    let ca = dir.path().join("ca");
    let control_plane = ControlPlane::start_kubernetes(
        &api.kubeconfig,
        &[
            ("--dev-ca", ca.display().to_string()),
            ("--namespace", "mesh-control".into()),
            ("--service-account", "strait".into()),
        ],
    );
    let mut client = identity_client(control_plane.grpc, &ca.join("trust-anchors.pem"), OWN);

    let status = match client
        .certify(CertifyRequest {
            token: token.clone(),
            identity: OWN.into(),
            csr_der: csr(),
        })
        .await
    {
        Ok(_) => panic!("the control plane issued its own identity {OWN} to a workload"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains("reserved for the control plane"),
        "{:?}",
        status.message()
    );

    let issued = client
        .certify(CertifyRequest {
            token: ordinary,
            identity: "spiffe://cluster.local/ns/demo/sa/web".into(),
            csr_der: csr(),
        })
        .await;
    assert!(issued.is_ok(), "{issued:?}");
}
