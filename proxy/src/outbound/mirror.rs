//! `RequestMirror`: copies of a route's requests sent to another backend, their answers
//! thrown away.
//!
//! Fire and forget, and bounded. A copy is sent only once the real request's body has been
//! read whole within the retry buffer (`--retry-buffer-bytes`), so it replays kept bytes and
//! never reads from the client or slows the real request's streaming; a bigger or still
//! streaming body is not mirrored. Copies run as tasks of their own, at most
//! [`defaults::MIRROR_MAX_IN_FLIGHT`] per proxy and each for at most
//! [`defaults::MIRROR_TIMEOUT`]: a mirror target that hangs holds a fixed number of tasks,
//! and a copy never waits for a slot. A copy goes to an endpoint of the mirror backend
//! directly, not through that service's routes, so mirrors do not chain inside a proxy.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Request, Response};
use strait_proto::defaults;
use tokio::sync::Semaphore;

use crate::body::{Body, boxed};
use crate::errors::SendError;
use crate::http::HttpVersion;
use crate::http::forward::forward;
use crate::resilience::replay::ReplayBody;
use crate::table::Mirror;

/// The proxy's slots for mirrored requests in flight.
#[derive(Clone, Debug)]
pub struct MirrorSlots(Arc<Semaphore>);

impl Default for MirrorSlots {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(defaults::MIRROR_MAX_IN_FLIGHT)))
    }
}

/// Whether one request falls in a mirror's share, given a uniform `draw` in
/// `0..denominator`.
pub fn in_share(numerator: u32, denominator: u32, draw: u32) -> bool {
    draw < numerator.min(denominator)
}

/// Sends a copy of the request (`head`, and the body `kept` replays) to each mirror whose
/// share it falls in. Returns at once.
pub fn send_copies(
    mirrors: &[Mirror],
    head: &Parts,
    kept: Option<&ReplayBody>,
    version: HttpVersion,
    idle_timeout: Duration,
    slots: &MirrorSlots,
) {
    for mirror in mirrors {
        if !in_share(
            mirror.numerator,
            mirror.denominator,
            fastrand::u32(..mirror.denominator.max(1)),
        ) {
            continue;
        }
        let Some(body) = kept.and_then(ReplayBody::replay_complete) else {
            tracing::debug!(backend = %mirror.backend.name, "not mirrored: the body is not kept whole");
            continue;
        };
        let Ok(slot) = slots.0.clone().try_acquire_owned() else {
            tracing::debug!(backend = %mirror.backend.name, "not mirrored: every mirror slot is in use");
            continue;
        };
        let backend = mirror.backend.clone();
        let request = copy(head, boxed(body));
        tokio::spawn(async move {
            let _slot = slot;
            let Some((_, endpoint)) = backend.pick(&[]) else {
                return;
            };
            let sent = forward(endpoint.upstream(version), request, version, idle_timeout);
            let outcome = tokio::time::timeout(defaults::MIRROR_TIMEOUT, sent).await;
            log_outcome(&backend.name, outcome.as_ref().map(Result::as_ref));
        });
    }
}

fn log_outcome(
    backend: &str,
    outcome: Result<Result<&Response<Body>, &SendError>, &tokio::time::error::Elapsed>,
) {
    match outcome {
        Ok(Ok(response)) => {
            tracing::trace!(backend, status = response.status().as_u16(), "mirrored");
        }
        Ok(Err(error)) => tracing::debug!(backend, ?error, "mirrored request failed"),
        Err(_) => tracing::debug!(backend, "mirrored request timed out"),
    }
}

/// The copy's request: the same head (extensions aside) over the replayed body.
fn copy(head: &Parts, body: Body) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_numerator_out_of_denominator() {
        let hits = |n, d| (0..d).filter(|draw| in_share(n, d, *draw)).count();
        assert_eq!(hits(100, 100), 100);
        assert_eq!(hits(0, 100), 0);
        assert_eq!(hits(1, 1000), 1);
        assert_eq!(hits(5, 100), 5);
        assert_eq!(hits(7, 5), 5, "never more than every request");
    }
}
