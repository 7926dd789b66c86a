//! Whether a failed attempt is retried: a pure function of what is known about the request,
//! what happened to the attempt, and the route's policy. The retry budget is asked only after
//! this says yes, so a request that could never be retried spends nothing; the whole sequence
//! (classification, this rule, budget, backoff) is [`crate::resilience::attempts`].
//!
//! Safe by default: an attempt that never reached the app (connect failure, refused stream)
//! is always worth another try; an answer from the app is retried only when the route asks
//! for it, the request is idempotent (by method, or an `Idempotency-Key` header), and its body
//! is still replayable.

use http::{HeaderMap, Method};

/// Extra attempts allowed for failures that never reached the app, when the route allows
/// fewer retries than this.
pub const NOT_SENT_RETRIES: u32 = 2;

/// What happened to one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response, with the gRPC status when the response head carries one.
    Response {
        /// HTTP status.
        status: u16,
        /// `grpc-status` from a trailers-only response.
        grpc: Option<u32>,
    },
    /// The request never reached the app (connect failure, refused stream, GOAWAY before
    /// processing).
    NotSent,
    /// The exchange failed after the request may have reached the app.
    Failed,
    /// The per-try timeout fired.
    TimedOut,
}

/// A route's retry policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries allowed after the first try on a retryable answer.
    pub max_retries: u32,
    /// HTTP statuses worth retrying.
    pub http_statuses: Vec<u16>,
    /// gRPC codes worth retrying.
    pub grpc_codes: Vec<u32>,
}

/// Facts about the request that bear on retrying it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFacts {
    /// Safe to send twice.
    pub idempotent: bool,
    /// The body can be sent again (within the retry buffer).
    pub replayable: bool,
    /// Retries made so far.
    pub retries: u32,
}

/// Why a failed attempt is not retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoRetry {
    /// The attempt succeeded, or failed in a way the policy does not retry.
    NotRetryable,
    /// The request is not idempotent.
    NotIdempotent,
    /// The body outgrew the retry buffer.
    BodyTooLarge,
    /// No retries left.
    Exhausted,
}

/// The decision for one failed attempt: `Ok(())` to retry.
pub fn should_retry(
    facts: RequestFacts,
    outcome: Outcome,
    policy: &RetryPolicy,
) -> Result<(), NoRetry> {
    let answer_retryable = match outcome {
        Outcome::NotSent => {
            // The request came back unsent, body untouched: always safe to send again.
            return if facts.retries < policy.max_retries.max(NOT_SENT_RETRIES) {
                Ok(())
            } else {
                Err(NoRetry::Exhausted)
            };
        }
        Outcome::Response { status, grpc } => {
            policy.http_statuses.contains(&status)
                || grpc.is_some_and(|code| policy.grpc_codes.contains(&code))
        }
        // A gateway-side failure reads as the status the client would see.
        Outcome::Failed => policy.http_statuses.contains(&502),
        Outcome::TimedOut => policy.http_statuses.contains(&504) || policy.max_retries > 0,
    };
    if !answer_retryable {
        return Err(NoRetry::NotRetryable);
    }
    if !facts.idempotent {
        return Err(NoRetry::NotIdempotent);
    }
    if !facts.replayable {
        return Err(NoRetry::BodyTooLarge);
    }
    if facts.retries >= policy.max_retries {
        return Err(NoRetry::Exhausted);
    }
    Ok(())
}

