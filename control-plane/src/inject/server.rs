//! The injector's HTTPS server: a thin shell that reads a review, calls [`review::review`],
//! logs and counts the result, and answers. `POST /inject` serves the webhook for pods that
//! ask for the mesh themselves, `POST /inject/namespace-enabled` the webhook whose
//! namespaceSelector chose namespaces labelled `strait.dev/inject=enabled`.
//!
//! TLS uses rustls's defaults (the API server is the only client); the certificate comes from
//! [`ServingCert`] and follows file changes, or is the control plane's own (mesh CA, renewed
//! with it) when the control plane keeps the webhook's caBundle.
//!
//! Limits, sized for the API server as the one legitimate client, and so that any other
//! client that can reach the port cannot crowd it out or exhaust memory:
//! - [`MAX_CONNECTIONS`] connections at once, [`MAX_CONNECTIONS_PER_SOURCE`] from one address
//!   (the API server sends one review per connection at a time and its bursts are a few
//!   hundred); more are closed at accept and counted in
//!   `strait_injector_connections_refused_total`.
//! - A TLS handshake, and then each request head (idle keep-alive included), must complete
//!   within [`HEADER_READ_TIMEOUT`], or the connection is closed.
//! - Reviews are read and answered at most [`MAX_REVIEWS`] at once, [`MAX_REVIEWS_PER_SOURCE`]
//!   per address ([`ReviewPermits`]); a review waits up to [`REVIEW_WAIT`] for its turn, then
//!   gets 503. Its body must arrive within [`BODY_READ_TIMEOUT`] (else 408) and be at most
//!   [`MAX_BODY_BYTES`] (else 413), so bodies in memory are bounded by
//!   `MAX_REVIEWS × MAX_BODY_BYTES`.

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
use rustls::server::ResolvesServerCert;
use strait_identity::bundle::TrustBundle;
use strait_identity::store::CertStore;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::config::InjectorConfig;
use super::review::{self, ReviewError};
use super::review_permits::ReviewPermits;
use super::serving_cert::ServingCert;
use super::{PATH_NAMESPACE, PATH_POD};
use crate::connection_slots::{Limits, SlotTable};
use crate::inject::skip_events::SkipEvents;

/// Largest review body read. The webhooks see only pod CREATE, so a review carries one pod
/// (`oldObject` is null). The API server refuses request bodies over 3 MiB and etcd stores
/// objects up to 1.5 MiB, so the largest pod that can be created is under 3 MiB of JSON; 4 MiB
/// leaves room for the review's envelope and fields defaulted before admission.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// A client gets this long for the TLS handshake and, separately, for each request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a review's body may take to arrive once its turn has come.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections held at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most connections held from one source address.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 256;
/// Most reviews read and answered at once.
pub const MAX_REVIEWS: usize = 16;
/// Most reviews read and answered at once for one source address.
pub const MAX_REVIEWS_PER_SOURCE: usize = 4;
/// How long a review waits for its turn before it is answered 503.
pub const REVIEW_WAIT: Duration = Duration::from_secs(5);

/// What `start` needs: the flags of the injector.
#[derive(Clone, Debug)]
pub struct InjectorSettings {
    /// Listener address.
    pub addr: SocketAddr,
    /// Where the serving certificate comes from.
    pub serving: ServingSource,
    /// The proxy defaults file.
    pub config: PathBuf,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Duration,
}

/// Where the injector's serving certificate comes from.
#[derive(Clone, Debug)]
pub enum ServingSource {
    /// PEM files (cert-manager's Secret, or the chart's values), re-read when they change.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
    /// The control plane's own certificate, from the mesh CA (`--injector-webhook`).
    ControlPlane,
}

/// The state every request reads.
struct Injector {
    config: InjectorConfig,
    /// The anchors in force, so a rotation reaches pods injected after it.
    bundle: Arc<TrustBundle>,
    /// Turns to read and answer a review.
    permits: Arc<ReviewPermits>,
    /// Where skipped hostNetwork pods are reported as Events (with the Kubernetes source).
    skip_events: Option<SkipEvents>,
}

