//! The injector's serving certificate: loaded from PEM files and re-read when they change, so
//! a rotated Secret (the kubelet swaps the mounted files) is served without a restart. A
//! change that does not load is logged and the certificate in force stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use strait_identity::file_poll::FilePoll;
use strait_identity::pem::{self, PemError};

/// Why the serving certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ServingCertError {
    /// A file could not be read or holds no PEM of the expected kind.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The key does not load or does not match the certificate.
    #[error("injector serving certificate {cert} with key {key}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// The certificate and key in force, handed to rustls for every handshake.
#[derive(Debug)]
pub struct ServingCert {
    current: ArcSwap<CertifiedKey>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, ServingCertError> {
    let chain = pem::read_certificates(cert_path)?;
    let key = pem::read_private_key(key_path)?;
    let mismatch = |reason: String| ServingCertError::Mismatch {
        cert: cert_path.display().to_string(),
        key: key_path.display().to_string(),
        reason,
    };
    let certified = CertifiedKey::from_der(chain, key, &strait_identity::tls::provider())
        .map_err(|e| mismatch(e.to_string()))?;
    Ok(certified)
}

impl ServingCert {
    /// Loads the certificate chain (leaf first) and its key.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, ServingCertError> {
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(load(cert_path, key_path)?),
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
        }))
    }

    /// Checks the files every `period` and swaps in a changed certificate, forever.
    pub async fn watch(self: Arc<Self>, period: Duration) {
        let mut files = FilePoll::new([self.cert_path.clone(), self.key_path.clone()], period);
        loop {
            files.changed().await;
            match load(&self.cert_path, &self.key_path) {
                Ok(certified) => {
                    self.current.store(Arc::new(certified));
                    tracing::info!(cert = %self.cert_path.display(), "injector serving certificate reloaded");
                }
                // A Secret update can land the certificate and the key a moment apart: the
                // next change (the second file) is checked again.
                Err(error) => tracing::warn!(
                    %error,
                    "injector serving certificate files changed but do not load; the certificate in force stays"
                ),
            }
        }
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
