//! Connection-level metrics: connections opened, closed and open, and bytes read and written,
//! by direction, detected protocol, service and the workloads on both sides.
//!
//! Handles are resolved once per label set and cached (bounded: the cache starts over past
//! [`MAX_CACHED_LABEL_SETS`]), so a connection costs one map lookup, not a registration.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, counter, gauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::workload::WorkloadLabel;
use crate::detect::Protocol;

/// Which listener a connection came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// The labels of one stream of connections.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionLabels {
    /// Which listener.
    pub direction: Direction,
    /// The detected (or declared) protocol.
    pub protocol: Protocol,
    /// Outbound, the service the original destination names (`namespace/name:port`);
    /// inbound, the one service of the port (`namespace/name`); empty when there is none
    /// (or, inbound, when several share the port).
    pub service: String,
    /// The calling side's workload.
    pub src_workload: WorkloadLabel,
    /// The called side's workload.
    pub dst_workload: WorkloadLabel,
}

/// The metric handles of one stream of connections.
#[derive(Clone)]
pub struct ConnectionMetrics {
    opened: Counter,
    closed: Counter,
    open: Gauge,
    read: Counter,
    written: Counter,
}

impl ConnectionMetrics {
    /// Resolves the handles for connections labelled `labels`.
    pub fn new(labels: &ConnectionLabels) -> Self {
        let labels = [
            ("direction", labels.direction.as_str().to_owned()),
            ("protocol", protocol_label(labels.protocol).to_owned()),
            ("service", labels.service.clone()),
            ("src_workload", labels.src_workload.name.clone()),
            (
                "src_workload_namespace",
                labels.src_workload.namespace.clone(),
            ),
            ("dst_workload", labels.dst_workload.name.clone()),
            (
                "dst_workload_namespace",
                labels.dst_workload.namespace.clone(),
            ),
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

/// How many label sets [`TcpMetrics`] keeps handles for before it starts over. Label values
/// come from the snapshot (services, workloads), so this is reached only by a very large
/// mesh or many snapshot changes; starting over only costs re-resolving handles.
pub const MAX_CACHED_LABEL_SETS: usize = 4096;

/// Connection metric handles by label set, shared by both listeners.
#[derive(Clone, Default)]
pub struct TcpMetrics {
    cache: Arc<Mutex<HashMap<ConnectionLabels, ConnectionMetrics>>>,
}

impl TcpMetrics {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handles for connections labelled `labels`.
    pub fn get(&self, labels: ConnectionLabels) -> ConnectionMetrics {
        let mut cache = self.cache.lock().expect("tcp metrics lock poisoned");
        if let Some(metrics) = cache.get(&labels) {
            return metrics.clone();
        }
        if cache.len() >= MAX_CACHED_LABEL_SETS {
            cache.clear();
        }
        let metrics = ConnectionMetrics::new(&labels);
        cache.insert(labels, metrics.clone());
        metrics
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
