//! Test backends: the applications behind the proxies. Each runs on its own loopback port in
//! the test process and reports what it saw, so tests can assert content end to end.
//!
//! The HTTP backend speaks HTTP/1.1 and HTTP/2 on one port and offers:
//! - `/echo`: streams the request body back as it arrives;
//! - `/upload`: reads the whole body, answers its length and checksum in headers;
//! - `/download?bytes=N`: streams N bytes of [`pattern`];
//! - `/chunks?n=K`: a chunked response of K chunks `chunk-<i>\n`, written over time;
//! - `/slow?ms=N`: answers after N milliseconds;
//! - `/status?code=N`: answers with status N;
//! - `/ws`: a WebSocket echo;
//! - anything else: `200` with the request's method, path and headers in the body.
//!
//! Every response carries `x-backend` (the backend's name) and `x-seen-client-id` (the
//! `strait-client-id` header the backend received, or empty).
//!
//! Longer than 500 lines: the fault-injecting backends of every protocol share one switchboard of faults.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The byte at position `i` of the deterministic payload used for large bodies.
pub fn pattern(i: u64) -> u8 {
    ((i * 31 + 7) % 251) as u8
}

/// `len` bytes of [`pattern`] starting at `offset`.
pub fn pattern_bytes(offset: u64, len: usize) -> Bytes {
    (0..len as u64).map(|i| pattern(offset + i)).collect()
}

/// A running checksum (FNV-1a, 64-bit) over a byte stream that arrives in pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksum(u64);

impl Default for Checksum {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Checksum {
    /// Folds `bytes` in.
    pub fn update(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The checksum as hex.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }

    /// The checksum of `len` bytes of [`pattern`].
    pub fn of_pattern(len: u64) -> Self {
        let mut sum = Self::default();
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(64 * 1024);
            sum.update(&pattern_bytes(offset, n as usize));
            offset += n;
        }
        sum
    }
}

/// Faults a backend injects into every request it serves (besides its paths' own behaviour).
#[derive(Default)]
pub struct Faults {
    /// Share of requests, in percent, answered with `fail_status` instead; spread evenly
    /// (request n fails when `n * percent mod 100 < percent`), so 30 % fails requests
    /// 0, 4, 7, 10, 14, 17... and a retry of a failed request succeeds.
    pub fail_percent: AtomicU64,
    /// The status failed requests get (503 when 0).
    pub fail_status: AtomicU64,
    /// Milliseconds every request waits before being answered.
    pub delay_ms: AtomicU64,
    /// When not 0, a connection idle (no request in progress) this many milliseconds is
    /// closed abruptly, as a server with a short keep-alive timeout does, whether or not a
    /// next request is already on its way.
    pub idle_close_ms: AtomicU64,
}

impl Faults {
    fn should_fail(&self, n: u64) -> Option<StatusCode> {
        let percent = self.fail_percent.load(Ordering::SeqCst);
        if percent == 0 || (n * percent) % 100 >= percent {
            return None;
        }
        let status = match self.fail_status.load(Ordering::SeqCst) {
            0 => 503,
            s => s as u16,
        };
        StatusCode::from_u16(status).ok()
    }
}

/// A running HTTP backend.
pub struct HttpBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, echoed in `x-backend`.
    pub name: String,
    /// Faults to inject; change them at any time.
    pub faults: Arc<Faults>,
    requests: Arc<AtomicU64>,
    max_in_flight: Arc<AtomicU64>,
    cancelled: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    killed: tokio::sync::watch::Sender<bool>,
    ids: Arc<std::sync::Mutex<Vec<u64>>>,
}

