//! `Identity.Certify`: a proxy proves who it is with its bootstrap token and gets its CSR
//! signed for that identity.
//!
//! Every refusal is a gRPC status whose message says what is wrong (never echoing the token),
//! a log line, and an increment of `strait_identity_certificates_refused_total{reason}`.
//! Identities reserved for the control plane ([`crate::reserved`]) are refused before the
//! token is even checked, so no token source can vouch for them.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use strait_identity::SpiffeId;
use strait_proto::identity::v1::identity_server::Identity;
use strait_proto::identity::v1::{CertifyRequest, CertifyResponse};
use tonic::{Request, Response, Status};

use crate::ca::Ca;
use crate::reserved::ReservedIdentities;
use crate::tokens::TokenVerifier;

/// Most bytes of a bootstrap token accepted (projected service-account tokens are a few KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The identity service.
pub struct IdentityService {
    ca: Arc<ArcSwap<Ca>>,
    tokens: Arc<dyn TokenVerifier>,
    trust_domain: String,
    reserved: ReservedIdentities,
}

impl IdentityService {
    /// A service signing with the CA in `ca` (swapped on rotation) for identities `tokens`
    /// authenticates in `trust_domain`, except the `reserved` ones.
    pub fn new(
        ca: Arc<ArcSwap<Ca>>,
        tokens: Arc<dyn TokenVerifier>,
        trust_domain: &str,
        reserved: ReservedIdentities,
    ) -> Self {
        Self {
            ca,
            tokens,
            trust_domain: trust_domain.to_owned(),
            reserved,
        }
    }

    async fn certify_inner(
        &self,
        request: &CertifyRequest,
    ) -> Result<(SpiffeId, CertifyResponse), (&'static str, Status)> {
        let claimed: SpiffeId =
            request
                .identity
                .parse()
                .map_err(|e: strait_identity::spiffe::SpiffeIdError| {
                    (
                        "malformed-identity",
                        Status::invalid_argument(e.to_string()),
                    )
                })?;
        if claimed.trust_domain() != self.trust_domain {
            return Err((
                "wrong-trust-domain",
                Status::invalid_argument(format!(
                    "identity {claimed} is outside this control plane's trust domain {}",
                    self.trust_domain
                )),
            ));
        }
        if let Some(reason) = self.reserved.refusal(&claimed) {
            return Err(("reserved-identity", Status::permission_denied(reason)));
        }
        if request.token.is_empty() {
            return Err((
                "missing-token",
                Status::unauthenticated("the request carries no bootstrap token"),
            ));
        }
        if request.token.len() > MAX_TOKEN_BYTES {
            return Err((
                "invalid-token",
                Status::unauthenticated(format!(
                    "the bootstrap token exceeds {MAX_TOKEN_BYTES} bytes"
                )),
            ));
        }
        if request.csr_der.is_empty() {
            return Err((
                "malformed-csr",
                Status::invalid_argument("csr_der is empty"),
            ));
        }
        let authenticated = self
            .tokens
            .verify(&request.token)
            .await
            .map_err(|e| match e {
                crate::tokens::TokenError::Unavailable(_) => (
                    "token-check-unavailable",
                    Status::unavailable(e.to_string()),
                ),
                _ => (
                    "invalid-token",
                    Status::unauthenticated(format!("bootstrap token rejected: {e}")),
                ),
            })?;
        if authenticated != claimed {
            return Err((
                "identity-mismatch",
                Status::permission_denied(format!(
                    "the bootstrap token authenticates {authenticated}, which may not claim {claimed}"
                )),
            ));
        }
        let ca = self.ca.load();
        let issued = ca
            .sign(&request.csr_der, &claimed)
            .map_err(|e| (e.reason(), Status::invalid_argument(e.to_string())))?;
        let valid_until = issued
            .not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Ok((
            claimed,
            CertifyResponse {
                leaf_der: issued.leaf.to_vec(),
                intermediates_der: issued.chain.iter().map(|c| c.to_vec()).collect(),
                valid_until: Some(pbjson_types::Timestamp {
                    seconds: valid_until.as_secs() as i64,
                    nanos: 0,
                }),
                trust_anchors_der: ca.anchors().iter().map(|c| c.to_vec()).collect(),
            },
        ))
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn certify(
        &self,
        request: Request<CertifyRequest>,
    ) -> Result<Response<CertifyResponse>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let request = request.into_inner();
        match self.certify_inner(&request).await {
            Ok((identity, response)) => {
                metrics::counter!("strait_identity_certificates_issued_total").increment(1);
                tracing::info!(%identity, %peer, valid_until = ?response.valid_until.as_ref().map(|t| t.seconds), "certificate issued");
                Ok(Response::new(response))
            }
            Err((reason, status)) => {
                metrics::counter!("strait_identity_certificates_refused_total", "reason" => reason)
                    .increment(1);
                tracing::warn!(
                    reason,
                    claimed = %request.identity.chars().take(200).collect::<String>(),
                    %peer,
                    message = status.message(),
                    "certificate request refused"
                );
                Err(status)
            }
        }
    }
}
