//! Transparent interception for real: inside a network namespace the test creates, iptables
//! redirects an app's connections to service addresses into the outbound proxy, which reads
//! the original destination with SO_ORIGINAL_DST and routes by it, for HTTP and opaque TCP,
//! over IPv4 and IPv6. Needs root (CI runs it as root).

use std::time::Duration;

use strait_proto::discovery::v1 as pb;
use strait_tests::backend::{HttpBackend, start_tcp_echo_on};
use strait_tests::client;
use strait_tests::netns::{NetNs, require_root};
use strait_tests::process::Proxy;
use strait_tests::snapshot::{Endpoint, TempDir, inbound_port, service, snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A namespace with an interface on the "cluster" service ranges (a veth pair: the kernel
/// may lack the dummy driver), and NAT rules that send every TCP connection to those ranges
/// to the outbound listener on 4140.
fn namespace_with_redirect() -> NetNs {
    let ns = NetNs::create("redirect");
    ns.exec(
        "ip",
        &[
            "link", "add", "svc0", "type", "veth", "peer", "name", "svc1",
        ],
    );
    ns.exec("ip", &["addr", "add", "10.99.0.254/24", "dev", "svc0"]);
    ns.exec(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            "fd00:99::fe/64",
            "dev",
            "svc0",
            "nodad",
        ],
    );
    ns.exec("ip", &["link", "set", "svc0", "up"]);
    ns.exec("ip", &["link", "set", "svc1", "up"]);
    ns.exec(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            "10.99.0.0/24",
            "-j",
            "REDIRECT",
            "--to-ports",
            "4140",
        ],
    );
    ns.exec(
        "ip6tables",
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            "fd00:99::/64",
            "-j",
            "REDIRECT",
            "--to-ports",
            "4140",
        ],
    );
    ns
}

#[test]
fn redirected_connections_are_routed_by_their_original_destination() {
    if !require_root("redirected_connections_are_routed_by_their_original_destination") {
        return;
    }
    let ns = namespace_with_redirect();
    let dir = TempDir::new("redirect");
    let web = Endpoint {
        app: "127.0.0.1:8080".parse().unwrap(),
        proxy_port: Some(4143),
    };
    let tcp = Endpoint {
        app: "127.0.0.1:9000".parse().unwrap(),
        proxy_port: Some(4143),
    };
    let mut snapshot = snapshot(
        "1",
        vec![
            service(
                "web",
                "demo",
                80,
                &["10.99.0.1:80", "[fd00:99::1]:80"],
                &[web],
            ),
            service(
                "tcp",
                "demo",
                9000,
                &["10.99.0.2:9000", "[fd00:99::2]:9000"],
                &[tcp],
            ),
        ],
    );
    // The endpoints are this proxy's own apps: its inbound serves only the ports named here.
    snapshot.inbound_ports = vec![
        inbound_port(8080, pb::Protocol::Detect),
        inbound_port(9000, pb::Protocol::Detect),
    ];
    let path = dir.write_snapshot("snapshot.json", &snapshot);
    // One dual-stack outbound listener, as in a dual-stack pod.
    let proxy = Proxy::builder()
        .netns(ns.name())
        .flag("--mode", "pod")
        .flag("--outbound-addr", "[::]:4140")
        .flag("--inbound-addr", "127.0.0.1:4143")
        .flag("--admin-addr", "127.0.0.1:4191")
        .snapshot(&path)
        .start();

    let metrics = ns.run(|| async {
        let backend = HttpBackend::start_on("127.0.0.1:8080".parse().unwrap(), "web").await;
        start_tcp_echo_on("127.0.0.1:9000".parse().unwrap()).await;

        for target in ["10.99.0.1:80", "[fd00:99::1]:80"] {
            // The app dials the service address; nothing listens there but the redirect.
            let response = client::get(target.parse().unwrap(), "not-a-mesh-name", "/hello").await;
            assert_eq!(response.status, 200, "{target}: {}", response.text());
            assert_eq!(response.header("x-backend"), "web", "{target}");
            assert!(response.text().starts_with("GET /hello"), "{target}");
        }
        assert_eq!(backend.requests(), 2);

        for target in ["10.99.0.2:9000", "[fd00:99::2]:9000"] {
            let mut stream = TcpStream::connect(target).await.unwrap();
            stream.write_all(b"not http at all").await.unwrap();
            stream.shutdown().await.unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
                .await
                .expect("the echo answers after the half-close")
                .unwrap();
            assert_eq!(answer, b"echo:not http at all", "{target}");
        }
        client::get("127.0.0.1:4191".parse().unwrap(), "admin", "/metrics")
            .await
            .text()
    });

    // Parsed back; a redirected connection's series also name the Service its original
    // destination is (the `service` label of TCP metrics).
    let metrics = strait_tests::metrics::Metrics::parse(metrics);
    for (labels, expected) in [
        (
            &[
                ("direction", "outbound"),
                ("protocol", "http1"),
                ("service", "demo/web:80"),
            ][..],
            2.0,
        ),
        (
            &[
                ("direction", "outbound"),
                ("protocol", "opaque"),
                ("service", "demo/tcp:9000"),
            ],
            2.0,
        ),
        (&[("direction", "inbound"), ("protocol", "opaque")], 2.0),
    ] {
        assert_eq!(
            metrics.sum("strait_tcp_connections_opened_total", labels),
            expected,
            "strait_tcp_connections_opened_total{labels:?} in:\n{}",
            metrics.text
        );
    }
    drop(proxy);
}
