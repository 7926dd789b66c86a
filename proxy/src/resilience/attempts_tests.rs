//! The retry state machine, attempt by attempt, on tokio's paused clock.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use super::*;
use crate::resilience::budget::BudgetPolicy;

const UNAVAILABLE: Outcome = Outcome::Response {
    status: 503,
    grpc: None,
};
const OK: Outcome = Outcome::Response {
    status: 200,
    grpc: None,
};

fn policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        http_statuses: vec![502, 503, 504],
        grpc_codes: vec![14],
    }
}

fn budget(ratio: f64, min_per_second: u32, window: Duration) -> RetryBudget {
    RetryBudget::new(BudgetPolicy {
        ratio,
        min_per_second,
        window,
    })
}

fn plenty() -> RetryBudget {
    budget(0.2, 10, Duration::from_secs(10))
}

const BACKOFF: RetryBackoff = RetryBackoff {
    base: Duration::from_millis(10),
    max: Duration::from_millis(35),
};

/// A request's attempts whose jitter always picks the ceiling, so delays are exact.
fn attempts<'a>(
    policy: &'a RetryPolicy,
    budget: &'a RetryBudget,
    idempotent: bool,
) -> Attempts<'a> {
    let mut attempts = Attempts::start(policy, budget, BACKOFF, idempotent, Instant::now());
    attempts.jitter = || 1.0;
    attempts
}

fn body() -> Option<&'static str> {
    Some("body")
}

