//! Connection-level metrics: connections opened, closed and open, and bytes read and written,
//! by direction and detected protocol.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use metrics::{Counter, Gauge, counter, gauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::detect::Protocol;

/// Which listener a connection came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the local app to the mesh.
    Outbound,
    /// From the mesh (or a non-meshed client) to the local app.
    Inbound,
}

impl Direction {
    /// The `direction` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

fn protocol_label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http1 => "http1",
        Protocol::Http2 => "http2",
        Protocol::Opaque => "opaque",
    }
}

/// The metric handles of one (direction, protocol) pair.
#[derive(Clone)]
pub struct ConnectionMetrics {
    opened: Counter,
    closed: Counter,
    open: Gauge,
    read: Counter,
    written: Counter,
}

impl ConnectionMetrics {
    /// Resolves the handles for connections of `protocol` through `direction`.
    pub fn new(direction: Direction, protocol: Protocol) -> Self {
        let labels = [
            ("direction", direction.as_str()),
            ("protocol", protocol_label(protocol)),
        ];
        Self {
            opened: counter!("strait_tcp_connections_opened_total", &labels),
            closed: counter!("strait_tcp_connections_closed_total", &labels),
            open: gauge!("strait_tcp_open_connections", &labels),
            read: counter!("strait_tcp_read_bytes_total", &labels),
            written: counter!("strait_tcp_write_bytes_total", &labels),
        }
    }

    /// Counts a connection as open until the returned guard drops.
    pub fn open(&self) -> OpenConnection {
        self.opened.increment(1);
        self.open.increment(1.0);
        OpenConnection {
            metrics: self.clone(),
        }
    }
}

/// Marks a connection open; dropping it marks the connection closed.
pub struct OpenConnection {
    metrics: ConnectionMetrics,
}

impl OpenConnection {
    /// Wraps the client side of the connection so its bytes are counted.
    pub fn count<I>(&self, io: I) -> CountingIo<I> {
        CountingIo {
            io,
            read: self.metrics.read.clone(),
            written: self.metrics.written.clone(),
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.closed.increment(1);
        self.metrics.open.decrement(1.0);
    }
}

/// Handles for both directions and every protocol, resolved once at start-up.
#[derive(Clone)]
pub struct TcpMetrics {
    outbound: [ConnectionMetrics; 3],
    inbound: [ConnectionMetrics; 3],
}

impl TcpMetrics {
    /// Resolves every handle.
    pub fn new() -> Self {
        let all = |direction| {
            [Protocol::Http1, Protocol::Http2, Protocol::Opaque]
                .map(|protocol| ConnectionMetrics::new(direction, protocol))
        };
        Self {
            outbound: all(Direction::Outbound),
            inbound: all(Direction::Inbound),
        }
    }

    /// The handles for one direction and protocol.
    pub fn get(&self, direction: Direction, protocol: Protocol) -> &ConnectionMetrics {
        let set = match direction {
            Direction::Outbound => &self.outbound,
            Direction::Inbound => &self.inbound,
        };
        &set[match protocol {
            Protocol::Http1 => 0,
            Protocol::Http2 => 1,
            Protocol::Opaque => 2,
        }]
    }
}

impl Default for TcpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A stream that counts the bytes read from and written to it.
pub struct CountingIo<I> {
    io: I,
    read: Counter,
    written: Counter,
}

impl<I: AsyncRead + Unpin> AsyncRead for CountingIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.increment(n as u64);
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for CountingIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.written.increment(n as u64);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            self.written.increment(n as u64);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
