//! The demo's applications, in process: backends that answer with who they are (one of them
//! failing a share of requests), a frontend that calls `backend` through its proxy, and the
//! traffic driver that calls the frontend and keeps client-side statistics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: String, headers: &[(&str, String)]) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(*name),
            http::HeaderValue::try_from(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Serves `handle` on `addr` over HTTP/1.1 until the process ends.
async fn serve<F, Fut>(addr: SocketAddr, handle: F) -> anyhow::Result<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding a demo app to {addr}: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(handle(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(())
}

/// A backend replica: answers `{"instance": ..., "version": ...}`, failing `fail_percent` of
/// requests (spread evenly) with 503.
pub async fn start_backend(
    addr: SocketAddr,
    instance: &str,
    version: &str,
    fail_percent: u64,
) -> anyhow::Result<()> {
    let count = Arc::new(AtomicU64::new(0));
    let instance = instance.to_owned();
    let version = version.to_owned();
    serve(addr, move |request: Request<Incoming>| {
        let n = count.fetch_add(1, Ordering::Relaxed);
        let instance = instance.clone();
        let version = version.clone();
        async move {
            let caller = request
                .headers()
                .get("strait-client-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let headers = [("x-instance", instance.clone()), ("x-version", version.clone())];
            // Spread failures evenly, so a retry of a failed request usually succeeds.
            if fail_percent > 0 && (n * fail_percent) % 100 < fail_percent {
                return reply(StatusCode::SERVICE_UNAVAILABLE, format!("{instance} is having a bad moment\n"), &headers);
            }
            let body = format!("{{\"instance\":\"{instance}\",\"version\":\"{version}\",\"caller\":\"{caller}\"}}\n");
            reply(StatusCode::OK, body, &headers)
        }
    })
    .await
}

/// The frontend: each request makes one call to `authority` through the proxy's outbound
/// listener at `outbound`, and answers with what the backend said.
pub async fn start_frontend(
    addr: SocketAddr,
    outbound: SocketAddr,
    authority: &'static str,
) -> anyhow::Result<()> {
    serve(addr, move |_request: Request<Incoming>| async move {
        match call(outbound, authority).await {
            Ok((status, body, version)) => reply(status, body, &[("x-version", version)]),
            Err(error) => reply(
                StatusCode::BAD_GATEWAY,
                format!("frontend could not reach backend: {error}\n"),
                &[],
            ),
        }
    })
    .await
}

async fn call(
    outbound: SocketAddr,
    authority: &str,
) -> anyhow::Result<(StatusCode, String, String)> {
    let stream = TcpStream::connect(outbound).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get("/")
        .header("host", authority)
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let version = response
        .headers()
        .get("x-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned(), version))
}

/// Client-side statistics of one reporting interval.
#[derive(Debug, Default)]
pub struct Window {
    /// Requests that completed.
    pub requests: u64,
    /// Of which succeeded (2xx).
    pub ok: u64,
    /// Latencies in seconds.
    pub latencies: Vec<f64>,
    /// Answers by backend version.
    pub by_version: std::collections::BTreeMap<String, u64>,
}

/// Calls the frontend at a steady rate and records what it sees.
pub struct Driver {
    window: Arc<Mutex<Window>>,
    total: Arc<(AtomicU64, AtomicU64)>,
    task: tokio::task::JoinHandle<()>,
}

impl Driver {
    /// Starts driving `rps` requests per second at `frontend`.
    pub fn start(frontend: SocketAddr, rps: u32) -> Self {
        let window = Arc::new(Mutex::new(Window::default()));
        let total = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let (w, t) = (window.clone(), total.clone());
        let task = tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rps.max(1))));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (w, t) = (w.clone(), t.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let outcome = call(frontend, "frontend.demo").await;
                    let elapsed = started.elapsed().as_secs_f64();
                    let mut window = w.lock().expect("driver lock poisoned");
                    window.requests += 1;
                    t.0.fetch_add(1, Ordering::Relaxed);
                    window.latencies.push(elapsed);
                    if let Ok((status, _, version)) = outcome
                        && status.is_success()
                    {
                        window.ok += 1;
                        t.1.fetch_add(1, Ordering::Relaxed);
                        *window.by_version.entry(version).or_default() += 1;
                    }
                });
            }
        });
        Self {
            window,
            total,
            task,
        }
    }

    /// The statistics since the last call.
    pub fn take(&self) -> Window {
        std::mem::take(&mut *self.window.lock().expect("driver lock poisoned"))
    }

    /// Requests and successes since the start.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.total.0.load(Ordering::Relaxed),
            self.total.1.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
