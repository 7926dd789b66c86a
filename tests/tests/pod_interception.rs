//! Two "pods" for real: network namespaces the test creates, joined through a third that
//! routes between them (and runs the control plane), each set up exactly as the injector sets
//! up a pod — `strait-proxy init` installs the iptables rules, the proxy runs under its own UID
//! — with unmodified apps: curl in pod A, a plain Python HTTP server in pod B. Needs root
//! (CI runs it as root).
//!
//! What must hold: curl's request to pod B's own address reaches B's app; on the wire between
//! the pods there is TLS and never the HTTP request; B's proxy saw the caller's SPIFFE
//! identity over mTLS; B's app sees its caller as 127.0.0.1 (the inbound proxy) with the
//! caller's proven identity in `strait-client-id`, as docs/kubernetes.md documents.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strait_tests::binaries;
use strait_tests::capture::Capture;
use strait_tests::control_plane::ControlPlane;
use strait_tests::netns::{NetNs, require_root};
use strait_tests::process::Proxy;
use strait_tests::snapshot::TempDir;

const PROXY_UID: u32 = 2102;
const APP_UID: u32 = 2200;
const POD_A: &str = "10.77.1.2";
const POD_B: &str = "10.77.2.2";

/// Router namespace `r` with a veth to each pod namespace; each pod's default route is `r`.
struct PodNetwork {
    router: NetNs,
    a: NetNs,
    b: NetNs,
}

impl PodNetwork {
    fn new() -> Self {
        let router = NetNs::create("router");
        let a = NetNs::create("pod-a");
        let b = NetNs::create("pod-b");
        for (pod, side, subnet) in [(&a, "a", "10.77.1"), (&b, "b", "10.77.2")] {
            let outer = format!("r-{side}");
            router.exec(
                "ip",
                &[
                    "link",
                    "add",
                    &outer,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    pod.name(),
                ],
            );
            router.exec(
                "ip",
                &["addr", "add", &format!("{subnet}.1/24"), "dev", &outer],
            );
            router.exec("ip", &["link", "set", &outer, "up"]);
            pod.exec(
                "ip",
                &["addr", "add", &format!("{subnet}.2/24"), "dev", "eth0"],
            );
            pod.exec("ip", &["link", "set", "eth0", "up"]);
            pod.exec(
                "ip",
                &["route", "add", "default", "via", &format!("{subnet}.1")],
            );
        }
        router.exec("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
        Self { router, a, b }
    }
}

fn config(dir: &Path) {
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    for (name, token) in [("pod-a", "token-a"), ("pod-b", "token-b")] {
        std::fs::write(dir.join(format!("tokens/{name}.token")), token).unwrap();
    }
    std::fs::write(
        dir.join("mesh.yaml"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: server, namespace: demo}}\n\
             spec:\n  selector: {{app: server}}\n  ports: [{{name: http, port: 8080, targetPort: http}}]\n\
             ---\napiVersion: strait.dev/v1alpha1\nkind: Workload\nmetadata: {{name: pod-a, namespace: demo, labels: {{app: client}}}}\n\
             spec: {{serviceAccount: client, address: {POD_A}, bootstrapToken: {{file: tokens/pod-a.token}}}}\n\
             ---\napiVersion: strait.dev/v1alpha1\nkind: Workload\nmetadata: {{name: pod-b, namespace: demo, labels: {{app: server}}}}\n\
             spec: {{serviceAccount: server, address: {POD_B}, ports: [{{name: http, port: 8080}}], bootstrapToken: {{file: tokens/pod-b.token}}}}\n"
        ),
    )
    .unwrap();
}

/// `strait-proxy init` inside `ns`, as the injected init container runs it.
fn init(ns: &NetNs, extra: &[&str]) -> String {
    let binary = binaries::path("strait-proxy");
    let mut args = vec![
        binary.to_str().unwrap(),
        "init",
        "--proxy-uid",
        "2102",
        "--skip-inbound-ports",
        "4191",
    ];
    args.extend_from_slice(extra);
    ns.exec(args[0], &args[1..])
}

fn start_proxy(
    ns: &NetNs,
    workload: &str,
    service_account: &str,
    cp: &str,
    anchors: &Path,
    dir: &Path,
) -> Proxy {
    Proxy::builder()
        .netns(ns.name())
        .run_as(PROXY_UID)
        .flag("--mode", "pod")
        .flag("--outbound-addr", "0.0.0.0:4140")
        .flag("--inbound-addr", "0.0.0.0:4143")
        .flag("--admin-addr", "0.0.0.0:4191")
        .flag("--control-plane", cp)
        .flag("--trust-anchors", anchors.display())
        .flag("--namespace", "demo")
        .flag("--service-account", service_account)
        .flag("--workload", workload)
        .flag(
            "--token-file",
            dir.join(format!("tokens/{workload}.token")).display(),
        )
        .start()
}

/// A plain HTTP server, unaware of the mesh, answering with the peer address it sees and the
/// identity header it was given. Debian's own Python, which every UID can run.
fn start_app(ns: &NetNs) -> Child {
    let program = r#"
import http.server
class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("peer=%s\nclient-id=%s\n" % (self.client_address[0], self.headers.get("strait-client-id", ""))).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("0.0.0.0", 8080), App).serve_forever()
"#;
    let child = Command::new("ip")
        .args(["netns", "exec", ns.name(), "setpriv"])
        .arg(format!("--reuid={APP_UID}"))
        .arg(format!("--regid={APP_UID}"))
        .args(["--clear-groups", "/usr/bin/python3", "-c", program])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting the app");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ns.exec("ss", &["-ltn"]).contains(":8080") {
        assert!(Instant::now() < deadline, "the app did not listen on :8080");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn nat_rules(ns: &NetNs) -> String {
    ns.exec("iptables-save", &["-t", "nat"])
}

