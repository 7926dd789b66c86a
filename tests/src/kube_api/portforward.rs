//! The fake's `pods/NAME/portforward` subresource over WebSocket, as the API server and the
//! kubelet serve it to kube-rs and `kubectl`: subprotocol `v4.channel.k8s.io`, one pair of
//! channels per port (data `2i`, error `2i+1`), each opened by a frame holding the port as
//! little-endian `u16`, then binary frames whose first byte names the channel. A port with no
//! listener behind it gets the kubelet's error message on its error channel.
//!
//! The pod's network namespace is stood in for by a loopback address per (namespace, pod,
//! port), set with [`FakeApi::serve_pod_port`](super::FakeApi::serve_pod_port); nothing else
//! is ever dialled. Written here rather than taken from a library: no crate serves this
//! subresource; tungstenite does the WebSocket framing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{Body, State, query, status};

/// The one subprotocol the fake speaks (the kubelet's binary v4).
pub const PROTOCOL: &str = "v4.channel.k8s.io";

/// Answers the upgrade request and relays once upgraded.
pub(super) fn upgrade(
    state: &Arc<Mutex<State>>,
    pod: &Value,
    request: Request<Incoming>,
) -> Response<Body> {
    let ports: Vec<u16> = query(&request)
        .get("ports")
        .map(|p| p.split(',').filter_map(|p| p.trim().parse().ok()).collect())
        .unwrap_or_default();
    let [port] = ports[..] else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the fake forwards exactly one port per request",
        );
    };
    let header = |name: http::header::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let Some(key) = header(http::header::SEC_WEBSOCKET_KEY) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "port-forward needs a WebSocket upgrade",
        );
    };
    let offered = header(http::header::SEC_WEBSOCKET_PROTOCOL).unwrap_or_default();
    if !offered.split(',').any(|p| p.trim() == PROTOCOL) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("no supported subprotocol in {offered:?}; the fake speaks {PROTOCOL}"),
        );
    }
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_owned();
    let target = state
        .lock()
        .expect("state lock")
        .pod_ports
        .get(&(namespace, name, port))
        .copied();
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(request).await else {
            return;
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        relay(socket, port, target, &uid).await;
    });
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(
        http::header::SEC_WEBSOCKET_ACCEPT,
        derive_accept_key(key.as_bytes())
            .parse()
            .expect("an accept key is a header value"),
    );
    headers.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(PROTOCOL),
    );
    response
}

fn frame(channel: u8, bytes: &[u8]) -> Message {
    let mut data = Vec::with_capacity(bytes.len() + 1);
    data.push(channel);
    data.extend_from_slice(bytes);
    Message::binary(data)
}

/// Relays channel 0 to and from `target` until either side closes.
async fn relay<S>(socket: WebSocketStream<S>, port: u16, target: Option<SocketAddr>, uid: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    let opening = port.to_le_bytes();
    if sink.send(frame(0, &opening)).await.is_err() || sink.send(frame(1, &opening)).await.is_err()
    {
        return;
    }
    let connected = match target {
        Some(addr) => TcpStream::connect(addr).await.ok(),
        None => None,
    };
    let Some(tcp) = connected else {
        // The kubelet's words (containerd) when nothing listens on the pod's port.
        let message = format!(
            "error forwarding port {port} to pod {uid}, uid : failed to execute portforward in network namespace \"/var/run/netns/cni-fake\": failed to connect to localhost:{port} inside namespace \"{uid}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: connect: connection refused "
        );
        let _ = sink.send(frame(1, message.as_bytes())).await;
        let _ = sink.send(Message::Close(None)).await;
        return;
    };
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let upstream = async {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(bytes) if bytes.len() > 1 && bytes[0] == 0 => {
                    let Ok(()) = to_pod.write_all(&bytes[1..]).await else {
                        break;
                    };
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    let downstream = async {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match from_pod.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(frame(0, &buffer[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}
