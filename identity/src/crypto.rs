//! The crypto provider every TLS configuration, verifier and key of the mesh uses: a leaf
//! module so the certificate store, the trust bundle and the verifiers can name it without
//! depending on the TLS configurations built from them.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The crypto provider: aws-lc-rs, whose default key-exchange groups put X25519MLKEM768 first.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}
