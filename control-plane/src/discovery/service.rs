//! `Discovery.Watch`: streams each proxy its snapshot, now and whenever its view changes.
//!
//! The caller must present a mesh client certificate; the identity it proves picks the
//! workload (which must carry that identity), so a proxy can never read another workload's
//! view. One task per stream recomputes the snapshot on each model change and sends it only
//! if its version differs from the last one sent.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::Stream;
use strait_proto::discovery::v1::discovery_server::Discovery;
use strait_proto::discovery::v1::{Snapshot, WatchRequest};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::config::Model;
use crate::config::model::ObjectKey;
use crate::discovery::snapshot::snapshot_for;
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

/// The discovery service.
pub struct DiscoveryService {
    models: watch::Receiver<Arc<ModelState>>,
    connections: Connections,
}

impl DiscoveryService {
    /// A service streaming snapshots of the models `models` carries, recording who watches in
    /// `connections`.
    pub fn new(models: watch::Receiver<Arc<ModelState>>, connections: Connections) -> Self {
        Self {
            models,
            connections,
        }
    }
}

/// Counts a connected proxy for as long as it lives.
struct Connected;

impl Connected {
    fn new() -> Self {
        metrics::gauge!("strait_discovery_connected_proxies").increment(1.0);
        Connected
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!("strait_discovery_connected_proxies").decrement(1.0);
    }
}

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<Snapshot, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
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
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let mut models = self.models.clone();
        let addr = peer.map(|p| p.addr.to_string()).unwrap_or_default();
        tracing::info!(workload = %key, %identity, peer = %addr, "proxy connected to discovery");
        let connections = self.connections.clone();
        let id = connections.add(ConnectedProxy {
            workload: key.to_string(),
            identity: identity.to_string(),
            peer: addr.clone(),
            version: String::new(),
            connected_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
        tokio::spawn(async move {
            let _connected = Connected::new();
            let mut last_version = request.version;
            loop {
                let (snapshot, applied_at) = {
                    let state = models.borrow_and_update();
                    let snapshot = state
                        .model
                        .workloads
                        .get(&key)
                        .map(|w| snapshot_for(&state.model, w));
                    (snapshot, state.applied_at)
                };
                match snapshot {
                    Some(snapshot) if snapshot.version != last_version => {
                        last_version = snapshot.version.clone();
                        if tx.send(Ok(snapshot)).await.is_err() {
                            break;
                        }
                        connections.sent(id, &last_version);
                        metrics::histogram!("strait_discovery_push_seconds")
                            .record(applied_at.elapsed().as_secs_f64());
                        metrics::counter!("strait_discovery_snapshots_sent_total").increment(1);
                    }
                    // The proxy already holds this version (it said so when it connected).
                    Some(_) => connections.sent(id, &last_version),
                    None => {
                        tracing::warn!(workload = %key, "workload left the configuration; the proxy keeps its last snapshot")
                    }
                }
                tokio::select! {
                    changed = models.changed() => if changed.is_err() { break },
                    () = tx.closed() => break,
                }
            }
            connections.remove(id);
            tracing::info!(workload = %key, "proxy disconnected from discovery");
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
