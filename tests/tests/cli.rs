//! The `strait` operator CLI against a real mesh: `validate`, `proxy-config`, `stat` and
//! `check`, including every way `check` must fail.

use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use strait_tests::backend::HttpBackend;
use strait_tests::binaries;
use strait_tests::load::{Spec, drive};
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::process::Proxy;

fn strait(args: &[&str]) -> Output {
    Command::new(binaries::path("strait"))
        .args(args)
        .output()
        .expect("running strait")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

fn mesh() -> Mesh {
    MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-0", "backend", &[("app", "backend")])
        .start()
}

#[test]
fn validate_accepts_the_example_and_lists_every_error_otherwise() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/local");
    let ok = strait(&["validate", example.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("valid"));

    let dir = strait_tests::snapshot::TempDir::new("cli-validate");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name}\nspec: {ports: [{port: 0}]}\n",
    )
    .unwrap();
    let bad = strait(&["validate", dir.path().to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("bad.yaml: document 1 (Service Bad_Name): metadata.name"),
        "{}",
        text(&bad)
    );
    let json = strait(&["-o", "json", "validate", dir.path().to_str().unwrap()]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["valid"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_config_and_stat_read_a_live_proxy() {
    let mesh = mesh();
    let _app = HttpBackend::start_on(mesh.workload("backend-0").app(), "backend-0").await;
    let admin = mesh.proxy("frontend-1").admin.to_string();

    let config = strait(&["proxy-config", &admin]);
    assert!(config.status.success(), "{}", text(&config));
    let summary = text(&config);
    assert!(summary.contains("service demo/backend:80"), "{summary}");
    assert!(
        summary.contains("spiffe://cluster.local/ns/demo/sa/backend"),
        "{summary}"
    );
    let json = strait(&["-o", "json", "proxy-config", &admin]);
    let snapshot: strait_proto::discovery::v1::Snapshot =
        serde_json::from_slice(&json.stdout).unwrap();
    assert!(!snapshot.version.is_empty());

    let outbound = mesh.proxy("frontend-1").outbound;
    let load =
        tokio::spawn(
            async move { drive(outbound, 400, 2, |_| Spec::get("backend.demo", "/")).await },
        );
    let admin_for_stat = admin.clone();
    let stat = tokio::task::spawn_blocking(move || {
        strait(&[
            "-o",
            "json",
            "stat",
            "--proxy",
            &admin_for_stat,
            "--interval",
            "1s",
        ])
    })
    .await
    .unwrap();
    load.await.unwrap();
    assert!(stat.status.success(), "{}", text(&stat));
    let rows: serde_json::Value = serde_json::from_slice(&stat.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["service"], "demo/backend:80");
    assert_eq!(row["backend"], "demo/backend:80");
    assert!(row["rps"].as_f64().unwrap() > 0.0, "{rows}");
    assert_eq!(row["success"], 1.0);

    let table = strait(&["stat", "--proxy", &admin, "--interval", "100ms"]);
    assert!(table.status.success());
}

fn check(mesh: &Mesh, extra: &[&str]) -> Output {
    let grpc = mesh.control_plane.grpc.to_string();
    let admin = mesh.control_plane.admin.to_string();
    let anchors = mesh.anchors.to_str().unwrap().to_owned();
    let mut args = vec![
        "check".to_owned(),
        "--control-plane".into(),
        grpc,
        "--control-plane-admin".into(),
        admin,
        "--trust-anchors".into(),
        anchors,
    ];
    for proxy in mesh.proxies.values() {
        args.push("--proxy".into());
        args.push(proxy.admin.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    strait(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[tokio::test(flavor = "multi_thread")]
async fn check_passes_on_a_healthy_mesh_and_fails_clearly_on_each_problem() {
    let mut mesh = mesh();
    let healthy = check(&mesh, &[]);
    assert!(healthy.status.success(), "{}", text(&healthy));
    assert!(
        text(&healthy).contains("in sync at snapshot"),
        "{}",
        text(&healthy)
    );

    // A certificate valid for less than required.
    let near_expiry = check(&mesh, &["--min-validity", "48h"]);
    assert!(!near_expiry.status.success());
    assert!(
        text(&near_expiry).contains("sooner than --min-validity"),
        "{}",
        text(&near_expiry)
    );

    // A proxy out of sync: one running without the control plane.
    let loner = Proxy::builder().start();
    let admin = loner.admin.to_string();
    let out_of_sync = check(&mesh, &["--proxy", &admin]);
    assert!(!out_of_sync.status.success());
    assert!(
        text(&out_of_sync).contains("not connected to the control plane"),
        "{}",
        text(&out_of_sync)
    );

    // A proxy that stopped answering.
    let frozen = mesh.proxy("backend-0");
    frozen.process.signal(Signal::SIGSTOP);
    let stuck = tokio::task::spawn_blocking({
        let args = (
            mesh.control_plane.admin.to_string(),
            frozen.admin.to_string(),
        );
        move || {
            strait(&[
                "check",
                "--control-plane-admin",
                &args.0,
                "--proxy",
                &args.1,
            ])
        }
    })
    .await
    .unwrap();
    frozen.process.signal(Signal::SIGCONT);
    assert!(!stuck.status.success());
    assert!(
        text(&stuck).contains("unreachable") || text(&stuck).contains("no answer"),
        "{}",
        text(&stuck)
    );

    // The control plane down.
    mesh.control_plane.process.signal(Signal::SIGKILL);
    mesh.control_plane.process.wait_exit(Duration::from_secs(5));
    let down = check(&mesh, &[]);
    assert!(!down.status.success());
    let report = text(&down);
    assert!(
        report.contains("control plane reachable") && report.contains("FAIL"),
        "{report}"
    );
    assert!(report.contains("connecting to"), "{report}");
}
