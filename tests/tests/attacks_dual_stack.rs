//! Issue 14, dual-stack: a pod's IPv6 traffic meets its proxy as its IPv4 traffic does, and
//! the proxy's outbound listener is reachable only from inside its own pod.
//!
//! Real network namespaces the test creates: a router namespace (which also runs the control
//! plane and plays the non-meshed client "another pod") and two dual-stack pods, each with an
//! IPv4 and an IPv6 address on a veth. Each pod is set up exactly as the injector sets it up:
//! the init container's arguments and the proxy container's environment are taken from the
//! real injector's patch (`inject::patch::inject` with the chart's defaults), `strait-proxy
//! init` installs the rules with real iptables and ip6tables, the proxy runs under its own UID,
//! and the apps are unmodified (curl in pod A, a Python HTTP server in pod B). Needs root (CI
//! runs it as root).
//!
//! The mesh knows each pod by both its addresses: pod A IPv4-primary, pod B IPv6-primary
//! (`spec.address`), each with its other family in `spec.addresses`, as the Kubernetes source
//! knows a dual-stack pod from `status.podIPs`. A call to either address of pod B is a meshed
//! call end to end, over that family.
//!
//! Longer than 500 lines: a whole suite over one shared dual-stack namespace fixture.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use strait_control_plane::inject::config::InjectorConfig;
use strait_control_plane::inject::patch::{Outcome, inject};
use strait_control_plane::inject::{INIT_CONTAINER, PROXY_CONTAINER};
use strait_tests::binaries;
use strait_tests::capture::Capture;
use strait_tests::control_plane::ControlPlane;
use strait_tests::netns::{NetNs, require_root};
use strait_tests::process::Proxy;
use strait_tests::snapshot::TempDir;

const PROXY_UID: u32 = 2102;
const APP_UID: u32 = 2200;
const A4: &str = "10.78.1.2";
const A6: &str = "fd00:78:1::2";
const B4: &str = "10.78.2.2";
const B6: &str = "fd00:78:2::2";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/demo/sa/client";

/// A router namespace with a veth to each pod namespace, both families on each; every pod's
/// default routes go through the router.
struct DualStackPods {
    router: NetNs,
    a: NetNs,
    b: NetNs,
}

impl DualStackPods {
    fn new() -> Self {
        let router = NetNs::create("ds-router");
        let a = NetNs::create("ds-pod-a");
        let b = NetNs::create("ds-pod-b");
        for (pod, side, v4, v6) in [
            (&a, "a", "10.78.1", "fd00:78:1::"),
            (&b, "b", "10.78.2", "fd00:78:2::"),
        ] {
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
            // `nodad`: the addresses are usable at once, not tentative for a second or two.
            for (ns, dev, host) in [(&router, outer.as_str(), "1"), (pod, "eth0", "2")] {
                ns.exec(
                    "ip",
                    &["addr", "add", &format!("{v4}.{host}/24"), "dev", dev],
                );
                ns.exec(
                    "ip",
                    &[
                        "-6",
                        "addr",
                        "add",
                        &format!("{v6}{host}/64"),
                        "dev",
                        dev,
                        "nodad",
                    ],
                );
                ns.exec("ip", &["link", "set", dev, "up"]);
            }
            pod.exec(
                "ip",
                &["route", "add", "default", "via", &format!("{v4}.1")],
            );
            pod.exec(
                "ip",
                &["-6", "route", "add", "default", "via", &format!("{v6}1")],
            );
        }
        router.exec("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"]);
        router.exec("sysctl", &["-q", "-w", "net.ipv6.conf.all.forwarding=1"]);
        Self { router, a, b }
    }
}

