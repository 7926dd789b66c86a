//! The one body type requests and responses travel in, whatever produced them (an upstream,
//! a client, or the proxy's own error responses).

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// Errors inside bodies: hyper's, I/O, or the proxy's own.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body. Boxed once per message so the proxy's paths need not be generic over
/// body types.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Boxes any body into [`Body`], leaving out empty data frames.
///
/// A peer may end a message with an empty DATA frame (tonic does, once per call); passed on,
/// those pile up on a long-lived HTTP/2 connection until the next hop's h2 counts more than
/// 100 and answers GOAWAY `ENHANCE_YOUR_CALM`. An empty frame carries nothing, so none is
/// forwarded; the end of the stream is still sent when the body ends.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    SkipEmptyData(body).map_err(Into::into).boxed_unsync()
}

struct SkipEmptyData<B>(B);

impl<B> http_body::Body for SkipEmptyData<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        loop {
            match std::pin::Pin::new(&mut self.0).poll_frame(cx) {
                std::task::Poll::Ready(Some(Ok(frame)))
                    if frame.data_ref().is_some_and(Bytes::is_empty) => {}
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

/// A body that holds `guard` until the body ends or is dropped: for state that must last as
/// long as a response streams (outstanding-request counts).
pub fn with_guard<G: Send + Unpin + 'static>(body: Body, guard: G) -> Body {
    Guarded {
        body,
        _guard: guard,
    }
    .boxed_unsync()
}

struct Guarded<G> {
    body: Body,
    _guard: G,
}

impl<G: Unpin> http_body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        // `Guarded` is Unpin (its fields are), so the inner body can be polled in place.
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A complete body from bytes.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never: std::convert::Infallible| -> BoxError { match never {} })
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn empty_data_frames_are_left_out_and_the_rest_kept_in_order() {
        let frames = [
            http_body::Frame::data(Bytes::from_static(b"one")),
            http_body::Frame::data(Bytes::new()),
            http_body::Frame::data(Bytes::from_static(b"two")),
            http_body::Frame::data(Bytes::new()),
            http_body::Frame::trailers(http::HeaderMap::new()),
        ];
        let stream = futures_util::stream::iter(frames.map(Ok::<_, std::convert::Infallible>));
        let mut body = boxed(http_body_util::StreamBody::new(stream));
        let mut seen = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            seen.push(match frame.data_ref() {
                Some(data) => String::from_utf8(data.to_vec()).unwrap(),
                None => "trailers".to_owned(),
            });
        }
        assert_eq!(seen, ["one", "two", "trailers"]);
    }
}
