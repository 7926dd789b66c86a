//! The CA in force and the control plane's own serving certificate.
//!
//! The CA files are polled for changes: a valid change swaps the CA (new issuer, new anchors)
//! and reissues the control plane's certificate at once, so an operator rotates the issuer or
//! the anchors by replacing files; an invalid change is logged, counted, and ignored. The
//! control plane's own certificate is also renewed by the mesh's renewal rule
//! ([`strait_identity::renewal`]: at 70 % of its lifetime).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::file_poll::FilePoll;
use strait_identity::renewal;
use strait_identity::store::CertStore;

use crate::ca::{Ca, CaFiles};

/// The CA, the trust bundle derived from it, and the control plane's own certificate.
pub struct Authority {
    /// The CA signing workload certificates.
    pub ca: Arc<ArcSwap<Ca>>,
    /// The anchors clients are verified against.
    pub bundle: Arc<TrustBundle>,
    /// The control plane's serving certificate.
    pub own: Arc<CertStore>,
    files: Option<CaFiles>,
    dns_names: Vec<String>,
    leaf_ttl: Duration,
}

impl Authority {
    /// Sets up from a loaded CA, issuing the control plane's certificate for `identity`.
    /// `files`, when given, are watched: a valid change replaces the CA.
    pub fn new(
        ca: Ca,
        files: Option<CaFiles>,
        identity: SpiffeId,
        dns_names: Vec<String>,
        leaf_ttl: Duration,
    ) -> anyhow::Result<Arc<Self>> {
        let bundle = TrustBundle::new(identity.trust_domain(), ca.anchors().to_vec())?;
        let own = CertStore::new(identity);
        let authority = Arc::new(Self {
            ca: Arc::new(ArcSwap::from_pointee(ca)),
            bundle,
            own,
            files,
            dns_names,
            leaf_ttl,
        });
        authority.reissue_own()?;
        Ok(authority)
    }

    fn reissue_own(&self) -> anyhow::Result<()> {
        let (chain, key) = self
            .ca
            .load()
            .issue_own(self.own.identity(), &self.dns_names)?;
        self.own.install(chain, key)?;
        Ok(())
    }

    /// How long after issuing its own certificate the control plane renews it: the mesh's
    /// renewal rule, without jitter (there is only one such certificate: nothing to spread out).
    /// No floor is needed: [`Self::maintain`] checks only once per period.
    fn renew_in(&self) -> Duration {
        renewal::renew_after(self.leaf_ttl, 0.0)
    }

    /// Reloads the CA files; returns whether the CA changed.
    fn reload(&self, files: &CaFiles) -> anyhow::Result<bool> {
        let ca = Ca::load(files, self.leaf_ttl)?;
        let anchors_changed = self.bundle.replace(ca.anchors().to_vec())?;
        self.ca.store(Arc::new(ca));
        self.reissue_own()?;
        Ok(anchors_changed)
    }

    /// Watches the CA files and renews the control plane's certificate, forever.
    pub async fn maintain(self: Arc<Self>, period: Duration) {
        let watched = self.files.iter().flat_map(|f| {
            [
                f.trust_anchors.clone(),
                f.issuer_cert.clone(),
                f.issuer_key.clone(),
            ]
        });
        let mut files = FilePoll::new(watched, period);
        let mut renew_at = tokio::time::Instant::now() + self.renew_in();
        loop {
            if files.tick().await
                && let Some(ca_files) = &self.files
            {
                match self.reload(ca_files) {
                    Ok(anchors_changed) => {
                        metrics::counter!("strait_ca_reloads_total", "result" => "success")
                            .increment(1);
                        tracing::info!(
                            anchors_changed,
                            anchors = self.bundle.anchors().len(),
                            "CA reloaded; new certificates use the new issuer"
                        );
                        renew_at = tokio::time::Instant::now() + self.renew_in();
                    }
                    Err(error) => {
                        metrics::counter!("strait_ca_reloads_total", "result" => "failure")
                            .increment(1);
                        tracing::error!(%error, "CA files changed but are invalid; the CA in force stays");
                    }
                }
            }
            if tokio::time::Instant::now() >= renew_at {
                match self.reissue_own() {
                    Ok(()) => renew_at = tokio::time::Instant::now() + self.renew_in(),
                    Err(error) => {
                        tracing::error!(%error, "renewing the control plane's certificate failed")
                    }
                }
            }
        }
    }
}