/// Loads the configuration and certificate, binds, and serves in the background; returns the
/// bound address. `skip_events`: where hostNetwork pods it skips are reported as Kubernetes
/// Events (none without the Kubernetes source).
pub async fn start(
    settings: InjectorSettings,
    bundle: Arc<TrustBundle>,
    own: Arc<CertStore>,
    skip_events: Option<SkipEvents>,
) -> anyhow::Result<SocketAddr> {
    metrics::describe_counter!(
        "strait_injector_requests_total",
        "Admission reviews answered by the injector, by result."
    );
    for result in [
        "injected",
        "skipped",
        "skipped-host-network",
        "already-injected",
        "error",
    ] {
        metrics::counter!("strait_injector_requests_total", "result" => result).absolute(0);
    }
    metrics::describe_counter!(
        "strait_injector_connections_refused_total",
        "Injector connections closed at accept because the injector holds its cap, by reason."
    );
    for reason in ["max-connections", "unproven-per-source"] {
        metrics::counter!("strait_injector_connections_refused_total", "reason" => reason)
            .absolute(0);
    }
    let config = InjectorConfig::load(&settings.config)?;
    let resolver: Arc<dyn ResolvesServerCert> = match &settings.serving {
        ServingSource::Files { cert, key } => {
            let cert = ServingCert::load(cert, key)?;
            tokio::spawn(cert.clone().watch(settings.reload_interval));
            cert
        }
        ServingSource::ControlPlane => own,
    };
    let mut tls = ServerConfig::builder_with_provider(strait_identity::tls::provider())
        .with_safe_default_protocol_versions()
        .context("configuring the injector's TLS")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("binding the injector listener to {}", settings.addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        addr = %addr,
        config = %settings.config.display(),
        native_sidecar = config.native_sidecar,
        "injector listening"
    );
    let injector = Arc::new(Injector {
        config,
        bundle,
        permits: ReviewPermits::new(MAX_REVIEWS, MAX_REVIEWS_PER_SOURCE),
        skip_events,
    });
    tokio::spawn(serve(listener, TlsAcceptor::from(Arc::new(tls)), injector));
    Ok(addr)
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, injector: Arc<Injector>) {
    // The API server proves no identity here, so every connection counts as unproven.
    let slots = SlotTable::new(Limits {
        total: MAX_CONNECTIONS,
        unproven_per_source: MAX_CONNECTIONS_PER_SOURCE,
        per_identity: MAX_CONNECTIONS,
    });
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "injector accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match slots.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                metrics::counter!("strait_injector_connections_refused_total", "reason" => refusal.reason())
                    .increment(1);
                tracing::debug!(%peer, reason = refusal.reason(), "injector connection refused");
                drop(tcp);
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let injector = injector.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(tcp)).await {
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
                async move { Ok::<_, std::convert::Infallible>(injector.handle(request, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
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

/// Whether a body of `declared` bytes (at least) is over `cap`.
pub fn exceeds_body_cap(declared: u64, cap: usize) -> bool {
    declared > cap as u64
}

fn too_large() -> Response<Full<Bytes>> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "an AdmissionReview body may be at most {MAX_BODY_BYTES} bytes (4 MiB): the API server accepts no pod larger than 3 MiB"
        ),
    )
}

fn count(result: &'static str) {
    metrics::counter!("strait_injector_requests_total", "result" => result).increment(1);
}

impl Injector {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
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
        let declared = hyper::body::Body::size_hint(request.body()).lower();
        if exceeds_body_cap(declared, MAX_BODY_BYTES) {
            count("error");
            tracing::warn!(%peer, declared, limit = MAX_BODY_BYTES, "refused an AdmissionReview body over the cap");
            return too_large();
        }
        let _permit = match self.permits.acquire(peer.ip(), REVIEW_WAIT).await {
            Ok(permit) => permit,
            Err(busy) => {
                count("error");
                tracing::warn!(%peer, %busy, "no turn for an AdmissionReview");
                return text(StatusCode::SERVICE_UNAVAILABLE, busy.to_string());
            }
        };
        let read = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
        let body = match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                count("error");
                tracing::warn!(%peer, limit = MAX_BODY_BYTES, "refused an AdmissionReview body over the cap");
                return too_large();
            }
            Ok(Err(error)) => {
                count("error");
                tracing::warn!(%peer, %error, "reading an AdmissionReview body failed");
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the body (at most {MAX_BODY_BYTES} bytes): {error}"),
                );
            }
            Err(_) => {
                count("error");
                tracing::warn!(%peer, timeout = ?BODY_READ_TIMEOUT, "an AdmissionReview body did not arrive in time");
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the body did not arrive within {BODY_READ_TIMEOUT:?}; send the whole AdmissionReview at once"
                    ),
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
                if let (Some(events), Some(skipped)) = (&self.skip_events, answer.skip_event) {
                    events.report(skipped);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_at_the_cap_fits_and_one_byte_more_does_not() {
        assert!(!exceeds_body_cap(MAX_BODY_BYTES as u64, MAX_BODY_BYTES));
        assert!(exceeds_body_cap(MAX_BODY_BYTES as u64 + 1, MAX_BODY_BYTES));
        assert!(!exceeds_body_cap(0, MAX_BODY_BYTES));
    }

    #[test]
    fn the_cap_holds_the_largest_pod_the_api_server_accepts() {
        // The API server's request-body cap: 3 MiB.
        assert!(!exceeds_body_cap(
            3 * 1024 * 1024 + 64 * 1024,
            MAX_BODY_BYTES
        ));
    }
}
