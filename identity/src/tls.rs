//! TLS configurations for mesh connections: TLS 1.3 only, mutual authentication with mesh
//! identities, X25519MLKEM768 (post-quantum hybrid) key exchange preferred, no 0-RTT early
//! data, and no session resumption, so every connection's peer identity is verified afresh.

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use crate::bundle::TrustBundle;
use crate::spiffe::SpiffeId;
use crate::store::CertStore;
use crate::verifier::{MeshClientVerifier, MeshServerVerifier};

/// ALPN for HTTP/1.1 between proxies.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN for HTTP/2 between proxies, and for the control plane's gRPC.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN for opaque TCP between proxies.
pub const ALPN_OPAQUE: &[u8] = b"strait-opaque";

pub use crate::crypto::provider;

/// Whether a server requires client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a mesh identity (proxy inbound).
    Required,
    /// Clients may present none; one presented is verified (control plane).
    Optional,
}

/// A server configuration presenting `store`'s certificate and verifying clients against
/// `bundle`.
pub fn server_config(
    store: Arc<CertStore>,
    bundle: Arc<TrustBundle>,
    client_auth: ClientAuth,
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    let verifier = MeshClientVerifier::new(bundle, client_auth == ClientAuth::Required);
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("aws-lc-rs supports TLS 1.3")
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(store);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.max_early_data_size = 0;
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Arc::new(config)
}

/// A client configuration that accepts only a server proving `expected`, and presents
/// `store`'s certificate when there is one.
pub fn client_config(
    store: Option<Arc<CertStore>>,
    bundle: Arc<TrustBundle>,
    expected: SpiffeId,
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("aws-lc-rs supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MeshServerVerifier::new(bundle, expected)));
    let mut config = match store {
        Some(store) => builder.with_client_cert_resolver(store),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    // Mesh peers are named by identity, not by DNS; an IP "server name" sends no SNI.
    config.enable_sni = false;
    Arc::new(config)
}
