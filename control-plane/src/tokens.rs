//! Bootstrap token checks for `Identity.Certify`: who does a token say the caller is?
//!
//! Behind one trait, two sources: local mode compares against per-workload tokens from the
//! configuration (stored as SHA-256 digests, so the configuration need not hold secrets), and
//! Kubernetes asks the API server with a TokenReview. Tokens never appear in errors or logs.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use strait_identity::SpiffeId;

use crate::config::Model;
pub use crate::digest::{parse_sha256_hex, sha256};

/// Why a token was not accepted. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No workload has this token.
    #[error("the token matches no workload")]
    Unknown,
    /// The token authority rejected or could not check the token.
    #[error("the token was not authenticated: {0}")]
    Rejected(String),
    /// The token authority could not be reached.
    #[error("the token could not be checked: {0}")]
    Unavailable(String),
}

/// Maps a bootstrap token to the identity it authenticates.
pub trait TokenVerifier: Send + Sync {
    /// The identity `token` proves.
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<SpiffeId, TokenError>>;
}

/// Local-mode tokens: the digests declared by `Workload` objects, replaced on every valid
/// configuration reload.
#[derive(Default)]
pub struct LocalTokens {
    by_digest: ArcSwap<HashMap<[u8; 32], SpiffeId>>,
}

impl LocalTokens {
    /// Tokens of the workloads in `model`.
    pub fn from_model(model: &Model) -> Arc<Self> {
        let tokens = Arc::new(Self::default());
        tokens.update(model);
        tokens
    }

    /// Replaces the tokens with those of `model`.
    pub fn update(&self, model: &Model) {
        let map = model
            .workloads
            .values()
            .filter_map(|w| w.token_sha256.map(|digest| (digest, w.identity.clone())))
            .collect();
        self.by_digest.store(Arc::new(map));
    }
}

impl TokenVerifier for LocalTokens {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<SpiffeId, TokenError>> {
        // Comparing digests looked up in a map leaks nothing useful through timing: an
        // attacker would need a SHA-256 preimage to steer it.
        let result = self
            .by_digest
            .load()
            .get(&sha256(token.trim().as_bytes()))
            .cloned()
            .ok_or(TokenError::Unknown);
        Box::pin(async move { result })
    }
}
