//! Opens upstream connections: directly to an address, or to a peer proxy with the transport
//! header that tells it which port and protocol follow.
//!
//! Connect failures are reported as [`ProxyError`]s that say where and why, and they are the
//! failures every caller may retry safely: nothing reached the application.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strait_identity::SpiffeId;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::detect::Protocol;
use crate::errors::ProxyError;
use crate::io::BoxedIo;
use crate::mesh_tls::MeshTls;
use crate::transport_header::Header;

/// Where an upstream connection goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    /// Straight to an address, in plaintext: the local app (inbound) or a non-meshed endpoint.
    Direct(SocketAddr),
    /// To the inbound proxy of a meshed endpoint, which forwards to the application port.
    Mesh {
        /// The peer proxy's inbound address.
        proxy: SocketAddr,
        /// The application port on the peer's workload.
        port: u16,
        /// The identity the peer proxy must prove; `None` when the control plane knows none,
        /// in which case the hop is plaintext.
        identity: Option<SpiffeId>,
    },
}

impl Dest {
    /// The socket address this destination connects to.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Dest::Direct(addr) => *addr,
            Dest::Mesh { proxy, .. } => *proxy,
        }
    }
}

/// Makes upstream connections with a connect timeout, over mTLS to meshed peers when the
/// proxy has an identity.
#[derive(Clone)]
pub struct Connector {
    connect_timeout: Duration,
    tls: Option<Arc<MeshTls>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("connect_timeout", &self.connect_timeout)
            .field("mtls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    /// A connector whose connection attempts give up after `connect_timeout`; with `tls`,
    /// hops to meshed peers with a known identity are mTLS.
    pub fn new(connect_timeout: Duration, tls: Option<Arc<MeshTls>>) -> Self {
        Self {
            connect_timeout,
            tls,
        }
    }

    /// The same connector with another connect timeout (a backend policy's).
    pub fn with_connect_timeout(&self, connect_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            tls: self.tls.clone(),
        }
    }

    /// Connects to `dest` for traffic of `protocol`. For a mesh destination the transport
    /// header is written (inside TLS when the hop is secured) before the connection is
    /// returned. Every failure here happened before any application byte was sent.
    pub async fn connect(&self, dest: &Dest, protocol: Protocol) -> Result<BoxedIo, ProxyError> {
        let addr = dest.addr();
        let stream = self.tcp(addr).await?;
        let Dest::Mesh { port, identity, .. } = dest else {
            return Ok(Box::new(stream));
        };
        let header = Header {
            port: *port,
            protocol,
        }
        .encode();
        let write_err = |source| ProxyError::Connect { addr, source };
        match (&self.tls, identity) {
            (Some(tls), Some(identity)) => {
                let handshake = tokio::time::timeout(
                    self.connect_timeout,
                    tls.connect(stream, identity, protocol),
                );
                let mut tls_stream = handshake
                    .await
                    .map_err(|_| ProxyError::ConnectTimeout {
                        addr,
                        timeout: self.connect_timeout,
                    })?
                    .map_err(|source| ProxyError::Tls {
                        addr,
                        reason: strait_identity::verifier::io_failure_reason(&source),
                        detail: strait_identity::verifier::describe(&source),
                    })?;
                tls_stream.write_all(&header).await.map_err(write_err)?;
                Ok(Box::new(tls_stream))
            }
            _ => {
                let mut stream = stream;
                stream.write_all(&header).await.map_err(write_err)?;
                Ok(Box::new(stream))
            }
        }
    }

    async fn tcp(&self, addr: SocketAddr) -> Result<TcpStream, ProxyError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ProxyError::ConnectTimeout {
                addr,
                timeout: self.connect_timeout,
            })?
            .map_err(|source| ProxyError::Connect { addr, source })?;
        // Requests are small writes that must leave at once; Nagle would add latency.
        stream
            .set_nodelay(true)
            .map_err(|source| ProxyError::Connect { addr, source })?;
        Ok(stream)
    }
}
