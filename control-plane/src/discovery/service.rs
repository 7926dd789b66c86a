//! `Discovery.Watch`: streams each proxy its snapshot, now and whenever its view changes.
//!
//! The caller must present a mesh client certificate; the identity it proves picks the
//! workload (which must carry that identity), so a proxy can never read another workload's
//! view. Each stream, when the model changes, takes its workload's snapshot from the shared
//! [`SnapshotCache`] (computed and encoded once per class of workloads, `discovery::shared`)
//! and sends it only if its version differs from the last one sent. The stream is polled by
//! the HTTP/2 connection itself: no task or channel per proxy.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::Stream;
use strait_proto::discovery::v1::WatchRequest;
use tokio::sync::watch;
use tonic::{Request, Status};

use crate::config::Model;
use crate::config::model::ObjectKey;
use crate::discovery::shared::{EncodedSnapshot, SnapshotCache};
use crate::tls_incoming::PeerInfo;

/// A model and when it took effect, broadcast to every stream.
#[derive(Debug)]
pub struct ModelState {
    /// The model in force.
    pub model: Arc<Model>,
    /// When it was applied, for push-latency metrics.
    pub applied_at: Instant,
}

/// A proxy watching discovery, as the control plane's admin `/proxies` reports it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConnectedProxy {
    /// `namespace/workload`.
    pub workload: String,
    /// The identity its certificate proved.
    pub identity: String,
    /// Its address.
    pub peer: String,
    /// The last snapshot version sent to it.
    pub version: String,
    /// When it connected (Unix seconds).
    pub connected_at: u64,
}

