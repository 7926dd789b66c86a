//! A mesh client built by hand for the refusal tests: it presents whatever certificate a test
//! gives it (or none), verifies the server as a proxy would, and speaks the transport header
//! and HTTP/1.1 after the handshake.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::verifier::MeshServerVerifier;
use strait_proxy::detect::Protocol;
use strait_proxy::transport_header::Header;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::certs::Identity;

/// Which TLS versions the client offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// TLS 1.3, as the mesh requires.
    Tls13,
    /// TLS 1.2 only.
    Tls12Only,
}

/// Connects to a proxy's inbound port presenting `identity`, expecting the server to prove
/// `server`. Returns the response to `GET /` for `port`, or the handshake/IO error text.
pub async fn request(
    inbound: SocketAddr,
    anchors: &std::path::Path,
    server: &str,
    identity: Option<&Identity>,
    version: Version,
    port: u16,
) -> Result<String, String> {
    let header = Header {
        port,
        protocol: Protocol::Http1,
    };
    let bytes = b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    exchange(inbound, anchors, server, identity, version, header, bytes).await
}

/// Connects as [`request`] does, then sends `header` (and the ALPN its protocol implies) and
/// `bytes` as they are, and reads until the server closes (at most 10 s): what a compromised
/// workload holding `identity` can say to a proxy. An empty answer is an error.
pub async fn exchange(
    inbound: SocketAddr,
    anchors: &std::path::Path,
    server: &str,
    identity: Option<&Identity>,
    version: Version,
    header: Header,
    bytes: &[u8],
) -> Result<String, String> {
    let mut tls = connect(inbound, anchors, server, identity, version, header).await?;
    let exchange = async {
        tls.write_all(bytes).await?;
        let mut response = Vec::new();
        let read = tls.read_to_end(&mut response);
        match tokio::time::timeout(std::time::Duration::from_secs(10), read).await {
            Ok(Ok(_)) => {}
            // A server that answers and then closes without close_notify still answered.
            Ok(Err(error)) if response.is_empty() => return Err(error),
            Ok(Err(_)) => {}
            Err(_) => return Err(std::io::Error::other("no end of answer within 10 s")),
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    // In TLS 1.3 the server checks the client certificate after the client considers the
    // handshake done, so a refusal shows up here, as an alert or a closed connection.
    match exchange.await {
        Ok(response) if response.is_empty() => {
            Err("the server closed the connection without answering".into())
        }
        Ok(response) => Ok(response),
        Err(error) => Err(format!("after handshake: {error}")),
    }
}

/// The mTLS connection of [`exchange`], with `header` already sent, for a test that speaks
/// the protocol itself (HTTP/2 with a real client, for example).
pub async fn connect(
    inbound: SocketAddr,
    anchors: &std::path::Path,
    server: &str,
    identity: Option<&Identity>,
    version: Version,
    header: Header,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let anchors = strait_identity::pem::read_certificates(anchors).map_err(|e| e.to_string())?;
    let bundle = TrustBundle::new("cluster.local", anchors.clone()).map_err(|e| e.to_string())?;
    let server: SpiffeId = server
        .parse()
        .map_err(|e: strait_identity::spiffe::SpiffeIdError| e.to_string())?;
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        Version::Tls13 => &[&rustls::version::TLS13],
        Version::Tls12Only => &[&rustls::version::TLS12],
    };
    let builder = ClientConfig::builder_with_provider(strait_identity::tls::provider())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let builder = if version == Version::Tls12Only {
        // The mesh verifier refuses TLS 1.2 signatures itself; use plain WebPKI roots so the
        // refusal observed is the server's.
        let mut roots = RootCertStore::empty();
        for anchor in anchors {
            roots.add(anchor).map_err(|e| e.to_string())?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(MeshServerVerifier::new(bundle, server)))
    };
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![strait_proxy::mesh_tls::alpn(header.protocol).to_vec()];
    let tcp = TcpStream::connect(inbound)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(inbound.ip().into()), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(&header.encode())
        .await
        .map_err(|e| format!("sending the transport header: {e}"))?;
    Ok(tls)
}
