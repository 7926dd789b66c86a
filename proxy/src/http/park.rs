//! Parking idle HTTP/1 client connections: what lets an idle keep-alive connection cost a
//! few hundred bytes instead of hyper's two 8 KiB buffers (issue 15's memory budget).
//!
//! hyper's HTTP/1 connection allocates an 8 KiB head-writing buffer when it is made and an
//! 8 KiB read buffer on its first read, and keeps both for the connection's life; no builder
//! option frees them while idle. So, written here because neither hyper nor hyper-util does
//! it: once a connection has been quiet for [`PARK_AFTER`] (1 ms) — no request being handled, no
//! response body being sent, every written byte flushed, no request head begun, hyper's read
//! finding nothing, and no request started meanwhile — the server takes the stream back from
//! hyper (`into_parts`, which returns any bytes read but not parsed), drops hyper's connection with its buffers, and waits for the client's next
//! bytes with a small read of its own. Those bytes (after any hyper had not parsed) are
//! replayed to a new hyper connection over the same stream, so pipelined requests and a head
//! split across the park keep their order.
//!
//! This module owns the bookkeeping that decides when parking is safe ([`ParkState`]), the
//! stream wrapper that feeds it and replays bytes ([`ParkIo`]), and the response-body guard
//! that marks an exchange finished only when hyper has dropped the body ([`Exchange`]).
//! The serving loop is [`crate::http::server`]'s.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};

use crate::body::Body;
use crate::io::BoxedIo;

/// The most bytes the parked connection's own read takes; hyper reads the rest.
const WAKE_READ_BYTES: usize = 64;

/// How long a connection must stay quiet, with no request started, before it is parked.
/// A keep-alive connection carrying requests back to back (less than a millisecond apart)
/// is not parked and rebuilt between them; one quiet for longer frees hyper's buffers at
/// once, so the connections of a burst reuse what the previous ones freed. (Measured,
/// bench/RESULTS.md 2026-12-07 19:53–19:58: with a 100 ms grace a burst of 1 000
/// connections held hyper's buffers for all of them at once, 15 KiB of RSS per idle
/// connection against 7 KiB with 1 ms, and no CPU per request saved.)
pub const PARK_AFTER: Duration = Duration::from_millis(1);

/// The gauge of client connections parked now.
pub const PARKED_GAUGE: &str = "strait_http1_connections_parked";

/// What the stream, the service and the serving loop know about one connection's activity.
#[derive(Debug, Default)]
pub struct ParkState {
    /// Requests whose response body hyper has not dropped yet.
    exchanges: AtomicU32,
    /// Requests started on this connection so far: a request started during the grace
    /// before parking means the connection was not idle.
    started: AtomicU64,
    /// hyper has written (or tried to write) since its last completed flush.
    unflushed: AtomicBool,
    /// hyper's last read found nothing to read.
    read_waiting: AtomicBool,
    /// The last request carried a body. hyper may still be reading it after the response
    /// has gone out (an app answering before the upload ends), and nothing outside hyper
    /// sees when it finishes, so such a connection is not parked until a request without a
    /// body has been served.
    body_in_last_request: AtomicBool,
    /// Bytes hyper had read but not parsed were handed to a new hyper connection: part of a
    /// head is pending there, so the connection stays with hyper until a request starts.
    unparsed: AtomicBool,
    /// A request asked to upgrade the connection (CONNECT, `Upgrade`): never park it, so
    /// hyper alone decides when the stream becomes a tunnel.
    upgrading: AtomicBool,
    /// Wakes the serving loop when the connection may have gone quiet.
    went_quiet: tokio::sync::Notify,
}

impl ParkState {
    /// State for a new connection.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Whether nothing is in progress that parking would cut short.
    pub fn is_quiet(&self) -> bool {
        may_park(
            self.exchanges.load(Ordering::Acquire),
            self.unflushed.load(Ordering::Acquire),
            self.read_waiting.load(Ordering::Acquire),
            self.upgrading.load(Ordering::Acquire)
                || self.body_in_last_request.load(Ordering::Acquire)
                || self.unparsed.load(Ordering::Acquire),
        )
    }