/// The proxies watching now, by stream.
#[derive(Clone, Default)]
pub struct Connections {
    inner: Arc<std::sync::Mutex<std::collections::BTreeMap<u64, ConnectedProxy>>>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl Connections {
    /// Every connected proxy.
    pub fn list(&self) -> Vec<ConnectedProxy> {
        self.inner
            .lock()
            .expect("connections lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    fn add(&self, proxy: ConnectedProxy) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner
            .lock()
            .expect("connections lock poisoned")
            .insert(id, proxy);
        id
    }

    fn sent(&self, id: u64, version: &str) {
        if let Some(proxy) = self
            .inner
            .lock()
            .expect("connections lock poisoned")
            .get_mut(&id)
        {
            proxy.version = version.to_owned();
        }
    }

    fn remove(&self, id: u64) {
        self.inner
            .lock()
            .expect("connections lock poisoned")
            .remove(&id);
    }
}

/// The stream of one `Watch` call: each new snapshot of the caller's workload, encoded.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Arc<EncodedSnapshot>, Status>> + Send>>;

/// The discovery service.
pub struct DiscoveryService {
    models: watch::Receiver<Arc<ModelState>>,
    connections: Connections,
    snapshots: Arc<SnapshotCache>,
}

impl DiscoveryService {
    /// A service streaming snapshots of the models `models` carries, recording who watches in
    /// `connections`.
    pub fn new(models: watch::Receiver<Arc<ModelState>>, connections: Connections) -> Self {
        Self {
            models,
            connections,
            snapshots: Arc::new(SnapshotCache::new()),
        }
    }

    /// The cache every stream takes its snapshots from.
    pub fn snapshots(&self) -> &Arc<SnapshotCache> {
        &self.snapshots
    }

    /// Opens a `Watch`: checks the caller may watch the workload it names, then streams it.
    ///
    /// # Errors
    ///
    /// `unauthenticated` without a mesh certificate, `permission_denied` for another
    /// namespace or a workload running as another identity, `not_found` for an unknown
    /// workload.
    pub fn watch(&self, request: Request<WatchRequest>) -> Result<WatchStream, Status> {
        let peer = request.extensions().get::<PeerInfo>().cloned();
        let Some(identity) = peer.as_ref().and_then(|p| p.identity.clone()) else {
            return Err(Status::unauthenticated(
                "discovery requires a mesh client certificate; obtain one with Identity.Certify first",
            ));
        };
        let request = request.into_inner();
        let namespace = if request.namespace.is_empty() {
            identity.namespace().to_owned()
        } else {
            request.namespace.clone()
        };
        if namespace != identity.namespace() {
            return Err(Status::permission_denied(format!(
                "identity {identity} may not watch namespace {namespace:?}"
            )));
        }
        let key = ObjectKey::new(&namespace, &request.workload);
        {
            let state = self.models.borrow();
            match state.model.workloads.get(&key) {
                None => {
                    return Err(Status::not_found(format!(
                        "workload {key} is not in the configuration"
                    )));
                }
                Some(workload) if workload.identity != identity => {
                    return Err(Status::permission_denied(format!(
                        "workload {key} runs as {}, not as the caller's identity {identity}",
                        workload.identity
                    )));
                }
                Some(_) => {}
            }
        }
        let addr = peer.map(|p| p.addr.to_string()).unwrap_or_default();
        tracing::info!(workload = %key, %identity, peer = %addr, "proxy connected to discovery");
        let id = self.connections.add(ConnectedProxy {
            workload: key.to_string(),
            identity: identity.to_string(),
            peer: addr,
            version: String::new(),
            connected_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
        let watcher = Watcher {
            models: self.models.clone(),
            snapshots: self.snapshots.clone(),
            last_version: request.version,
            first: true,
            connected: Connected::new(self.connections.clone(), id, key),
        };
        Ok(Box::pin(futures_util::stream::unfold(
            watcher,
            Watcher::next,
        )))
    }
}

/// One stream's state between snapshots.
struct Watcher {
    models: watch::Receiver<Arc<ModelState>>,
    snapshots: Arc<SnapshotCache>,
    /// The version the proxy holds.
    last_version: String,
    /// No snapshot was considered yet: the first does not wait for a change.
    first: bool,
    connected: Connected,
}

impl Watcher {
    /// The next snapshot with a version other than the proxy's, or `None` when the control
    /// plane stops.
    async fn next(mut self) -> Option<(Result<Arc<EncodedSnapshot>, Status>, Self)> {
        loop {
            if !std::mem::take(&mut self.first) && self.models.changed().await.is_err() {
                return None;
            }
            let state = self.models.borrow_and_update().clone();
            let key = &self.connected.workload;
            let Some(workload) = state.model.workloads.get(key) else {
                tracing::warn!(workload = %key, "workload left the configuration; the proxy keeps its last snapshot");
                continue;
            };
            let snapshot = self.snapshots.snapshot(&state, workload);
            if snapshot.version == self.last_version {
                // The proxy already holds this version (it said so when it connected).
                self.connected.sent(&self.last_version);
                continue;
            }
            self.last_version.clone_from(&snapshot.version);
            // Recorded when handed to the connection, which writes it next.
            self.connected.sent(&self.last_version);
            metrics::histogram!("strait_discovery_push_seconds")
                .record(state.applied_at.elapsed().as_secs_f64());
            metrics::counter!("strait_discovery_snapshots_sent_total").increment(1);
            return Some((Ok(snapshot), self));
        }
    }
}

/// A proxy in [`Connections`] and the connected-proxies gauge for as long as its stream lives.
struct Connected {
    connections: Connections,
    id: u64,
    workload: ObjectKey,
}

impl Connected {
    fn new(connections: Connections, id: u64, workload: ObjectKey) -> Self {
        metrics::gauge!("strait_discovery_connected_proxies").increment(1.0);
        Connected {
            connections,
            id,
            workload,
        }
    }

    fn sent(&self, version: &str) {
        self.connections.sent(self.id, version);
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!("strait_discovery_connected_proxies").decrement(1.0);
        self.connections.remove(self.id);
        tracing::info!(workload = %self.workload, "proxy disconnected from discovery");
    }
}
