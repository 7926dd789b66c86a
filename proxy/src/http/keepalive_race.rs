//! The keep-alive race, and the one re-send the connection pool makes on its own.
//!
//! An upstream may close a keep-alive connection it finds idle at the very moment the pool
//! hands that connection a request. The request then fails though the app never processed
//! it. The pool ([`crate::http::upstream`]) sends it again on another connection, in exactly
//! these cases ([`resend_after_keepalive_race`]):
//!
//! - the request was never written (hyper hands it back) on a connection taken from the pool,
//!   whatever its method: nothing reached the upstream;
//! - the request was written to an HTTP/1 connection idle for at least
//!   [`MAY_HAVE_BEEN_CLOSED_AFTER`], the connection closed without a byte of answer, and the
//!   request is idempotent and has no body ([`resendable_copy`]): the upstream closed it as
//!   idle while the request was on its way;
//! - on HTTP/2, the first try on a pooled connection came back unwritten (GOAWAY or idle
//!   close between pooling and use); the second try does not resend.
//!
//! A non-idempotent request, or one with a body, that was written is never re-sent here. The
//! re-send is not a retry: it spends no retry budget and does not count in
//! `strait_http_retries_total`, because the app has not seen the request; it counts in
//! `strait_upstream_keepalive_race_resends_total`. Retries proper are decided once, per
//! request, in [`crate::resilience::attempts`].

use std::time::Duration;

use http::Request;

use crate::body::Body;
use crate::resilience::retry::is_idempotent;

/// A pooled HTTP/1 connection idle at least this long may have been closed by the upstream,
/// so a request sent on it keeps a copy for resending. Under load connections are reused
/// within microseconds and skip the copy, the defence's only cost; where connections sit
/// idle, the load is light and the copy is cheap.
pub const MAY_HAVE_BEEN_CLOSED_AFTER: Duration = Duration::from_millis(5);

/// A copy of `request` to send again should the connection turn out closed, when that is
/// safe: the request is idempotent and has no body (so nothing is lost by not replaying one).
pub fn resendable_copy(request: &Request<Body>) -> Option<Request<Body>> {
    use http_body::Body as _;
    if !request.body().is_end_stream() || !is_idempotent(request.method(), request.headers()) {
        return None;
    }
    let mut copy = Request::new(crate::body::empty());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// Whether a send failed because the connection closed (or was reset) before any byte of a
/// response arrived.
pub fn closed_without_answer(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() {
        return true;
    }
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        cause = error.source();
    }
    false
}

/// What becomes of a request an HTTP/1 connection failed to answer.
#[derive(Debug)]
pub enum AfterFailure {
    /// The keep-alive race: send this on another connection.
    Resend(Request<Body>),
    /// Never written, on a fresh connection: handed back to the caller, for whom it is safe
    /// to send elsewhere.
    NotSent(Request<Body>),
    /// It may have reached the upstream: the send fails.
    Failed,
}

/// The keep-alive race rule for HTTP/1: `unsent` is the request when hyper handed it back
/// unwritten, `reused` whether the connection came from the pool, `idle_copy` the copy kept
/// for a connection that sat idle ([`resendable_copy`]), and `closed_without_answer` whether
/// the connection closed before any byte of answer.
pub fn resend_after_keepalive_race(
    unsent: Option<Request<Body>>,
    reused: bool,
    idle_copy: Option<Request<Body>>,
    closed_without_answer: bool,
) -> AfterFailure {
    match (unsent, idle_copy) {
        (Some(request), _) if reused => AfterFailure::Resend(request),
        (Some(request), _) => AfterFailure::NotSent(request),
        (None, Some(copy)) if closed_without_answer => AfterFailure::Resend(copy),
        (None, _) => AfterFailure::Failed,
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::body::{empty, full};

    fn request(method: Method, body: Body) -> Request<Body> {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = "/orders".parse().unwrap();
        request
    }

    fn with_body() -> Body {
        full("order")
    }

    #[test]
    fn only_idempotent_requests_without_a_body_keep_a_copy() {
        let get = resendable_copy(&request(Method::GET, empty())).expect("a bodyless GET");
        assert_eq!((get.method(), get.uri().path()), (&Method::GET, "/orders"));
        assert!(resendable_copy(&request(Method::POST, empty())).is_none());
        assert!(resendable_copy(&request(Method::PUT, with_body())).is_none());
        let mut keyed = request(Method::POST, empty());
        keyed
            .headers_mut()
            .insert("idempotency-key", "k1".parse().unwrap());
        assert!(resendable_copy(&keyed).is_some());
    }

    #[test]
    fn an_unwritten_request_on_a_pooled_connection_is_resent_whatever_its_method() {
        let post = request(Method::POST, with_body());
        assert!(matches!(
            resend_after_keepalive_race(Some(post), true, None, false),
            AfterFailure::Resend(r) if r.method() == Method::POST
        ));
    }

    #[test]
    fn an_unwritten_request_on_a_fresh_connection_is_handed_back() {
        let post = request(Method::POST, with_body());
        assert!(matches!(
            resend_after_keepalive_race(Some(post), false, None, true),
            AfterFailure::NotSent(_)
        ));
    }

    #[test]
    fn a_written_request_is_resent_only_from_its_idle_copy_after_a_silent_close() {
        let copy = || resendable_copy(&request(Method::GET, empty()));
        assert!(matches!(
            resend_after_keepalive_race(None, true, copy(), true),
            AfterFailure::Resend(_)
        ));
        assert!(matches!(
            resend_after_keepalive_race(None, true, copy(), false),
            AfterFailure::Failed
        ));
        // A written POST never has a copy.
        let post_copy = resendable_copy(&request(Method::POST, with_body()));
        assert!(matches!(
            resend_after_keepalive_race(None, true, post_copy, true),
            AfterFailure::Failed
        ));
    }
}
