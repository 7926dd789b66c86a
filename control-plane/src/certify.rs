//! `Identity.Certify`: a proxy proves who it is with its bootstrap token and gets its CSR
//! signed for that identity.
//!
//! Every refusal is a gRPC status whose message says what is wrong (never echoing the token),
//! a log line, and an increment of `strait_identity_certificates_refused_total{reason}`.
//! Identities reserved for the control plane ([`crate::reserved`]) are refused before the
//! token is even checked, so no token source can vouch for them.
//!
//! Everything checkable locally (identity, token size, the CSR's size, DER, signature and key
//! type) is checked before the token is verified, because verifying may cost the Kubernetes
//! API a TokenReview: junk costs nothing upstream. Verifications in flight are capped
//! ([`TokenReviewLimit`]); a request that finds the cap full waits at most
//! [`TokenReviewLimit::wait`] and is then refused with `RESOURCE_EXHAUSTED` (proxies retry
//! with backoff), so a flood queues neither unbounded memory nor unbounded API calls.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use strait_identity::SpiffeId;
use strait_proto::identity::v1::identity_server::Identity;
use strait_proto::identity::v1::{CertifyRequest, CertifyResponse};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::ca::{Ca, check_csr};
use crate::reserved::ReservedIdentities;
use crate::tokens::TokenVerifier;

/// Most bytes of a bootstrap token accepted (projected service-account tokens are a few KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How many token verifications may be in flight, and how long a request waits for a turn.
#[derive(Clone, Debug)]
pub struct TokenReviewLimit {
    permits: Arc<Semaphore>,
    size: usize,
    wait: Duration,
}

impl TokenReviewLimit {
    /// How long a request waits for a free slot before `RESOURCE_EXHAUSTED`: long enough to
    /// ride out a burst (a rolling restart; a TokenReview takes milliseconds), short enough
    /// that a flood holds no request for long.
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(1);

    /// At most `concurrent` verifications at once (at least one), waiting at most `wait`.
    pub fn new(concurrent: usize, wait: Duration) -> Self {
        let size = concurrent.max(1);
        Self {
            permits: Arc::new(Semaphore::new(size)),
            size,
            wait,
        }
    }
}

/// The identity service.
pub struct IdentityService {
    ca: Arc<ArcSwap<Ca>>,
    tokens: Arc<dyn TokenVerifier>,
    trust_domain: String,
    reserved: ReservedIdentities,
    reviews: TokenReviewLimit,
}

impl IdentityService {
    /// A service signing with the CA in `ca` (swapped on rotation) for identities `tokens`
    /// authenticates in `trust_domain`, except the `reserved` ones, with at most `reviews`
    /// token verifications in flight.
    pub fn new(
        ca: Arc<ArcSwap<Ca>>,
        tokens: Arc<dyn TokenVerifier>,
        trust_domain: &str,
        reserved: ReservedIdentities,
        reviews: TokenReviewLimit,
    ) -> Self {
        Self {
            ca,
            tokens,
            trust_domain: trust_domain.to_owned(),
            reserved,
            reviews,
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
        let csr = check_csr(&request.csr_der)
            .map_err(|e| (e.reason(), Status::invalid_argument(e.to_string())))?;
        let _permit = tokio::time::timeout(self.reviews.wait, self.reviews.permits.acquire())
            .await
            .map_err(|_| {
                (
                    "token-reviews-saturated",
                    Status::resource_exhausted(format!(
                        "all {} token verification slots stayed busy for {:?}; retry later",
                        self.reviews.size, self.reviews.wait
                    )),
                )
            })?
            .map_err(|_| {
                (
                    "token-check-unavailable",
                    Status::unavailable("the control plane is shutting down"),
                )
            })?;
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
            .sign_checked(csr, &claimed)
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
            .extensions()
            .get::<crate::tls_incoming::PeerInfo>()
            .map(|p| p.addr.to_string())
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::future::BoxFuture;
    use rcgen::{CertificateParams, KeyPair};
    use tokio::sync::Notify;

    use super::*;
    use crate::tokens::TokenError;

    const WEB: &str = "spiffe://cluster.local/ns/demo/sa/web";

    /// Authenticates every token as `web`, counting calls and holding each until released.
    #[derive(Default)]
    struct SlowTokens {
        calls: AtomicUsize,
        release: Notify,
    }

    impl TokenVerifier for SlowTokens {
        fn verify<'a>(&'a self, _token: &'a str) -> BoxFuture<'a, Result<SpiffeId, TokenError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                self.release.notified().await;
                Ok(WEB.parse().unwrap())
            })
        }
    }

    fn service(tokens: Arc<SlowTokens>, reviews: TokenReviewLimit) -> IdentityService {
        // One directory per service: `cargo test` runs tests as threads of one process.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "strait-identity-unit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let (ca, _) =
            Ca::load_or_generate_dev(&dir, "cluster.local", Duration::from_secs(3600)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        IdentityService::new(
            Arc::new(ArcSwap::from_pointee(ca)),
            tokens,
            "cluster.local",
            ReservedIdentities::new(
                "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane"
                    .parse()
                    .unwrap(),
            ),
            reviews,
        )
    }

    fn request(csr_der: Vec<u8>) -> CertifyRequest {
        CertifyRequest {
            token: "a-token".into(),
            identity: WEB.into(),
            csr_der,
        }
    }

    fn good_csr() -> Vec<u8> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[tokio::test]
    async fn a_junk_csr_is_refused_without_verifying_the_token() {
        let tokens = Arc::new(SlowTokens::default());
        let service = service(
            tokens.clone(),
            TokenReviewLimit::new(1, Duration::from_millis(50)),
        );
        let (reason, status) = service
            .certify_inner(&request(b"junk".to_vec()))
            .await
            .unwrap_err();
        assert_eq!(reason, "malformed-csr");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(tokens.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_request_finding_every_review_slot_busy_is_refused_as_resource_exhausted() {
        let tokens = Arc::new(SlowTokens::default());
        let service = Arc::new(service(
            tokens.clone(),
            TokenReviewLimit::new(1, Duration::from_millis(50)),
        ));
        let first = tokio::spawn({
            let service = service.clone();
            async move { service.certify_inner(&request(good_csr())).await }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokens.calls.load(Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the first review never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        let (reason, status) = service
            .certify_inner(&request(good_csr()))
            .await
            .unwrap_err();
        assert_eq!(reason, "token-reviews-saturated");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("all 1 token verification slots"),
            "{status:?}"
        );
        assert_eq!(
            tokens.calls.load(Ordering::SeqCst),
            1,
            "no second review started"
        );

        tokens.release.notify_one();
        let (identity, _) = first.await.unwrap().unwrap();
        assert_eq!(identity.to_string(), WEB);
        // The slot is free again.
        let second = tokio::spawn({
            let service = service.clone();
            async move { service.certify_inner(&request(good_csr())).await }
        });
        while tokens.calls.load(Ordering::SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the slot was never freed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokens.release.notify_one();
        assert!(second.await.unwrap().is_ok());
    }
}
