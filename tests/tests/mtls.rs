//! Automatic mTLS between proxies, through the real control plane and proxies: the app sees
//! the caller's proven identity, and nobody without a valid mesh identity gets in.

use std::time::Duration;

use strait_tests::backend::HttpBackend;
use strait_tests::certs::{Defects, TestCa};
use strait_tests::client;
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::tls_client::{self, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FRONTEND: &str = "spiffe://cluster.local/ns/demo/sa/frontend";
const BACKEND: &str = "spiffe://cluster.local/ns/demo/sa/backend";

fn two_workloads() -> MeshBuilder {
    MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-1", "backend", &[("app", "backend")])
}

async fn backend_app(mesh: &Mesh) -> HttpBackend {
    HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_crosses_the_mesh_over_mtls_and_the_app_sees_the_callers_identity() {
    let mesh = two_workloads().start();
    let app = backend_app(&mesh).await;

    let response = client::get(mesh.proxy("frontend-1").outbound, "backend.demo", "/hello").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("x-backend"), "backend-1");
    assert_eq!(
        response.header("x-seen-client-id"),
        FRONTEND,
        "the inbound proxy names the proven caller"
    );
    assert_eq!(app.requests(), 1);

    let metrics = mesh.proxy("backend-1").admin_get("/metrics").await.text();
    assert!(
        metric(
            &metrics,
            r#"strait_tls_handshakes_total{direction="inbound",result="success",reason=""}"#
        ) >= 1.0,
        "{metrics}"
    );
    let ready = mesh.proxy("frontend-1").admin_get("/ready").await;
    assert_eq!(ready.status, 200, "ready once the certificate is held");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_supplied_identity_header_is_replaced_not_trusted() {
    let mesh = two_workloads().start();
    let _app = backend_app(&mesh).await;

    let mut sender = client::http1(mesh.proxy("frontend-1").outbound).await;
    let request = http::Request::get("/")
        .header("host", "backend.demo")
        .header(
            "strait-client-id",
            "spiffe://cluster.local/ns/kube-system/sa/admin",
        )
        .body(client::empty())
        .unwrap();
    let response = client::collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!(response.header("x-seen-client-id"), FRONTEND);
}

/// Presents certificates directly to the backend's inbound port: only a good one gets in,
/// and each refusal is counted under its own reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_inbound_proxy_refuses_every_kind_of_bad_client_certificate() {
    let mesh = two_workloads().start();
    let _app = backend_app(&mesh).await;
    let backend = mesh.workload("backend-1");
    let inbound = std::net::SocketAddr::from(([127, 0, 0, 1], backend.proxy_port));
    let mesh_ca = TestCa::from_dir(&mesh.ca_dir);
    let defect = |edit: fn(&mut Defects)| {
        let mut defects = Defects::default();
        edit(&mut defects);
        mesh_ca.leaf(FRONTEND, &defects)
    };

    let good = mesh_ca.leaf(FRONTEND, &Defects::default());
    let answer = tls_client::request(
        inbound,
        &mesh.anchors,
        BACKEND,
        Some(&good),
        Version::Tls13,
        backend.app_port,
    )
    .await;
    assert!(
        answer.as_ref().is_ok_and(|r| r.starts_with("HTTP/1.1 200")),
        "{answer:?}"
    );

    let cases = [
        (
            "another CA",
            Some(TestCa::stranger(false).leaf(FRONTEND, &Defects::default())),
            Version::Tls13,
            "unknown-issuer",
        ),
        (
            "a forged CA with the same names",
            Some(TestCa::stranger(true).leaf(FRONTEND, &Defects::default())),
            Version::Tls13,
            "bad-signature",
        ),
        (
            "expired",
            Some(defect(|d| d.expired = true)),
            Version::Tls13,
            "expired",
        ),
        (
            "not yet valid",
            Some(defect(|d| d.not_yet_valid = true)),
            Version::Tls13,
            "not-yet-valid",
        ),
        (
            "another trust domain",
            Some(mesh_ca.leaf(
                "spiffe://evil.example/ns/demo/sa/frontend",
                &Defects::default(),
            )),
            Version::Tls13,
            "wrong-trust-domain",
        ),
        (
            "a CA certificate as leaf",
            Some(defect(|d| d.ca = true)),
            Version::Tls13,
            "ca-as-leaf",
        ),
        (
            "no client-auth usage",
            Some(defect(|d| d.no_client_auth = true)),
            Version::Tls13,
            "missing-extended-key-usage",
        ),
        (
            "no certificate",
            None,
            Version::Tls13,
            "no-client-certificate",
        ),
        (
            "TLS 1.2",
            Some(good),
            Version::Tls12Only,
            "incompatible-peer",
        ),
    ];
    for (name, identity, version, reason) in &cases {
        let line = format!(
            r#"strait_tls_handshakes_total{{direction="inbound",result="failure",reason="{reason}"}}"#
        );
        let before = metric(
            &mesh.proxy("backend-1").admin_get("/metrics").await.text(),
            &line,
        );
        let answer = tls_client::request(
            inbound,
            &mesh.anchors,
            BACKEND,
            identity.as_ref(),
            *version,
            backend.app_port,
        )
        .await;
        assert!(
            answer.is_err(),
            "{name}: a bad client got through: {answer:?}"
        );
        // The proxy counts the refusal after its alert is on the wire, so the client can see
        // the failure a moment before the counter moves.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = mesh.proxy("backend-1").admin_get("/metrics").await.text();
            let after = metric(&text, &line);
            if after == before + 1.0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: expected one more {line}, have {after} (was {before}); handshake counters:\n{}",
                text.lines()
                    .filter(|l| l.starts_with("strait_tls_handshakes_total"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbound_proxy_refuses_a_server_with_the_wrong_identity() {
    // An impostor holds a genuine mesh certificate, but for another identity, and sits where
    // the backend's proxy should be.
    let mut mesh = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-1", "backend", &[("app", "backend")])
        .workload("impostor-1", "impostor", &[("app", "impostor")])
        .start();
    let _app = backend_app(&mesh).await;
    let backend = mesh.workload("backend-1").clone();
    let impostor = mesh.workload("impostor-1").clone();
    drop(mesh.proxies.remove("backend-1"));
    // The impostor's proxy (its own identity and token) listens on the backend proxy's port.
    let impostor_proxy = mesh
        .proxy_builder(&impostor)
        .flag(
            "--inbound-addr",
            format!("127.0.0.1:{}", backend.proxy_port),
        )
        .start();
    assert!(
        impostor_proxy
            .process
            .wait_logged("certificate installed", Duration::from_secs(10))
    );

    let response = client::get(mesh.proxy("frontend-1").outbound, "backend.demo", "/").await;
    assert_eq!(response.status, 502, "{}", response.text());
    assert_eq!(
        response.header("strait-proxy-error"),
        "tls-handshake-failed"
    );
    assert!(
        response.text().contains("wrong-identity"),
        "{}",
        response.text()
    );
    assert!(
        response.text().contains(BACKEND),
        "the error names the expected identity: {}",
        response.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_strict_port_refuses_plaintext_but_accepts_mesh_mtls() {
    let strict = two_workloads()
        .yaml(
            "strict.yaml",
            "apiVersion: strait.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: {inboundMode: Strict}\n",
        )
        .start();
    let _app = backend_app(&strict).await;
    let backend = strict.workload("backend-1");
    let header = strait_proxy::transport_header::Header {
        port: backend.app_port,
        protocol: strait_proxy::detect::Protocol::Http1,
    }
    .encode();
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", backend.proxy_port))
        .await
        .unwrap();
    plain.write_all(&header).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(
        answer.is_empty(),
        "strict mode answered plaintext: {}",
        String::from_utf8_lossy(&answer)
    );
    assert!(strict.proxy("backend-1").process.wait_logged(
        "plaintext connection refused: the port is in strict mode",
        Duration::from_secs(5)
    ));
    // mTLS from the mesh still works in strict mode.
    let response = client::get(strict.proxy("frontend-1").outbound, "backend.demo", "/").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-seen-client-id"), FRONTEND);
}
