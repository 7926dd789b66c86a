//! The trust bundle: the anchors mesh certificates must chain to. It can hold several, so an
//! anchor can be rotated without downtime (add the new one, switch the issuer, remove the old
//! one), and it is swapped atomically: a handshake sees the old set or the new set.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a set of anchors cannot be a trust bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// No anchors.
    #[error("a trust bundle needs at least one anchor")]
    Empty,
    /// An anchor is not usable as a trust anchor.
    #[error("trust anchor #{index} ({subject}) is unusable: {reason}")]
    Anchor {
        /// Position in the bundle.
        index: usize,
        /// The anchor's subject, or `?` when it does not parse.
        subject: String,
        /// What is wrong.
        reason: String,
    },
}

/// The anchors and what is derived from them, replaced together.
pub(crate) struct Anchors {
    pub(crate) certs: Vec<CertificateDer<'static>>,
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) mandatory_client_auth: Arc<dyn ClientCertVerifier>,
    pub(crate) optional_client_auth: Arc<dyn ClientCertVerifier>,
}

/// The mesh's trust anchors and trust domain.
pub struct TrustBundle {
    trust_domain: String,
    anchors: ArcSwap<Anchors>,
}

impl std::fmt::Debug for TrustBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBundle")
            .field("trust_domain", &self.trust_domain)
            .field("anchors", &self.anchors.load().certs.len())
            .finish()
    }
}

impl TrustBundle {
    /// A bundle of `anchors` for `trust_domain`.
    pub fn new(
        trust_domain: &str,
        anchors: Vec<CertificateDer<'static>>,
    ) -> Result<Arc<Self>, BundleError> {
        Ok(Arc::new(Self {
            trust_domain: trust_domain.to_owned(),
            anchors: ArcSwap::from_pointee(build(anchors)?),
        }))
    }

    /// The trust domain every mesh identity must belong to.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The anchors in force.
    pub fn anchors(&self) -> Vec<CertificateDer<'static>> {
        self.anchors.load().certs.clone()
    }

    /// Replaces the anchors; returns whether they changed. On error the old set stays.
    pub fn replace(&self, anchors: Vec<CertificateDer<'static>>) -> Result<bool, BundleError> {
        if self.anchors.load().certs == anchors {
            return Ok(false);
        }
        self.anchors.store(Arc::new(build(anchors)?));
        Ok(true)
    }

    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<Anchors>> {
        self.anchors.load()
    }
}

fn build(certs: Vec<CertificateDer<'static>>) -> Result<Anchors, BundleError> {
    if certs.is_empty() {
        return Err(BundleError::Empty);
    }
    let mut roots = RootCertStore::empty();
    for (index, cert) in certs.iter().enumerate() {
        let parsed = X509Certificate::from_der(cert.as_ref());
        let subject = parsed
            .as_ref()
            .map(|(_, c)| c.subject().to_string())
            .unwrap_or_else(|_| "?".into());
        let anchor_error = |reason: String| BundleError::Anchor {
            index,
            subject: subject.clone(),
            reason,
        };
        let (_, parsed) = parsed.map_err(|e| anchor_error(e.to_string()))?;
        if !parsed.is_ca() {
            return Err(anchor_error("it is not a CA certificate".into()));
        }
        roots
            .add(cert.clone())
            .map_err(|e| anchor_error(e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let provider = crate::crypto::provider();
    let mandatory_client_auth =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| BundleError::Anchor {
                index: 0,
                subject: "?".into(),
                reason: e.to_string(),
            })?;
    let optional_client_auth = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| BundleError::Anchor {
            index: 0,
            subject: "?".into(),
            reason: e.to_string(),
        })?;
    Ok(Anchors {
        certs,
        roots,
        mandatory_client_auth,
        optional_client_auth,
    })
}
