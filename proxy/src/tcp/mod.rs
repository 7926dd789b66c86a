//! Opaque byte relaying between a client and an upstream: both directions at once, a
//! half-close on one side passed on to the other, and an idle timeout.
//!
//! The copying is [`copy::copy_bidirectional`] (buffers only while bytes move, a read EOF
//! passed on as a write shutdown); this module adds the idle clock and the byte counts.

pub mod copy;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::io::BoxedIo;

/// Bytes moved by a finished relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relayed {
    /// From the client to the upstream.
    pub client_to_upstream: u64,
    /// From the upstream to the client.
    pub upstream_to_client: u64,
}

/// Completes when a relayed connection must be closed from outside: the authorization that
/// admitted it no longer does.
pub type Revoked = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// [`relay`], ended early with an error of kind `PermissionDenied` when `revoked` completes.
pub async fn relay_until(
    client: BoxedIo,
    upstream: BoxedIo,
    idle_timeout: Duration,
    revoked: Option<Revoked>,
) -> io::Result<Relayed> {
    let Some(revoked) = revoked else {
        return relay(client, upstream, idle_timeout).await;
    };
    tokio::select! {
        relayed = relay(client, upstream, idle_timeout) => relayed,
        () = revoked => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "closed: the connection is no longer authorized",
        )),
    }
}

/// Relays until both directions have closed, either side fails, or nothing has moved in
/// either direction for `idle_timeout`.
pub async fn relay(
    client: BoxedIo,
    upstream: BoxedIo,
    idle_timeout: Duration,
) -> io::Result<Relayed> {
    let start = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let mut client = Active::new(client, start, activity.clone());
    let mut upstream = Active::new(upstream, start, activity.clone());
    let copy = copy::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    let mut deadline = start + idle_timeout;
    loop {
        tokio::select! {
            result = &mut copy => {
                let (client_to_upstream, upstream_to_client) = result?;
                return Ok(Relayed { client_to_upstream, upstream_to_client });
            }
            () = tokio::time::sleep_until(deadline) => {
                let last = start + Duration::from_millis(activity.load(Ordering::Relaxed));
                if last + idle_timeout <= Instant::now() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no bytes in either direction for {idle_timeout:?}"),
                    ));
                }
                deadline = last + idle_timeout;
            }
        }
    }
}

/// Records the time of the last read or write, in milliseconds since the relay started, so
/// the idle check needs no lock and the copy path no timer.
struct Active {
    io: BoxedIo,
    start: Instant,
    activity: Arc<AtomicU64>,
}

impl Active {
    fn new(io: BoxedIo, start: Instant, activity: Arc<AtomicU64>) -> Self {
        Self {
            io,
            start,
            activity,
        }
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.fetch_max(elapsed, Ordering::Relaxed);
    }
}

impl AsyncRead for Active {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl AsyncWrite for Active {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test]
    async fn bytes_flow_both_ways_and_a_half_close_is_passed_on() {
        let (client, mut client_peer) = duplex(1024);
        let (upstream, mut upstream_peer) = duplex(1024);
        let relay = tokio::spawn(relay(
            Box::new(client),
            Box::new(upstream),
            Duration::from_secs(5),
        ));

        client_peer.write_all(b"ping").await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        upstream_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping", "client's EOF reaches the upstream");

        // The upstream can still answer after the client half-closed.
        upstream_peer.write_all(b"pong!").await.unwrap();
        upstream_peer.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client_peer.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"pong!");

        let relayed = relay.await.unwrap().unwrap();
        assert_eq!(
            relayed,
            Relayed {
                client_to_upstream: 4,
                upstream_to_client: 5
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_relay_ends_with_a_timeout() {
        let (client, _client_peer) = duplex(64);
        let (upstream, _upstream_peer) = duplex(64);
        let err = relay(
            Box::new(client),
            Box::new(upstream),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_a_relay_alive_past_the_idle_timeout() {
        let (client, mut client_peer) = duplex(64);
        let (upstream, mut upstream_peer) = duplex(64);
        let relay = tokio::spawn(relay(
            Box::new(client),
            Box::new(upstream),
            Duration::from_secs(10),
        ));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            client_peer.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            upstream_peer.read_exact(&mut one).await.unwrap();
        }
        assert!(
            !relay.is_finished(),
            "30 s of steady traffic must not trip a 10 s idle timeout"
        );
        drop(client_peer);
        drop(upstream_peer);
        relay.await.unwrap().unwrap();
    }
}