#[tokio::test(start_paused = true)]
async fn a_503_then_a_200_is_retried_once_within_budget() {
    let (policy, budget) = (policy(2), plenty());
    let mut attempts = attempts(&policy, &budget, true);
    assert_eq!(
        attempts.after(UNAVAILABLE, true, body, Instant::now()),
        Next::SendAgain {
            body: "body",
            after: Duration::from_millis(10)
        }
    );
    assert_eq!(
        attempts.after(OK, true, body, Instant::now()),
        Next::Done { skipped: None }
    );
    assert_eq!(attempts.retries(), 1);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_when_the_attempts_run_out() {
    let (policy, budget) = (policy(2), plenty());
    let mut attempts = attempts(&policy, &budget, true);
    for _ in 0..2 {
        assert!(matches!(
            attempts.after(UNAVAILABLE, true, body, Instant::now()),
            Next::SendAgain { .. }
        ));
    }
    assert_eq!(
        attempts.after(UNAVAILABLE, true, body, Instant::now()),
        Next::Done {
            skipped: Some(SkipReason::AttemptsExhausted)
        }
    );
    assert_eq!(attempts.retries(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_exhausted_budget_stops_retries_until_the_window_slides() {
    // One retry per second over a 1 s window, and no share of requests.
    let (policy, budget) = (policy(3), budget(0.0, 1, Duration::from_secs(1)));
    let mut first = attempts(&policy, &budget, true);
    assert!(matches!(
        first.after(UNAVAILABLE, true, body, Instant::now()),
        Next::SendAgain { .. }
    ));
    assert_eq!(
        first.after(UNAVAILABLE, true, body, Instant::now()),
        Next::Done {
            skipped: Some(SkipReason::Budget)
        }
    );
    let mut second = attempts(&policy, &budget, true);
    assert_eq!(
        second.after(UNAVAILABLE, true, body, Instant::now()),
        Next::Done {
            skipped: Some(SkipReason::Budget)
        }
    );
    tokio::time::advance(Duration::from_millis(1100)).await;
    let mut later = attempts(&policy, &budget, true);
    assert!(
        matches!(
            later.after(UNAVAILABLE, true, body, Instant::now()),
            Next::SendAgain { .. }
        ),
        "the spent retry left the window"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_the_budget_cannot_retry_anyway_spends_nothing() {
    let (policy, budget) = (policy(2), budget(0.0, 1, Duration::from_secs(1)));
    let mut post = attempts(&policy, &budget, false);
    assert_eq!(
        post.after(UNAVAILABLE, true, body, Instant::now()),
        Next::Done {
            skipped: Some(SkipReason::NotIdempotent)
        }
    );
    let mut get = attempts(&policy, &budget, true);
    assert!(
        matches!(
            get.after(UNAVAILABLE, true, body, Instant::now()),
            Next::SendAgain { .. }
        ),
        "the refused POST left the one retry in the budget"
    );
}

#[tokio::test(start_paused = true)]
async fn the_backoff_ceiling_doubles_and_caps() {
    let (policy, budget) = (policy(5), plenty());
    let mut attempts = attempts(&policy, &budget, true);
    let delays: Vec<u128> = (0..5)
        .map(
            |_| match attempts.after(UNAVAILABLE, true, body, Instant::now()) {
                Next::SendAgain { after, .. } => after.as_millis(),
                done => panic!("expected a retry, got {done:?}"),
            },
        )
        .collect();
    assert_eq!(delays, [10, 20, 35, 35, 35]);
}

#[tokio::test(start_paused = true)]
async fn a_loop_driven_by_the_machine_sleeps_its_backoff_on_the_clock() {
    let (policy, budget) = (policy(3), plenty());
    let mut attempts = attempts(&policy, &budget, true);
    let started = Instant::now();
    let mut answers = [UNAVAILABLE, UNAVAILABLE, OK].into_iter();
    let mut sent = 0;
    loop {
        let outcome = answers.next().expect("no more attempts than answers");
        sent += 1;
        match attempts.after(outcome, true, body, Instant::now()) {
            Next::SendAgain { after, .. } => tokio::time::sleep(after).await,
            Next::Done { skipped } => {
                assert_eq!(skipped, None);
                break;
            }
        }
    }
    assert_eq!(sent, 3);
    assert_eq!(started.elapsed(), Duration::from_millis(30));
}

#[tokio::test(start_paused = true)]
async fn a_post_is_never_resent_once_it_may_have_reached_the_app() {
    let (policy, budget) = (policy(2), plenty());
    for outcome in [UNAVAILABLE, Outcome::Failed, Outcome::TimedOut] {
        let mut attempts = attempts(&policy, &budget, false);
        assert_eq!(
            attempts.after(outcome, true, body, Instant::now()),
            Next::Done {
                skipped: Some(SkipReason::NotIdempotent)
            },
            "{outcome:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_never_left_is_sent_again_even_as_a_post_without_a_policy() {
    let (none, budget) = (RetryPolicy::default(), plenty());
    let mut attempts = attempts(&none, &budget, false);
    for _ in 0..2 {
        assert!(matches!(
            attempts.after(Outcome::NotSent, false, body, Instant::now()),
            Next::SendAgain { .. }
        ));
    }
    assert_eq!(
        attempts.after(Outcome::NotSent, false, body, Instant::now()),
        Next::Done {
            skipped: Some(SkipReason::AttemptsExhausted)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_that_outgrew_the_buffer_by_the_time_of_the_retry_is_not_resent() {
    let (policy, budget) = (policy(2), plenty());
    let mut attempts = attempts(&policy, &budget, true);
    assert_eq!(
        attempts.after(UNAVAILABLE, true, || None::<&str>, Instant::now()),
        Next::Done {
            skipped: Some(SkipReason::BodyTooLarge)
        }
    );
    assert_eq!(attempts.retries(), 0);
    assert_eq!(
        attempts.after(UNAVAILABLE, false, body, Instant::now()),
        Next::Done {
            skipped: Some(SkipReason::BodyTooLarge)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn answers_outside_the_policy_are_final() {
    let (policy, budget) = (policy(2), plenty());
    let mut attempts = attempts(&policy, &budget, true);
    let teapot = Outcome::Response {
        status: 418,
        grpc: None,
    };
    assert_eq!(
        attempts.after(teapot, true, body, Instant::now()),
        Next::Done { skipped: None }
    );
}

fn response(status: u16, grpc: Option<&str>) -> Result<Response<()>, SendError> {
    let mut response = Response::builder().status(status);
    if let Some(code) = grpc {
        response = response.header("grpc-status", code);
    }
    Ok(response.body(()).unwrap())
}

fn failed(error: ProxyError) -> Result<Response<()>, SendError> {
    Err(SendError::Failed(error))
}

/// The error hyper reports for a request an HTTP/2 server reset with `reason`.
async fn h2_reset(reason: h2::Reason) -> ProxyError {
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut connection = h2::server::handshake(server).await.expect("h2 handshake");
        while let Some(Ok((_, mut respond))) = connection.accept().await {
            respond.send_reset(reason);
        }
    });
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client))
            .await
            .expect("client handshake");
    tokio::spawn(connection);
    let request = Request::get("http://upstream.test/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let source = sender
        .send_request(request)
        .await
        .expect_err("the stream is reset");
    ProxyError::Upstream {
        addr: ([127, 0, 0, 1], 80).into(),
        source,
    }
}

#[test]
fn answers_are_classified_by_status_and_trailers_only_grpc_status() {
    assert_eq!(classify(&response(503, None), true), UNAVAILABLE);
    assert_eq!(
        classify(&response(200, Some("14")), true),
        Outcome::Response {
            status: 200,
            grpc: Some(14)
        }
    );
}

#[test]
fn failures_are_classified_by_what_this_proxy_saw() {
    let unsent = Err(SendError::NotSent(
        Box::new(Request::new(crate::body::empty())),
        ProxyError::BackendRequestTimeout(Duration::from_secs(1)),
    ));
    assert_eq!(classify::<()>(&unsent, false), Outcome::NotSent);
    assert_eq!(
        classify(
            &failed(ProxyError::BackendRequestTimeout(Duration::from_secs(1))),
            true
        ),
        Outcome::TimedOut
    );
    assert_eq!(
        classify(
            &failed(ProxyError::RequestTimeout(Duration::from_secs(1))),
            true
        ),
        Outcome::Failed
    );
}

#[tokio::test]
async fn a_refused_stream_counts_as_not_sent_only_while_the_body_can_be_replayed() {
    let refused = failed(h2_reset(h2::Reason::REFUSED_STREAM).await);
    assert_eq!(classify(&refused, true), Outcome::NotSent);
    assert_eq!(classify(&refused, false), Outcome::Failed);
    let internal = failed(h2_reset(h2::Reason::INTERNAL_ERROR).await);
    assert_eq!(classify(&internal, true), Outcome::Failed);
}
