//! The control plane's admin server: `/live`, `/ready`, `/metrics`, and `/proxies` (the
//! proxies watching discovery and the snapshot version each was sent, as JSON). Read-only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

/// What the admin endpoints read.
pub struct Admin {
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Set once the gRPC server is serving.
    pub ready: AtomicBool,
    /// The proxies watching discovery.
    pub connections: crate::discovery::service::Connections,
}

impl Admin {
    /// Serves until the process exits.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let admin = admin.clone();
                    async move { Ok::<_, std::convert::Infallible>(admin.handle(&request)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn handle<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        let (status, body, content_type) = match request.uri().path() {
            "/live" => (StatusCode::OK, "live\n".to_owned(), "text/plain"),
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
                self.metrics.render(),
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
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(content_type),
        );
        response
    }
}
