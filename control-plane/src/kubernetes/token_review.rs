//! Bootstrap tokens on Kubernetes: the proxy presents its projected service-account token
//! (audience [`DEFAULT_AUDIENCE`] unless configured otherwise) and the API server, asked with a
//! TokenReview, says which service account it belongs to. The token itself never appears in
//! errors or logs.

use futures_util::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::{Api, PostParams};
use strait_identity::SpiffeId;

use crate::tokens::{TokenError, TokenVerifier};

/// The audience proxies' tokens are issued for, so a token for any other purpose (the API
/// server's own, another system's) is refused.
pub const DEFAULT_AUDIENCE: &str = "strait.dev/identity";

/// Checks tokens with the Kubernetes TokenReview API.
pub struct TokenReviewer {
    api: Api<TokenReview>,
    audience: String,
    trust_domain: String,
}

impl TokenReviewer {
    /// A reviewer asking through `client` for tokens of `audience`, naming identities in
    /// `trust_domain`.
    pub fn new(client: kube::Client, audience: &str, trust_domain: &str) -> Self {
        Self {
            api: Api::all(client),
            audience: audience.to_owned(),
            trust_domain: trust_domain.to_owned(),
        }
    }
}

impl TokenVerifier for TokenReviewer {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<SpiffeId, TokenError>> {
        Box::pin(async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.trim().to_owned()),
                    audiences: Some(vec![self.audience.clone()]),
                },
                ..Default::default()
            };
            let answer = self
                .api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| TokenError::Unavailable(format!("TokenReview failed: {e}")))?;
            let status = answer.status.ok_or_else(|| {
                TokenError::Unavailable("the TokenReview answer has no status".into())
            })?;
            identity(&status, &self.audience, &self.trust_domain)
        })
    }
}

/// The identity a TokenReview's status grants, for tokens of `audience`.
pub fn identity(
    status: &TokenReviewStatus,
    audience: &str,
    trust_domain: &str,
) -> Result<SpiffeId, TokenError> {
    if status.authenticated != Some(true) {
        return Err(TokenError::Rejected(match status.error.as_deref() {
            Some(error) if !error.is_empty() => format!("the API server says: {error}"),
            _ => "the API server did not authenticate it".into(),
        }));
    }
    // The API server echoes the audiences the token is valid for among those asked; a server
    // that ignores audiences answers none, and such a token is not known to be ours.
    let audiences = status.audiences.as_deref().unwrap_or_default();
    if !audiences.iter().any(|a| a == audience) {
        return Err(TokenError::Rejected(format!(
            "the token is not issued for audience {audience:?}"
        )));
    }
    let username = status
        .user
        .as_ref()
        .and_then(|u| u.username.as_deref())
        .unwrap_or("");
    let Some((namespace, service_account)) = username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    else {
        return Err(TokenError::Rejected(format!(
            "the token authenticates {username:?}, which is not a service account"
        )));
    };
    SpiffeId::new(trust_domain, namespace, service_account).map_err(|e| {
        TokenError::Rejected(format!(
            "service account {namespace}/{service_account} makes no identity: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn status(authenticated: bool, username: &str, audiences: &[&str]) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(authenticated),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            user: Some(UserInfo {
                username: Some(username.into()),
                ..Default::default()
            }),
            error: None,
        }
    }

    #[test]
    fn a_service_account_token_for_our_audience_names_its_identity() {
        let id = identity(
            &status(true, "system:serviceaccount:demo:web", &[DEFAULT_AUDIENCE]),
            DEFAULT_AUDIENCE,
            "cluster.local",
        )
        .unwrap();
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/demo/sa/web");
    }

    #[test]
    fn unauthenticated_wrong_audience_and_non_service_account_tokens_are_refused() {
        let refused = |s: TokenReviewStatus| identity(&s, DEFAULT_AUDIENCE, "cluster.local");
        let mut failed = status(false, "", &[]);
        failed.error = Some("token has expired".into());
        assert_eq!(
            refused(failed),
            Err(TokenError::Rejected(
                "the API server says: token has expired".into()
            ))
        );
        assert!(matches!(
            refused(status(true, "system:serviceaccount:demo:web", &["api"])),
            Err(TokenError::Rejected(m)) if m.contains("audience")
        ));
        assert!(matches!(
            refused(status(true, "system:serviceaccount:demo:web", &[])),
            Err(TokenError::Rejected(m)) if m.contains("audience")
        ));
        assert!(matches!(
            refused(status(true, "alice@example.com", &[DEFAULT_AUDIENCE])),
            Err(TokenError::Rejected(m)) if m.contains("not a service account")
        ));
        assert!(matches!(
            refused(status(true, "system:serviceaccount:Demo_NS:web", &[DEFAULT_AUDIENCE])),
            Err(TokenError::Rejected(m)) if m.contains("makes no identity")
        ));
    }
}