#[test]
fn two_pods_talk_mtls_through_the_init_rules_with_unmodified_apps() {
    if !require_root("two_pods_talk_mtls_through_the_init_rules_with_unmodified_apps") {
        return;
    }
    let net = PodNetwork::new();
    let dir = TempDir::new("pods");
    let config_dir = dir.path().join("config");
    config(&config_dir);
    let ca = dir.path().join("ca");
    let control_plane = ControlPlane::start_in(
        Some(net.router.name()),
        &config_dir,
        &[
            ("--grpc-addr", "0.0.0.0:8090".into()),
            ("--admin-addr", "127.0.0.1:9990".into()),
            ("--dev-ca", ca.display().to_string()),
        ],
    );
    // The anchors are public; the proxies' UID must be able to read them.
    let anchors = dir.path().join("trust-anchors.pem");
    std::fs::copy(ca.join("trust-anchors.pem"), &anchors).unwrap();

    // The init step, twice in pod A: the second run leaves one set of rules.
    let printed = init(&net.a, &[]);
    assert!(
        printed.contains("-A STRAIT_OUTBOUND -m owner --uid-owner 2102 -j RETURN"),
        "{printed}"
    );
    let once = nat_rules(&net.a);
    init(&net.a, &[]);
    let twice = nat_rules(&net.a);
    let rules = |saved: &str| -> Vec<String> {
        saved
            .lines()
            .filter(|l| l.starts_with('-'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(rules(&once), rules(&twice));
    assert_eq!(
        rules(&twice)
            .iter()
            .filter(|l| *l == "-A OUTPUT -j STRAIT_OUTBOUND")
            .count(),
        1
    );
    assert_eq!(
        rules(&twice)
            .iter()
            .filter(|l| *l == "-A PREROUTING -j STRAIT_INBOUND")
            .count(),
        1
    );
    init(&net.b, &[]);

    let a = start_proxy(
        &net.a,
        "pod-a",
        "client",
        "10.77.1.1:8090",
        &anchors,
        &config_dir,
    );
    let b = start_proxy(
        &net.b,
        "pod-b",
        "server",
        "10.77.2.1:8090",
        &anchors,
        &config_dir,
    );
    for proxy in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(proxy.process.logged("certificate installed")
            && proxy.process.logged("snapshot applied"))
        {
            assert!(
                Instant::now() < deadline,
                "a proxy did not get its identity; its output:\n{}\ncontrol plane:\n{}",
                proxy.process.logs().join("\n"),
                control_plane.process.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut app = start_app(&net.b);

    let capture = Capture::start(&net.router);
    // An unmodified client dialling pod B's address; nothing in it knows of the mesh.
    let answer = net.a.exec(
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "-i",
            &format!("http://{POD_B}:8080/hello"),
        ],
    );
    let segments = capture.finish();
    let _ = app.kill();
    let _ = app.wait();

    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    // The inbound proxy delivers to the pod's own address (where the client meant to go), not
    // to loopback, so the app sees the connection come from the pod itself.
    assert!(
        answer.contains(&format!("peer={POD_B}\n")),
        "the app sees the inbound proxy, from the pod's own address: {answer}"
    );
    assert!(
        answer.contains("client-id=spiffe://cluster.local/ns/demo/sa/client\n"),
        "{answer}"
    );

    // On the wire between the pods: a TLS handshake to B's proxy, and never the request.
    let between: Vec<_> = segments
        .iter()
        .filter(|s| s.src.ip().to_string() == POD_A && s.dst.ip().to_string() == POD_B)
        .filter(|s| !s.payload.is_empty())
        .collect();
    assert!(
        !between.is_empty(),
        "the capture saw nothing between the pods ({} segments)",
        segments.len()
    );
    assert!(between.iter().all(|s| s.dst.port() == 4143), "{between:?}");
    assert_eq!(
        &between[0].payload[..2],
        &[0x16, 0x03],
        "a TLS handshake record opens the hop"
    );
    for segment in &segments {
        let text = String::from_utf8_lossy(&segment.payload);
        assert!(
            !text.contains("GET /hello"),
            "plaintext HTTP on the wire: {segment:?}"
        );
    }

    // B's proxy counted the request as mTLS from A's identity.
    let metrics = net
        .b
        .exec("curl", &["-sS", "http://127.0.0.1:4191/metrics"]);
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("strait_http_requests_total{")
                && l.contains(r#"direction="inbound""#)
                && l.contains(r#"peer_identity="spiffe://cluster.local/ns/demo/sa/client""#)
                && l.contains(r#"tls="true""#)
        })
        .unwrap_or_else(|| panic!("no inbound mTLS request from the client in:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");

    // --cleanup removes every rule and chain init added.
    init(&net.a, &["--cleanup"]);
    let cleaned = nat_rules(&net.a);
    assert!(!cleaned.contains("STRAIT"), "{cleaned}");
    let again = init(&net.a, &["--cleanup"]);
    assert!(again.contains("no Strait rules to remove"), "{again}");
    drop((a, b, control_plane));
}
