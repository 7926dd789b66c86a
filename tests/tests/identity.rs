//! `Identity.Certify` through the real control plane: a proxy with the right token gets a
//! certificate for exactly its identity; every bad request is refused with a status and a
//! message that say what is wrong, a log line, and a counted reason.

use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::leaf::{self, Usage};
use strait_identity::store::CertStore;
use strait_proto::identity::v1::CertifyRequest;
use strait_proto::identity::v1::identity_client::IdentityClient;
use strait_proxy::control_plane::ControlPlane;
use strait_tests::client;
use strait_tests::mesh::{Mesh, MeshBuilder};
use tonic::Code;

const FRONTEND: &str = "spiffe://cluster.local/ns/demo/sa/frontend";
const BACKEND: &str = "spiffe://cluster.local/ns/demo/sa/backend";

fn mesh() -> Mesh {
    MeshBuilder::new()
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-1", "backend", &[("app", "backend")])
        .start()
}

fn identity_client(mesh: &Mesh) -> IdentityClient<tonic::transport::Channel> {
    let anchors = strait_identity::pem::read_certificates(&mesh.anchors).unwrap();
    let bundle = TrustBundle::new("cluster.local", anchors).unwrap();
    let cp_identity: SpiffeId = "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane"
        .parse()
        .unwrap();
    let store = CertStore::new(FRONTEND.parse().unwrap());
    let control_plane = ControlPlane::new(
        mesh.control_plane.grpc.to_string(),
        cp_identity,
        bundle,
        store,
    );
    IdentityClient::new(control_plane.channel(false))
}

fn csr(algorithm: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
    let key = KeyPair::generate_for(algorithm).unwrap();
    CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_right_token_gets_a_certificate_for_exactly_its_identity() {
    let mesh = mesh();
    let token = mesh.workload("frontend-1").token.clone();
    let response = identity_client(&mesh)
        .certify(CertifyRequest {
            token,
            identity: FRONTEND.into(),
            csr_der: csr(&rcgen::PKCS_ECDSA_P256_SHA256),
        })
        .await
        .unwrap()
        .into_inner();
    let leaf = rustls::pki_types::CertificateDer::from(response.leaf_der);
    for usage in [Usage::Client, Usage::Server] {
        assert_eq!(
            leaf::check(&leaf, "cluster.local", usage)
                .unwrap()
                .to_string(),
            FRONTEND
        );
    }
    assert_eq!(
        response.intermediates_der.len(),
        1,
        "the issuer travels with the leaf"
    );
    assert_eq!(response.trust_anchors_der.len(), 1);
    let lifetime = leaf::not_after(&leaf).unwrap() - leaf::not_before(&leaf).unwrap();
    // 24 h by default, plus the minute the CA backdates for clock skew.
    assert_eq!(lifetime, 24 * 3600 + 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_with_a_precise_status_a_log_line_and_a_counted_reason() {
    let mesh = mesh();
    let mut client = identity_client(&mesh);
    let frontend_token = mesh.workload("frontend-1").token.clone();
    let good_csr = csr(&rcgen::PKCS_ECDSA_P256_SHA256);
    let mut tampered = good_csr.clone();
    let at = tampered.len() - 3;
    tampered[at] ^= 0x55;

    let cases: Vec<(&str, CertifyRequest, Code, &str, &str)> = vec![
        (
            "wrong token",
            CertifyRequest {
                token: "not-a-real-token".into(),
                identity: FRONTEND.into(),
                csr_der: good_csr.clone(),
            },
            Code::Unauthenticated,
            "the token matches no workload",
            "invalid-token",
        ),
        (
            "claiming someone else's identity",
            CertifyRequest {
                token: frontend_token.clone(),
                identity: BACKEND.into(),
                csr_der: good_csr.clone(),
            },
            Code::PermissionDenied,
            "authenticates spiffe://cluster.local/ns/demo/sa/frontend, which may not claim spiffe://cluster.local/ns/demo/sa/backend",
            "identity-mismatch",
        ),
        (
            "garbage CSR",
            CertifyRequest {
                token: frontend_token.clone(),
                identity: FRONTEND.into(),
                csr_der: b"definitely not DER".to_vec(),
            },
            Code::InvalidArgument,
            "not a valid DER-encoded PKCS#10 request",
            "malformed-csr",
        ),
        (
            "a key type the CA does not accept",
            CertifyRequest {
                token: frontend_token.clone(),
                identity: FRONTEND.into(),
                csr_der: csr(&rcgen::PKCS_ECDSA_P384_SHA384),
            },
            Code::InvalidArgument,
            "key type is not accepted",
            "unsupported-key-type",
        ),
        (
            "a malformed identity",
            CertifyRequest {
                token: frontend_token.clone(),
                identity: "frontend".into(),
                csr_der: good_csr.clone(),
            },
            Code::InvalidArgument,
            "is not a mesh identity",
            "malformed-identity",
        ),
        (
            "another trust domain",
            CertifyRequest {
                token: frontend_token.clone(),
                identity: "spiffe://evil.example/ns/demo/sa/frontend".into(),
                csr_der: good_csr.clone(),
            },
            Code::InvalidArgument,
            "outside this control plane's trust domain cluster.local",
            "wrong-trust-domain",
        ),
        (
            "no token",
            CertifyRequest {
                token: String::new(),
                identity: FRONTEND.into(),
                csr_der: good_csr.clone(),
            },
            Code::Unauthenticated,
            "no bootstrap token",
            "missing-token",
        ),
    ];
    for (name, request, code, message, _) in cases.iter().cloned() {
        let status = client.certify(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(
            status.message().contains(message),
            "{name}: {:?}",
            status.message()
        );
        assert!(
            !status.message().contains(&frontend_token),
            "{name}: the token leaked into the status"
        );
    }
    // A tampered CSR fails its signature (or no longer parses, depending on the byte hit).
    let status = client
        .certify(CertifyRequest {
            token: frontend_token.clone(),
            identity: FRONTEND.into(),
            csr_der: tampered,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let metrics = client::get(mesh.control_plane.admin, "admin", "/metrics")
        .await
        .text();
    for (name, _, _, _, reason) in &cases {
        let line = format!(r#"strait_identity_certificates_refused_total{{reason="{reason}"}} 1"#);
        assert!(
            metrics.contains(&line),
            "{name}: missing {line} in:\n{metrics}"
        );
    }
    assert!(
        mesh.control_plane
            .process
            .wait_logged("certificate request refused", Duration::from_secs(5))
    );
    let logs = mesh.control_plane.process.logs().join("\n");
    assert!(
        !logs.contains(&frontend_token),
        "a token appeared in the control plane's logs"
    );
    assert!(
        !logs.contains("not-a-real-token"),
        "a token appeared in the control plane's logs"
    );
}
