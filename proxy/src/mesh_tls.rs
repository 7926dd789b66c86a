//! mTLS on the proxy-to-proxy hop: the client side (outbound) verifies the peer proves the
//! identity the control plane gave its endpoint; the server side (inbound) requires a client
//! certificate from the mesh and reads the caller's identity from it.
//!
//! ALPN says what follows the handshake (HTTP/1.1, HTTP/2 or opaque TCP) and must agree with
//! the transport header. Client configurations are built once per (identity, protocol); they
//! read the trust bundle and this proxy's certificate at handshake time, so rotations need no
//! rebuild.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::leaf::{self, Usage};
use strait_identity::store::CertStore;
use strait_identity::tls::{
    ALPN_H2, ALPN_HTTP1, ALPN_OPAQUE, ClientAuth, client_config, server_config,
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

use crate::detect::Protocol;

/// The ALPN protocol announcing `protocol`.
pub fn alpn(protocol: Protocol) -> &'static [u8] {
    match protocol {
        Protocol::Http1 => ALPN_HTTP1,
        Protocol::Http2 => ALPN_H2,
        Protocol::Opaque => ALPN_OPAQUE,
    }
}

/// The protocol an ALPN value announces.
pub fn protocol_of_alpn(alpn: &[u8]) -> Option<Protocol> {
    [Protocol::Http1, Protocol::Http2, Protocol::Opaque]
        .into_iter()
        .find(|p| self::alpn(*p) == alpn)
}

/// Client configurations by (expected peer identity, ALPN protocol).
type ClientConfigs = HashMap<(SpiffeId, &'static [u8]), Arc<ClientConfig>>;

/// The proxy's mesh TLS state.
pub struct MeshTls {
    store: Arc<CertStore>,
    bundle: Arc<TrustBundle>,
    acceptor: TlsAcceptor,
    clients: Mutex<ClientConfigs>,
}

/// An accepted mesh connection.
pub struct Accepted {
    /// The TLS stream.
    pub stream: server::TlsStream<TcpStream>,
    /// The caller's proven identity.
    pub peer: SpiffeId,
    /// What the caller announced would follow.
    pub protocol: Protocol,
}

impl MeshTls {
    /// Mesh TLS presenting `store`'s certificate and trusting `bundle`.
    pub fn new(store: Arc<CertStore>, bundle: Arc<TrustBundle>) -> Arc<Self> {
        let server: Arc<ServerConfig> = server_config(
            store.clone(),
            bundle.clone(),
            ClientAuth::Required,
            &[ALPN_H2, ALPN_HTTP1, ALPN_OPAQUE],
        );
        Arc::new(Self {
            store,
            bundle,
            acceptor: TlsAcceptor::from(server),
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// This proxy's certificate store.
    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    fn client_config(&self, peer: &SpiffeId, protocol: Protocol) -> Arc<ClientConfig> {
        let alpn = alpn(protocol);
        let mut clients = self.clients.lock().expect("client config lock poisoned");
        clients
            .entry((peer.clone(), alpn))
            .or_insert_with(|| {
                client_config(
                    Some(self.store.clone()),
                    self.bundle.clone(),
                    peer.clone(),
                    &[alpn],
                )
            })
            .clone()
    }

    /// Handshakes as a client with a peer that must prove `peer`, announcing `protocol`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        peer: &SpiffeId,
        protocol: Protocol,
    ) -> std::io::Result<client::TlsStream<TcpStream>> {
        let addr = tcp.peer_addr()?;
        let connector = TlsConnector::from(self.client_config(peer, protocol));
        let result = connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await;
        record_handshake("outbound", &result);
        result
    }

    /// Handshakes as a server, requiring a mesh client certificate.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<Accepted> {
        let result = self.acceptor.accept(tcp).await;
        record_handshake("inbound", &result);
        let stream = result?;
        let (_, connection) = stream.get_ref();
        let invalid =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let cert = connection
            .peer_certificates()
            .and_then(|certs| certs.first())
            .ok_or_else(|| invalid("the client presented no certificate"))?;
        // The verifier already checked the policy; this reads the identity it proved.
        let peer = leaf::check(cert, self.bundle.trust_domain(), Usage::Client)
            .map_err(|e| invalid(&e.to_string()))?;
        let protocol = connection
            .alpn_protocol()
            .and_then(protocol_of_alpn)
            .ok_or_else(|| invalid("the client negotiated no Strait ALPN protocol"))?;
        Ok(Accepted {
            stream,
            peer,
            protocol,
        })
    }
}

fn record_handshake<T>(direction: &'static str, result: &std::io::Result<T>) {
    match result {
        Ok(_) => metrics::counter!("strait_tls_handshakes_total", "direction" => direction, "result" => "success", "reason" => "")
            .increment(1),
        Err(error) => {
            let reason = strait_identity::verifier::io_failure_reason(error);
            metrics::counter!("strait_tls_handshakes_total", "direction" => direction, "result" => "failure", "reason" => reason)
                .increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_values_map_back_to_their_protocol() {
        for protocol in [Protocol::Http1, Protocol::Http2, Protocol::Opaque] {
            assert_eq!(protocol_of_alpn(alpn(protocol)), Some(protocol));
        }
        assert_eq!(protocol_of_alpn(b"spdy/3"), None);
    }
}
