//! Headers only the proxy may set, and the removal of every look-alike a peer sends.
//!
//! An app trusts `strait-client-id` because its own proxy sets it; a caller trusts
//! `strait-proxy-error` because a proxy names its own failures with it. Either is worthless if
//! the other side can write it, so each is removed where it crosses from untrusted to trusted:
//! `strait-client-id` from requests before they reach the app (headers and trailers),
//! `strait-proxy-error` from the app's responses before they leave the pod.
//!
//! Removal matches names the way servers fold them: case-insensitively, and with `_` taken
//! for `-` (CGI, WSGI and Rack map both `strait-client-id` and `strait_client_id` to
//! `HTTP_STRAIT_CLIENT_ID`). A header the client lists in `Connection` is hop-by-hop and
//! removed anyway, so the proxy sets its own value only after that stripping.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http::header::HeaderName;
use http_body::Frame;

/// The calling workload's proven SPIFFE identity, as the app receives it.
pub const CLIENT_ID: HeaderName = HeaderName::from_static("strait-client-id");

/// The kind of failure a proxy produced a response for (the `errors` module names them).
pub const PROXY_ERROR: HeaderName = HeaderName::from_static("strait-proxy-error");

/// Whether `name` would be read as `reserved` by a server that ignores case and treats `_`
/// as `-` (one definition, shared with the control plane's filter validation).
pub use strait_proto::header_names::is_lookalike;

/// Removes every header whose name is `reserved` or a look-alike of it.
pub fn remove_lookalikes(headers: &mut HeaderMap, reserved: &HeaderName) {
    // The common case, one cheap lookup: no look-alike besides the exact name. hyper and h2
    // lower-case names, so only `_` variants need the scan, and a name of another length
    // cannot match.
    headers.remove(reserved);
    let reserved = reserved.as_str();
    if !headers
        .keys()
        .any(|name| name.as_str().len() == reserved.len() && is_lookalike(name.as_str(), reserved))
    {
        return;
    }
    let lookalikes: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_lookalike(name.as_str(), reserved))
        .cloned()
        .collect();
    for name in lookalikes {
        headers.remove(name);
    }
}

/// A request body whose trailers lose every `strait-client-id` look-alike: a trailer is as
/// readable to an app as a header.
pub struct WithoutClientIdTrailers<B>(pub B);

impl<B> http_body::Body for WithoutClientIdTrailers<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        remove_lookalikes(&mut trailers, &CLIENT_ID);
                        Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http_body_util::BodyExt;

    fn headers(names: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for name in names {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("spiffe://cluster.local/ns/demo/sa/admin"),
            );
        }
        map
    }

    #[test]
    fn underscores_and_case_make_lookalikes() {
        for name in [
            "strait-client-id",
            "strait_client_id",
            "Strait_Client-ID",
            "STRAIT-CLIENT_ID",
        ] {
            assert!(is_lookalike(name, "strait-client-id"), "{name}");
        }
        for name in [
            "strait-client-ids",
            "strait-client",
            "strait.client.id",
            "x-strait-client-id",
        ] {
            assert!(!is_lookalike(name, "strait-client-id"), "{name}");
        }
    }

    #[test]
    fn every_lookalike_and_every_value_is_removed_and_others_stay() {
        let mut map = headers(&[
            "strait-client-id",
            "strait-client-id",
            "strait_client_id",
            "strait-client_id",
            "x-other",
        ]);
        remove_lookalikes(&mut map, &CLIENT_ID);
        let left: Vec<_> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-other"]);
    }

    #[test]
    fn proxy_error_lookalikes_are_removed_from_responses() {
        let mut map = headers(&["strait-proxy-error", "strait_proxy_error", "content-type"]);
        remove_lookalikes(&mut map, &PROXY_ERROR);
        let left: Vec<_> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type"]);
    }

    #[tokio::test]
    async fn trailers_lose_client_id_lookalikes_and_data_passes() {
        let trailers = headers(&["strait_client_id", "grpc-status"]);
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let collected = WithoutClientIdTrailers(body).collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert!(trailers.get("strait_client_id").is_none());
        assert!(trailers.get("grpc-status").is_some());
        assert_eq!(collected.to_bytes(), "abc");
    }
}