    /// Completes once the connection is quiet and `also` holds (the caller's own
    /// conditions, e.g. no request head half-received). Checked whenever one of the
    /// conditions here turns (hyper's read found nothing, a flush completed, an exchange
    /// ended), so a connection is parked the moment the last of them does.
    pub async fn until_quiet(&self, also: impl Fn() -> bool) {
        loop {
            if self.is_quiet() && also() {
                return;
            }
            self.went_quiet.notified().await;
        }
    }

    /// Completes once the connection has been quiet, and `also` held, for `grace` with no
    /// request started meanwhile ([`PARK_AFTER`] in the serving loop).
    pub async fn until_idle_for(&self, grace: Duration, also: impl Fn() -> bool) {
        loop {
            self.until_quiet(&also).await;
            let started = self.started.load(Ordering::Acquire);
            tokio::time::sleep(grace).await;
            if self.started.load(Ordering::Acquire) == started && self.is_quiet() && also() {
                return;
            }
        }
    }

    /// A condition turned: wake the serving loop if the connection may park now.
    fn check(&self) {
        if self.is_quiet() {
            self.went_quiet.notify_one();
        }
    }

    /// A request arrived: its exchange lasts until the returned guard is dropped (with the
    /// response body it is attached to, or with the request's handling if that is cut off).
    pub fn exchange_started<B: http_body::Body>(
        self: &Arc<Self>,
        request: &http::Request<B>,
    ) -> Exchange {
        if is_upgrade(request) {
            self.upgrading.store(true, Ordering::Release);
        }
        self.body_in_last_request
            .store(!request.body().is_end_stream(), Ordering::Release);
        self.unparsed.store(false, Ordering::Release);
        self.started.fetch_add(1, Ordering::AcqRel);
        self.exchanges.fetch_add(1, Ordering::AcqRel);
        Exchange(self.clone())
    }
}

/// Whether a connection may be parked: no exchange in progress, nothing left unflushed,
/// hyper waiting for the next request, and nothing that only hyper can finish (an upgrade,
/// a request body it may still be reading).
fn may_park(exchanges: u32, unflushed: bool, read_waiting: bool, hyper_only: bool) -> bool {
    exchanges == 0 && !unflushed && read_waiting && !hyper_only
}

/// Whether `request` may turn the connection into something other than HTTP/1.
fn is_upgrade<B>(request: &http::Request<B>) -> bool {
    request.method() == http::Method::CONNECT
        || request.headers().contains_key(http::header::UPGRADE)
}

/// One request's exchange in progress; dropping it ends the exchange.
pub struct Exchange(Arc<ParkState>);

impl Exchange {
    /// Attaches the exchange to `body`: it ends when hyper drops the body, that is once the
    /// body has been sent (or the connection has failed).
    pub fn until_sent(self, body: Body) -> Body {
        // Boxed once more for the guard. Not `map_frame`: that hides the body's size, and
        // hyper would send chunked where it sends a `content-length` now.
        Body::new(Guarded {
            body,
            _exchange: self,
        })
    }
}

/// A body carrying its exchange's guard; everything else is the inner body's.
struct Guarded {
    body: Body,
    _exchange: Exchange,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.0.exchanges.fetch_sub(1, Ordering::AcqRel);
        self.0.check();
    }
}

/// The client stream as hyper sees it: replays bytes read but not yet served, then reads on;
/// reports reads, writes and flushes to the connection's [`ParkState`].
pub struct ParkIo {
    replay: Bytes,
    inner: BoxedIo,
    state: Arc<ParkState>,
}

impl ParkIo {
    /// Wraps `inner`, reporting to `state`.
    pub fn new(inner: BoxedIo, state: Arc<ParkState>) -> Self {
        Self {
            replay: Bytes::new(),
            inner,
            state,
        }
    }

