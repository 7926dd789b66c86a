//! Certificates and trust anchors change under traffic without a failed request: short-lived
//! certificates renewed several times, the control plane going away, and a full trust anchor
//! rotation (add the new anchor, switch the issuer, remove the old anchor).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use strait_tests::backend::HttpBackend;
use strait_tests::client;
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::snapshot::TempDir;

const FRONTEND: &str = "spiffe://cluster.local/ns/demo/sa/frontend";

fn builder() -> MeshBuilder {
    MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-1", "backend", &[("app", "backend")])
        // Idle mesh connections close fast, so the traffic keeps making new handshakes with
        // whatever certificate is current.
        .proxy_flag("--pool-idle-timeout", "150ms")
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Requests through the frontend's proxy until stopped: sequential, with pauses that let
/// pooled mesh connections idle out. Bounded by `max` requests.
struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Traffic {
    fn start(mesh: &Mesh, max: u64) -> Self {
        let outbound = mesh.proxy("frontend-1").outbound;
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let task = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for i in 0..max {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let response = client::get(outbound, "backend.demo", "/").await;
                    if response.status == 200 && response.header("x-seen-client-id") == FRONTEND {
                        ok.fetch_add(1, Ordering::SeqCst);
                    } else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        failures.push(format!("{} {}", response.status, response.text()));
                    }
                    if i % 5 == 4 {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                failures
            })
        };
        Self {
            stop,
            ok,
            failed,
            task,
        }
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.task.await.unwrap();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            failures,
        )
    }
}