/// The control plane's configuration: pod A (`client`) known by its IPv4 address and its IPv6
/// one, pod B (`server`, port 8080 behind Service `server`) by its IPv6 address and its IPv4
/// one. The Service sends calls to each pod's primary address.
fn mesh_config(dir: &Path, inbound_mode: &str) {
    std::fs::create_dir_all(dir.join("tokens")).unwrap();
    for (name, token) in [("pod-a", "token-a"), ("pod-b", "token-b")] {
        std::fs::write(dir.join(format!("tokens/{name}.token")), token).unwrap();
    }
    std::fs::write(
        dir.join("mesh.yaml"),
        format!(
            "apiVersion: strait.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: mesh}}\n\
             spec: {{trustDomain: cluster.local, inboundMode: {inbound_mode}, defaultAuthorization: AllowAll}}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{name: server, namespace: demo}}\n\
             spec:\n  selector: {{app: server}}\n  ports: [{{name: http, port: 8080, targetPort: http}}]\n\
             ---\napiVersion: strait.dev/v1alpha1\nkind: Workload\nmetadata: {{name: pod-a, namespace: demo, labels: {{app: client}}}}\n\
             spec: {{serviceAccount: client, address: \"{A4}\", addresses: [\"{A6}\"], bootstrapToken: {{file: tokens/pod-a.token}}}}\n\
             ---\napiVersion: strait.dev/v1alpha1\nkind: Workload\nmetadata: {{name: pod-b, namespace: demo, labels: {{app: server}}}}\n\
             spec: {{serviceAccount: server, address: \"{B6}\", addresses: [\"{B4}\"], ports: [{{name: http, port: 8080}}], bootstrapToken: {{file: tokens/pod-b.token}}}}\n"
        ),
    )
    .unwrap();
}

/// What the real injector puts into a pod with the chart's default settings: the init
/// container's arguments and the proxy's literal environment.
struct Injected {
    init_args: Vec<String>,
    proxy_env: Vec<(String, String)>,
}

fn injected(anchors_pem: &str) -> Injected {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": "demo"},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}
    }))
    .unwrap();
    let outcome = inject(&pod, true, &InjectorConfig::default(), anchors_pem).unwrap();
    let Outcome::Injected { patch, .. } = outcome else {
        panic!("the injector did not inject: {outcome:?}")
    };
    let mut doc = serde_json::to_value(&pod).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    let pod: Pod = serde_json::from_value(doc).unwrap();
    let spec = pod.spec.unwrap();
    let containers: Vec<Container> = spec
        .init_containers
        .into_iter()
        .flatten()
        .chain(spec.containers)
        .collect();
    let named = |name: &str| {
        containers
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} container"))
            .clone()
    };
    Injected {
        init_args: named(INIT_CONTAINER).args.unwrap_or_default(),
        proxy_env: named(PROXY_CONTAINER)
            .env
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect(),
    }
}

/// Runs `program args` in `ns` without asserting success: (succeeded, stdout + stderr).
fn try_exec(ns: &NetNs, program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new("ip")
        .args(["netns", "exec", ns.name(), program])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} in {}: {e}", ns.name()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `curl` in `ns` with a 5 s limit; `url` may hold an IPv6 literal in brackets.
fn curl(ns: &NetNs, extra: &[&str], url: &str) -> (bool, String) {
    let mut args = vec!["-g", "-sS", "-i", "--max-time", "5"];
    args.extend_from_slice(extra);
    args.push(url);
    try_exec(ns, "curl", &args)
}

