//! The attempts of one request, as a small state machine: each attempt's result is classified
//! once ([`classify`]), and [`Attempts::after`] turns that outcome, the route's policy, the
//! backend's budget and the backoff into the one decision the request loop acts on: send again
//! after a delay, or answer with what this attempt got. The loop (`outbound/request.rs`)
//! only sends, sleeps and counts.
//!
//! The rules, in the order they are applied:
//! - [`should_retry`] decides whether the outcome is worth another attempt at all (policy,
//!   idempotency, replayable body, attempts left); a request that could never be retried
//!   spends nothing from the budget.
//! - The backend's [`RetryBudget`] is asked next; a spent budget returns this attempt's result.
//! - The body for the next attempt is taken last: the attempt just made may have been
//!   streaming the body past the retry buffer until this moment.
//! - The delay before retry `n` is full jitter under `min(max, base * 2^n)`.
//!
//! One re-send happens below this machine, in the connection pool, and never counts as a
//! retry: a request written to a pooled connection the upstream closed as idle at that
//! moment (the keep-alive race) is sent again on another connection, see the pool in
//! `http/upstream.rs` and the rule in `http/keepalive_race.rs`. It spends no budget because it is not a second attempt at
//! the app: the app never saw the first.

use std::time::Duration;

use http::Response;
use tokio::time::Instant;

use crate::backoff::full_jitter;
use crate::errors::{ProxyError, SendError, grpc_status};
use crate::resilience::budget::RetryBudget;
use crate::resilience::retry::{NoRetry, Outcome, RequestFacts, RetryPolicy, should_retry};
use crate::telemetry::http::SkipReason;

/// What an attempt's result says about the attempt: the one place a send result becomes an
/// [`Outcome`]. `replayable` tells whether the body could be sent again, which makes an
/// HTTP/2 REFUSED_STREAM as good as not sent.
///
/// An answer is judged by its status alone, whoever wrote it: a response header claiming
/// that the request never reached the app could come from the app (or a compromised peer)
/// and would get a non-idempotent request sent twice. Only what this proxy itself observed
/// makes an attempt "not sent".
pub fn classify<B>(result: &Result<Response<B>, SendError>, replayable: bool) -> Outcome {
    match result {
        Ok(response) => Outcome::Response {
            status: response.status().as_u16(),
            grpc: grpc_status(response),
        },
        Err(SendError::NotSent(..)) => Outcome::NotSent,
        Err(SendError::Failed(error)) if replayable && refused_stream(error) => Outcome::NotSent,
        Err(SendError::Failed(ProxyError::BackendRequestTimeout(_))) => Outcome::TimedOut,
        Err(SendError::Failed(_)) => Outcome::Failed,
    }
}

/// Whether a send error is HTTP/2 REFUSED_STREAM: the server guarantees it did not process
/// the stream, so it is as safe to retry as a request never sent.
fn refused_stream(error: &ProxyError) -> bool {
    let ProxyError::Upstream { source, .. } = error else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source);
    while let Some(error) = cause {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        cause = error.source();
    }
    false
}

/// The retry backoff: full jitter under a ceiling that doubles from `base` up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBackoff {
    /// Ceiling of the first retry's delay.
    pub base: Duration,
    /// Highest ceiling.
    pub max: Duration,
}

/// What to do after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<B> {
    /// Send the request again, with `body`, after waiting `after`.
    SendAgain {
        /// The body for the next attempt.
        body: B,
        /// The backoff delay.
        after: Duration,
    },
    /// Answer with this attempt's result; `skipped` says why a retry was not made when one
    /// was wanted (for metrics), `None` when the result was final anyway.
    Done {
        /// Why no retry was made.
        skipped: Option<SkipReason>,
    },
}

/// The retry state of one request.
pub struct Attempts<'a> {
    policy: &'a RetryPolicy,
    budget: &'a RetryBudget,
    backoff: RetryBackoff,
    idempotent: bool,
    retries: u32,
    jitter: fn() -> f64,
}

impl<'a> Attempts<'a> {
    /// A request about to make its first attempt at `now`; counted in `budget`, which earns
    /// retries from first attempts.
    pub fn start(
        policy: &'a RetryPolicy,
        budget: &'a RetryBudget,
        backoff: RetryBackoff,
        idempotent: bool,
        now: Instant,
    ) -> Self {
        budget.deposit(now);
        Self {
            policy,
            budget,
            backoff,
            idempotent,
            retries: 0,
            jitter: fastrand::f64,
        }
    }

    /// Retries made so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The decision after an attempt ended with `outcome` at `now`. `replayable` tells
    /// whether the body could be sent again; `next_body` takes it, and is called only once a
    /// retry is decided and the budget paid.
    pub fn after<B>(
        &mut self,
        outcome: Outcome,
        replayable: bool,
        next_body: impl FnOnce() -> Option<B>,
        now: Instant,
    ) -> Next<B> {
        let facts = RequestFacts {
            idempotent: self.idempotent,
            replayable,
            retries: self.retries,
        };
        if let Err(reason) = should_retry(facts, outcome, self.policy) {
            return Next::Done {
                skipped: skipped(reason),
            };
        }
        if !self.budget.withdraw(now) {
            return Next::Done {
                skipped: Some(SkipReason::Budget),
            };
        }
        let Some(body) = next_body() else {
            return Next::Done {
                skipped: Some(SkipReason::BodyTooLarge),
            };
        };
        let after = full_jitter(
            self.backoff.base,
            self.backoff.max,
            self.retries,
            (self.jitter)(),
        );
        self.retries += 1;
        Next::SendAgain { body, after }
    }
}

/// The metric reason for a retry [`should_retry`] refused, `None` when nothing was skipped.
fn skipped(reason: NoRetry) -> Option<SkipReason> {
    match reason {
        NoRetry::NotRetryable => None,
        NoRetry::NotIdempotent => Some(SkipReason::NotIdempotent),
        NoRetry::BodyTooLarge => Some(SkipReason::BodyTooLarge),
        NoRetry::Exhausted => Some(SkipReason::AttemptsExhausted),
    }
}

#[cfg(test)]
#[path = "attempts_tests.rs"]
mod tests;
