//! A request body that can be sent again: as the first attempt streams the client's body, the
//! bytes are kept (up to a limit) so a retry can send them once more, followed by whatever the
//! client has not sent yet. Nothing is buffered ahead of the upstream, so streaming requests
//! (gRPC client streams included) flow at once; a body larger than the limit simply stops
//! being replayable.
//!
//! Written here rather than taken from a crate: the one well-kept implementation of this idea
//! (linkerd2-proxy's `ReplayBody`) lives inside that proxy and is not published on its own.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as _, Frame, SizeHint};

use crate::body::{Body, BoxError};

/// Default retry buffer: bodies up to this size can be replayed.
pub const DEFAULT_LIMIT: usize = 64 * 1024;

struct Shared {
    /// The client's body, polled by whichever attempt is current.
    inner: Option<Body>,
    /// Data frames read so far, while within the limit.
    buffered: VecDeque<Bytes>,
    buffered_len: usize,
    trailers: Option<HeaderMap>,
    /// The client's body has ended.
    done: bool,
    /// The body outgrew the limit; the buffer was dropped.
    overflowed: bool,
    /// An error from the client's body, replayed to every attempt that gets that far.
    error: Option<String>,
}

/// One attempt's view of a replayable body.
pub struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    limit: usize,
    /// Buffered frames this attempt has already emitted.
    position: usize,
    trailers_sent: bool,
    size_hint: SizeHint,
}

impl ReplayBody {
    /// Wraps `body`, keeping up to `limit` bytes for replay.
    pub fn new(body: Body, limit: usize) -> Self {
        let size_hint = body.size_hint();
        let done = body.is_end_stream();
        Self {
            shared: Arc::new(Mutex::new(Shared {
                inner: Some(body),
                buffered: VecDeque::new(),
                buffered_len: 0,
                trailers: None,
                done,
                overflowed: false,
                error: None,
            })),
            limit,
            position: 0,
            trailers_sent: false,
            size_hint,
        }
    }

    /// A body for another attempt, replaying from the start; `None` once the body outgrew the
    /// limit.
    pub fn replay(&self) -> Option<Self> {
        let shared = self.shared.lock().expect("replay lock poisoned");
        if shared.overflowed {
            return None;
        }
        Some(Self {
            shared: self.shared.clone(),
            limit: self.limit,
            position: 0,
            trailers_sent: false,
            size_hint: self.size_hint,
        })
    }

    /// A replay of the whole body, only once the client's body has ended within the limit:
    /// such a replay never reads from the client, so it can be sent alongside the attempt in
    /// flight (a mirror) without taking any of its bytes.
    pub fn replay_complete(&self) -> Option<Self> {
        let complete = {
            let shared = self.shared.lock().expect("replay lock poisoned");
            // hyper stops reading a body at its `Content-Length` without polling its end, so
            // an inner body at its end counts as read whole (polling it yields nothing).
            let ended = shared.done
                || shared
                    .inner
                    .as_ref()
                    .is_some_and(|inner| inner.is_end_stream());
            ended && !shared.overflowed && shared.error.is_none()
        };
        if complete { self.replay() } else { None }
    }

    /// Whether a retry could still send the whole body.
    pub fn is_replayable(&self) -> bool {
        !self.shared.lock().expect("replay lock poisoned").overflowed
    }
}

impl http_body::Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut shared = this.shared.lock().expect("replay lock poisoned");
        // Replay what an earlier attempt already read.
        if !shared.overflowed && this.position < shared.buffered.len() {
            let data = shared.buffered[this.position].clone();
            this.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(error) = &shared.error {
            return Poll::Ready(Some(Err(error.clone().into())));
        }
        if shared.done {
            if !this.trailers_sent
                && let Some(trailers) = shared.trailers.clone()
            {
                this.trailers_sent = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            return Poll::Ready(None);
        }
        let Some(inner) = shared.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                shared.done = true;
                shared.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                shared.error = Some(error.to_string());
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if !shared.overflowed {
                        if shared.buffered_len + data.len() > this.limit {
                            shared.overflowed = true;
                            shared.buffered.clear();
                            shared.buffered_len = 0;
                        } else {
                            shared.buffered_len += data.len();
                            shared.buffered.push_back(data.clone());
                            this.position += 1;
                        }
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    shared.trailers = Some(trailers.clone());
                    shared.done = true;
                    shared.inner = None;
                    this.trailers_sent = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let shared = self.shared.lock().expect("replay lock poisoned");
        shared.done
            && (shared.overflowed || self.position >= shared.buffered.len())
            && (self.trailers_sent || shared.trailers.is_none())
            && shared.error.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.size_hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(chunks: &[&'static str], trailers: Option<HeaderMap>) -> Body {
        let mut frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        if let Some(trailers) = trailers {
            frames.push(Ok(Frame::trailers(trailers)));
        }
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    async fn read(body: ReplayBody) -> (String, Option<HeaderMap>) {
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (
            String::from_utf8(collected.to_bytes().to_vec()).unwrap(),
            trailers,
        )
    }

    #[tokio::test]
    async fn a_retry_sees_the_whole_body_and_its_trailers_again() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let first = ReplayBody::new(body(&["hello ", "world"], Some(trailers.clone())), 1024);
        let second = first.replay().unwrap();
        assert_eq!(
            read(first).await,
            ("hello world".into(), Some(trailers.clone()))
        );
        assert_eq!(read(second).await, ("hello world".into(), Some(trailers)));
    }

    #[tokio::test]
    async fn a_retry_after_a_partial_read_replays_then_continues() {
        let mut first = ReplayBody::new(body(&["a", "b", "c"], None), 1024);
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "a");
        let second = first.replay().unwrap();
        drop(first);
        assert_eq!(read(second).await.0, "abc");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_flows_through_but_cannot_be_replayed() {
        let first = ReplayBody::new(body(&["12345", "67890"], None), 8);
        let probe = first.replay().unwrap();
        assert_eq!(
            read(first).await.0,
            "1234567890",
            "the first attempt gets everything"
        );
        assert!(!probe.is_replayable());
        assert!(probe.replay().is_none());
    }

    #[tokio::test]
    async fn an_empty_body_is_replayable_and_ends_at_once() {
        let first = ReplayBody::new(crate::body::empty(), 8);
        assert!(first.is_end_stream());
        let second = first.replay().unwrap();
        assert_eq!(read(second).await.0, "");
    }
}