    /// Bytes hyper read but had not parsed when it was parked: the next hyper connection gets
    /// them first, and holds the connection until their request starts.
    pub fn replay_unparsed(&mut self, unparsed: Bytes) {
        self.state.unparsed.store(true, Ordering::Release);
        self.replay(unparsed);
    }

    /// Bytes to hand the next hyper connection before anything read from the stream.
    fn replay(&mut self, bytes: Bytes) {
        debug_assert!(self.replay.is_empty(), "replayed bytes were left unread");
        self.replay = bytes;
        // Whatever hyper's last read found, the next hyper connection has not read yet.
        self.state.read_waiting.store(false, Ordering::Release);
    }

    /// Waits, parked, for the client's next bytes: reads a few of them and keeps them for
    /// replay. `Ok(false)` when the client closed the connection instead.
    pub async fn wait_for_bytes(&mut self) -> std::io::Result<bool> {
        let mut first = [0u8; WAKE_READ_BYTES];
        let n = self.inner.read(&mut first).await?;
        if n == 0 {
            return Ok(false);
        }
        self.replay(Bytes::copy_from_slice(&first[..n]));
        Ok(true)
    }
}

impl AsyncRead for ParkIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.replay.has_remaining() {
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..n]);
            self.replay.advance(n);
            if !self.replay.has_remaining() {
                self.replay = Bytes::new();
            }
            self.state.read_waiting.store(false, Ordering::Release);
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let waiting = polled.is_pending();
        self.state.read_waiting.store(waiting, Ordering::Release);
        if waiting {
            self.state.check();
        }
        polled
    }
}

