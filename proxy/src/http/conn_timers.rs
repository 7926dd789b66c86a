//! Deadlines of one served HTTP connection: the header-read deadline (a request head must be
//! complete within `header_read_timeout` of its first byte) and the idle timeout (no request
//! in progress for `idle_timeout`).
//!
//! Written here rather than taken from hyper because hyper's own header-read timeout starts
//! when the connection begins waiting for a head, so it also closes every keep-alive
//! connection idle that long: a 10 s slowloris defence would become a 10 s keep-alive limit,
//! shorter than the pools of the clients (our own outbound proxies among them), and every
//! such close races a client's next request. Here the two limits are separate: slowloris is
//! cut off 10 s after its first byte, and an idle connection is closed, gracefully, only
//! after the much longer idle timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::io::BoxedIo;

/// Which deadline passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// A request head took too long after its first byte: close at once.
    HeaderRead,
    /// No request for the idle timeout: close gracefully.
    Idle,
}

/// Request activity of one connection, in atomics the read path and the request path
/// update without locking.
pub struct ConnTimers {
    epoch: Instant,
    in_flight: AtomicU32,
    /// Milliseconds since `epoch` (+1, so 0 means unset) when a head's first byte arrived.
    head_started: AtomicU64,
    /// Milliseconds since `epoch` when the last request finished (or the connection opened).
    idle_since: AtomicU64,
    /// Wakes the watchdog when a head starts, which brings its deadline forward.
    head_began: tokio::sync::Notify,
}

impl ConnTimers {
    /// Timers for a connection opened now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            head_started: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_began: tokio::sync::Notify::new(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Wraps the connection so that bytes arriving while no request is in progress start
    /// the header-read deadline (HTTP/1 only: HTTP/2 frames are not request heads).
    pub fn watch_reads(self: &Arc<Self>, io: BoxedIo) -> BoxedIo {
        Box::new(WatchedIo {
            inner: io,
            timers: self.clone(),
        })
    }

    /// A request's head is complete and its handling starts.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
    }

    /// A request's handling ended (its response head is out; the body may still stream).
    pub fn request_finished(&self) {
        self.idle_since.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether part of a request head has arrived and its request has not started yet.
    pub fn head_in_progress(&self) -> bool {
        self.head_started.load(Ordering::Relaxed) != 0
    }

    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started
                .store(self.now_ms() + 1, Ordering::Relaxed);
            self.head_began.notify_one();
        }
    }

    /// The deadline in force and what passing it means, given the state now.
    fn next_deadline(&self, header_read: Duration, idle: Duration) -> (u64, Option<Expired>) {
        let now = self.now_ms();
        let head_started = self.head_started.load(Ordering::Relaxed);
        if head_started != 0 {
            let deadline = head_started - 1 + millis(header_read);
            return (deadline, (now >= deadline).then_some(Expired::HeaderRead));
        }
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let deadline = self.idle_since.load(Ordering::Relaxed) + millis(idle);
            return (deadline, (now >= deadline).then_some(Expired::Idle));
        }
        // A request is in progress: nothing can expire before the next one starts.
        (now + millis(header_read.min(idle)), None)
    }

    /// Completes when a deadline passes.
    pub async fn expired(&self, header_read: Duration, idle: Duration) -> Expired {
        loop {
            let (deadline, expired) = self.next_deadline(header_read, idle);
            if let Some(expired) = expired {
                return expired;
            }
            // A deadline past the clock's range (an "unlimited" setting) is a year away.
            let at = self
                .epoch
                .checked_add(Duration::from_millis(deadline))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 86_400));
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = self.head_began.notified() => {}
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

struct WatchedIo {
    inner: BoxedIo,
    timers: Arc<ConnTimers>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.timers.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(300);

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_expires_after_the_idle_timeout_not_the_header_timeout() {
        let timers = ConnTimers::new();
        let started = Instant::now();
        assert_eq!(timers.expired(HEAD, IDLE).await, Expired::Idle);
        assert_eq!(started.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_started_must_finish_within_the_header_timeout() {
        let timers = ConnTimers::new();
        tokio::time::sleep(Duration::from_secs(100)).await;
        timers.bytes_arrived();
        let started = Instant::now();
        assert_eq!(timers.expired(HEAD, IDLE).await, Expired::HeaderRead);
        assert_eq!(started.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_progress_holds_off_both_deadlines_and_restarts_the_idle_clock() {
        let timers = ConnTimers::new();
        timers.bytes_arrived();
        timers.request_started();
        let waiting = tokio::spawn({
            let timers = timers.clone();
            async move { timers.expired(HEAD, IDLE).await }
        });
        tokio::time::sleep(IDLE * 2).await;
        assert!(
            !waiting.is_finished(),
            "nothing expires during a long request"
        );
        // Bytes of the request's body do not start a header deadline.
        timers.bytes_arrived();
        timers.request_finished();
        let finished = Instant::now();
        assert_eq!(waiting.await.unwrap(), Expired::Idle);
        assert!(finished.elapsed() >= IDLE - Duration::from_millis(1));
    }
}
