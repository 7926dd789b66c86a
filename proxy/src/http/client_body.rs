//! Tells a client's faulty request body apart from an upstream failure.
//!
//! A request body streams to the upstream while the client is still sending it, so when it
//! breaks off (a malformed chunk size, an HTTP/2 stream the client resets, a connection cut
//! mid-body) the proxy learns of it as a failed upstream send. Left at that, the client's fault
//! would be answered 502, counted as an upstream failure and held against the endpoint's
//! health: a client could get healthy endpoints ejected. [`watch`] wraps the client's body and
//! records its failure, so whoever sees the send fail can ask [`BodyFault::reason`] whose
//! fault it was. This module only records; it decides nothing.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Whether, and why, a client's body failed.
#[derive(Clone, Debug, Default)]
pub struct BodyFault(Arc<OnceLock<String>>);

impl BodyFault {
    /// Why the client's body failed, if it did.
    pub fn reason(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// `body`, recording in the returned [`BodyFault`] the first error it yields.
pub fn watch<B>(body: B) -> (Watched<B>, BodyFault) {
    let fault = BodyFault::default();
    (
        Watched {
            body,
            fault: fault.clone(),
        },
        fault,
    )
}

/// A client body whose failure is recorded; see [`watch`].
pub struct Watched<B> {
    body: B,
    fault: BodyFault,
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Err(error))) = &polled {
            let _ = self.fault.0.set(with_causes(error));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// `error` and its causes, as one line: hyper's own message ("error reading a body from
/// connection") says where, its cause says what was wrong.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn a_failing_body_records_its_first_error_and_passes_it_on() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ok"))),
            Err(std::io::Error::other("invalid chunk size line")),
            Err(std::io::Error::other("second")),
        ];
        let (mut body, fault) = watch(StreamBody::new(futures_util::stream::iter(frames)));
        assert!(body.frame().await.unwrap().is_ok());
        assert_eq!(fault.reason(), None, "data alone is no fault");
        assert!(
            body.frame().await.unwrap().is_err(),
            "the error is passed on"
        );
        let _ = body.frame().await;
        assert_eq!(fault.reason(), Some("invalid chunk size line"));
    }

    #[tokio::test]
    async fn a_body_that_ends_well_records_nothing() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> =
            vec![Ok(Frame::data(Bytes::from_static(b"ok")))];
        let (body, fault) = watch(StreamBody::new(futures_util::stream::iter(frames)));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "ok");
        assert_eq!(fault.reason(), None);
    }
}
