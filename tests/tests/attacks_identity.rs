//! A compromised meshed workload against the caller identity an app sees: the attacker holds
//! a valid certificate for its own identity (`frontend`), speaks mTLS and the transport
//! header by hand, and tries to make an app believe someone else is calling, to reach what
//! the control plane never exposed, or to make other proxies misbehave for it. Every attack
//! runs through the real control plane and proxies, in strict mode.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use strait_proxy::detect::Protocol;
use strait_proxy::transport_header::Header;
use strait_tests::backend::HttpBackend;
use strait_tests::certs::{Defects, Identity, TestCa};
use strait_tests::client;
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::metrics::Metrics;
use strait_tests::process::Proxy;
use strait_tests::tls_client::{self, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const FRONTEND: &str = "spiffe://cluster.local/ns/demo/sa/frontend";
const BACKEND: &str = "spiffe://cluster.local/ns/demo/sa/backend";
const ADMIN: &str = "spiffe://cluster.local/ns/demo/sa/admin";

const STRICT: &str = "apiVersion: strait.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: {inboundMode: Strict}\n";

/// frontend (the attacker's workload), backend (the victim) and secret (a service only
/// backend is meant to call), in strict mode.
fn mesh() -> Mesh {
    MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .service("secret", &[("app", "secret")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-1", "backend", &[("app", "backend")])
        .workload("secret-1", "secret", &[("app", "secret")])
        .yaml("strict.yaml", STRICT)
        .start()
}

/// The attacker's credentials: a valid mesh certificate for `frontend`.
fn attacker(mesh: &Mesh) -> Identity {
    TestCa::from_dir(&mesh.ca_dir).leaf(FRONTEND, &Defects::default())
}

fn victim_inbound(mesh: &Mesh) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], mesh.workload("backend-1").proxy_port))
}

/// Sends `bytes` to the victim's inbound under the attacker's identity with a transport
/// header naming `port` and `protocol`.
async fn as_attacker(
    mesh: &Mesh,
    port: u16,
    protocol: Protocol,
    bytes: &str,
) -> Result<String, String> {
    tls_client::exchange(
        victim_inbound(mesh),
        &mesh.anchors,
        BACKEND,
        Some(&attacker(mesh)),
        Version::Tls13,
        Header { port, protocol },
        bytes.as_bytes(),
    )
    .await
}

