//! Opens upstream connections: directly to an address, or to a peer proxy with the transport
//! header that tells it which port and protocol follow.
//!
//! Connect failures are reported as [`ProxyError`]s that say where and why, and they are the
//! failures every caller may retry safely: nothing reached the application.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::detect::Protocol;
use crate::errors::ProxyError;
use crate::io::BoxedIo;
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
        /// The identity the peer proxy must prove (used once the hop is mTLS).
        identity: Option<String>,
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

/// Makes upstream connections with a connect timeout.
#[derive(Clone, Debug)]
pub struct Connector {
    connect_timeout: Duration,
}

impl Connector {
    /// A connector whose connection attempts give up after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Self {
        Self { connect_timeout }
    }

    /// Connects to `dest` for traffic of `protocol`. For a mesh destination the transport
    /// header is written before the connection is returned.
    pub async fn connect(&self, dest: &Dest, protocol: Protocol) -> Result<BoxedIo, ProxyError> {
        let addr = dest.addr();
        let mut stream = self.tcp(addr).await?;
        match dest {
            Dest::Direct(_) => Ok(Box::new(stream)),
            Dest::Mesh { port, .. } => {
                let header = Header {
                    port: *port,
                    protocol,
                }
                .encode();
                stream
                    .write_all(&header)
                    .await
                    .map_err(|source| ProxyError::Connect { addr, source })?;
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
