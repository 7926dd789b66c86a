//! Attack: a workload on the pod network reads another pod's proxy admin (`/config`,
//! `/status`, `/log-level`) or the control plane's `/proxies`, and learns the whole mesh's
//! services, endpoints, identities and policies.
//!
//! The proxy and the control plane run in a network namespace the test creates ("pod"),
//! with their admin listeners on `0.0.0.0`, as in a cluster; a second namespace ("peer")
//! reaches them over a veth pair from a non-loopback address. A second proxy's admin listens
//! on `[::]`, where IPv4 callers appear as IPv4-mapped addresses: the peer is still refused and
//! loopback still admitted. Needs root (CI runs it as root).

use std::net::SocketAddr;

use strait_tests::client::{self, Collected};
use strait_tests::control_plane::ControlPlane;
use strait_tests::netns::{NetNs, require_root};
use strait_tests::process::Proxy;
use strait_tests::snapshot::{Endpoint, TempDir, service, snapshot};

const POD_IP: &str = "10.79.0.2";
const PEER_IP: &str = "10.79.0.1";
const PROXY_ADMIN_PORT: u16 = 4191;
const CONTROL_PLANE_ADMIN_PORT: u16 = 9990;
const DUAL_STACK_ADMIN_PORT: u16 = 4192;

/// Namespace `pod` (10.79.0.2) and namespace `peer` (10.79.0.1) joined by a veth pair.
struct TwoHosts {
    pod: NetNs,
    peer: NetNs,
}

impl TwoHosts {
    fn new() -> Self {
        let pod = NetNs::create("adm-pod");
        let peer = NetNs::create("adm-peer");
        peer.exec(
            "ip",
            &[
                "link",
                "add",
                "peer0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                pod.name(),
            ],
        );
        peer.exec(
            "ip",
            &["addr", "add", &format!("{PEER_IP}/24"), "dev", "peer0"],
        );
        peer.exec("ip", &["link", "set", "peer0", "up"]);
        pod.exec(
            "ip",
            &["addr", "add", &format!("{POD_IP}/24"), "dev", "eth0"],
        );
        pod.exec("ip", &["link", "set", "eth0", "up"]);
        Self { pod, peer }
    }
}

/// `method path` to `addr` from inside `ns`.
fn request(ns: &NetNs, addr: SocketAddr, method: http::Method, path: &'static str) -> Collected {
    ns.run(move || async move {
        let mut sender = client::http1(addr).await;
        let body = if method == http::Method::PUT {
            client::full("debug")
        } else {
            client::empty()
        };
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "admin")
            .body(body)
            .expect("valid request");
        client::collect(sender.send_request(request).await.expect("sending")).await
    })
}

fn minimal_config(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("mesh.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: secret-billing, namespace: finance}\n\
         spec:\n  ports: [{name: http, port: 80}]\n",
    )
    .unwrap();
}

