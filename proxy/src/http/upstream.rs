//! Pooled HTTP connections to one upstream destination.
//!
//! HTTP/1 keeps a set of keep-alive connections, one request at a time each; HTTP/2 keeps one
//! multiplexed connection. hyper's client connections do the protocol work; this module owns
//! only reuse, idle expiry and the answer to "was the request sent?", which decides whether a
//! failure may be retried. The one re-send made here is the keep-alive race's
//! ([`keepalive_race`](crate::http::keepalive_race), which documents when it applies): a
//! pooled connection the upstream closed as idle as the request arrived never surfaces as an
//! error, and each such re-send counts in `strait_upstream_keepalive_race_resends_total`.
//! Every other retry is the request loop's ([`crate::resilience::attempts`]).
//!
//! Every response head is held to the proxy's head limits ([`HeadLimits`]), as request heads
//! are: hyper and h2 are configured with them, and a head they let through is measured again.
//! A head over the limits fails the request with `response-head-too-large` and the connection
//! it came on leaves the pool.
//!
//! hyper-util's pooled `Client` is not used because it keys connections by the request URI and
//! derives `:authority` from it; the proxy must pick the endpoint itself and keep the client's
//! authority intact.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use metrics::{Counter, counter};
use tokio::time::Instant;

use crate::body::Body;
use crate::connect::{Connector, Dest};
use crate::detect::Protocol;
use crate::errors::{ProxyError, SendError};
use crate::head_limits::HeadLimits;
use crate::http::HttpVersion;
use crate::http::keepalive_race::{
    AfterFailure, MAY_HAVE_BEEN_CLOSED_AFTER, closed_without_answer, resend_after_keepalive_race,
    resendable_copy,
};

/// Whether hyper or h2 refused a response head while parsing it: hyper's HTTP/1 parser
/// reports a head over `max_header_size` or `max_headers` as "too large"; h2 refuses a header
/// list over its size setting by resetting the stream itself with PROTOCOL_ERROR, the reset it
/// also uses for a malformed response head (both are heads the proxy refuses).
fn head_refused_by_parser(error: &hyper::Error) -> bool {
    if error.is_parse_too_large() {
        return true;
    }
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.is_library()
                && h2.is_reset()
                && h2.reason() == Some(h2::Reason::PROTOCOL_ERROR);
        }
        cause = error.source();
    }
    false
}

