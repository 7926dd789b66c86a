//! A minimal HTTP/1.1 GET for reading admin endpoints, with a timeout, over TCP or a
//! port-forward (see [`crate::target`]).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::target::Endpoint;

/// Why an admin endpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Nothing answered.
    #[error("{addr} is unreachable: {reason}")]
    Unreachable {
        /// The endpoint, as shown to the user.
        addr: String,
        /// Why.
        reason: String,
    },
    /// It answered with an error status.
    #[error("{addr}{path} answered {status}: {body}")]
    Status {
        /// The endpoint, as shown to the user.
        addr: String,
        /// The path.
        path: String,
        /// The status.
        status: u16,
        /// The body, trimmed.
        body: String,
    },
}

/// Largest admin answer read (a `/metrics` of a busy proxy is well under it).
const MAX_BODY_BYTES: usize = 32 << 20;

/// GETs `path` from `addr`, returning the body of a 2xx answer.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, GetError> {
    get_from(&Endpoint::from(addr), path, timeout).await
}

/// GETs `path` from `endpoint` over a connection of its own, returning the body of a 2xx
/// answer. A port-forward that fails is explained by the kubelet's message when it sent one.
pub async fn get_from(
    endpoint: &Endpoint,
    path: &str,
    timeout: Duration,
) -> Result<String, GetError> {
    let addr = endpoint.to_string();
    let unreachable = |reason: String| GetError::Unreachable {
        addr: addr.clone(),
        reason,
    };
    let exchange = async {
        let connection = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (stream, explain) = connection.split();
        let answer = async {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            let request = http::Request::get(path)
                .header("host", host_header(endpoint))
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            // Bounded: the answer comes from whatever listens on that port.
            let body = http_body_util::Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the answer (at most {MAX_BODY_BYTES} bytes): {e}"))?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        let (status, body) = match answer.await {
            Ok(answer) => answer,
            Err(reason) => {
                let reason = match explain.reason(Duration::from_secs(2)).await {
                    Some(message) => format!("{message} ({reason})"),
                    None => reason,
                };
                return Err(unreachable(reason));
            }
        };
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(GetError::Status {
                addr: addr.clone(),
                path: path.to_owned(),
                status,
                body: body.trim().to_owned(),
            })
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(unreachable(format!("no answer within {timeout:?}"))))
}

/// The `host` header: the address for TCP; for a port-forward, loopback and the pod's port,
/// which is where the request arrives from the pod's point of view.
fn host_header(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Tcp { .. } => endpoint.to_string(),
        Endpoint::PortForward { port, .. } => format!("127.0.0.1:{port}"),
    }
}
