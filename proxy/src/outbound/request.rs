//! One outbound HTTP request to a mesh service: its route, its backend by weight, and the
//! attempts it takes to get an answer, each to an endpoint chosen by the balancer.
//!
//! The resilience rules live in [`crate::resilience`]; this is the loop that applies them:
//! the request timeout over everything, a per-try timeout per attempt, each attempt's outcome
//! classified once and fed to the circuit breaker and to the retry state machine
//! ([`Attempts`], which owns policy, budget and backoff), another attempt to an endpoint not
//! tried yet when it says so, and the backend's pending-request limit enforced up front. An attempt that failed because the client's own
//! body broke off is the client's fault: answered 400 `client-body`, never fed to the breaker
//! and never retried.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::{Body, boxed, with_guard};
use crate::errors::{ProxyError, SendError, is_grpc, kind_of};
use crate::filters::{BackendFilters, RouteFilters};
use crate::http::HttpVersion;
use crate::http::client_body;
use crate::http::forward::{forward, takes_over_connection};
use crate::outbound::mirror::{self, MirrorSlots};
use crate::resilience::attempts::{Attempts, Next, RetryBackoff, classify};
use crate::resilience::breaker::is_endpoint_failure;
use crate::resilience::replay::ReplayBody;
use crate::resilience::retry::{Outcome, is_idempotent};
use crate::resilience::timeouts::request_timeout;
use crate::table::endpoint::Endpoint;
use crate::table::{Backend, Pick, Route, Service};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::http::{RequestMetrics, TimeoutKind};
use crate::telemetry::trace::{FinishOnDrop, Side, Tracer};

/// Settings of the request path.
#[derive(Clone, Debug)]
pub struct RequestSettings {
    /// Bodies up to this size can be replayed for a retry.
    pub retry_buffer: usize,
    /// Upgraded connections idle this long are closed.
    pub idle_timeout: Duration,
    /// Starts client spans.
    pub tracer: Tracer,
    /// Bounds the mirrored requests in flight.
    pub mirror_slots: MirrorSlots,
    /// Writes a line per request when on.
    pub access_log: AccessLog,
}

