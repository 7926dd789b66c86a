//! The connection to the control plane: gRPC over TLS, verifying the control plane proves its
//! own mesh identity. Certificate requests go without a client certificate (the proxy has none
//! yet); discovery presents the proxy's certificate.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::store::CertStore;
use strait_identity::tls::{ALPN_H2, client_config};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

/// Where the control plane is and who it must be.
#[derive(Clone)]
pub struct ControlPlane {
    addr: String,
    identity: SpiffeId,
    bundle: Arc<TrustBundle>,
    store: Arc<CertStore>,
}

impl ControlPlane {
    /// The control plane at `addr` (`host:port`), which must prove `identity`.
    pub fn new(
        addr: String,
        identity: SpiffeId,
        bundle: Arc<TrustBundle>,
        store: Arc<CertStore>,
    ) -> Self {
        Self {
            addr,
            identity,
            bundle,
            store,
        }
    }

    /// The address dialled.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// A lazily connecting channel; with `present_certificate` the proxy's certificate is
    /// offered (discovery), without it none is (bootstrap).
    pub fn channel(&self, present_certificate: bool) -> Channel {
        let store = present_certificate.then(|| self.store.clone());
        let tls = TlsConnector::from(client_config(
            store,
            self.bundle.clone(),
            self.identity.clone(),
            &[ALPN_H2],
        ));
        let addr = self.addr.clone();
        let connector = tower::service_fn(move |_uri: http::Uri| {
            let tls = tls.clone();
            let addr = addr.clone();
            async move {
                let tcp = TcpStream::connect(&addr).await?;
                tcp.set_nodelay(true)?;
                let ip = tcp.peer_addr()?.ip();
                let stream = tls.connect(ServerName::IpAddress(ip.into()), tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        Endpoint::from_static("http://strait-control-plane")
            .connect_timeout(std::time::Duration::from_secs(5))
            .http2_keep_alive_interval(std::time::Duration::from_secs(10))
            .keep_alive_timeout(std::time::Duration::from_secs(20))
            .connect_with_connector_lazy(connector)
    }
}