impl HttpBackend {
    /// Starts a backend named `name` on a free loopback port.
    pub async fn start(name: &str) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("valid address"), name).await
    }

    /// Starts a backend named `name` on `addr`.
    pub async fn start_on(addr: SocketAddr, name: &str) -> Self {
        let listener = TcpListener::bind(addr)
            .await
            .expect("binding the test backend");
        let addr = listener.local_addr().expect("backend address");
        let requests = Arc::new(AtomicU64::new(0));
        let max_in_flight = Arc::new(AtomicU64::new(0));
        let cancelled = Arc::new(AtomicU64::new(0));
        let faults = Arc::new(Faults::default());
        let connections = Arc::new(AtomicU64::new(0));
        let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
        let state = Arc::new(State {
            ids: ids.clone(),
            name: name.to_owned(),
            requests: requests.clone(),
            in_flight: AtomicU64::new(0),
            max_in_flight: max_in_flight.clone(),
            cancelled: cancelled.clone(),
            faults: faults.clone(),
        });
        let open = connections.clone();
        let accepted = Arc::new(AtomicU64::new(0));
        let accepted_count = accepted.clone();
        let (killed, mut kill) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    // Killed: the listener closes with this task.
                    _ = kill.changed() => return,
                };
                accepted_count.fetch_add(1, Ordering::SeqCst);
                // As real servers do: answers are small writes that must leave at once.
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let open = open.clone();
                let mut kill = kill.clone();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _closed = Decrement(open);
                    let activity = Arc::new(Activity::default());
                    let seen = activity.clone();
                    let faults = state.faults.clone();
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        let activity = activity.clone();
                        async move {
                            activity.begin();
                            let unfinished = Unfinished(Some(state.cancelled.clone()));
                            let response = state.handle(request).await;
                            unfinished.finish();
                            activity.end();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // Heads up to the proxy's own limit (64 KiB) reach the app whole, as
                    // they would an app with a larger limit than hyper's 16 KiB default.
                    builder.http2().max_header_list_size(128 * 1024);
                    let serve =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    // Dropping the connection closes the socket without ceremony, as a process
                    // dying or a server's idle timer does.
                    tokio::select! {
                        _ = serve => {}
                        () = seen.idle_past(&faults) => {}
                        _ = kill.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            name: name.to_owned(),
            faults,
            requests,
            max_in_flight,
            cancelled,
            connections,
            accepted,
            killed,
            ids,
        }
    }

    /// The `x-request-id` of every request received (numeric ids only), in arrival order.
    pub fn request_ids(&self) -> Vec<u64> {
        self.ids.lock().expect("ids lock").clone()
    }

    /// Kills the backend as a crashing process dies: the listener closes and every
    /// connection is dropped at once, requests in progress included.
    pub fn kill(&self) {
        let _ = self.killed.send(true);
    }

    /// Connections accepted since the start.
    pub fn accepted_connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently open to this backend.
    pub fn open_connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests this backend has received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests whose handling was abandoned before the answer was ready: the client side
    /// (the proxy) reset the stream or closed the connection.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// The most `/slow` requests that were in progress at the same time.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

struct State {
    ids: Arc<std::sync::Mutex<Vec<u64>>>,
    name: String,
    requests: Arc<AtomicU64>,
    in_flight: AtomicU64,
    max_in_flight: Arc<AtomicU64>,
    cancelled: Arc<AtomicU64>,
    faults: Arc<Faults>,
}

/// Counts a request as cancelled when its handling is dropped before it finishes.
struct Unfinished(Option<Arc<AtomicU64>>);

impl Unfinished {
    fn finish(mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(cancelled) = &self.0 {
            cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Requests in progress on one connection and when the last one ended.
struct Activity {
    in_flight: AtomicU64,
    last_end: std::sync::Mutex<std::time::Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            in_flight: AtomicU64::new(0),
            last_end: std::sync::Mutex::new(std::time::Instant::now()),
        }
    }
}

impl Activity {
    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    fn end(&self) {
        *self.last_end.lock().expect("activity lock") = std::time::Instant::now();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Completes once the connection has been idle for `faults.idle_close_ms` (never while
    /// that is 0).
    async fn idle_past(&self, faults: &Faults) {
        loop {
            let limit = faults.idle_close_ms.load(Ordering::SeqCst);
            if limit == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let limit = Duration::from_millis(limit);
            let idle = self.last_end.lock().expect("activity lock").elapsed();
            if self.in_flight.load(Ordering::SeqCst) == 0 && idle >= limit {
                return;
            }
            tokio::time::sleep((limit / 10).max(Duration::from_millis(1))).await;
        }
    }
}

/// Decrements a counter when dropped.
struct Decrement(Arc<AtomicU64>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn query_number(request: &Request<Incoming>, key: &str) -> Option<u64> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.parse().ok()).flatten()
    })
}

fn query_text<'a>(request: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then_some(v)
    })
}

fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed()
}

