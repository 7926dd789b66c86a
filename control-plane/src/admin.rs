//! The control plane's admin server: `/live`, `/ready`, `/metrics`, and `/proxies` (the
//! proxies watching discovery and the snapshot version each was sent, as JSON). Read-only.
//!
//! In a cluster the admin port listens on the pod network for the kubelet's probes and
//! Prometheus; those endpoints answer anyone. `/proxies` names every workload in the mesh, so
//! it (and any path added later) answers loopback callers only: the control plane's own pod,
//! or `kubectl port-forward`.
//!
//! At most [`MAX_CONNECTIONS`] connections are held (more are closed at accept and counted in
//! `strait_admin_connections_refused_total`), and one that sends no complete request head
//! within [`HEADER_READ_TIMEOUT`] (idle keep-alive included) is closed, so idle connections
//! cannot take the process's descriptors.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioTimer;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Most admin connections open at once: probes and scrapes need a handful.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a connection may take to send a complete request head, counted from when the
/// server starts waiting for one.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the admin endpoints read.
pub struct Admin {
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Set once the gRPC server is serving.
    pub ready: AtomicBool,
    /// False while the injector webhook's caBundle could not be set (`--injector-webhook`).
    pub webhook_ca_bundle: Arc<AtomicBool>,
    /// The proxies watching discovery.
    pub connections: crate::discovery::service::Connections,
}

impl Admin {
    /// Serves until the process exits.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
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
                    async move { Ok::<_, std::convert::Infallible>(admin.handle(&request, peer)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn handle<B>(&self, request: &Request<B>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let refused = refusal(request.uri().path(), peer.ip());
        if refused.is_some() {
            tracing::debug!(%peer, path = request.uri().path(), "admin request from a non-loopback caller refused");
        }
        let (status, body, content_type) = match (refused, request.uri().path()) {
            (Some(reason), _) => (StatusCode::FORBIDDEN, reason, "text/plain"),
            (None, path) => self.answer(path),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        response
    }

    fn answer(&self, path: &str) -> (StatusCode, String, &'static str) {
        match path {
            "/live" => (StatusCode::OK, "live\n".to_owned(), "text/plain"),
            "/ready" if !self.webhook_ca_bundle.load(Ordering::Acquire) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the injector webhook's caBundle could not be set (see the error log)\n"
                    .to_owned(),
                "text/plain",
            ),
            "/ready" if self.ready.load(Ordering::Acquire) => {
                (StatusCode::OK, "ready\n".to_owned(), "text/plain")
            }
            "/ready" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: starting\n".to_owned(),
                "text/plain",
            ),
            "/metrics" => (
                StatusCode::OK,
                render_metrics(&self.metrics),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            "/proxies" => match serde_json::to_string_pretty(&self.connections.list()) {
                Ok(json) => (StatusCode::OK, json, "application/json"),
                Err(error) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("encoding failed: {error}\n"),
                    "text/plain",
                ),
            },
            path => (
                StatusCode::NOT_FOUND,
                format!("no admin endpoint {path:?}; try /live, /ready, /metrics or /proxies\n"),
                "text/plain",
            ),
        }
    }
}

/// The endpoints open to the network (probes and scraping); every other path is
/// loopback-only.
pub const OPEN_PATHS: [&str; 3] = ["/live", "/ready", "/metrics"];

/// Why `peer` may not call `path`, or `None` when it may. An IPv4-mapped loopback address (a
/// dual-stack listener's view of `127.0.0.1`) counts as loopback.
pub fn refusal(path: &str, peer: IpAddr) -> Option<String> {
    let peer = peer.to_canonical();
    if OPEN_PATHS.contains(&path) || peer.is_loopback() {
        return None;
    }
    Some(format!(
        "{path} is served only to callers on the loopback interface, not to {peer}: it lists \
         every proxy in the mesh. Reach it from the control plane's pod, or with `kubectl \
         port-forward`; only {} are open to the network\n",
        OPEN_PATHS.join(", ")
    ))
}

/// Registers the process metrics' help texts and sets `strait_build_info{version}` to 1.
/// The process metrics come from the `metrics-process` crate, read from `/proc/self` at each
/// scrape (the proxy does the same in `telemetry::process`).
pub fn describe_process_and_build_info() {
    metrics_process::Collector::default().describe();
    metrics::describe_gauge!(
        "strait_build_info",
        "Always 1; the binary's version in the `version` label."
    );
    metrics::gauge!("strait_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// `/metrics`: the process metrics read now, then everything rendered.
fn render_metrics(handle: &PrometheusHandle) -> String {
    metrics_process::Collector::default().collect();
    handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn probes_and_metrics_answer_the_network() {
        for path in OPEN_PATHS {
            assert_eq!(refusal(path, ip("10.1.2.3")), None);
        }
    }

    #[test]
    fn the_proxy_list_and_unknown_paths_answer_loopback_only() {
        for path in ["/proxies", "/debug"] {
            let reason = refusal(path, ip("10.1.2.3")).unwrap();
            assert!(
                reason.contains("loopback") && reason.contains("10.1.2.3"),
                "{reason}"
            );
            assert!(refusal(path, ip("::ffff:10.1.2.3")).is_some());
            for local in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
                assert_eq!(refusal(path, ip(local)), None, "{local}");
            }
        }
    }
}
