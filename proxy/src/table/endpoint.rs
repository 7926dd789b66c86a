//! One endpoint of a backend: where it is, its connection pools, and its health (outstanding
//! requests, latency estimate, consecutive failures, ejection), all kept across snapshots.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::connect::{Connector, Dest};
use crate::head_limits::HeadLimits;
use crate::http::HttpVersion;
use crate::http::upstream::Upstream;
use crate::resilience::balance::{self, DEFAULT_RTT};
use crate::resilience::breaker::EndpointBreaker;

/// An endpoint and its state.
pub struct Endpoint {
    /// Where connections go.
    pub dest: Dest,
    /// The application address.
    pub addr: SocketAddr,
    /// Workload or pod name, for diagnostics.
    pub workload: String,
    http1: Arc<Upstream>,
    http2: Arc<Upstream>,
    /// Load and health.
    pub health: EndpointHealth,
}

impl Endpoint {
    /// The endpoint `workload` at `addr`, reached at `dest` through `connector`, with empty
    /// connection pools (idle connections closed after `idle_timeout`, response heads held
    /// to `heads`) and fresh health.
    pub fn new(
        dest: Dest,
        addr: SocketAddr,
        workload: String,
        connector: Connector,
        idle_timeout: Duration,
        heads: HeadLimits,
    ) -> Arc<Self> {
        let pool = |version| {
            Upstream::new(
                dest.clone(),
                version,
                connector.clone(),
                idle_timeout,
                heads,
            )
        };
        Arc::new(Self {
            http1: pool(HttpVersion::Http1),
            http2: pool(HttpVersion::Http2),
            dest,
            addr,
            workload,
            health: EndpointHealth::default(),
        })
    }

    /// Counts a request as outstanding until the guard drops.
    pub fn start(self: &Arc<Self>) -> Outstanding {
        self.health.pending.fetch_add(1, Ordering::Relaxed);
        Outstanding {
            endpoint: self.clone(),
        }
    }

    /// The connection pool for requests of `version`.
    pub fn upstream(&self, version: HttpVersion) -> &Arc<Upstream> {
        match version {
            HttpVersion::Http1 => &self.http1,
            HttpVersion::Http2 => &self.http2,
        }
    }
}

/// An endpoint's load and health, in atomics: read on every pick, written on every response.
pub struct EndpointHealth {
    pending: AtomicU32,
    estimate_bits: AtomicU64,
    updated_ms: AtomicU64,
    /// The circuit breaker's state for this endpoint.
    pub breaker: EndpointBreaker,
}

impl Default for EndpointHealth {
    fn default() -> Self {
        Self {
            pending: AtomicU32::new(0),
            estimate_bits: AtomicU64::new(DEFAULT_RTT.as_secs_f64().to_bits()),
            updated_ms: AtomicU64::new(0),
            breaker: EndpointBreaker::default(),
        }
    }
}

impl EndpointHealth {
    /// The balancer's cost for this endpoint at `now_ms`.
    pub fn cost(&self, now_ms: u64) -> f64 {
        let estimate = f64::from_bits(self.estimate_bits.load(Ordering::Relaxed));
        let since =
            Duration::from_millis(now_ms.saturating_sub(self.updated_ms.load(Ordering::Relaxed)));
        balance::cost(
            balance::decayed(estimate, since),
            self.pending.load(Ordering::Relaxed),
        )
    }

    /// Whether the breaker has the endpoint out of rotation at `now_ms`.
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.breaker.is_ejected(now_ms)
    }

    /// Folds a latency sample into the estimate.
    pub fn observe(&self, rtt: Duration, now_ms: u64) {
        let previous = self.updated_ms.swap(now_ms, Ordering::Relaxed);
        let estimate = f64::from_bits(self.estimate_bits.load(Ordering::Relaxed));
        let next = balance::peak_ewma(
            estimate,
            rtt.as_secs_f64(),
            Duration::from_millis(now_ms.saturating_sub(previous)),
        );
        self.estimate_bits.store(next.to_bits(), Ordering::Relaxed);
    }

    /// Requests outstanding.
    pub fn pending(&self) -> u32 {
        self.pending.load(Ordering::Relaxed)
    }
}

/// An outstanding request on an endpoint; dropping it (when the response ends) settles it.
pub struct Outstanding {
    endpoint: Arc<Endpoint>,
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.endpoint.health.pending.fetch_sub(1, Ordering::Relaxed);
    }
}
