//! Copying both directions of a relayed connection, with buffers that exist only while bytes
//! are moving.
//!
//! Written here rather than taken from tokio's `copy_bidirectional` on purpose: tokio's keeps
//! one fixed buffer per direction for the connection's whole life, allocated and zeroed at the
//! start. At its 8 KiB an opaque stream through two mTLS hops moved 0.83 GB/s; at 64 KiB
//! 1.04 GB/s (bench/RESULTS.md), but 128 KiB held by every idle database connection is not a
//! price a sidecar can ask. Here a direction allocates its buffer when it reads, starting at
//! [`INITIAL_BUFFER`] and doubling up to [`MAX_BUFFER`] while reads fill it, and gives it back
//! whenever it has written everything and the next read is not ready: an idle relay holds no
//! buffer at all, a bulk transfer gets large reads and writes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

/// The buffer a direction starts with (and returns to after being idle): one TLS record.
pub const INITIAL_BUFFER: usize = 16 << 10;

/// The largest buffer a direction grows to while every read fills its buffer.
pub const MAX_BUFFER: usize = 64 << 10;

/// One direction of a relay: reads from one side, writes to the other, passes the read side's
/// end on as a write shutdown.
#[derive(Debug)]
pub struct Direction {
    /// Bytes read and not yet written; no allocation while idle.
    buf: BytesMut,
    /// The size of `buf`'s allocation (its `capacity` shrinks as bytes are written out).
    allocated: usize,
    /// The size the next read wants room for.
    size: usize,
    /// Written since the last flush.
    needs_flush: bool,
    /// The read side has ended.
    read_done: bool,
    /// Bytes written so far.
    moved: u64,
}

impl Default for Direction {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            allocated: 0,
            size: INITIAL_BUFFER,
            needs_flush: false,
            read_done: false,
            moved: 0,
        }
    }
}