/// Connections to one destination for one HTTP version.
pub struct Upstream {
    dest: Dest,
    version: HttpVersion,
    connector: Connector,
    idle_timeout: Duration,
    heads: HeadLimits,
    keepalive_race_resends: Counter,
    // A plain mutex: held for a push or a short scan, never across an await, and far cheaper
    // uncontended than the connect it saves.
    state: Mutex<PoolState>,
    // Serialises HTTP/2 connection setup so concurrent first requests share one connection.
    h2_connecting: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct PoolState {
    h1: Vec<Pooled<http1::SendRequest<Body>>>,
    h2: Option<Pooled<http2::SendRequest<Body>>>,
    sweeping: bool,
}

struct Pooled<S> {
    sender: S,
    last_used: Instant,
}

impl Upstream {
    /// A pool for `dest` whose responses are held to `heads`; nothing is connected until the
    /// first request.
    pub fn new(
        dest: Dest,
        version: HttpVersion,
        connector: Connector,
        idle_timeout: Duration,
        heads: HeadLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            dest,
            version,
            connector,
            idle_timeout,
            heads,
            keepalive_race_resends: counter!("strait_upstream_keepalive_race_resends_total"),
            state: Mutex::new(PoolState::default()),
            h2_connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// The destination this pool connects to.
    pub fn dest(&self) -> &Dest {
        &self.dest
    }

    /// Sends `request` on a pooled connection, opening one when none is free.
    pub async fn send(
        self: &Arc<Self>,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        match self.version {
            HttpVersion::Http1 => self.send_h1(request).await,
            HttpVersion::Http2 => self.send_h2(request).await,
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        loop {
            let (mut sender, idle_for) = match self.take_h1() {
                Some((sender, idle_for)) => (sender, Some(idle_for)),
                None => match self.connect_h1().await {
                    Ok(sender) => (sender, None),
                    Err(error) => return Err(SendError::NotSent(Box::new(request), error)),
                },
            };
            let reused = idle_for.is_some();
            let resend = match idle_for {
                Some(idle) if idle >= MAY_HAVE_BEEN_CLOSED_AFTER => resendable_copy(&request),
                _ => None,
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    // A refused head leaves its connection out of the pool: dropped here, it
                    // closes once the response is dropped.
                    let response = self.within_limits(response)?;
                    self.put_h1(sender);
                    return Ok(response);
                }
                Err(mut error) => {
                    let unsent = error.take_message();
                    let closed = closed_without_answer(error.error());
                    match resend_after_keepalive_race(unsent, reused, resend, closed) {
                        AfterFailure::Resend(again) => request = self.keepalive_race_lost(again),
                        AfterFailure::NotSent(unsent) => {
                            return Err(SendError::NotSent(
                                Box::new(unsent),
                                self.upstream_error(error.into_error()),
                            ));
                        }
                        AfterFailure::Failed => {
                            return Err(SendError::Failed(self.upstream_error(error.into_error())));
                        }
                    }
                }
            }
        }
    }

    /// Counts and logs a re-send after the keep-alive race, returning the request to send
    /// again on another connection.
    fn keepalive_race_lost(&self, request: Request<Body>) -> Request<Body> {
        self.keepalive_race_resends.increment(1);
        tracing::debug!(addr = %self.dest.addr(), method = %request.method(), "pooled upstream connection closed under a request (keep-alive race); resending it on another connection");
        request
    }

    async fn send_h2(
        self: &Arc<Self>,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        // One re-send covers a connection that closed (GOAWAY, idle close) between being
        // pooled and being used: the keep-alive race on HTTP/2.
        for attempt in 0..2 {
            let mut sender = match self.h2_sender().await {
                Ok(sender) => sender,
                Err(error) => return Err(SendError::NotSent(Box::new(request), error)),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    return self
                        .within_limits(response)
                        .inspect_err(|_| self.forget_h2());
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) if attempt == 0 => {
                        self.drop_h2(&sender);
                        request = self.keepalive_race_lost(unsent);
                    }
                    Some(unsent) => {
                        return Err(SendError::NotSent(
                            Box::new(unsent),
                            self.upstream_error(error.into_error()),
                        ));
                    }
                    None => {
                        let error = self.upstream_error(error.into_error());
                        if let ProxyError::ResponseHeadTooLarge { .. } = error {
                            self.forget_h2();
                        }
                        return Err(SendError::Failed(error));
                    }
                },
            }
        }
        unreachable!("the second attempt always returns")
    }

