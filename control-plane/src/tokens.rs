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

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest
        .as_ref()
        .try_into()
        .expect("SHA-256 digests are 32 bytes")
}

/// Parses a hex SHA-256 digest.
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digests_parse_only_when_well_formed() {
        let digest = sha256(b"secret");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_sha256_hex(&hex), Some(digest));
        assert_eq!(parse_sha256_hex(&hex[..62]), None);
        assert_eq!(parse_sha256_hex(&"zz".repeat(32)), None);
    }
}
