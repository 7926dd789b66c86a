//! The benchmark's clients: one connection per protocol, making one call at a time or, for
//! the multiplexed protocols, many at once on clones.
//!
//! A call is the smallest unit each protocol is measured by: an HTTP `GET` of a tiny
//! response, a unary gRPC call, a 64-byte TCP round trip.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use strait_tests::grpc::{EchoClient, EchoRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::tcp_backend;

/// The path every HTTP call fetches: the backend's cheapest answer.
pub const PATH: &str = "/status?code=200";

/// Bytes of one TCP round trip.
pub const TCP_MESSAGE: usize = 64;

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 (prior knowledge), multiplexed.
    Http2,
    /// gRPC unary calls (HTTP/2).
    Grpc,
    /// An opaque TCP byte stream.
    Tcp,
}

impl Protocol {
    /// Every protocol, in report order.
    pub const ALL: [Protocol; 4] = [
        Protocol::Http1,
        Protocol::Http2,
        Protocol::Grpc,
        Protocol::Tcp,
    ];

    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Http1 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
            Protocol::Grpc => "gRPC",
            Protocol::Tcp => "TCP",
        }
    }

    /// Whether one connection carries many calls at once.
    pub fn multiplexed(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

/// Where a protocol's calls go.
#[derive(Clone, Debug)]
pub struct Target {
    /// The address connections open to: the backend, or the outbound proxy.
    pub addr: SocketAddr,
    /// The `Host`/`:authority` HTTP and gRPC calls name.
    pub authority: String,
    /// For TCP through a proxy: the `host:port` of the `CONNECT` tunnel that local mode
    /// carries opaque TCP in.
    pub tunnel: Option<String>,
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn empty() -> Body {
    Empty::new().boxed()
}

/// One open connection.
pub enum Conn {
    /// HTTP/1.1: one request at a time.
    Http1(http1::SendRequest<Body>, String),
    /// HTTP/2: clones share the connection.
    Http2(http2::SendRequest<Body>, http::Uri),
    /// gRPC: clones share the channel's connection.
    Grpc(EchoClient<Channel>),
    /// TCP to an echo: one round trip at a time.
    Tcp(TcpStream),
}

async fn tcp_connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    Ok(stream)
}

/// Opens a TCP connection to the backend in `mode` (see [`tcp_backend`]): straight, or
/// through the outbound proxy's `CONNECT` tunnel when the target has one.
pub async fn open_tcp(target: &Target, mode: u8) -> anyhow::Result<TcpStream> {
    let mut stream = tcp_connect(target.addr).await?;
    if let Some(tunnel) = &target.tunnel {
        let head = format!("CONNECT {tunnel} HTTP/1.1\r\nHost: {tunnel}\r\n\r\n");
        stream.write_all(head.as_bytes()).await?;
        // Read the answer's head byte by byte: the tunnel's bytes follow it directly.
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            let byte = stream
                .read_u8()
                .await
                .with_context(|| format!("reading the CONNECT {tunnel} answer"))?;
            answer.push(byte);
            if answer.len() > 8192 {
                bail!("CONNECT {tunnel} answer head exceeds 8 KiB");
            }
        }
        if !answer.starts_with(b"HTTP/1.1 200") {
            bail!(
                "CONNECT {tunnel} refused: {}",
                String::from_utf8_lossy(&answer).trim()
            );
        }
    }
    stream.write_u8(mode).await?;
    Ok(stream)
}

impl Conn {
    /// Opens a connection of `protocol` to `target`.
    pub async fn open(protocol: Protocol, target: &Target) -> anyhow::Result<Self> {
        match protocol {
            Protocol::Http1 => {
                let stream = tcp_connect(target.addr).await?;
                let (sender, connection) = http1::handshake(TokioIo::new(stream))
                    .await
                    .context("HTTP/1.1 handshake")?;
                tokio::spawn(connection);
                Ok(Conn::Http1(sender, target.authority.clone()))
            }
            Protocol::Http2 => {
                let stream = tcp_connect(target.addr).await?;
                let (sender, connection) =
                    http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                        .await
                        .context("HTTP/2 handshake")?;
                tokio::spawn(connection);
                let uri = format!("http://{}{PATH}", target.authority)
                    .parse()
                    .with_context(|| format!("authority {:?}", target.authority))?;
                Ok(Conn::Http2(sender, uri))
            }
            Protocol::Grpc => {
                let channel = Endpoint::from_shared(format!("http://{}", target.addr))?
                    // The proxy routes by :authority, as a client addressing the service sends.
                    .origin(format!("http://{}", target.authority).parse()?)
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .with_context(|| format!("gRPC channel to {}", target.addr))?;
                Ok(Conn::Grpc(EchoClient::new(channel)))
            }
            Protocol::Tcp => Ok(Conn::Tcp(open_tcp(target, tcp_backend::ECHO).await?)),
        }
    }

    /// Another handle on the same connection, for protocols that carry calls side by side.
    pub fn share(&self) -> Option<Conn> {
        match self {
            Conn::Http2(sender, uri) => Some(Conn::Http2(sender.clone(), uri.clone())),
            Conn::Grpc(client) => Some(Conn::Grpc(client.clone())),
            Conn::Http1(..) | Conn::Tcp(_) => None,
        }
    }

    /// Makes one call and checks its answer.
    pub async fn call(&mut self) -> anyhow::Result<()> {
        match self {
            Conn::Http1(sender, authority) => {
                sender.ready().await.context("HTTP/1.1 connection closed")?;
                let request = Request::get(PATH)
                    .header("host", authority.as_str())
                    .body(empty())?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                if status != 200 {
                    bail!("HTTP/1.1 answered {status}");
                }
                Ok(())
            }
            Conn::Http2(sender, uri) => {
                let request = Request::get(uri.clone()).body(empty())?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                response.into_body().collect().await?;
                if status != 200 {
                    bail!("HTTP/2 answered {status}");
                }
                Ok(())
            }
            Conn::Grpc(client) => {
                let reply = client
                    .say(EchoRequest {
                        message: "ping".into(),
                        fail_with: 0,
                    })
                    .await
                    .map_err(|status| {
                        anyhow::anyhow!(
                            "gRPC call failed: {:?} {:?} {:?}",
                            status.code(),
                            status.message(),
                            status.metadata()
                        )
                    })?;
                if reply.get_ref().message != "ping" {
                    bail!("gRPC echo answered {:?}", reply.get_ref().message);
                }
                Ok(())
            }
            Conn::Tcp(stream) => {
                let message = [b'x'; TCP_MESSAGE];
                stream.write_all(&message).await?;
                let mut echo = [0u8; TCP_MESSAGE];
                stream.read_exact(&mut echo).await?;
                if echo != message {
                    bail!("TCP echo answered different bytes");
                }
                Ok(())
            }
        }
    }
}
