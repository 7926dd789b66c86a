//! The inbound side end to end in one process: a listener hands each accepted connection to
//! [`Inbound::serve`] as the proxy's inbound listener does; a test client speaks the mesh's
//! transport header and real HTTP/1 on loopback to an app that records what it saw. (Mesh
//! mTLS and iptables redirection are the integration tests' business; this is the admission,
//! header and forwarding logic without them.)

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use strait_proto::discovery::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::body::full;
use crate::connect::Connector;
use crate::head_limits::HeadLimits;
use crate::http::server::ServerLimits;
use crate::shared::Settings;
use crate::table::{EndpointSettings, TableHandle};
use crate::telemetry::tcp::TcpMetrics;
use crate::telemetry::trace::Tracer;

const HEADS: HeadLimits = HeadLimits {
    max_bytes: 65_536,
    max_fields: 100,
};

/// An app that answers 200 and records the `strait-client-id` of each request it sees.
async fn start_app() -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let answer = service_fn(move |request: Request<Incoming>| {
                let id = request
                    .headers()
                    .get("strait-client-id")
                    .map(|v| v.to_str().unwrap_or("?").to_owned());
                log.lock().unwrap().push(id);
                async move { Ok::<_, Infallible>(Response::new(full("from the app"))) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), answer),
            );
        }
    });
    (addr, seen)
}

fn shared() -> Arc<Shared> {
    let connector = Connector::new(Duration::from_secs(1), None);
    let table = TableHandle::new(EndpointSettings {
        connector: connector.clone(),
        idle_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(1),
        mtls: false,
        heads: HEADS,
    });
    Arc::new(Shared {
        settings: Settings {
            limits: ServerLimits {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(300),
                max_request_line_bytes: 8192,
                h2_stream_window: 1 << 20,
                h2_connection_window: 2 << 20,
                max_header_bytes: HEADS.max_bytes,
                max_headers: HEADS.max_fields,
                h2_max_concurrent_streams: 256,
            },
            detect_max_bytes: 8192,
            opaque_ports: Vec::new(),
            detect_timeout: Duration::from_secs(1),
            tcp_idle_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(30),
            inbound_target_ip: None,
            default_inbound_mode: InboundMode::Permissive,
            retry_buffer: 65_536,
            trust_domain: "cluster.local".into(),
        },
        table,
        connector,
        tcp_metrics: TcpMetrics::new(),
        drain: CancellationToken::new(),
        tracer: Tracer::disabled(),
        access_log: crate::telemetry::access_log::AccessLog::default(),
    })
}

/// A snapshot naming `ports` as the workload's HTTP/1 ports, open to everyone.
fn snapshot_with(ports: &[u16]) -> pb::Snapshot {
    pb::Snapshot {
        version: "1".into(),
        inbound_ports: ports
            .iter()
            .map(|&port| pb::InboundPort {
                port: u32::from(port),
                protocol: pb::Protocol::Http1.into(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// An inbound listener serving with `shared`; returns its address.
async fn start_inbound(shared: Arc<Shared>, has_configuration_source: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let own_ports = OwnPorts {
        inbound: addr.port(),
        outbound: 1,
        admin: 2,
    };
    let inbound = Inbound::new(shared, None, own_ports, has_configuration_source);
    tokio::spawn(async move {
        while let Ok((stream, client)) = listener.accept().await {
            tokio::spawn(inbound.clone().serve(stream, client));
        }
    });
    addr
}

/// Sends one GET with a forged `strait-client-id` to `app_port` through the inbound at
/// `inbound`, as a plaintext mesh peer would, and returns what came back (≤ 5 s).
async fn get_through(inbound: SocketAddr, app_port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(inbound).await.unwrap();
    let header = Header {
        port: app_port,
        protocol: Protocol::Http1,
    };
    stream.write_all(&header.encode()).await.unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nhost: web\r\nstrait-client-id: spiffe://cluster.local/ns/x/sa/admin\r\nconnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_named_port_is_served_and_a_forged_client_id_never_reaches_the_app() {
    let (app, seen) = start_app().await;
    let shared = shared();
    assert!(shared.table.apply(snapshot_with(&[app.port()])).is_empty());
    let inbound = start_inbound(shared, true).await;
    let answer = get_through(inbound, app.port()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None],
        "a plaintext caller proves no identity, so the app sees none"
    );
}

#[tokio::test]
async fn a_port_the_snapshot_does_not_name_is_refused_before_the_app_is_reached() {
    let (app, seen) = start_app().await;
    let (other, _) = start_app().await;
    let shared = shared();
    shared.table.apply(snapshot_with(&[other.port()]));
    let inbound = start_inbound(shared, true).await;
    let answer = get_through(inbound, app.port()).await;
    assert!(!answer.contains("from the app"), "{answer}");
    assert!(seen.lock().unwrap().is_empty(), "the app was reached");
}

#[tokio::test]
async fn before_the_first_snapshot_nothing_is_admitted_and_after_it_the_port_is() {
    let (app, seen) = start_app().await;
    let shared = shared();
    let inbound = start_inbound(shared.clone(), true).await;
    let answer = get_through(inbound, app.port()).await;
    assert!(!answer.contains("from the app"), "{answer}");
    assert!(seen.lock().unwrap().is_empty());
    shared.table.apply(snapshot_with(&[app.port()]));
    let answer = get_through(inbound, app.port()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_header_naming_the_proxys_own_inbound_port_is_refused() {
    let shared = shared();
    let inbound = start_inbound(shared.clone(), true).await;
    shared.table.apply(snapshot_with(&[inbound.port()]));
    let answer = get_through(inbound, inbound.port()).await;
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
}