/// Sends `request` to `service` and returns the response to give the client, the proxy's own
/// error responses included.
pub async fn send(
    service: &Service,
    request: Request<Incoming>,
    version: HttpVersion,
    settings: &RequestSettings,
) -> Response<Body> {
    let started = Instant::now();
    let grpc = is_grpc(&request);
    let (mut head, body) = request.into_parts();
    if let Err(error) = crate::http::path::normalize_head(&mut head) {
        return ProxyError::BadRequest(error.to_string()).into_response(grpc);
    }
    let Some(route) = service.route(&head) else {
        return ProxyError::NoRoute {
            authority: service.name.clone(),
        }
        .into_response(grpc);
    };
    if let Some(filters) = &route.filters
        && let Some(answer) = apply_route_filters(filters, &route.name, &mut head, grpc)
    {
        return answer;
    }
    let index = match route.pick_backend(&head.headers) {
        Some(Pick::Backend(index)) => index,
        Some(Pick::Unresolved) => {
            return ProxyError::UnresolvedBackend {
                route: route.name.clone(),
            }
            .into_response(grpc);
        }
        None => {
            return ProxyError::NoEndpoints {
                backend: format!(
                    "{} (every backend of route {} has weight 0)",
                    service.name, route.name
                ),
            }
            .into_response(grpc);
        }
    };
    let backend = &route.backends[index].0;
    let backend_filters = route.backend_filters.get(index).and_then(Option::as_ref);
    if let Some(m) = backend_filters.and_then(|f| f.request_headers.as_ref()) {
        m.apply(&mut head.headers);
    }
    let metrics = &route.metrics[index];
    metrics.request();
    let mut entry = settings.access_log.begin(&head, "outbound");
    if let Some(entry) = &mut entry {
        entry.route(&route.name);
        entry.identities(None, Some(backend.identity.clone()));
    }
    // The endpoint that answered, for the access log only (no lock taken when it is off).
    let upstream = entry.as_ref().map(|_| std::sync::Mutex::new(None));
    let mut span = settings
        .tracer
        .begin(Side::Client, head.method.as_str(), &mut head.headers);
    if let Some(span) = &mut span {
        span.set("http.request.method", head.method.as_str());
        span.set("url.path", head.uri.path());
        span.set(
            "server.address",
            crate::http::authority_of_parts(&head).unwrap_or_default(),
        );
        span.set(
            "network.protocol.version",
            if version == HttpVersion::Http2 {
                "2"
            } else {
                "1.1"
            },
        );
        span.set("strait.direction", "outbound");
        span.set("strait.service", service.name.as_str());
        span.set("strait.route", route.name.as_str());
        span.set("strait.backend", backend.name.as_str());
        span.set("strait.peer_identity", backend.identity.as_str());
    }
    let request = Request::from_parts(head, body);
    let (result, retries) = if takes_over_connection(&request, version) {
        (single_attempt(backend, request, version, settings).await, 0)
    } else {
        let call = Call {
            route,
            backend,
            metrics,
            version,
            settings,
            upstream: upstream.as_ref(),
        };
        attempts(call, request).await
    };
    let result =
        result.map(|response| filter_response(response, route.filters.as_deref(), backend_filters));
    let response = result.unwrap_or_else(|error| {
        tracing::info!(kind = error.kind(), service = %service.name, route = %route.name, %error, "outbound request failed");
        error.into_response(grpc)
    });
    let status = response.status().as_u16();
    let error = kind_of(&response);
    if let (Some(entry), Some(addr)) = (
        &mut entry,
        upstream.and_then(|u| u.into_inner().ok().flatten()),
    ) {
        entry.upstream(addr);
    }
    let response = metrics.respond(response, grpc, error, started.elapsed(), entry);
    match span {
        Some(mut span) => {
            span.set_int("strait.retries", i64::from(retries));
            response.map(|body| with_guard(body, FinishOnDrop::new(span, status)))
        }
        None => response,
    }
}

/// Applies a route's filters to the request; returns the answer when the route answers
/// itself (a redirect, a refused rule, a rewrite that makes no valid URI).
fn apply_route_filters(
    filters: &RouteFilters,
    route: &str,
    head: &mut Parts,
    grpc: bool,
) -> Option<Response<Body>> {
    if filters.refused.is_some() {
        return Some(
            ProxyError::RouteRefused {
                route: route.to_owned(),
            }
            .into_response(grpc),
        );
    }
    if let Some((status, location)) = filters.redirect_for(head) {
        let Some(location) = location else {
            let error = ProxyError::BadRequest("the redirect makes no valid Location".into());
            return Some(error.into_response(grpc));
        };
        let mut response = Response::new(crate::body::empty());
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(http::header::LOCATION, location);
        return Some(response);
    }
    match filters.apply_to_request(head) {
        Ok(()) => None,
        Err(error) => Some(
            ProxyError::BadRequest(format!("the rewritten request is not valid: {error}"))
                .into_response(grpc),
        ),
    }
}

/// The response header changes of the route, then of the backend.
fn filter_response(
    mut response: Response<Body>,
    route: Option<&RouteFilters>,
    backend: Option<&BackendFilters>,
) -> Response<Body> {
    if let Some(m) = route.and_then(|f| f.response_headers.as_ref()) {
        m.apply(response.headers_mut());
    }
    if let Some(m) = backend.and_then(|f| f.response_headers.as_ref()) {
        m.apply(response.headers_mut());
    }
    response
}

/// Upgrades and tunnels: one attempt, no retry (the connection is handed over).
async fn single_attempt(
    backend: &Backend,
    request: Request<Incoming>,
    version: HttpVersion,
    settings: &RequestSettings,
) -> Result<Response<Body>, ProxyError> {
    let (_, endpoint) = backend.pick(&[]).ok_or_else(|| ProxyError::NoEndpoints {
        backend: backend.name.clone(),
    })?;
    forward(
        endpoint.upstream(version),
        request.map(boxed),
        version,
        settings.idle_timeout,
    )
    .await
    .map_err(SendError::into_error)
}