async fn refused(proxy: &Proxy, reason: &str) -> f64 {
    let text = proxy.admin_get("/metrics").await.text();
    Metrics::parse(text).sum("strait_inbound_refused_total", &[("reason", reason)])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transport_header_naming_the_destination_proxys_outbound_port_launders_no_identity() {
    let mesh = mesh();
    let _backend = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;
    let secret = HttpBackend::start_on(mesh.workload("secret-1").app(), "secret-1").await;
    let victim = mesh.proxy("backend-1");

    let answer = as_attacker(
        &mesh,
        victim.outbound.port(),
        Protocol::Http1,
        "GET /steal HTTP/1.1\r\nHost: secret.demo\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        !answer.as_deref().unwrap_or("").contains(BACKEND),
        "the request left through the victim's outbound under its identity: {answer:?}"
    );
    assert!(answer.is_err(), "the connection is refused: {answer:?}");
    assert_eq!(secret.requests(), 0, "nothing reached the secret service");
    assert!(refused(victim, "proxy-port").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transport_header_naming_the_admin_port_cannot_change_the_victims_log_level() {
    let mesh = mesh();
    let victim = mesh.proxy("backend-1");
    let before = victim.admin_get("/log-level").await.text();

    let answer = as_attacker(
        &mesh,
        victim.admin.port(),
        Protocol::Http1,
        "PUT /log-level HTTP/1.1\r\nHost: admin\r\nContent-Length: 5\r\nConnection: close\r\n\r\ntrace",
    )
    .await;
    assert!(answer.is_err(), "the connection is refused: {answer:?}");
    assert_eq!(victim.admin_get("/log-level").await.text(), before);
    assert!(refused(victim, "proxy-port").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_the_control_plane_does_not_name_is_out_of_reach() {
    let mesh = mesh();
    // An app of the victim's pod that listens on loopback only and belongs to no service.
    let internal = HttpBackend::start("internal").await;

    let answer = as_attacker(
        &mesh,
        internal.addr.port(),
        Protocol::Http1,
        "GET /internal HTTP/1.1\r\nHost: internal\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.is_err(), "the connection is refused: {answer:?}");
    assert_eq!(internal.requests(), 0);
    assert!(refused(mesh.proxy("backend-1"), "not-an-app-port").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn claiming_opaque_on_an_http_port_does_not_smuggle_a_forged_client_id() {
    let mesh = mesh();
    let _backend = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;

    let answer = as_attacker(
        &mesh,
        mesh.workload("backend-1").app_port,
        Protocol::Opaque,
        &format!(
            "GET /who HTTP/1.1\r\nHost: backend.demo\r\nstrait-client-id: {ADMIN}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await
    .expect("the bytes are HTTP, so they are served as HTTP");
    assert!(
        !answer.contains(ADMIN),
        "the forged identity reached the app: {answer}"
    );
    assert!(
        answer.contains(&format!("strait-client-id: {FRONTEND}")),
        "the app sees the proven caller: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_header_cannot_remove_the_proven_identity_and_lookalikes_never_arrive() {
    let mesh = mesh();
    let _backend = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;

    let answer = as_attacker(
        &mesh,
        mesh.workload("backend-1").app_port,
        Protocol::Http1,
        &format!(
            "GET /who HTTP/1.1\r\nHost: backend.demo\r\nConnection: strait-client-id, close\r\nstrait_client_id: {ADMIN}\r\nStrait-Client_Id: {ADMIN}\r\n\r\n"
        ),
    )
    .await
    .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.contains(ADMIN),
        "a look-alike reached the app: {answer}"
    );
    assert!(
        answer.contains(&format!("strait-client-id: {FRONTEND}")),
        "the proven identity survives `Connection: strait-client-id`: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_client_ids_in_http2_trailers_never_reach_the_app() {
    let mesh = mesh();
    let _backend = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;

    let tls = tls_client::connect(
        victim_inbound(&mesh),
        &mesh.anchors,
        BACKEND,
        Some(&attacker(&mesh)),
        Version::Tls13,
        Header {
            port: mesh.workload("backend-1").app_port,
            protocol: Protocol::Http2,
        },
    )
    .await
    .expect("an mTLS connection");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("an HTTP/2 connection");
    tokio::spawn(connection);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("strait-client-id", ADMIN.parse().unwrap());
    trailers.insert("strait_client_id", ADMIN.parse().unwrap());
    trailers.insert("x-kept", "yes".parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"payload"))),
        Ok(Frame::trailers(trailers)),
    ];
    let request = http::Request::post("http://backend.demo/trailers")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let response = sender.send_request(request).await.expect("a response");
    assert_eq!(response.status(), 200);
    let seen = response.into_body().collect().await.unwrap().to_bytes();
    let seen = String::from_utf8_lossy(&seen);
    assert!(
        seen.contains("x-kept: yes"),
        "the app saw the trailers: {seen}"
    );
    assert!(
        !seen.contains(ADMIN),
        "a forged identity arrived as a trailer: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apps_forged_proxy_error_header_does_not_get_a_post_sent_twice() {
    let mesh = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload("backend-1", "backend", &[("app", "backend")])
        .workload("backend-2", "backend", &[("app", "backend")])
        .start();
    let one = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;
    let two = HttpBackend::start_on(mesh.workload("backend-2").app(), "backend-2").await;

    let mut sender = client::http1(mesh.proxy("frontend-1").outbound).await;
    let request = http::Request::post("/status?code=502&proxy-error=connect-failed")
        .header("host", "backend.demo")
        .body(client::full("pay once"))
        .unwrap();
    let response = client::collect(sender.send_request(request).await.unwrap()).await;
    assert_eq!(response.status, 502);
    assert_eq!(
        response.header("strait-proxy-error"),
        "",
        "only proxies name their failures; the app's claim is removed"
    );
    assert_eq!(
        one.requests() + two.requests(),
        1,
        "the POST reached an app once: a forged \"never reached the app\" is no reason to resend"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_h2c_upgrade_is_refused_so_no_request_tunnels_past_the_proxy() {
    let mesh = mesh();
    let backend = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;

    let answer = as_attacker(
        &mesh,
        mesh.workload("backend-1").app_port,
        Protocol::Http1,
        "GET / HTTP/1.1\r\nHost: backend.demo\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_connection_is_closed_once_a_policy_change_no_longer_admits_the_caller() {
    let mesh = mesh();
    let _backend = HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await;

    let stream = tokio::net::TcpStream::connect(mesh.proxy("frontend-1").outbound)
        .await
        .unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async("ws://backend.demo/ws", stream)
        .await
        .expect("the upgrade succeeds while the caller is admitted");
    assert_eq!(response.status(), 101);
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));

    mesh.write_config(
        "policy.yaml",
        "apiVersion: strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: only-secret, namespace: demo}\nspec:\n  targetRef: {group: \"\", kind: Service, name: backend}\n  from: [{identity: spiffe://cluster.local/ns/demo/sa/secret}]\n",
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut closed = false;
    while Instant::now() < deadline {
        if ws.send(Message::text("after")).await.is_err() {
            closed = true;
            break;
        }
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                closed = true;
                break;
            }
            Ok(Some(Ok(_))) | Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(closed, "the WebSocket outlived the policy that admitted it");
    let text = mesh.proxy("backend-1").admin_get("/metrics").await.text();
    assert!(Metrics::parse(text).sum("strait_inbound_revoked_total", &[]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn before_its_first_snapshot_a_proxy_admits_nothing_inbound() {
    let mesh = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("backend-1", "backend", &[("app", "backend")])
        .start();
    let workload = mesh.workload("backend-1").clone();
    let app = HttpBackend::start_on(workload.app(), "backend-1").await;
    // A second proxy for the same workload whose control plane is unreachable: a pod
    // restarted while the control plane is down.
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = unreachable.local_addr().unwrap();
    drop(unreachable);
    let proxy = mesh
        .proxy_builder(&workload)
        .flag("--control-plane", dead)
        .flag("--inbound-addr", "127.0.0.1:0")
        .start();

    let mut stream = tokio::net::TcpStream::connect(proxy.inbound).await.unwrap();
    let header = Header {
        port: workload.app_port,
        protocol: Protocol::Http1,
    };
    stream.write_all(&header.encode()).await.unwrap();
    let _ = stream
        .write_all(b"GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(
        answer.is_empty(),
        "served before any policy was known: {}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(app.requests(), 0);
    assert!(refused(&proxy, "no-configuration").await >= 1.0);
}

/// An echo server that answers each read at once (the harness's TCP echo waits for EOF).
async fn start_streaming_echo(addr: SocketAddr) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn an_opaque_connection_is_closed_once_a_policy_change_no_longer_admits_the_caller() {
    let mesh = mesh();
    start_streaming_echo(mesh.workload("backend-1").app()).await;

    let mut stream = tokio::net::TcpStream::connect(mesh.proxy("frontend-1").outbound)
        .await
        .unwrap();
    stream
        .write_all(b"CONNECT backend.demo:80 HTTP/1.1\r\nHost: backend.demo:80\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the tunnel opens");
    let mut rest = Vec::new();
    while !rest.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        rest.push(byte[0]);
    }
    // Not HTTP, so the destination relays it as opaque TCP.
    stream.write_all(b"\x00before").await.unwrap();
    let mut echoed = [0u8; 7];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"\x00before");

    mesh.write_config(
        "policy.yaml",
        "apiVersion: strait.dev/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: only-secret, namespace: demo}\nspec:\n  targetRef: {group: \"\", kind: Service, name: backend}\n  from: [{identity: spiffe://cluster.local/ns/demo/sa/secret}]\n",
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut closed = false;
    while Instant::now() < deadline {
        if stream.write_all(b"\x00after!").await.is_err() {
            closed = true;
            break;
        }
        let mut buffer = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    assert!(
        closed,
        "the opaque connection outlived the policy that admitted it"
    );
    let text = mesh.proxy("backend-1").admin_get("/metrics").await.text();
    assert!(Metrics::parse(text).sum("strait_inbound_revoked_total", &[]) >= 1.0);
}
