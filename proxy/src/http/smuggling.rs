//! Request-smuggling defences: a request goes upstream only if no server could frame or
//! route it differently from the proxy.
//!
//! hyper's parser already refuses most ambiguity (differing duplicate `Content-Length`,
//! obs-fold, control characters in names and values, a `Transfer-Encoding` other than
//! chunked-last), and the h2 crate refuses connection-specific headers in HTTP/2. What both
//! accept and this module refuses or normalises, before the request is routed:
//! - `Content-Length` together with `Transfer-Encoding` (RFC 9112 §6.1 lets a server pick
//!   either; a proxy and its backend picking differently is the classic desync), refused;
//! - several `Content-Length` lines with the same value, collapsed to one;
//! - several `Host` lines, refused (RFC 9112 §3.2);
//! - an absolute-form target whose authority differs from `Host`: `Host` is set to the
//!   target's authority, which is what the proxy routed by (RFC 9112 §3.2.2).

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderValue, Version};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmugglingError {
    /// The body length is declared twice, in two ways.
    #[error("the request has both Content-Length and Transfer-Encoding")]
    LengthAndEncoding,
    /// Several `Host` header lines.
    #[error("the request has {0} Host headers")]
    SeveralHosts(usize),
    /// Several `Content-Length` lines that disagree.
    #[error("the request has Content-Length headers that disagree")]
    DisagreeingLengths,
}

/// `request`, normalised, or the proxy error that refuses it.
pub fn checked<B>(
    request: http::Request<B>,
) -> Result<http::Request<B>, crate::errors::ProxyError> {
    let (mut head, body) = request.into_parts();
    check(&mut head).map_err(|e| crate::errors::ProxyError::BadRequest(e.to_string()))?;
    Ok(http::Request::from_parts(head, body))
}

/// Refuses or normalises `head` as the module documentation says.
pub fn check(head: &mut Parts) -> Result<(), SmugglingError> {
    let headers = &mut head.headers;
    if headers.contains_key(TRANSFER_ENCODING) && headers.contains_key(CONTENT_LENGTH) {
        return Err(SmugglingError::LengthAndEncoding);
    }
    let lengths = headers.get_all(CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        let mut values = headers.get_all(CONTENT_LENGTH).iter();
        let first = values.next().cloned();
        if values.any(|v| Some(v) != first.as_ref()) {
            return Err(SmugglingError::DisagreeingLengths);
        }
        if let Some(first) = first {
            headers.insert(CONTENT_LENGTH, first);
        }
    }
    let hosts = headers.get_all(HOST).iter().count();
    if hosts > 1 {
        return Err(SmugglingError::SeveralHosts(hosts));
    }
    // HTTP/2 carries the target in `:authority`; `Host` is hyper's to derive there.
    if head.version < Version::HTTP_2
        && let Some(authority) = head.uri.authority()
        && headers
            .get(HOST)
            .is_some_and(|h| h.as_bytes() != authority.as_str().as_bytes())
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(HOST, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::post(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn length_and_encoding_together_are_refused() {
        let mut h = head(
            "/",
            &[("content-length", "5"), ("transfer-encoding", "chunked")],
        );
        assert_eq!(check(&mut h), Err(SmugglingError::LengthAndEncoding));
    }

    #[test]
    fn agreeing_duplicate_lengths_collapse_and_disagreeing_ones_are_refused() {
        let mut same = head("/", &[("content-length", "5"), ("content-length", "5")]);
        assert_eq!(check(&mut same), Ok(()));
        assert_eq!(same.headers.get_all(CONTENT_LENGTH).iter().count(), 1);
        let mut differ = head("/", &[("content-length", "5"), ("content-length", "6")]);
        assert_eq!(check(&mut differ), Err(SmugglingError::DisagreeingLengths));
    }

    #[test]
    fn several_hosts_are_refused() {
        let mut h = head("/", &[("host", "a"), ("host", "b")]);
        assert_eq!(check(&mut h), Err(SmugglingError::SeveralHosts(2)));
    }

    #[test]
    fn an_absolute_target_overrides_a_different_host() {
        let mut h = head("http://orders.demo/x", &[("host", "admin.demo")]);
        assert_eq!(check(&mut h), Ok(()));
        assert_eq!(h.headers[HOST], "orders.demo");
        let mut plain = head("/x", &[("host", "orders.demo")]);
        assert_eq!(check(&mut plain), Ok(()));
        assert_eq!(plain.headers[HOST], "orders.demo");
    }
}
