//! The main job: `strait-demo` itself, run in the background for a bounded time. The client
//! sees (nearly) no failure despite the failing replica, the canary gets its share, every hop
//! between services is mTLS with the expected identities, and Ctrl-C leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use strait_tests::binaries;
use strait_tests::metrics::Metrics;
use strait_tests::process::Process;

const FRONTEND_ADMIN: &str = "127.0.0.1:14090";
const BACKEND_ADMINS: [&str; 3] = ["127.0.0.1:14091", "127.0.0.1:14092", "127.0.0.1:14093"];
const FRONTEND: &str = "spiffe://cluster.local/ns/demo/sa/frontend";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_owned()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_shows_a_working_mesh_and_cleans_up_on_ctrl_c() {
    let mut command = Command::new(binaries::path("strait-demo"));
    command
        .current_dir(repository_root())
        .args(["--refresh", "2s", "--duration", "90s"])
        .env_remove("CARGO");
    let mut demo = Process::spawn("strait-demo", command, "never: the demo logs text");
    // Five reports: ten seconds of traffic at 100 requests per second.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while demo.count_logged("client → frontend") < 5 {
        assert!(
            std::time::Instant::now() < deadline && !demo.has_exited(),
            "the demo did not report; its output:\n{}",
            demo.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = demo.logs().join("\n");
    assert!(output.contains("Strait local mesh is up"), "{output}");
    for admin in BACKEND_ADMINS.iter().chain([&FRONTEND_ADMIN]) {
        assert!(
            output.contains(&format!("http://{admin}")),
            "the admin URL of every proxy is printed"
        );
    }
    assert!(
        output.contains("examples/local/routes.yaml"),
        "how to change the canary is printed"
    );
    let scratch = output
        .lines()
        .find_map(|l| l.strip_prefix("strait-demo: temporary files in "))
        .expect("the demo names its temporary directory")
        .to_owned();

    // Client-observed success despite the replica failing 30 % of its requests.
    let last = output
        .lines()
        .rfind(|l| l.contains("since start:"))
        .unwrap();
    let ok: f64 = last
        .split("requests, ")
        .nth(1)
        .and_then(|s| s.split('%').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unparsable report line: {last}"));
    assert!(ok >= 99.0, "client success {ok}% in: {last}");

    // The canary's share, from the frontend proxy's own metrics.
    let frontend = Metrics::fetch(FRONTEND_ADMIN.parse().unwrap()).await;
    let requests = |backend: &str| {
        frontend.sum(
            "strait_http_requests_total",
            &[("direction", "outbound"), ("backend", backend)],
        )
    };
    let (v1, v2) = (
        requests("demo/backend-v1:80"),
        requests("demo/backend-v2:80"),
    );
    let share = v2 / (v1 + v2);
    let sigma = (0.1f64 * 0.9 / (v1 + v2)).sqrt();
    assert!(
        (share - 0.1).abs() < 4.0 * sigma,
        "canary share {share} over {} requests",
        v1 + v2
    );

    // Every hop into a backend was mTLS from the frontend's identity; the failing replica
    // really failed (retries hid it).
    let mut failed_at_backends = 0.0;
    for admin in BACKEND_ADMINS {
        let metrics = Metrics::fetch(admin.parse().unwrap()).await;
        let all = metrics.sum("strait_http_requests_total", &[("direction", "inbound")]);
        let mtls = metrics.sum(
            "strait_http_requests_total",
            &[
                ("direction", "inbound"),
                ("tls", "true"),
                ("peer_identity", FRONTEND),
            ],
        );
        assert!(
            all > 0.0 && all == mtls,
            "{admin}: {mtls} of {all} requests over mTLS from the frontend"
        );
        failed_at_backends += metrics.sum(
            "strait_http_responses_total",
            &[("direction", "inbound"), ("status_class", "5xx")],
        );
    }
    assert!(
        failed_at_backends > 0.0,
        "the flaky replica failed some requests"
    );

    demo.signal(Signal::SIGINT);
    let status = demo.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}:\n{}", demo.logs().join("\n"));
    assert!(demo.wait_logged("stopped every process and removed", Duration::from_secs(5)));
    assert!(!Path::new(&scratch).exists(), "{scratch} was left behind");
    let leftovers = processes_mentioning(&scratch);
    assert!(leftovers.is_empty(), "processes left behind: {leftovers:?}");
}
