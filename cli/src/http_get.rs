//! A minimal HTTP/1.1 GET for reading admin endpoints, with a timeout.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why an admin endpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Nothing answered.
    #[error("{addr} is unreachable: {reason}")]
    Unreachable {
        /// The address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// It answered with an error status.
    #[error("{addr}{path} answered {status}: {body}")]
    Status {
        /// The address.
        addr: SocketAddr,
        /// The path.
        path: String,
        /// The status.
        status: u16,
        /// The body, trimmed.
        body: String,
    },
}

/// GETs `path` from `addr`, returning the body of a 2xx answer.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, GetError> {
    let unreachable = |reason: String| GetError::Unreachable { addr, reason };
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(connection);
        let request = http::Request::get(path)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(GetError::Status {
                addr,
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