#[test]
fn a_peer_on_the_pod_network_cannot_read_the_mesh_from_admin_endpoints() {
    if !require_root("a_peer_on_the_pod_network_cannot_read_the_mesh_from_admin_endpoints") {
        return;
    }
    let hosts = TwoHosts::new();
    let dir = TempDir::new("admin-attack");
    let snapshot_file = dir.write_snapshot(
        "snapshot.json",
        &snapshot(
            "7",
            vec![service(
                "secret-billing",
                "finance",
                80,
                &[],
                &[Endpoint {
                    app: "10.79.5.5:8080".parse().unwrap(),
                    proxy_port: Some(4143),
                }],
            )],
        ),
    );
    let _proxy = Proxy::builder()
        .netns(hosts.pod.name())
        .snapshot(&snapshot_file)
        .flag("--admin-addr", format!("0.0.0.0:{PROXY_ADMIN_PORT}"))
        .start();
    // A dual-stack admin listener sees IPv4 callers as IPv4-mapped IPv6 addresses.
    let _dual_stack = Proxy::builder()
        .netns(hosts.pod.name())
        .snapshot(&snapshot_file)
        .flag("--admin-addr", format!("[::]:{DUAL_STACK_ADMIN_PORT}"))
        .start();
    let config_dir = dir.path().join("config");
    minimal_config(&config_dir);
    let _control_plane = ControlPlane::start_in(
        Some(hosts.pod.name()),
        &config_dir,
        &[
            (
                "--admin-addr",
                format!("0.0.0.0:{CONTROL_PLANE_ADMIN_PORT}"),
            ),
            ("--dev-ca", dir.path().join("ca").display().to_string()),
        ],
    );
    let remote_proxy: SocketAddr = format!("{POD_IP}:{PROXY_ADMIN_PORT}").parse().unwrap();
    let remote_cp: SocketAddr = format!("{POD_IP}:{CONTROL_PLANE_ADMIN_PORT}")
        .parse()
        .unwrap();
    let local_proxy: SocketAddr = format!("127.0.0.1:{PROXY_ADMIN_PORT}").parse().unwrap();
    let remote_dual: SocketAddr = format!("{POD_IP}:{DUAL_STACK_ADMIN_PORT}").parse().unwrap();
    let local_dual: SocketAddr = format!("127.0.0.1:{DUAL_STACK_ADMIN_PORT}")
        .parse()
        .unwrap();
    let local_cp: SocketAddr = format!("127.0.0.1:{CONTROL_PLANE_ADMIN_PORT}")
        .parse()
        .unwrap();
    use http::Method;

    // From the pod network: what reveals the mesh (or changes the proxy) is refused, saying why.
    let mut leaks = Vec::new();
    for (addr, method, path) in [
        (remote_proxy, Method::GET, "/config"),
        (remote_proxy, Method::GET, "/status"),
        (remote_proxy, Method::GET, "/log-level"),
        (remote_proxy, Method::PUT, "/log-level"),
        (remote_dual, Method::GET, "/config"),
        (remote_cp, Method::GET, "/proxies"),
    ] {
        let response = request(&hosts.peer, addr, method.clone(), path);
        let text = response.text();
        // A 403 must say why (loopback only, and whom it refused), or it is not this refusal.
        if response.status != 403 || !(text.contains("loopback") && text.contains(PEER_IP)) {
            leaks.push(format!(
                "{method} {addr}{path} from {PEER_IP} answered {}: {}",
                response.status,
                text.chars().take(300).collect::<String>()
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "admin endpoints leaked:\n{}",
        leaks.join("\n")
    );

    // Kubelet and Prometheus still reach what they need from the pod network.
    for (addr, path) in [
        (remote_proxy, "/metrics"),
        (remote_proxy, "/live"),
        (remote_proxy, "/ready"),
        (remote_dual, "/metrics"),
        (remote_cp, "/metrics"),
        (remote_cp, "/live"),
        (remote_cp, "/ready"),
    ] {
        let response = request(&hosts.peer, addr, Method::GET, path);
        assert_eq!(response.status, 200, "{addr}{path}: {}", response.text());
    }

    // From the pod itself (and so through `kubectl port-forward`), everything answers.
    let config = request(&hosts.pod, local_proxy, Method::GET, "/config");
    assert_eq!(config.status, 200, "{}", config.text());
    assert!(
        config.text().contains("secret-billing"),
        "{}",
        config.text()
    );
    let config = request(&hosts.pod, local_dual, Method::GET, "/config");
    assert_eq!(config.status, 200, "through [::]: {}", config.text());
    let status = request(&hosts.pod, local_proxy, Method::GET, "/status");
    assert_eq!(status.status, 200, "{}", status.text());
    let level = request(&hosts.pod, local_proxy, Method::PUT, "/log-level");
    assert_eq!(level.status, 200, "{}", level.text());
    let proxies = request(&hosts.pod, local_cp, Method::GET, "/proxies");
    assert_eq!(proxies.status, 200, "{}", proxies.text());
}