/// Where one request's attempts go and what they count against.
struct Call<'a> {
    route: &'a Route,
    backend: &'a Arc<Backend>,
    metrics: &'a RequestMetrics,
    version: HttpVersion,
    settings: &'a RequestSettings,
    /// Where the last attempt went, kept only for the access log.
    upstream: Option<&'a std::sync::Mutex<Option<std::net::SocketAddr>>>,
}

/// Sends `request` under the backend's pending limit and the request timeout, with retries;
/// returns the result and the retries made.
async fn attempts(
    call: Call<'_>,
    request: Request<Incoming>,
) -> (Result<Response<Body>, ProxyError>, u32) {
    let Call {
        route,
        backend,
        metrics,
        ..
    } = call;
    let Some(admitted) = backend.admit() else {
        let error = ProxyError::BreakerOpen {
            backend: backend.name.clone(),
            limit: backend.settings.max_pending,
        };
        return (Err(error), 0);
    };
    let timeout = request_timeout(route.timeouts.request, request.headers());
    let backoff = RetryBackoff {
        base: route.backoff_base.unwrap_or(backend.settings.backoff_base),
        max: backend.settings.backoff_max,
    };
    let idempotent = is_idempotent(request.method(), request.headers());
    let mut state = Attempts::start(
        &route.retry,
        &backend.state.budget,
        backoff,
        idempotent,
        Instant::now(),
    );
    let work = retry_loop(&call, request, &mut state);
    let result = match timeout {
        None => work.await,
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => {
                metrics.timeout(TimeoutKind::Request);
                Err(ProxyError::RequestTimeout(limit))
            }
        },
    };
    // The request stays admitted until its response has streamed to the end.
    let result = result.map(|response| response.map(|body| with_guard(body, admitted)));
    (result, state.retries())
}

/// A request head rebuilt for another attempt (`Parts` is not `Clone`: its extensions are
/// not, and no attempt needs them).
fn attempt_request(head: &Parts, body: Body) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = head.method.clone();
    *request.uri_mut() = head.uri.clone();
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers.clone();
    request
}

/// The attempts: each goes to an endpoint not tried yet when there is one, its outcome feeds
/// the breaker, and `state` decides whether another follows.
async fn retry_loop(
    call: &Call<'_>,
    request: Request<Incoming>,
    state: &mut Attempts<'_>,
) -> Result<Response<Body>, ProxyError> {
    let Call {
        backend, metrics, ..
    } = *call;
    let (head, body) = request.into_parts();
    let (body, client_fault) = client_body::watch(body);
    let first = ReplayBody::new(boxed(body), call.settings.retry_buffer);
    // A handle for replays; a fresh replay body is always replayable.
    let root = first.replay();
    let replayable = || root.as_ref().is_some_and(ReplayBody::is_replayable);
    let mut body: Body = boxed(first);
    let mut tried: Vec<usize> = Vec::with_capacity(2);
    loop {
        let (index, endpoint) = backend
            .pick(&tried)
            .ok_or_else(|| ProxyError::NoEndpoints {
                backend: backend.name.clone(),
            })?;
        tried.push(index);
        if let Some(slot) = call.upstream
            && let Ok(mut slot) = slot.lock()
        {
            *slot = Some(endpoint.addr);
        }
        let outstanding = endpoint.start();
        let started = Instant::now();
        let result = attempt(call, endpoint, attempt_request(&head, body)).await;
        if tried.len() == 1 && !call.route.mirrors.is_empty() {
            mirror::send_copies(
                &call.route.mirrors,
                &head,
                root.as_ref(),
                call.version,
                call.settings.idle_timeout,
                &call.settings.mirror_slots,
            );
        }
        let rtt = started.elapsed();
        if let Some(error) = clients_fault(&result, client_fault.reason()) {
            return finish(Err(error), outstanding);
        }
        let outcome = classify(&result, replayable());
        count_timeouts(metrics, outcome, &result);
        backend.record(index, is_endpoint_failure(outcome), rtt);
        let (result, returned) = match result {
            Ok(response) => (Ok(response), None),
            // The body came back untouched: the next attempt sends it as is.
            Err(SendError::NotSent(request, error)) => (Err(error), Some(request.into_body())),
            Err(SendError::Failed(error)) => (Err(error), None),
        };
        let can_replay = returned.is_some() || replayable();
        // Take the next attempt's body only once a retry is decided: the old attempt may
        // still be sending and could yet outgrow the buffer.
        let next_body =
            || returned.or_else(|| root.as_ref().and_then(ReplayBody::replay).map(boxed));
        match state.after(outcome, can_replay, next_body, Instant::now()) {
            Next::SendAgain { body: next, after } => {
                body = next;
                metrics.retry();
                tracing::debug!(backend = %backend.name, endpoint = %endpoint.addr, ?outcome, retries = state.retries(), "retrying");
                drop(result);
                tokio::time::sleep(after).await;
            }
            Next::Done { skipped } => {
                if let Some(reason) = skipped {
                    metrics.skipped(reason);
                }
                return finish(result, outstanding);
            }
        }
    }
}