impl State {
    async fn handle(&self, mut request: Request<Incoming>) -> Response<Body> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(id) = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()?.parse().ok())
        {
            self.ids.lock().expect("ids lock").push(id);
        }
        let delay = self.faults.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if let Some(status) = self.faults.should_fail(n) {
            let mut response = self::status(status, format!("injected failure {n}\n"));
            response.headers_mut().insert(
                "x-backend",
                self.name.parse().expect("backend names are header-safe"),
            );
            return response;
        }
        let client_id = request
            .headers()
            .get("strait-client-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut response = match request.uri().path() {
            "/echo" => {
                let body = request.into_body().map_err(Into::into).boxed();
                Response::new(body)
            }
            "/upload" => {
                let mut sum = Checksum::default();
                let mut len = 0u64;
                let mut body = request.into_body();
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(frame) => {
                            if let Some(data) = frame.data_ref() {
                                sum.update(data);
                                len += data.len() as u64;
                            }
                        }
                        Err(error) => {
                            return status(
                                StatusCode::BAD_REQUEST,
                                format!("body failed: {error}"),
                            );
                        }
                    }
                }
                let mut response = Response::new(full(format!("{len} {}\n", sum.hex())));
                response.headers_mut().insert("x-body-bytes", len.into());
                response.headers_mut().insert(
                    "x-body-checksum",
                    sum.hex().parse().expect("hex is a header value"),
                );
                response
            }
            "/download" => {
                let total = query_number(&request, "bytes").unwrap_or(0);
                let chunks = futures_util::stream::unfold(0u64, move |offset| async move {
                    (offset < total).then(|| {
                        let n = (total - offset).min(64 * 1024);
                        let frame = Frame::data(pattern_bytes(offset, n as usize));
                        (
                            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(frame),
                            offset + n,
                        )
                    })
                });
                Response::new(BodyExt::boxed(StreamBody::new(chunks)))
            }
            "/chunks" => {
                let n = query_number(&request, "n").unwrap_or(3);
                let chunks = futures_util::stream::unfold(0u64, move |i| async move {
                    if i >= n {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let frame = Frame::data(Bytes::from(format!("chunk-{i}\n")));
                    Some((
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(frame),
                        i + 1,
                    ))
                });
                Response::new(BodyExt::boxed(StreamBody::new(chunks)))
            }
            "/slow" => {
                let ms = query_number(&request, "ms").unwrap_or(1000);
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.max_in_flight.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Response::new(full("slow done\n"))
            }
            "/status" => {
                let code = query_number(&request, "code").unwrap_or(200) as u16;
                let mut response = status(
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    format!("status {code}\n"),
                );
                // An app claiming a proxy's failure (`?proxy-error=connect-failed`).
                if let Some(kind) = query_text(&request, "proxy-error") {
                    response.headers_mut().insert(
                        "strait-proxy-error",
                        kind.parse()
                            .unwrap_or(http::HeaderValue::from_static("other")),
                    );
                }
                response
            }
            "/trailers" => match request.into_body().collect().await {
                // One `name: value` line per trailer the request ended with.
                Ok(collected) => {
                    let mut text = String::new();
                    for (name, value) in collected.trailers().into_iter().flatten() {
                        text.push_str(&format!(
                            "{name}: {}\n",
                            value.to_str().unwrap_or("<binary>")
                        ));
                    }
                    Response::new(full(text))
                }
                Err(error) => status(StatusCode::BAD_REQUEST, format!("body failed: {error}")),
            },
            "/ws" => websocket(&mut request),
            _ => {
                let mut text = format!("{} {}\n", request.method(), request.uri());
                for (name, value) in request.headers() {
                    text.push_str(&format!(
                        "{name}: {}\n",
                        value.to_str().unwrap_or("<binary>")
                    ));
                }
                Response::new(full(text))
            }
        };
        let headers = response.headers_mut();
        headers.insert(
            "x-backend",
            self.name.parse().expect("backend names are header-safe"),
        );
        headers.insert(
            "x-seen-client-id",
            client_id
                .parse()
                .unwrap_or(http::HeaderValue::from_static("")),
        );
        response
    }
}

fn status(code: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = code;
    response
}

/// Accepts a WebSocket upgrade and echoes every message back.
fn websocket(request: &mut Request<Incoming>) -> Response<Body> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return status(StatusCode::BAD_REQUEST, "not a WebSocket request\n".into());
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = ws.next().await {
            if message.is_close() {
                break;
            }
            if ws.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("upgrade", http::HeaderValue::from_static("websocket"));
    headers.insert("connection", http::HeaderValue::from_static("upgrade"));
    headers.insert(
        "sec-websocket-accept",
        accept.parse().expect("base64 is a header value"),
    );
    response
}

/// A TCP backend that reads until the client half-closes, then answers `echo:` followed by
/// everything it read, and closes.
pub async fn start_tcp_echo() -> SocketAddr {
    start_tcp_echo_on("127.0.0.1:0".parse().expect("valid address")).await
}

/// [`start_tcp_echo`] on a given address.
pub async fn start_tcp_echo_on(addr: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind(addr)
        .await
        .expect("binding the TCP echo backend");
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut received = Vec::new();
                if stream.read_to_end(&mut received).await.is_err() {
                    return;
                }
                let mut answer = b"echo:".to_vec();
                answer.extend_from_slice(&received);
                let _ = stream.write_all(&answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// Starts the test gRPC service on a free loopback port.
pub async fn start_grpc() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding the gRPC backend");
    let addr = listener.local_addr().expect("gRPC address");
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
            let stream = stream?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(stream)
        });
        tonic::transport::Server::builder()
            .add_service(crate::grpc::EchoServer::new(crate::grpc::EchoService))
            .serve_with_incoming(incoming)
            .await
            .expect("gRPC backend failed");
    });
    addr
}