/// Whether a request may be sent twice: an idempotent method (RFC 9110 §9.2.2) or an
/// `Idempotency-Key` header.
pub fn is_idempotent(method: &Method, headers: &HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) || headers.contains_key("idempotency-key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            http_statuses: vec![502, 503, 504],
            grpc_codes: vec![14],
        }
    }

    fn facts(idempotent: bool, replayable: bool, retries: u32) -> RequestFacts {
        RequestFacts {
            idempotent,
            replayable,
            retries,
        }
    }

    const UNAVAILABLE: Outcome = Outcome::Response {
        status: 503,
        grpc: None,
    };

    #[test]
    fn an_idempotent_request_with_a_retryable_status_is_retried_until_attempts_run_out() {
        assert_eq!(
            should_retry(facts(true, true, 0), UNAVAILABLE, &policy()),
            Ok(())
        );
        assert_eq!(
            should_retry(facts(true, true, 1), UNAVAILABLE, &policy()),
            Ok(())
        );
        assert_eq!(
            should_retry(facts(true, true, 2), UNAVAILABLE, &policy()),
            Err(NoRetry::Exhausted)
        );
    }

    #[test]
    fn post_is_not_retried_without_idempotency_key() {
        assert_eq!(
            should_retry(facts(false, true, 0), UNAVAILABLE, &policy()),
            Err(NoRetry::NotIdempotent)
        );
    }

    #[test]
    fn a_body_past_the_retry_buffer_is_never_retried_on_status() {
        assert_eq!(
            should_retry(facts(true, false, 0), UNAVAILABLE, &policy()),
            Err(NoRetry::BodyTooLarge)
        );
    }

    #[test]
    fn a_request_that_never_reached_the_app_is_retried_even_for_post_and_without_a_policy() {
        let none = RetryPolicy::default();
        assert_eq!(
            should_retry(facts(false, false, 0), Outcome::NotSent, &none),
            Ok(())
        );
        assert_eq!(
            should_retry(facts(false, false, 1), Outcome::NotSent, &none),
            Ok(())
        );
        assert_eq!(
            should_retry(facts(false, false, 2), Outcome::NotSent, &none),
            Err(NoRetry::Exhausted)
        );
    }

    #[test]
    fn statuses_outside_the_policy_and_successes_are_returned() {
        let ok = Outcome::Response {
            status: 200,
            grpc: None,
        };
        let teapot = Outcome::Response {
            status: 418,
            grpc: None,
        };
        assert_eq!(
            should_retry(facts(true, true, 0), ok, &policy()),
            Err(NoRetry::NotRetryable)
        );
        assert_eq!(
            should_retry(facts(true, true, 0), teapot, &policy()),
            Err(NoRetry::NotRetryable)
        );
        assert_eq!(
            should_retry(facts(true, true, 0), UNAVAILABLE, &RetryPolicy::default()),
            Err(NoRetry::NotRetryable)
        );
    }

    #[test]
    fn grpc_codes_are_matched_from_trailers_only_responses() {
        let unavailable = Outcome::Response {
            status: 200,
            grpc: Some(14),
        };
        let internal = Outcome::Response {
            status: 200,
            grpc: Some(13),
        };
        assert_eq!(
            should_retry(facts(true, true, 0), unavailable, &policy()),
            Ok(())
        );
        assert_eq!(
            should_retry(facts(true, true, 0), internal, &policy()),
            Err(NoRetry::NotRetryable)
        );
    }

    #[test]
    fn per_try_timeouts_and_transport_failures_follow_their_status() {
        assert_eq!(
            should_retry(facts(true, true, 0), Outcome::TimedOut, &policy()),
            Ok(())
        );
        assert_eq!(
            should_retry(facts(true, true, 0), Outcome::Failed, &policy()),
            Ok(())
        );
        assert_eq!(
            should_retry(facts(false, true, 0), Outcome::Failed, &policy()),
            Err(NoRetry::NotIdempotent)
        );
    }

    #[test]
    fn idempotency_comes_from_the_method_or_the_header() {
        let empty = HeaderMap::new();
        for method in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::TRACE,
        ] {
            assert!(is_idempotent(&method, &empty), "{method}");
        }
        assert!(!is_idempotent(&Method::POST, &empty));
        assert!(!is_idempotent(&Method::PATCH, &empty));
        let mut keyed = HeaderMap::new();
        keyed.insert("idempotency-key", "abc".parse().unwrap());
        assert!(is_idempotent(&Method::POST, &keyed));
    }
}