/// One attempt on `endpoint`, under the route's per-try timeout.
async fn attempt(
    call: &Call<'_>,
    endpoint: &Arc<Endpoint>,
    request: Request<Body>,
) -> Result<Response<Body>, SendError> {
    let sent = forward(
        endpoint.upstream(call.version),
        request,
        call.version,
        call.settings.idle_timeout,
    );
    match call.route.timeouts.backend_request {
        None => sent.await,
        Some(limit) => tokio::time::timeout(limit, sent)
            .await
            .unwrap_or(Err(SendError::Failed(ProxyError::BackendRequestTimeout(
                limit,
            )))),
    }
}

/// Counts the timeouts an attempt ran into.
fn count_timeouts<T>(metrics: &RequestMetrics, outcome: Outcome, result: &Result<T, SendError>) {
    if outcome == Outcome::TimedOut {
        metrics.timeout(TimeoutKind::BackendRequest);
    }
    if let Err(
        SendError::NotSent(_, ProxyError::ConnectTimeout { .. })
        | SendError::Failed(ProxyError::ConnectTimeout { .. }),
    ) = result
    {
        metrics.timeout(TimeoutKind::Connect);
    }
}

/// The error to answer with when an attempt failed because the client's body did: the
/// attempt then says nothing about the endpoint, and sending the body again cannot help.
fn clients_fault<T>(result: &Result<T, SendError>, body_fault: Option<&str>) -> Option<ProxyError> {
    match (result, body_fault) {
        (Err(_), Some(reason)) => Some(ProxyError::ClientBody(reason.to_owned())),
        _ => None,
    }
}

/// The response to return, counted outstanding on its endpoint until its body ends.
fn finish(
    result: Result<Response<Body>, ProxyError>,
    outstanding: crate::table::endpoint::Outstanding,
) -> Result<Response<Body>, ProxyError> {
    result.map(|response| response.map(|body| with_guard(body, outstanding)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_failure() -> Result<(), SendError> {
        Err(SendError::Failed(ProxyError::BackendRequestTimeout(
            Duration::from_secs(1),
        )))
    }

    #[test]
    fn a_failed_attempt_is_the_clients_fault_only_when_its_body_failed() {
        assert!(matches!(
            clients_fault(&upstream_failure(), Some("invalid chunk size line")),
            Some(ProxyError::ClientBody(reason)) if reason == "invalid chunk size line"
        ));
        assert!(clients_fault(&upstream_failure(), None).is_none());
    }

    #[test]
    fn an_answer_is_the_upstreams_even_when_the_body_failed_after_it() {
        assert!(clients_fault(&Ok::<(), SendError>(()), Some("reset")).is_none());
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod loop_tests;
