//! Every setting is a flag with a `STRAIT_*` environment twin, documented in `--help`.

use std::process::Command;

use strait_tests::backend::HttpBackend;
use strait_tests::binaries;
use strait_tests::client;
use strait_tests::process::Proxy;
use strait_tests::snapshot::{Endpoint, TempDir, service, snapshot};

#[test]
fn help_documents_every_flag_with_its_environment_variable() {
    let output = Command::new(binaries::path("strait-proxy"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .map(|l| l.split_whitespace().next().unwrap())
        .filter(|flag| *flag != "help")
        .collect();
    assert!(flags.len() >= 15, "{help}");
    for flag in flags {
        let env = format!("STRAIT_{}", flag.to_uppercase().replace('-', "_"));
        assert!(
            help.contains(&format!("[env: {env}")),
            "--{flag} lacks its {env} twin:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_runs_from_environment_variables_alone() {
    let backend = HttpBackend::start("web").await;
    let dir = TempDir::new("env");
    let path = dir.write_snapshot(
        "snapshot.json",
        &snapshot(
            "env-1",
            vec![service(
                "web",
                "demo",
                80,
                &[],
                &[Endpoint {
                    app: backend.addr,
                    proxy_port: None,
                }],
            )],
        ),
    );
    let proxy = Proxy::builder()
        .without_flag("--outbound-addr")
        .without_flag("--log-format")
        .env("STRAIT_OUTBOUND_ADDR", "127.0.0.1:0")
        .env("STRAIT_LOG_FORMAT", "json")
        .env("STRAIT_SNAPSHOT", path.display())
        .start();
    let response = client::get(proxy.outbound, "web.demo", "/").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-backend"), "web");
    let config = proxy.admin_get("/config").await;
    assert!(config.text().contains("\"env-1\""), "{}", config.text());
}

#[test]
fn an_invalid_snapshot_file_stops_start_up_with_the_file_and_reason() {
    let dir = TempDir::new("bad-snapshot");
    let path = dir.path().join("snapshot.json");
    std::fs::write(&path, r#"{"version": "1", "services": [{"name": 42}]}"#).unwrap();
    let output = Command::new(binaries::path("strait-proxy"))
        .args([
            "run",
            "--outbound-addr",
            "127.0.0.1:0",
            "--inbound-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--snapshot",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
}

#[test]
fn the_readme_documents_every_flag_of_both_binaries_with_its_environment_variable() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    for (binary, command) in [
        ("strait-proxy", "run"),
        ("strait-proxy", "init"),
        ("strait-control-plane", "run"),
    ] {
        let output = Command::new(binaries::path(binary))
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8(output.stdout).unwrap();
        let mut flag = None;
        let mut documented = 0;
        for line in help.lines() {
            if let Some(name) = line.trim_start().strip_prefix("--") {
                flag = Some(name.split_whitespace().next().unwrap().to_owned());
            }
            // Long help puts `[env: X=]` on a line of its own, short help after the text.
            let Some(env) = line
                .split_once("[env: ")
                .and_then(|(_, rest)| rest.split(['=', ']']).next())
            else {
                continue;
            };
            let flag = flag.take().expect("an [env: ...] line follows its flag");
            assert!(
                readme.contains(&format!("| `--{flag}` | `{env}` |")),
                "README's configuration reference lacks {binary} {command} --{flag} ({env}); regenerate it with scripts/config-reference"
            );
            documented += 1;
        }
        assert!(
            documented > 5,
            "{binary} {command} --help listed no flags:\n{help}"
        );
    }
}