impl AsyncWrite for ParkIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Marked before the attempt: bytes hyper could not write yet are still its to flush.
        self.state.unflushed.store(true, Ordering::Release);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.state.unflushed.store(true, Ordering::Release);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // hyper flushes the stream only once its own buffer is written out.
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        if matches!(polled, Poll::Ready(Ok(()))) {
            self.state.unflushed.store(false, Ordering::Release);
            self.state.check();
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts one parked connection in [`PARKED_GAUGE`] while it lives.
pub struct Parked(metrics::Gauge);

impl Parked {
    /// Counts a connection parked now.
    pub fn count() -> Self {
        // Described here, on first use, so the gauge's help text lives beside its meaning.
        static DESCRIBED: std::sync::Once = std::sync::Once::new();
        DESCRIBED.call_once(|| {
            metrics::describe_gauge!(
                PARKED_GAUGE,
                "HTTP/1 client connections parked now: idle, holding no hyper buffers."
            );
        });
        let gauge = metrics::gauge!(PARKED_GAUGE);
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncWriteExt as _, duplex};

    #[test]
    fn only_a_connection_waiting_to_read_with_nothing_in_progress_may_park() {
        assert!(may_park(0, false, true, false));
        assert!(!may_park(1, false, true, false), "a response being sent");
        assert!(!may_park(0, true, true, false), "bytes not yet flushed");
        assert!(
            !may_park(0, false, false, false),
            "hyper is not waiting to read"
        );
        assert!(!may_park(0, false, true, true), "an upgrade was asked for");
    }

    #[test]
    fn connect_and_upgrade_requests_are_upgrades_and_plain_ones_are_not() {
        let connect = http::Request::connect("web.demo:80").body(()).unwrap();
        let websocket = http::Request::get("/")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        let plain = http::Request::get("/").body(()).unwrap();
        assert!(is_upgrade(&connect) && is_upgrade(&websocket));
        assert!(!is_upgrade(&plain));
    }

    #[tokio::test]
    async fn an_exchange_lasts_until_its_response_body_is_dropped() {
        let state = ParkState::new();
        state.read_waiting.store(true, Ordering::Release);
        let request = http::Request::get("/").body(crate::body::empty()).unwrap();
        let body = state
            .exchange_started(&request)
            .until_sent(crate::body::full("hello"));
        assert!(!state.is_quiet());
        assert_eq!(
            http_body::Body::size_hint(&body).exact(),
            Some(5),
            "the size still reaches hyper, which sends it as content-length"
        );
        drop(body);
        assert!(state.is_quiet());
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_connection_quiet_for_the_whole_grace_with_no_request_started_is_idle() {
        let state = ParkState::new();
        state.read_waiting.store(true, Ordering::Release);
        let grace = Duration::from_millis(100);
        let idle = state.until_idle_for(grace, || true);
        tokio::pin!(idle);
        // A request starts and ends within the grace: quiet again at its end, but not idle.
        tokio::time::sleep(grace / 2).await;
        let get = http::Request::get("/").body(crate::body::empty()).unwrap();
        drop(state.exchange_started(&get));
        state.check();
        let early = tokio::time::timeout(grace / 2 + Duration::from_millis(1), &mut idle).await;
        assert!(
            early.is_err(),
            "a request within the grace keeps the connection unparked"
        );
        // Then a whole grace without one: idle.
        tokio::time::timeout(grace * 2 + Duration::from_millis(1), &mut idle)
            .await
            .expect("a whole grace of quiet makes the connection idle");
    }

    #[tokio::test]
    async fn a_connection_whose_last_request_had_a_body_waits_for_one_without() {
        let state = ParkState::new();
        state.read_waiting.store(true, Ordering::Release);
        let upload = http::Request::post("/")
            .body(crate::body::full("data"))
            .unwrap();
        drop(state.exchange_started(&upload));
        assert!(!state.is_quiet(), "hyper may still be reading the upload");
        let get = http::Request::get("/").body(crate::body::empty()).unwrap();
        drop(state.exchange_started(&get));
        assert!(state.is_quiet());
    }

    #[tokio::test]
    async fn unparsed_bytes_handed_back_hold_the_connection_until_their_request_starts() {
        let state = ParkState::new();
        let (ours, _theirs) = duplex(64);
        let mut io = ParkIo::new(Box::new(ours), state.clone());
        io.replay_unparsed(Bytes::from_static(b"GET / HT"));
        state.read_waiting.store(true, Ordering::Release);
        assert!(!state.is_quiet(), "half a head is pending in hyper");
        let request = http::Request::get("/").body(crate::body::empty()).unwrap();
        drop(state.exchange_started(&request));
        assert!(state.is_quiet());
    }

    #[tokio::test]
    async fn a_write_not_yet_flushed_holds_the_connection_awake() {
        let state = ParkState::new();
        let (ours, mut theirs) = duplex(64);
        let mut io = ParkIo::new(Box::new(ours), state.clone());
        let mut byte = [0u8; 1];
        // Nothing to read yet: hyper would be waiting.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), io.read(&mut byte))
                .await
                .is_err()
        );
        assert!(state.is_quiet());
        io.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        assert!(!state.is_quiet(), "written, not flushed");
        io.flush().await.unwrap();
        // The client's next bytes: hyper reads them, no longer waiting.
        theirs.write_all(b"G").await.unwrap();
        io.read_exact(&mut byte).await.unwrap();
        assert!(!state.is_quiet());
    }

    #[tokio::test]
    async fn bytes_read_while_parked_are_replayed_to_the_next_reader() {
        let state = ParkState::new();
        let (ours, mut theirs) = duplex(64);
        let mut io = ParkIo::new(Box::new(ours), state);
        theirs.write_all(b"ET / HTTP/1.1\r\n").await.unwrap();
        assert!(io.wait_for_bytes().await.unwrap());
        let mut replayed = vec![0u8; 15];
        io.read_exact(&mut replayed).await.unwrap();
        assert_eq!(&replayed, b"ET / HTTP/1.1\r\n");
        drop(theirs);
        assert!(!io.wait_for_bytes().await.unwrap(), "the client closed");
    }
}
