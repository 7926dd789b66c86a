//! A resolved target and how to open one connection to it: TCP to `HOST:PORT`, or a
//! port-forward through the API server to one pod's port (kube-rs's `Api::<Pod>::portforward`,
//! the WebSocket subresource `kubectl port-forward` uses). One connection per request, as the
//! admin endpoints are read with one GET each.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream to an admin endpoint.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// What the kubelet said on a port-forward's error channel, once the stream has failed.
type ErrorMessage = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// An open connection, and for a port-forward the message that explains its failure.
pub struct Connection {
    stream: Box<dyn Stream>,
    error: Option<ErrorMessage>,
}

impl Connection {
    /// The stream, and what explains its failure.
    pub fn split(self) -> (Box<dyn Stream>, Explanation) {
        (self.stream, Explanation(self.error))
    }
}

/// What the far side said about a failed connection, if it can say anything.
pub struct Explanation(Option<ErrorMessage>);

impl Explanation {
    /// The kubelet's port-forward error (e.g. nothing listens on the pod's port), waiting at
    /// most `wait` for it; `None` for TCP or when nothing was said.
    pub async fn reason(self, wait: Duration) -> Option<String> {
        let error = self.0?;
        tokio::time::timeout(wait, error).await.ok().flatten()
    }
}

/// Where a target resolved to.
#[derive(Clone)]
pub enum Endpoint {
    /// Straight over TCP.
    Tcp {
        /// An IP or a DNS name.
        host: String,
        /// The port.
        port: u16,
    },
    /// Through a port-forward to a pod.
    PortForward {
        /// The pods API of the pod's namespace (boxed: a client is large beside an address).
        pods: Box<Api<Pod>>,
        /// The target as the user named it (`deploy/frontend`).
        via: String,
        /// The pod's namespace.
        namespace: String,
        /// The pod.
        pod: String,
        /// The pod's port.
        port: u16,
    },
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Self::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "{host}:{port}"),
            Self::PortForward {
                via,
                namespace,
                pod,
                port,
                ..
            } => write!(f, "{via} (pod {namespace}/{pod} port {port})"),
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP failed.
    #[error("connecting: {0}")]
    Tcp(#[source] std::io::Error),
    /// The API server refused the port-forward (RBAC).
    #[error(
        "the API server refused the port-forward to pod {namespace}/{pod}: {message} (the CLI needs `create` on `pods/portforward` in namespace {namespace})"
    )]
    Forbidden {
        /// The namespace.
        namespace: String,
        /// The pod.
        pod: String,
        /// The API server's message.
        message: String,
    },
    /// Any other port-forward failure.
    #[error("port-forward to pod {namespace}/{pod} port {port} failed: {reason}")]
    PortForward {
        /// The namespace.
        namespace: String,
        /// The pod.
        pod: String,
        /// The port.
        port: u16,
        /// Why.
        reason: String,
    },
}

impl Endpoint {
    /// Opens one connection.
    pub async fn connect(&self) -> Result<Connection, ConnectError> {
        match self {
            Self::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(ConnectError::Tcp)?;
                Ok(Connection {
                    stream: Box::new(stream),
                    error: None,
                })
            }
            Self::PortForward {
                pods,
                namespace,
                pod,
                port,
                ..
            } => {
                let failed = |reason: String| ConnectError::PortForward {
                    namespace: namespace.clone(),
                    pod: pod.clone(),
                    port: *port,
                    reason,
                };
                let mut forwarder = pods.portforward(pod, &[*port]).await.map_err(|e| match e {
                    kube::Error::Api(status) if status.code == 403 => ConnectError::Forbidden {
                        namespace: namespace.clone(),
                        pod: pod.clone(),
                        message: status.message.clone(),
                    },
                    kube::Error::Api(status) => failed(format!(
                        "the API server answered {} {}: {}",
                        status.code, status.reason, status.message
                    )),
                    other => failed(other.to_string()),
                })?;
                let stream = forwarder
                    .take_stream(*port)
                    .ok_or_else(|| failed("the forwarder has no stream for the port".into()))?;
                let error = forwarder
                    .take_error(*port)
                    .map(|e| Box::pin(e) as ErrorMessage);
                // The forwarder's task relays until the stream is dropped; it needs no handle.
                drop(forwarder);
                Ok(Connection {
                    stream: Box::new(stream),
                    error,
                })
            }
        }
    }
}
