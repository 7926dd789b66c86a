//! The workload's own certificate and key. Renewal swaps them in place: new handshakes use
//! the new certificate, connections already established are untouched.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::spiffe::SpiffeId;

/// Why a certificate could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key is not one rustls can sign with.
    #[error("the private key is unusable: {0}")]
    Key(rustls::Error),
    /// The chain is empty.
    #[error("the certificate chain is empty")]
    EmptyChain,
    /// The key does not belong to the leaf.
    #[error("the private key does not match the certificate: {0}")]
    Mismatch(rustls::Error),
}

/// The current certificate of one workload identity.
#[derive(Debug)]
pub struct CertStore {
    identity: SpiffeId,
    current: ArcSwapOption<CertifiedKey>,
}

impl CertStore {
    /// An empty store for `identity`.
    pub fn new(identity: SpiffeId) -> Arc<Self> {
        Arc::new(Self {
            identity,
            current: ArcSwapOption::empty(),
        })
    }

    /// The identity this store holds certificates for.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// Installs a chain (leaf first) and its key for all new handshakes.
    pub fn install(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), StoreError> {
        if chain.is_empty() {
            return Err(StoreError::EmptyChain);
        }
        let signing_key = crate::crypto::provider()
            .key_provider
            .load_private_key(key)
            .map_err(StoreError::Key)?;
        let certified = CertifiedKey::new(chain, signing_key);
        certified.keys_match().map_err(StoreError::Mismatch)?;
        self.current.store(Some(Arc::new(certified)));
        Ok(())
    }

    /// Whether a certificate is installed.
    pub fn has_certificate(&self) -> bool {
        self.current.load().is_some()
    }

    /// The certificate chain in use, leaf first.
    pub fn chain(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.current.load().as_ref().map(|c| c.cert.clone())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

impl ResolvesClientCert for CertStore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }

    fn has_certs(&self) -> bool {
        self.has_certificate()
    }
}
