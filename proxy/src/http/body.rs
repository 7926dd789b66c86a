//! The one body type requests and responses travel in, whatever produced them (an upstream,
//! a client, or the proxy's own error responses).

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

/// Errors inside bodies: hyper's, I/O, or the proxy's own.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body. Boxed once per message so the proxy's paths need not be generic over
/// body types.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Boxes any body into [`Body`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}