    /// Sends an HTTP/1 upgrade or CONNECT request on a connection of its own, which the
    /// upgrade then takes over; such connections never return to the pool.
    pub async fn send_upgrade(
        &self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let io = self.connector.connect(&self.dest, Protocol::Http1).await?;
        let (mut sender, connection) = self
            .http1()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.upstream_error(e))?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upgraded upstream connection ended with an error");
            }
        });
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.upstream_error(e))?;
        self.within_limits(response).map_err(SendError::into_error)
    }

    /// The HTTP/1 client settings: response heads (and chunked trailers) bounded exactly as
    /// request heads are.
    fn http1(&self) -> http1::Builder {
        let mut builder = http1::Builder::new();
        builder
            .max_header_size(self.heads.max_bytes)
            .max_headers(self.heads.max_fields);
        builder
    }

    /// `response`, or the error that refuses it when its head exceeds the limits.
    fn within_limits(&self, response: Response<Incoming>) -> Result<Response<Incoming>, SendError> {
        match self.heads.response_excess(response.headers()) {
            None => Ok(response),
            Some(excess) => Err(SendError::Failed(ProxyError::ResponseHeadTooLarge {
                addr: self.dest.addr(),
                detail: excess.to_string(),
            })),
        }
    }

    fn upstream_error(&self, source: hyper::Error) -> ProxyError {
        if head_refused_by_parser(&source) {
            return ProxyError::ResponseHeadTooLarge {
                addr: self.dest.addr(),
                detail: source.to_string(),
            };
        }
        ProxyError::Upstream {
            addr: self.dest.addr(),
            source,
        }
    }

    /// A ready pooled connection and how long it has been idle.
    fn take_h1(&self) -> Option<(http1::SendRequest<Body>, Duration)> {
        let mut state = self.state.lock().expect("pool lock poisoned");
        state.h1.retain(|pooled| !pooled.sender.is_closed());
        // Connections still streaming a response body are not ready; leave them pooled.
        let ready = state
            .h1
            .iter()
            .rposition(|pooled| pooled.sender.is_ready())?;
        let pooled = state.h1.swap_remove(ready);
        Some((pooled.sender, pooled.last_used.elapsed()))
    }

    fn put_h1(self: &Arc<Self>, sender: http1::SendRequest<Body>) {
        let mut state = self.state.lock().expect("pool lock poisoned");
        state.h1.push(Pooled {
            sender,
            last_used: Instant::now(),
        });
        self.ensure_sweeper(&mut state);
    }

    async fn connect_h1(&self) -> Result<http1::SendRequest<Body>, ProxyError> {
        let io = self.connector.connect(&self.dest, Protocol::Http1).await?;
        let (sender, connection) = self
            .http1()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.upstream_error(e))?;
        let addr = self.dest.addr();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%addr, %error, "upstream HTTP/1 connection ended with an error");
            }
        });
        Ok(sender)
    }

    async fn h2_sender(self: &Arc<Self>) -> Result<http2::SendRequest<Body>, ProxyError> {
        if let Some(sender) = self.pooled_h2() {
            return Ok(sender);
        }
        let _connecting = self.h2_connecting.lock().await;
        if let Some(sender) = self.pooled_h2() {
            return Ok(sender);
        }
        let io = self.connector.connect(&self.dest, Protocol::Http2).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_header_list_size(self.heads.h2_list_size())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.upstream_error(e))?;
        let addr = self.dest.addr();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%addr, %error, "upstream HTTP/2 connection ended with an error");
            }
        });
        let mut state = self.state.lock().expect("pool lock poisoned");
        state.h2 = Some(Pooled {
            sender: sender.clone(),
            last_used: Instant::now(),
        });
        self.ensure_sweeper(&mut state);
        Ok(sender)
    }

    fn pooled_h2(&self) -> Option<http2::SendRequest<Body>> {
        let mut state = self.state.lock().expect("pool lock poisoned");
        match &mut state.h2 {
            Some(pooled) if !pooled.sender.is_closed() => {
                pooled.last_used = Instant::now();
                Some(pooled.sender.clone())
            }
            _ => {
                state.h2 = None;
                None
            }
        }
    }

    fn drop_h2(&self, broken: &http2::SendRequest<Body>) {
        let mut state = self.state.lock().expect("pool lock poisoned");
        if state
            .h2
            .as_ref()
            .is_some_and(|p| p.sender.is_closed() || broken.is_closed())
        {
            state.h2 = None;
        }
    }

    /// Takes the pooled HTTP/2 connection out of the pool after one of its responses was
    /// refused: the next request connects again, and this connection closes once the streams
    /// still open on it end.
    fn forget_h2(&self) {
        self.state.lock().expect("pool lock poisoned").h2 = None;
    }

    /// Starts the task that closes idle connections, unless one runs already. The task holds
    /// the pool weakly and ends when the pool is empty or gone.
    fn ensure_sweeper(self: &Arc<Self>, state: &mut PoolState) {
        if state.sweeping {
            return;
        }
        state.sweeping = true;
        let pool = Arc::downgrade(self);
        let period = (self.idle_timeout / 4).max(Duration::from_millis(50));
        tokio::spawn(sweep(pool, period));
    }

    /// Closes connections idle past the timeout; returns whether any connection remains.
    fn evict_idle(&self, now: Instant) -> bool {
        let mut state = self.state.lock().expect("pool lock poisoned");
        let timeout = self.idle_timeout;
        state.h1.retain(|pooled| {
            let expired =
                pooled.sender.is_ready() && now.duration_since(pooled.last_used) >= timeout;
            !pooled.sender.is_closed() && !expired
        });
        if state.h2.as_ref().is_some_and(|pooled| {
            pooled.sender.is_closed() || now.duration_since(pooled.last_used) >= timeout
        }) {
            // Dropping the last sender lets hyper close the connection once its streams end.
            state.h2 = None;
        }
        let remaining = !state.h1.is_empty() || state.h2.is_some();
        if !remaining {
            state.sweeping = false;
        }
        remaining
    }

    /// Connections currently pooled (busy or idle), for tests and diagnostics.
    pub fn pooled_connections(&self) -> usize {
        let state = self.state.lock().expect("pool lock poisoned");
        state.h1.len() + usize::from(state.h2.is_some())
    }
}

async fn sweep(pool: Weak<Upstream>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        if !pool.evict_idle(Instant::now()) {
            return;
        }
    }
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