/// A plain HTTP server on port 8080 of both families, unaware of the mesh, answering with the
/// identity header it was given. Debian's own Python, which every UID can run.
fn start_app(ns: &NetNs) -> Child {
    let program = r#"
import http.server, socket
class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("client-id=%s\n" % self.headers.get("strait-client-id", "")).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class DualStack(http.server.HTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
DualStack(("::", 8080), App).serve_forever()
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

/// Two injected pods, their proxies holding identities and snapshots, and B's app.
struct World {
    net: DualStackPods,
    app: Child,
    // Held so the processes and files live as long as the world.
    _proxies: (Proxy, Proxy),
    _control_plane: ControlPlane,
    _dir: TempDir,
}

impl World {
    fn start(inbound_mode: &str) -> Self {
        let net = DualStackPods::new();
        let dir = TempDir::new("dual-stack");
        let config_dir = dir.path().join("config");
        mesh_config(&config_dir, inbound_mode);
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
        let anchors = std::fs::read_to_string(ca.join("trust-anchors.pem")).unwrap();
        let pod = injected(&anchors);
        let binary = binaries::path("strait-proxy");
        for ns in [&net.a, &net.b] {
            let args: Vec<&str> = pod.init_args.iter().map(String::as_str).collect();
            let printed = ns.exec(binary.to_str().unwrap(), &args);
            eprintln!("init in {}:\n{printed}", ns.name());
        }
        let start = |ns: &NetNs, workload: &str, service_account: &str, cp: &str| {
            let mut builder = Proxy::builder()
                .without_flag("--outbound-addr")
                .without_flag("--inbound-addr")
                .without_flag("--admin-addr")
                .netns(ns.name())
                .run_as(PROXY_UID)
                // The injector's environment, with what Kubernetes would fill in as flags.
                .flag("--control-plane", cp)
                .flag("--namespace", "demo")
                .flag("--service-account", service_account)
                .flag("--workload", workload)
                .flag(
                    "--token-file",
                    config_dir
                        .join(format!("tokens/{workload}.token"))
                        .display(),
                );
            for (key, value) in &pod.proxy_env {
                builder = builder.env(key, value);
            }
            builder.start()
        };
        let a = start(&net.a, "pod-a", "client", "10.78.1.1:8090");
        let b = start(&net.b, "pod-b", "server", "10.78.2.1:8090");
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
        let app = start_app(&net.b);
        Self {
            net,
            app,
            _proxies: (a, b),
            _control_plane: control_plane,
            _dir: dir,
        }
    }

    /// Pod B's proxy's metrics, read from inside pod B.
    fn b_metrics(&self) -> String {
        self.net
            .b
            .exec("curl", &["-sS", "http://127.0.0.1:4191/metrics"])
    }

    /// Pod B's proxy's inbound request count from the client identity over mTLS.
    fn b_inbound_mtls_requests_from_the_client(&self) -> Option<String> {
        self.b_metrics()
            .lines()
            .find(|l| {
                l.starts_with("strait_http_requests_total{")
                    && l.contains(r#"direction="inbound""#)
                    && l.contains(&format!(r#"peer_identity="{CLIENT_ID}""#))
                    && l.contains(r#"tls="true""#)
            })
            .map(str::to_owned)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.app.kill();
        let _ = self.app.wait();
    }
}

#[test]
fn an_ipv6_call_between_dual_stack_pods_goes_through_both_proxies_over_mtls() {
    if !require_root("an_ipv6_call_between_dual_stack_pods_goes_through_both_proxies_over_mtls") {
        return;
    }
    let world = World::start("Strict");
    let capture = Capture::start(&world.net.router);
    let (ok, answer) = curl(&world.net.a, &[], &format!("http://[{B6}]:8080/hello"));
    let segments = capture.finish();

    assert!(ok && answer.contains(" 200 "), "{answer}");
    assert!(
        answer.contains(&format!("client-id={CLIENT_ID}\n")),
        "B's app must get the caller's proven identity, set by B's proxy: {answer}"
    );

    // On the wire between the pods, over IPv6: TLS to B's inbound port, never the request.
    let a6: std::net::IpAddr = A6.parse().unwrap();
    let b6: std::net::IpAddr = B6.parse().unwrap();
    let between: Vec<_> = segments
        .iter()
        .filter(|s| s.src.ip() == a6 && s.dst.ip() == b6 && !s.payload.is_empty())
        .collect();
    assert!(
        !between.is_empty(),
        "the capture saw no IPv6 payload from A to B ({} segments)",
        segments.len()
    );
    assert!(between.iter().all(|s| s.dst.port() == 4143), "{between:?}");
    assert_eq!(
        &between[0].payload[..2],
        &[0x16, 0x03],
        "a TLS handshake record opens the hop"
    );
    for segment in &segments {
        assert!(
            !String::from_utf8_lossy(&segment.payload).contains("GET /hello"),
            "plaintext HTTP on the wire: {segment:?}"
        );
    }
    let line = world
        .b_inbound_mtls_requests_from_the_client()
        .expect("B's proxy counted no inbound mTLS request from the client");
    assert!(line.ends_with(" 1"), "{line}");
}

#[test]
fn a_non_meshed_ipv6_client_is_refused_by_a_strict_pod() {
    if !require_root("a_non_meshed_ipv6_client_is_refused_by_a_strict_pod") {
        return;
    }
    let world = World::start("Strict");
    // The router namespace stands for another pod without a proxy.
    for url in [
        format!("http://[{B6}]:8080/hello"),
        format!("http://{B4}:8080/hello"),
    ] {
        let (_, answer) = curl(&world.net.router, &[], &url);
        assert!(
            !answer.contains("client-id="),
            "a plaintext client outside the mesh reached the strict pod's app at {url}: {answer}"
        );
    }
    // Refused by B's proxy (not lost on the way): both attempts met its strict inbound.
    let metrics = world.b_metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l == "strait_inbound_plaintext_refused_total 2"),
        "{metrics}"
    );
    // The same app over mTLS from the meshed pod still works, on either family: the refusal
    // is policy.
    for url in [
        format!("http://[{B6}]:8080/hello"),
        format!("http://{B4}:8080/hello"),
    ] {
        let (ok, answer) = curl(&world.net.a, &[], &url);
        assert!(
            ok && answer.contains(&format!("client-id={CLIENT_ID}\n")),
            "{url}: {answer}"
        );
    }
}

#[test]
fn another_pod_cannot_reach_the_outbound_port_over_ipv4_or_ipv6() {
    if !require_root("another_pod_cannot_reach_the_outbound_port_over_ipv4_or_ipv6") {
        return;
    }
    // Permissive, so the old path (redirected to the inbound, handed to the outbound over
    // loopback, sent on as pod A) is not stopped earlier by strict mode.
    let world = World::start("Permissive");
    for url in [
        format!("http://{A4}:4140/hello"),
        format!("http://[{A6}]:4140/hello"),
    ] {
        let (ok, answer) = curl(
            &world.net.router,
            &["-H", "Host: server.demo.svc.cluster.local:8080"],
            &url,
        );
        // curl exits 7 when the connection is refused, 56 when it is reset.
        assert!(
            !ok && (answer.contains("Failed to connect") || answer.contains("reset")),
            "{url} reached a listener of pod A's proxy: {answer}"
        );
    }
    // Inside pod A the app's own calls still go out through the outbound listener.
    let (ok, answer) = curl(&world.net.a, &[], &format!("http://[{B6}]:8080/hello"));
    assert!(
        ok && answer.contains(&format!("client-id={CLIENT_ID}\n")),
        "{answer}"
    );
}

#[test]
fn the_admin_port_answers_probes_on_both_families_and_log_level_stays_local() {
    if !require_root("the_admin_port_answers_probes_on_both_families_and_log_level_stays_local") {
        return;
    }
    let world = World::start("Strict");
    for host in [A4.to_owned(), format!("[{A6}]")] {
        // The kubelet and Prometheus reach the admin port directly, on either family.
        let (ok, answer) = curl(&world.net.router, &[], &format!("http://{host}:4191/ready"));
        assert!(ok && answer.contains(" 200 "), "{host}: {answer}");
        // Seen with its own address, a remote caller cannot change the log level.
        let (_, answer) = curl(
            &world.net.router,
            &["-X", "PUT", "--data", "trace"],
            &format!("http://{host}:4191/log-level"),
        );
        assert!(answer.contains(" 403 "), "{host}: {answer}");
    }
    let (_, level) = curl(&world.net.a, &[], "http://127.0.0.1:4191/log-level");
    assert!(!level.contains("trace"), "{level}");
}

#[test]
fn an_ipv4_only_pod_gets_no_ipv6_rules_and_its_proxy_still_starts() {
    if !require_root("an_ipv4_only_pod_gets_no_ipv6_rules_and_its_proxy_still_starts") {
        return;
    }
    // A pod namespace whose interfaces have no IPv6 at all, as in an IPv4-only cluster that
    // disables it in pods.
    let ns = NetNs::create("v4-only");
    for sysctl in [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        ns.exec("sysctl", &["-q", "-w", sysctl]);
    }
    // The proxy runs without a control plane here, so the embedded anchors are never read.
    let pod = injected("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n");
    let binary = binaries::path("strait-proxy");
    let args: Vec<&str> = pod.init_args.iter().map(String::as_str).collect();
    let printed = ns.exec(binary.to_str().unwrap(), &args);
    assert!(
        printed.contains("ip6tables: skipped"),
        "init says it skipped IPv6: {printed}"
    );
    assert!(
        ns.exec("iptables-save", &["-t", "nat"])
            .contains("-A PREROUTING -j STRAIT_INBOUND"),
        "the IPv4 rules are installed"
    );
    assert!(
        !ns.exec("ip6tables-save", &["-t", "nat"]).contains("STRAIT"),
        "no IPv6 rules in an IPv4-only pod"
    );

    // The proxy with the injector's environment (no control plane needed to listen).
    let mut builder = Proxy::builder()
        .without_flag("--outbound-addr")
        .without_flag("--inbound-addr")
        .without_flag("--admin-addr")
        .netns(ns.name())
        .run_as(PROXY_UID);
    for (key, value) in pod
        .proxy_env
        .iter()
        .filter(|(k, _)| k == "STRAIT_MODE" || (k.starts_with("STRAIT_") && k.ends_with("_ADDR")))
    {
        builder = builder.env(key, value);
    }
    let proxy = builder.start();
    assert!(
        proxy.process.logged("no IPv6 here"),
        "{}",
        proxy.process.logs().join("\n")
    );
    let (ok, answer) = try_exec(&ns, "curl", &["-sS", "-i", "http://127.0.0.1:4191/live"]);
    assert!(ok && answer.contains(" 200 "), "{answer}");
}

#[test]
fn a_call_to_either_address_of_a_dual_stack_pod_carries_the_callers_identity() {
    if !require_root("a_call_to_either_address_of_a_dual_stack_pod_carries_the_callers_identity") {
        return;
    }
    // Strict: a call that reached B's proxy as plaintext, without an identity, would be
    // refused, and one that bypassed it would reach the app without the header.
    let world = World::start("Strict");
    let capture = Capture::start(&world.net.router);
    let mut answers = Vec::new();
    for url in [
        format!("http://{B4}:8080/hello"),
        format!("http://[{B6}]:8080/hello"),
    ] {
        answers.push((url.clone(), curl(&world.net.a, &[], &url)));
    }
    let segments = capture.finish();

    for (url, (ok, answer)) in &answers {
        assert!(*ok && answer.contains(" 200 "), "{url}: {answer}");
        assert!(
            answer.contains(&format!("client-id={CLIENT_ID}\n")),
            "B's app must get the caller's proven identity through {url}: {answer}"
        );
    }
    // On the wire, on each family: TLS from A to B's inbound port, never the request.
    for (from, to) in [(A4, B4), (A6, B6)] {
        let from: std::net::IpAddr = from.parse().unwrap();
        let to: std::net::IpAddr = to.parse().unwrap();
        let between: Vec<_> = segments
            .iter()
            .filter(|s| s.src.ip() == from && s.dst.ip() == to && !s.payload.is_empty())
            .collect();
        assert!(
            !between.is_empty(),
            "the capture saw no payload from {from} to {to} ({} segments)",
            segments.len()
        );
        assert!(between.iter().all(|s| s.dst.port() == 4143), "{between:?}");
        assert_eq!(
            &between[0].payload[..2],
            &[0x16, 0x03],
            "a TLS handshake record opens the hop from {from} to {to}"
        );
    }
    for segment in &segments {
        assert!(
            !String::from_utf8_lossy(&segment.payload).contains("GET /hello"),
            "plaintext HTTP on the wire: {segment:?}"
        );
    }
    let line = world
        .b_inbound_mtls_requests_from_the_client()
        .expect("B's proxy counted no inbound mTLS request from the client");
    assert!(
        line.ends_with(" 2"),
        "both calls, over mTLS from the client: {line}"
    );
    assert!(
        !world
            .b_metrics()
            .lines()
            .any(|l| l.starts_with("strait_inbound_plaintext_refused_total ") && !l.ends_with(" 0")),
        "nothing reached B's proxy as plaintext"
    );
}