impl Direction {
    /// The bytes this direction holds allocated now (0 while idle).
    #[must_use]
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Moves bytes from `reader` to `writer` until `reader` ends and `writer` is shut down;
    /// returns the bytes moved.
    pub fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            while self.buf.has_remaining() {
                let n = ready!(writer.as_mut().poll_write(cx, self.buf.chunk()))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the other side accepted no more bytes",
                    )));
                }
                self.buf.advance(n);
                self.moved += n as u64;
                self.needs_flush = true;
            }
            if self.read_done {
                if self.needs_flush {
                    ready!(writer.as_mut().poll_flush(cx))?;
                    self.needs_flush = false;
                }
                ready!(writer.as_mut().poll_shutdown(cx))?;
                return Poll::Ready(Ok(self.moved));
            }
            // Empty: read again, into the previous allocation if it is large enough (`reserve`
            // on an empty buffer takes back the room already written out, without copying),
            // else into a new one of exactly the size wanted.
            self.buf.clear();
            if self.allocated >= self.size {
                self.buf.reserve(self.size);
            } else {
                self.buf = BytesMut::with_capacity(self.size);
                self.allocated = self.size;
            }
            let room = self.buf.capacity();
            match tokio_util::io::poll_read_buf(reader.as_mut(), cx, &mut self.buf) {
                Poll::Ready(Ok(0)) => self.read_done = true,
                Poll::Ready(Ok(n)) => {
                    if n == room {
                        self.size = (self.size * 2).min(MAX_BUFFER);
                    }
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {
                    // Nothing to move: give the buffer back until bytes arrive, and start
                    // small again; what was written must not wait for more to come.
                    self.buf = BytesMut::new();
                    self.allocated = 0;
                    self.size = INITIAL_BUFFER;
                    if self.needs_flush {
                        ready!(writer.as_mut().poll_flush(cx))?;
                        self.needs_flush = false;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Copies `a` to `b` and `b` to `a` at once until both have ended; returns the bytes moved
/// each way (`a` to `b`, `b` to `a`). The first error of either direction ends both.
pub async fn copy_bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut a_to_b = Direction::default();
    let mut b_to_a = Direction::default();
    let mut a_to_b_done = None;
    let mut b_to_a_done = None;
    std::future::poll_fn(|cx| {
        if a_to_b_done.is_none()
            && let Poll::Ready(moved) = a_to_b.poll_copy(cx, Pin::new(&mut *a), Pin::new(&mut *b))
        {
            a_to_b_done = Some(moved?);
        }
        if b_to_a_done.is_none()
            && let Poll::Ready(moved) = b_to_a.poll_copy(cx, Pin::new(&mut *b), Pin::new(&mut *a))
        {
            b_to_a_done = Some(moved?);
        }
        match (a_to_b_done, b_to_a_done) {
            (Some(there), Some(back)) => Poll::Ready(Ok((there, back))),
            _ => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf, duplex};

    /// A pattern that shows any reordering, loss or duplication.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
    }

    #[tokio::test]
    async fn large_streams_cross_both_ways_at_once_intact() {
        let (mut a, a_peer) = duplex(256 << 10);
        let (mut b, b_peer) = duplex(256 << 10);
        let relay = tokio::spawn(async move { copy_bidirectional(&mut a, &mut b).await });
        let there = pattern(3 << 20);
        let back: Vec<u8> = pattern(2 << 20).into_iter().rev().collect();
        let (mut a_read, mut a_write) = tokio::io::split(a_peer);
        let (mut b_read, mut b_write) = tokio::io::split(b_peer);
        let sent_there = there.clone();
        let send_there = tokio::spawn(async move {
            a_write.write_all(&sent_there).await.unwrap();
            a_write.shutdown().await.unwrap();
        });
        let sent_back = back.clone();
        let send_back = tokio::spawn(async move {
            b_write.write_all(&sent_back).await.unwrap();
            b_write.shutdown().await.unwrap();
        });
        let mut got_there = Vec::new();
        b_read.read_to_end(&mut got_there).await.unwrap();
        let mut got_back = Vec::new();
        a_read.read_to_end(&mut got_back).await.unwrap();
        send_there.await.unwrap();
        send_back.await.unwrap();
        assert!(got_there == there, "a → b arrived altered");
        assert!(got_back == back, "b → a arrived altered");
        assert_eq!(relay.await.unwrap().unwrap(), (3 << 20, 2 << 20));
    }

    /// A reader that records the largest read it was offered room for.
    struct Recording<R> {
        inner: R,
        largest_room: usize,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for Recording<R> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.largest_room = self.largest_room.max(buf.remaining());
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    /// Polls `direction` once, from `reader` to a sink.
    async fn poll_once<R: AsyncRead + Unpin>(
        direction: &mut Direction,
        reader: &mut R,
    ) -> Poll<io::Result<u64>> {
        let mut sink = tokio::io::sink();
        std::future::poll_fn(|cx| {
            Poll::Ready(direction.poll_copy(cx, Pin::new(&mut *reader), Pin::new(&mut sink)))
        })
        .await
    }

    #[tokio::test]
    async fn a_direction_grows_its_buffer_for_bulk_and_holds_none_while_idle() {
        let (reader, mut peer) = duplex(2 << 20);
        let mut reader = Recording {
            inner: reader,
            largest_room: 0,
        };
        let mut direction = Direction::default();
        assert_eq!(
            direction.buffered_capacity(),
            0,
            "nothing allocated before a read"
        );

        // A small message: read with the initial buffer, which is given back once drained.
        peer.write_all(b"hello").await.unwrap();
        assert!(poll_once(&mut direction, &mut reader).await.is_pending());
        assert_eq!(reader.largest_room, INITIAL_BUFFER);
        assert_eq!(direction.buffered_capacity(), 0, "a buffer kept while idle");

        // A megabyte waiting: reads that fill the buffer double it, up to the maximum.
        peer.write_all(&pattern(1 << 20)).await.unwrap();
        assert!(poll_once(&mut direction, &mut reader).await.is_pending());
        assert_eq!(reader.largest_room, MAX_BUFFER);
        assert_eq!(
            direction.buffered_capacity(),
            0,
            "a buffer kept after the bulk"
        );

        // After being idle it starts small again; the end is passed on with the count.
        reader.largest_room = 0;
        peer.write_all(b"bye").await.unwrap();
        drop(peer);
        match poll_once(&mut direction, &mut reader).await {
            Poll::Ready(Ok(moved)) => assert_eq!(moved, 5 + (1 << 20) + 3),
            other => panic!("the direction did not end with its count: {other:?}"),
        }
        assert_eq!(reader.largest_room, INITIAL_BUFFER);
    }

    /// A writer that fails every write.
    struct Broken;

    impl AsyncWrite for Broken {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_failed_write_ends_the_direction_with_its_error() {
        let (mut reader, mut peer) = duplex(1024);
        peer.write_all(b"data").await.unwrap();
        let mut direction = Direction::default();
        let result = std::future::poll_fn(|cx| {
            direction.poll_copy(cx, Pin::new(&mut reader), Pin::new(&mut Broken))
        })
        .await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
