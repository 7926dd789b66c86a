//! The injector's HTTPS server: a thin shell that reads a review, calls [`review::review`],
//! logs and counts the result, and answers. `POST /inject` serves the webhook for pods that
//! ask for the mesh themselves, `POST /inject/namespace-enabled` the webhook whose
//! namespaceSelector chose namespaces labelled `strait.dev/inject=enabled`.
//!
//! TLS uses rustls's defaults (the API server is the only client); the certificate comes from
//! [`ServingCert`] and follows file changes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use strait_identity::bundle::TrustBundle;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::config::InjectorConfig;
use super::review::{self, ReviewError};
use super::serving_cert::ServingCert;
use super::{PATH_NAMESPACE, PATH_POD};

/// Largest review body read. The API server caps objects at 3 MiB; a review carries at most
/// two of them.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// A client gets this long for the TLS handshake and, separately, for the request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `start` needs: the flags of the injector.
#[derive(Clone, Debug)]
pub struct InjectorSettings {
    /// Listener address.
    pub addr: SocketAddr,
    /// Serving certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The proxy defaults file.
    pub config: PathBuf,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Duration,
}

/// The state every request reads.
struct Injector {
    config: InjectorConfig,
    /// The anchors in force, so a rotation reaches pods injected after it.
    bundle: Arc<TrustBundle>,
}

/// Loads the configuration and certificate, binds, and serves in the background; returns the
/// bound address.
pub async fn start(
    settings: InjectorSettings,
    bundle: Arc<TrustBundle>,
) -> anyhow::Result<SocketAddr> {
    metrics::describe_counter!(
        "strait_injector_requests_total",
        "Admission reviews answered by the injector, by result."
    );
    for result in ["injected", "skipped", "already-injected", "error"] {
        metrics::counter!("strait_injector_requests_total", "result" => result).absolute(0);
    }
    let config = InjectorConfig::load(&settings.config)?;
    let cert = ServingCert::load(&settings.cert, &settings.key)?;
    let mut tls = ServerConfig::builder_with_provider(strait_identity::tls::provider())
        .with_safe_default_protocol_versions()
        .context("configuring the injector's TLS")?
        .with_no_client_auth()
        .with_cert_resolver(cert.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("binding the injector listener to {}", settings.addr))?;
    let addr = listener.local_addr()?;
    tokio::spawn(cert.watch(settings.reload_interval));
    tracing::info!(
        addr = %addr,
        config = %settings.config.display(),
        native_sidecar = config.native_sidecar,
        "injector listening"
    );
    let injector = Arc::new(Injector { config, bundle });
    tokio::spawn(serve(listener, TlsAcceptor::from(Arc::new(tls)), injector));
    Ok(addr)
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, injector: Arc<Injector>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "injector accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let injector = injector.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "injector TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "injector TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| {
                let injector = injector.clone();
                async move { Ok::<_, std::convert::Infallible>(injector.handle(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

fn text(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        format!("{message}\n").into_bytes(),
    )
}

fn count(result: &'static str) {
    metrics::counter!("strait_injector_requests_total", "result" => result).increment(1);
}

impl Injector {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let namespace_enabled = match request.uri().path() {
            PATH_POD => false,
            PATH_NAMESPACE => true,
            path => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no injector endpoint {path:?}; POST reviews to {PATH_POD} or {PATH_NAMESPACE}"
                    ),
                );
            }
        };
        if request.method() != Method::POST {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{} takes POST, not {}",
                    request.uri().path(),
                    request.method()
                ),
            );
        }
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(error) => {
                count("error");
                tracing::warn!(%error, "reading an AdmissionReview body failed");
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the body (at most {MAX_BODY_BYTES} bytes): {error}"),
                );
            }
        };
        let anchors = strait_identity::pem::encode_certificates(&self.bundle.anchors());
        match review::review(&body, namespace_enabled, &self.config, &anchors) {
            Ok(answer) => {
                count(answer.result);
                match &answer.error {
                    Some(error) => tracing::error!(
                        pod = %answer.pod,
                        uid = %answer.uid,
                        %error,
                        "injection failed; the pod is admitted without the proxy"
                    ),
                    None => tracing::info!(
                        pod = %answer.pod,
                        uid = %answer.uid,
                        result = answer.result,
                        namespace_enabled,
                        warnings = ?answer.warnings,
                        "admission review answered"
                    ),
                }
                respond(StatusCode::OK, "application/json", answer.body)
            }
            Err(error @ ReviewError::Bad(_)) => {
                count("error");
                tracing::warn!(%error, "refused a malformed AdmissionReview");
                text(StatusCode::BAD_REQUEST, error.to_string())
            }
            Err(error @ ReviewError::Encode(_)) => {
                count("error");
                tracing::error!(%error, "answering an AdmissionReview failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
            }
        }
    }
}
