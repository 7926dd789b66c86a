//! The admin server: `/live`, `/ready`, `/metrics` (Prometheus text), `/config` (the routing
//! snapshot in force, as JSON), `/status` and `/log-level` (GET, and PUT to change it).
//!
//! The admin port is open to the pod network so the kubelet can probe it and Prometheus can
//! scrape it; only those endpoints answer remote callers. Everything that reveals the mesh or
//! changes the proxy is served to loopback callers only ([`crate::admin_access`] decides,
//! before any state is read).
//!
//! The port shares the process's descriptors with the data listeners, so it holds at most
//! [`MAX_CONNECTIONS`] connections (more are closed at accept and counted in
//! `strait_admin_connections_refused_total`) and closes a connection that has not sent a
//! complete request head within [`HEADER_READ_TIMEOUT`], idle keep-alive ones included:
//! probes and scrapes reconnect cheaply, and idle connections cannot hold the cap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioTimer;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::body;
use crate::body::Body;
use crate::readiness::Readiness;
use crate::table::TableHandle;

/// Most admin connections open at once: probes and scrapes need a handful.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may take to send a complete request head, counted from when the
/// server starts waiting for one (so an idle keep-alive connection is closed after it too).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The log filter in force, changeable at run time.
pub trait LogLevel: Send + Sync {
    /// The filter in force, in `tracing` syntax.
    fn current(&self) -> String;
    /// Replaces the filter; an invalid one is refused with the reason.
    fn set(&self, filter: &str) -> Result<(), String>;
}

/// What the admin endpoints read from.
pub struct Admin {
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Answers `/ready`.
    pub readiness: Arc<Readiness>,
    /// Dumped by `/config`.
    pub table: TableHandle,
    /// Read and changed by `/log-level`.
    pub log_level: Option<Arc<dyn LogLevel>>,
    /// Who this proxy is, for `/status`.
    pub status: StatusSource,
}

/// What `/status` reports on: the proxy's workload, certificate and discovery stream.
#[derive(Clone, Default)]
pub struct StatusSource {
    /// `namespace/workload`, when the proxy has a control plane.
    pub workload: Option<String>,
    /// The proxy's certificate, when it has a control plane.
    pub certificate: Option<Arc<strait_identity::store::CertStore>>,
    /// Whether the discovery stream is up.
    pub discovery: crate::discovery::Connected,
}

/// The answer of `/status`.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    /// `namespace/workload`, or empty without a control plane.
    pub workload: String,
    /// The proxy's SPIFFE identity, or empty.
    pub identity: String,
    /// Unix time the certificate expires, or 0 without one.
    pub certificate_expiry: i64,
    /// Whether the discovery stream is up.
    pub discovery_connected: bool,
    /// The snapshot version in force.
    pub snapshot_version: String,
    /// Whether `/ready` would say ready.
    pub ready: bool,
    /// Entries of the snapshot in force that could not be built and were set aside.
    pub set_aside: Vec<crate::table::SetAside>,
}

impl Admin {
    /// Serves admin requests on `listener` until `stop` fires.
    pub async fn serve(
        self: Arc<Self>,
        listener: crate::listener::Listener,
        stop: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "admin accept failed");
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics::counter!("strait_admin_connections_refused_total").increment(1);
                tracing::debug!(%peer, limit = MAX_CONNECTIONS, "admin connection refused: too many open");
                drop(stream);
                continue;
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let service = hyper::service::service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, std::convert::Infallible>(admin.handle(request, peer).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(io, service)
                    .await
                {
                    tracing::debug!(%error, "admin connection ended with an error");
                }
            });
        }
    }

    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if let Some(reason) = crate::admin_access::refusal(request.uri().path(), peer.ip()) {
            tracing::debug!(%peer, path = request.uri().path(), "admin request from a non-loopback caller refused");
            return text(StatusCode::FORBIDDEN, reason);
        }
        if request.uri().path() == "/log-level" {
            return self.log_level(request).await;
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET is allowed here\n".into(),
            );
        }
        match request.uri().path() {
            "/live" => text(StatusCode::OK, "live\n".into()),
            "/ready" => match self.readiness.check() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(missing) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {missing}\n"),
                ),
            },
            "/status" => {
                let certificate = self.status.certificate.as_ref();
                let status = Status {
                    workload: self.status.workload.clone().unwrap_or_default(),
                    identity: certificate
                        .map(|c| c.identity().to_string())
                        .unwrap_or_default(),
                    certificate_expiry: certificate
                        .and_then(|c| c.chain())
                        .and_then(|chain| chain.first().cloned())
                        .and_then(|leaf| strait_identity::leaf::not_after(&leaf).ok())
                        .unwrap_or(0),
                    discovery_connected: self.status.discovery.get(),
                    snapshot_version: self.table.load().snapshot.version.clone(),
                    ready: self.readiness.check().is_ok(),
                    set_aside: self.table.load().set_aside().to_vec(),
                };
                match serde_json::to_string_pretty(&status) {
                    Ok(json) => {
                        let mut response = text(StatusCode::OK, json);
                        response.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        response
                    }
                    Err(error) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("encoding failed: {error}\n"),
                    ),
                }
            }
            "/metrics" => {
                let mut response = text(
                    StatusCode::OK,
                    crate::telemetry::process::render(&self.metrics),
                );
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/config" => {
                let snapshot = self.table.load().snapshot.clone();
                match serde_json::to_string_pretty(&*snapshot) {
                    Ok(json) => {
                        let mut response = text(StatusCode::OK, json);
                        response.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        response
                    }
                    Err(error) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("encoding the snapshot failed: {error}\n"),
                    ),
                }
            }
            path => text(
                StatusCode::NOT_FOUND,
                format!(
                    "no admin endpoint {path:?}; try /live, /ready, /metrics, /config, /status or /log-level\n"
                ),
            ),
        }
    }

    async fn log_level(&self, request: Request<Incoming>) -> Response<Body> {
        let Some(log_level) = &self.log_level else {
            return text(
                StatusCode::NOT_FOUND,
                "the log level is not adjustable in this process\n".into(),
            );
        };
        match *request.method() {
            Method::GET | Method::HEAD => {
                text(StatusCode::OK, format!("{}\n", log_level.current()))
            }
            Method::PUT => {
                use http_body_util::BodyExt;
                let body = match http_body_util::Limited::new(request.into_body(), 4096)
                    .collect()
                    .await
                {
                    Ok(body) => body.to_bytes(),
                    Err(error) => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            format!("reading the new level failed: {error}\n"),
                        );
                    }
                };
                let filter = String::from_utf8_lossy(&body).trim().to_owned();
                match log_level.set(&filter) {
                    Ok(()) => {
                        tracing::info!(%filter, "log level changed");
                        text(StatusCode::OK, format!("{filter}\n"))
                    }
                    Err(reason) => text(
                        StatusCode::BAD_REQUEST,
                        format!("invalid log filter {filter:?}: {reason}\n"),
                    ),
                }
            }
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "use GET or PUT\n".into()),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