async fn renewals(mesh: &Mesh, workload: &str) -> f64 {
    let metrics = mesh.proxy(workload).admin_get("/metrics").await.text();
    metric(
        &metrics,
        r#"strait_identity_renewals_total{result="success"}"#,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_rotate_several_times_under_load_with_no_failed_request() {
    let mesh = builder().control_plane_flag("--cert-ttl", "3s").start();
    let _app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;
    let handshakes_before = metric(
        &mesh.proxy("backend-1").admin_get("/metrics").await.text(),
        r#"strait_tls_handshakes_total{direction="inbound",result="success",reason=""}"#,
    );

    let traffic = Traffic::start(&mesh, 100_000);
    let deadline = Instant::now() + Duration::from_secs(20);
    while (renewals(&mesh, "frontend-1").await < 4.0 || renewals(&mesh, "backend-1").await < 4.0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, failed, failures) = traffic.finish().await;

    assert!(
        renewals(&mesh, "frontend-1").await >= 4.0,
        "at least three rotations after the first certificate"
    );
    assert!(renewals(&mesh, "backend-1").await >= 4.0);
    assert_eq!(failed, 0, "failed requests during rotation: {failures:?}");
    assert!(ok >= 50, "too little traffic to mean anything: {ok}");
    let handshakes_after = metric(
        &mesh.proxy("backend-1").admin_get("/metrics").await.text(),
        r#"strait_tls_handshakes_total{direction="inbound",result="success",reason=""}"#,
    );
    assert!(
        handshakes_after - handshakes_before >= 4.0,
        "new handshakes happened across the rotations"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_control_plane_gone_the_mesh_keeps_working_on_the_certificates_it_holds() {
    let mut mesh = builder().control_plane_flag("--cert-ttl", "8s").start();
    let _app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;
    assert_eq!(
        client::get(mesh.proxy("frontend-1").outbound, "backend.demo", "/")
            .await
            .status,
        200
    );

    mesh.control_plane.process.signal(Signal::SIGKILL);
    mesh.control_plane.process.wait_exit(Duration::from_secs(5));

    // Existing and new mesh connections keep working (idle pooled ones close after 150 ms).
    for _ in 0..10 {
        let response = client::get(mesh.proxy("frontend-1").outbound, "backend.demo", "/").await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.header("x-seen-client-id"), FRONTEND);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Renewal fails, is logged with the expiry of the certificate in use, and the expiry is
    // exported.
    let proxy = &mesh.proxy("frontend-1").process;
    assert!(proxy.wait_logged(
        "obtaining a certificate failed; retrying",
        Duration::from_secs(10)
    ));
    assert!(proxy.logged("current_certificate_expires_in"));
    let metrics = mesh.proxy("frontend-1").admin_get("/metrics").await.text();
    let expiry = metric(&metrics, "strait_identity_cert_expiry_timestamp_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now,
        "the expiry of the certificate still in use ({expiry}) is in the future ({now})"
    );
    assert!(
        metric(
            &metrics,
            r#"strait_identity_renewals_total{result="failure"}"#
        ) >= 1.0
    );
    assert_eq!(
        client::get(mesh.proxy("frontend-1").outbound, "backend.demo", "/")
            .await
            .status,
        200
    );
}

/// Writes `content` to `path` atomically, as an operator's tooling (or a Secret update) does.
fn replace(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn wait_for_anchor_count(mesh: &Mesh, count: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for workload in ["frontend-1", "backend-1"] {
        loop {
            let metrics = mesh.proxy(workload).admin_get("/metrics").await.text();
            if metric(&metrics, "strait_identity_trust_anchors") == count {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{workload} never saw {count} anchors:\n{metrics}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trust_anchor_rotation_under_traffic_fails_no_request() {
    const TTL_SECS: u64 = 3;
    let ca = TempDir::new("anchor-rotation");
    let year = time::Duration::days(365);
    let (anchor_a, issuer_a, key_a) =
        strait_control_plane::ca::generate_pair("cluster.local", "A", year, year).unwrap();
    let (anchor_b, issuer_b, key_b) =
        strait_control_plane::ca::generate_pair("cluster.local", "B", year, year).unwrap();
    let anchors = ca.path().join("trust-anchors.pem");
    let issuer_cert = ca.path().join("issuer.crt");
    let issuer_key = ca.path().join("issuer.key");
    std::fs::write(&anchors, &anchor_a).unwrap();
    std::fs::write(&issuer_cert, &issuer_a).unwrap();
    std::fs::write(&issuer_key, &key_a).unwrap();

    let mesh = builder()
        .ca_files(anchors.clone(), issuer_cert.clone(), issuer_key.clone())
        .control_plane_flag("--cert-ttl", format!("{TTL_SECS}s"))
        .start();
    let _app = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;
    let traffic = Traffic::start(&mesh, 100_000);
    let settle = Duration::from_secs(2 * TTL_SECS);

    // 1. Add the new anchor next to the old one; every proxy learns both at its next renewal.
    replace(&anchors, &format!("{anchor_a}{anchor_b}"));
    wait_for_anchor_count(&mesh, 2.0).await;
    tokio::time::sleep(settle).await;

    // 2. Switch the issuer to one chained to the new anchor; certificates move over as they
    //    renew, and both kinds verify everywhere meanwhile.
    replace(&issuer_key, &key_b);
    replace(&issuer_cert, &issuer_b);
    tokio::time::sleep(settle).await;
    assert!(
        mesh.control_plane
            .process
            .wait_logged("CA reloaded", Duration::from_secs(5)),
        "the control plane picked up the new issuer"
    );

    // 3. Remove the old anchor once every certificate comes from the new issuer.
    replace(&anchors, &anchor_b);
    wait_for_anchor_count(&mesh, 1.0).await;
    tokio::time::sleep(settle).await;

    let (ok, failed, failures) = traffic.finish().await;
    assert_eq!(
        failed, 0,
        "failed requests during the anchor rotation: {failures:?}"
    );
    assert!(ok >= 100, "too little traffic to mean anything: {ok}");
    // The old anchor is gone everywhere: a fresh request still works on the new chain alone.
    assert_eq!(
        client::get(mesh.proxy("frontend-1").outbound, "backend.demo", "/")
            .await
            .status,
        200
    );
}
