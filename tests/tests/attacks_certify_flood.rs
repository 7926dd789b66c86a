//! A flood of junk `Identity.Certify` calls at a control plane reading Kubernetes: each one
//! carries a real-looking token, so if the CSR were looked at only after the token, every
//! call would cost the API server a TokenReview. The CSR is checked first, so junk costs
//! nothing upstream, and a proper request still gets its certificate.

use rcgen::{CertificateParams, KeyPair};
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::store::CertStore;
use strait_proto::identity::v1::CertifyRequest;
use strait_proto::identity::v1::identity_client::IdentityClient;
use strait_proxy::control_plane::ControlPlane as ControlPlaneClient;
use strait_tests::control_plane::ControlPlane;
use strait_tests::kube_api::{FakeApi, KnownToken};
use strait_tests::snapshot::TempDir;
use tonic::Code;

const AUDIENCE: &str = "strait.dev/identity";
const WEB: &str = "spiffe://cluster.local/ns/demo/sa/web";

/// How many junk requests the flood sends.
const FLOOD: usize = 40;

fn client(
    control_plane: &ControlPlane,
    anchors: &std::path::Path,
) -> IdentityClient<tonic::transport::Channel> {
    let anchors = strait_identity::pem::read_certificates(anchors).unwrap();
    let bundle = TrustBundle::new("cluster.local", anchors).unwrap();
    let cp_identity: SpiffeId = "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane"
        .parse()
        .unwrap();
    let channel = ControlPlaneClient::new(
        control_plane.grpc.to_string(),
        cp_identity,
        bundle,
        CertStore::new(WEB.parse().unwrap()),
    )
    .channel(false);
    IdentityClient::new(channel)
}

fn csr(algorithm: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
    let key = KeyPair::generate_for(algorithm).unwrap();
    CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_junk_csrs_with_a_token_costs_no_token_review() {
    let api = FakeApi::start(&[]).await;
    let token = format!("projected-token-web-{}", fastrand::u64(..));
    api.add_token(
        &token,
        KnownToken {
            username: "system:serviceaccount:demo:web".into(),
            audiences: vec![AUDIENCE.into()],
        },
    );
    let dir = TempDir::new("certify-flood");
    let ca = dir.path().join("ca");
    let control_plane =
        ControlPlane::start_kubernetes(&api.kubeconfig, &[("--dev-ca", ca.display().to_string())]);
    let mut client = client(&control_plane, &ca.join("trust-anchors.pem"));

    let mut tampered = csr(&rcgen::PKCS_ECDSA_P256_SHA256);
    let at = tampered.len() - 3;
    tampered[at] ^= 0x55;
    let junk: [(&str, Vec<u8>); 4] = [
        ("garbage", b"not a certificate signing request".to_vec()),
        // Over the CSR cap (16 KiB), under the gRPC message cap (64 KiB): the CSR check refuses it.
        ("oversized", vec![0x30; 32 * 1024]),
        ("bad signature", tampered),
        ("P-384 key", csr(&rcgen::PKCS_ECDSA_P384_SHA384)),
    ];
    for i in 0..FLOOD {
        let (what, csr_der) = &junk[i % junk.len()];
        let status = client
            .certify(CertifyRequest {
                token: token.clone(),
                identity: WEB.into(),
                csr_der: csr_der.clone(),
            })
            .await
            .expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }
    let reviews = api.token_reviews();
    assert_eq!(
        reviews.len(),
        0,
        "{FLOOD} junk CSRs cost {} TokenReviews",
        reviews.len()
    );

    // A proper request still costs exactly one review and gets its certificate.
    let response = client
        .certify(CertifyRequest {
            token: token.clone(),
            identity: WEB.into(),
            csr_der: csr(&rcgen::PKCS_ECDSA_P256_SHA256),
        })
        .await
        .expect("a proper request is certified")
        .into_inner();
    assert!(!response.leaf_der.is_empty());
    assert_eq!(api.token_reviews().len(), 1);
}
