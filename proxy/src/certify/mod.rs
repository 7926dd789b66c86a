//! The proxy's identity: a locally generated key (it never leaves the process), a CSR sent
//! with the bootstrap token to `Identity.Certify`, and renewal at about 70 % of the
//! certificate's lifetime. New certificates are swapped in for new handshakes; connections in
//! flight keep theirs. While the control plane is unreachable the proxy keeps serving on the
//! certificate it holds and retries with backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::leaf::{self, Usage};
use strait_identity::renewal;
use strait_identity::store::CertStore;
use strait_proto::identity::v1::CertifyRequest;
use strait_proto::identity::v1::identity_client::IdentityClient;

use crate::backoff::Backoff;
use crate::control_plane::ControlPlane;
use crate::readiness::Readiness;

/// Why one certification attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum CertifyError {
    /// The token file could not be read.
    #[error("reading the bootstrap token from {path}: {source}")]
    Token {
        /// The token file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Building the key or CSR failed.
    #[error("building the CSR: {0}")]
    Csr(String),
    /// The control plane refused or could not be reached.
    #[error("control plane {addr}: {status}")]
    ControlPlane {
        /// Where.
        addr: String,
        /// The gRPC status (its message says what is wrong).
        status: tonic::Status,
    },
    /// The certificate returned is not usable.
    #[error("the control plane returned an unusable certificate: {0}")]
    Response(String),
}

/// Obtains and renews the proxy's certificate.
pub struct Certifier {
    control_plane: ControlPlane,
    identity: SpiffeId,
    token_file: PathBuf,
    store: Arc<CertStore>,
    bundle: Arc<TrustBundle>,
    readiness: Arc<Readiness>,
}

impl Certifier {
    /// A certifier for the identity of `store`, authenticating with the token in `token_file`.
    pub fn new(
        control_plane: ControlPlane,
        token_file: PathBuf,
        store: Arc<CertStore>,
        bundle: Arc<TrustBundle>,
        readiness: Arc<Readiness>,
    ) -> Self {
        Self {
            control_plane,
            identity: store.identity().clone(),
            token_file,
            store,
            bundle,
            readiness,
        }
    }

    /// Keeps a valid certificate installed, forever.
    pub async fn run(self) {
        let channel = self.control_plane.channel(false);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut not_after: Option<SystemTime> = None;
        loop {
            let wait = match self.certify(&channel).await {
                Ok(expiry) => {
                    backoff.reset();
                    not_after = Some(expiry);
                    self.readiness.set_identity();
                    metrics::counter!("strait_identity_renewals_total", "result" => "success")
                        .increment(1);
                    metrics::gauge!("strait_identity_cert_expiry_timestamp_seconds")
                        .set(unix_seconds(expiry));
                    let remaining = expiry.duration_since(SystemTime::now()).unwrap_or_default();
                    let wait = renewal::refresh_after(remaining, fastrand::f64());
                    tracing::info!(identity = %self.identity, expires_in = ?remaining, renew_in = ?wait, "certificate installed");
                    wait
                }
                Err(error) => {
                    metrics::counter!("strait_identity_renewals_total", "result" => "failure")
                        .increment(1);
                    let expires_in =
                        not_after.map(|t| t.duration_since(SystemTime::now()).unwrap_or_default());
                    tracing::warn!(
                        identity = %self.identity,
                        %error,
                        current_certificate_expires_in = ?expires_in,
                        "obtaining a certificate failed; retrying"
                    );
                    backoff.next_delay()
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: new key, CSR, `Certify`, install. Returns the new certificate's expiry.
    async fn certify(
        &self,
        channel: &tonic::transport::Channel,
    ) -> Result<SystemTime, CertifyError> {
        let token =
            std::fs::read_to_string(&self.token_file).map_err(|source| CertifyError::Token {
                path: self.token_file.display().to_string(),
                source,
            })?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CertifyError::Csr(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.subject_alt_names =
            vec![SanType::URI(self.identity.to_string().try_into().map_err(
                |e: rcgen::Error| CertifyError::Csr(e.to_string()),
            )?)];
        let csr = params
            .serialize_request(&key)
            .map_err(|e| CertifyError::Csr(e.to_string()))?;
        let response = IdentityClient::new(channel.clone())
            .certify(CertifyRequest {
                token: token.trim().to_owned(),
                identity: self.identity.to_string(),
                csr_der: csr.der().to_vec(),
            })
            .await
            .map_err(|status| CertifyError::ControlPlane {
                addr: self.control_plane.addr().to_owned(),
                status,
            })?
            .into_inner();
        let leaf_cert = CertificateDer::from(response.leaf_der);
        let proven = leaf::check(&leaf_cert, self.bundle.trust_domain(), Usage::Server)
            .map_err(|e| CertifyError::Response(e.to_string()))?;
        if proven != self.identity {
            return Err(CertifyError::Response(format!(
                "it is for {proven}, not {}",
                self.identity
            )));
        }
        let expiry =
            leaf::not_after(&leaf_cert).map_err(|e| CertifyError::Response(e.to_string()))?;
        if !response.trust_anchors_der.is_empty() {
            let anchors = response
                .trust_anchors_der
                .into_iter()
                .map(CertificateDer::from)
                .collect();
            match self.bundle.replace(anchors) {
                Ok(true) => tracing::info!(
                    anchors = self.bundle.anchors().len(),
                    "trust anchors updated from the control plane"
                ),
                Ok(false) => {}
                Err(e) => {
                    return Err(CertifyError::Response(format!(
                        "its trust anchors are unusable: {e}"
                    )));
                }
            }
            metrics::gauge!("strait_identity_trust_anchors")
                .set(self.bundle.anchors().len() as f64);
        }
        let mut chain = vec![leaf_cert];
        chain.extend(
            response
                .intermediates_der
                .into_iter()
                .map(CertificateDer::from),
        );
        self.store
            .install(
                chain,
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| CertifyError::Response(e.to_string()))?;
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(expiry.max(0) as u64))
    }
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
