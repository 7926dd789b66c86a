//! Computes each distinct snapshot once per model, however many proxies watch it.
//!
//! A snapshot depends only on the model, the workload's namespace (its outbound services),
//! its owner (its metric labels) and the workload's own inbound ports (`snapshot::assemble`). Every replica of a Deployment,
//! and every client-only workload of a namespace, shares those, so thousands of proxies
//! usually fall into a handful of classes. [`SnapshotCache`] keeps, for the model in force
//! only, the outbound services per namespace, the class of each workload asked for, and each
//! class's snapshot encoded once (`bytes::Bytes`, shared by reference): a stream's work per
//! change is a map lookup and a write of bytes already encoded.
//!
//! Bounded by the model: at most one class and one workload entry per workload the model
//! holds and one outbound entry per namespace, all dropped when a newer model arrives. A
//! tenant who adds workloads grows the cache by what it already grew the model by.
//!
//! Correctness: a class is keyed by the namespace, the owner and the encoded inbound ports, exactly the
//! inputs `snapshot::assemble` reads besides the model, so two workloads share bytes only when
//! `snapshot_for` would give them equal snapshots; entries never outlive the model they were
//! computed from (the cache is keyed by that model's identity).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use prost::Message as _;
use strait_proto::discovery::v1 as pb;

use crate::config::model::{ObjectKey, Owner, Workload};
use crate::discovery::service::ModelState;
use crate::discovery::snapshot::{
    assemble, identity_workloads, inbound_ports, outbound_services, workload_ref,
};

/// One snapshot, encoded once and shared by every stream of its class.
#[derive(Debug, PartialEq, Eq)]
pub struct EncodedSnapshot {
    /// The snapshot's version.
    pub version: String,
    /// The snapshot as its protobuf encoding (`pb::Snapshot`).
    pub bytes: Bytes,
}

/// What a snapshot depends on besides the model: the namespace, the owner and the encoded
/// inbound ports.
type Class = (String, Option<Owner>, Vec<u8>);

/// The entries computed from one model.
#[derive(Default)]
struct Generation {
    /// The model they were computed from; `None` before the first use.
    state: Option<Arc<ModelState>>,
    /// Outbound services per namespace.
    outbound: HashMap<String, Arc<Vec<pb::OutboundService>>>,
    /// Each workload's snapshot (the class's), so its inbound ports are computed once too.
    workloads: HashMap<ObjectKey, Arc<EncodedSnapshot>>,
    /// Each class's snapshot.
    classes: HashMap<Class, Arc<EncodedSnapshot>>,
    /// The model's identity → workload list, computed once.
    identities: Option<Arc<Vec<pb::IdentityWorkload>>>,
}

/// Snapshots of the model in force, computed once per class; see the module comment.
#[derive(Default)]
pub struct SnapshotCache {
    generation: std::sync::Mutex<Generation>,
    computed: AtomicU64,
}

impl SnapshotCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many snapshots have been assembled and encoded so far (one per class and model).
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// `workload`'s snapshot in `state`'s model, encoded: `snapshot_for(&state.model,
    /// workload)`, computed only if no workload of its class asked since the model changed.
    pub fn snapshot(&self, state: &Arc<ModelState>, workload: &Workload) -> Arc<EncodedSnapshot> {
        let mut generation = self
            .generation
            .lock()
            .expect("snapshot cache lock poisoned");
        match generation_for(generation.state.as_ref(), state) {
            Use::Current => {}
            Use::Newer => {
                *generation = Generation {
                    state: Some(state.clone()),
                    ..Generation::default()
                };
            }
            // A stream still holding the previous model (a newer one arrived between its read
            // and this call): answer it without evicting the newer model's entries; it is woken
            // again for the newer model at once.
            Use::Older => {
                return Arc::new(self.encode(state, &mut Generation::default(), workload));
            }
        }
        if let Some(snapshot) = generation.workloads.get(&workload.key) {
            return snapshot.clone();
        }
        let inbound = inbound_ports(&state.model, workload);
        let class = (
            workload.key.namespace.clone(),
            workload.owner.clone(),
            encode_inbound(&inbound),
        );
        let snapshot = match generation.classes.get(&class) {
            Some(snapshot) => snapshot.clone(),
            None => {
                let outbound = outbound_for(&mut generation, state, &workload.key.namespace);
                let snapshot =
                    Arc::new(self.assembled(state, &mut generation, workload, &outbound, inbound));
                generation.classes.insert(class, snapshot.clone());
                snapshot
            }
        };
        generation
            .workloads
            .insert(workload.key.clone(), snapshot.clone());
        snapshot
    }

    /// The snapshot of `workload` computed without keeping it, from a `scratch` generation.
    fn encode(
        &self,
        state: &Arc<ModelState>,
        scratch: &mut Generation,
        workload: &Workload,
    ) -> EncodedSnapshot {
        let outbound = outbound_for(scratch, state, &workload.key.namespace);
        let inbound = inbound_ports(&state.model, workload);
        self.assembled(state, scratch, workload, &outbound, inbound)
    }

    fn assembled(
        &self,
        state: &ModelState,
        generation: &mut Generation,
        workload: &Workload,
        outbound: &[pb::OutboundService],
        inbound: Vec<pb::InboundPort>,
    ) -> EncodedSnapshot {
        self.computed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("strait_discovery_snapshots_computed_total").increment(1);
        let identities = generation
            .identities
            .get_or_insert_with(|| Arc::new(identity_workloads(&state.model)))
            .clone();
        let snapshot = assemble(
            &state.model,
            workload_ref(workload),
            identities.to_vec(),
            outbound.to_vec(),
            inbound,
        );
        EncodedSnapshot {
            bytes: snapshot.encode_to_vec().into(),
            version: snapshot.version,
        }
    }
}

/// How a cache holding entries of `cached` serves a caller holding `state`.
#[derive(Debug, PartialEq, Eq)]
enum Use {
    /// The entries are `state`'s.
    Current,
    /// `state` is newer (or the cache is empty): drop the entries and start over.
    Newer,
    /// `state` was replaced by the cached model already: compute without caching.
    Older,
}

fn generation_for(cached: Option<&Arc<ModelState>>, state: &Arc<ModelState>) -> Use {
    match cached {
        Some(cached) if Arc::ptr_eq(cached, state) => Use::Current,
        // Models are applied in order, each stamped when applied (reload, Kubernetes source).
        Some(cached) if state.applied_at < cached.applied_at => Use::Older,
        _ => Use::Newer,
    }
}

fn outbound_for(
    generation: &mut Generation,
    state: &ModelState,
    namespace: &str,
) -> Arc<Vec<pb::OutboundService>> {
    generation
        .outbound
        .entry(namespace.to_owned())
        .or_insert_with(|| Arc::new(outbound_services(&state.model, namespace)))
        .clone()
}

fn encode_inbound(inbound: &[pb::InboundPort]) -> Vec<u8> {
    // Length-delimited, so two lists never encode alike unless they are equal.
    inbound
        .iter()
        .flat_map(prost::Message::encode_length_delimited_to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::Model;
    use crate::config::model;
    use crate::discovery::snapshot::snapshot_for;

    fn workload(namespace: &str, name: &str, account: &str, address: &str) -> Workload {
        Workload {
            key: ObjectKey::new(namespace, name),
            identity: format!("spiffe://cluster.local/ns/{namespace}/sa/{account}")
                .parse()
                .unwrap(),
            address: address.parse().unwrap(),
            other_addresses: Vec::new(),
            labels: BTreeMap::new(),
            ports: BTreeMap::new(),
            proxy_inbound_port: 4143,
            proxy_admin_port: None,
            proxy_outbound_port: None,
            token_sha256: None,
            owner: None,
        }
    }

    /// `demo/web` served by `web-1` and `web-2`; clients `demo/client-1`, `demo/client-2` and
    /// `other/client-1` that serve nothing.
    fn model() -> Model {
        let mut model = Model::default();
        let web = [
            workload("demo", "web-1", "web", "10.0.0.5"),
            workload("demo", "web-2", "web", "10.0.0.6"),
        ];
        let service = model::Service {
            key: ObjectKey::new("demo", "web"),
            ports: vec![model::ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: model::Protocol::Detect,
                endpoints: web
                    .iter()
                    .map(|w| model::Endpoint {
                        addr: std::net::SocketAddr::new(w.address, 8080),
                        identity: Some(w.identity.clone()),
                        proxy_port: Some(4143),
                        workload: w.key.name.clone(),
                    })
                    .collect(),
            }],
            cluster_ip: Some("10.96.0.10".parse().unwrap()),
        };
        model.services.insert(service.key.clone(), service);
        for w in web.into_iter().chain([
            workload("demo", "client-1", "client", "10.0.1.1"),
            workload("demo", "client-2", "client", "10.0.1.2"),
            workload("other", "client-1", "client", "10.0.2.1"),
        ]) {
            model.workloads.insert(w.key.clone(), w);
        }
        model
    }

    fn state(model: Model, applied_at: Instant) -> Arc<ModelState> {
        Arc::new(ModelState {
            model: Arc::new(model),
            applied_at,
        })
    }

    fn get(
        cache: &SnapshotCache,
        state: &Arc<ModelState>,
        namespace: &str,
        name: &str,
    ) -> Arc<EncodedSnapshot> {
        cache.snapshot(
            state,
            &state.model.workloads[&ObjectKey::new(namespace, name)],
        )
    }

    /// What `snapshot_for` gives the workload, encoded as the wire carries it.
    fn expected(state: &ModelState, namespace: &str, name: &str) -> Vec<u8> {
        let workload = &state.model.workloads[&ObjectKey::new(namespace, name)];
        snapshot_for(&state.model, workload).encode_to_vec()
    }

    #[test]
    fn replicas_of_one_class_share_bytes_computed_once() {
        let cache = SnapshotCache::new();
        let state = state(model(), Instant::now());
        let first = get(&cache, &state, "demo", "web-1");
        let second = get(&cache, &state, "demo", "web-2");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(cache.computed(), 1);
        assert_eq!(first.bytes, expected(&state, "demo", "web-1"));
        assert_eq!(second.bytes, expected(&state, "demo", "web-2"));
        // Asking again computes nothing.
        let again = get(&cache, &state, "demo", "web-1");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(cache.computed(), 1);
    }

    #[test]
    fn every_workload_gets_exactly_what_snapshot_for_computes_for_it_and_classes_stay_apart() {
        let cache = SnapshotCache::new();
        let state = state(model(), Instant::now());
        let all = [
            ("demo", "web-1"),
            ("demo", "client-1"),
            ("other", "client-1"),
            ("demo", "web-2"),
            ("demo", "client-2"),
        ];
        let got: Vec<Arc<EncodedSnapshot>> = all
            .iter()
            .map(|(ns, name)| get(&cache, &state, ns, name))
            .collect();
        for ((ns, name), snapshot) in all.iter().zip(&got) {
            let want = expected(&state, ns, name);
            assert_eq!(snapshot.bytes, want, "{ns}/{name}");
            let decoded = pb::Snapshot::decode(snapshot.bytes.clone()).unwrap();
            assert_eq!(decoded.version, snapshot.version, "{ns}/{name}");
        }
        // Serving workload, client in its namespace, client in another namespace: three
        // classes with three different snapshots.
        assert_ne!(got[0].bytes, got[1].bytes);
        assert_ne!(got[1].bytes, got[2].bytes);
        assert_ne!(got[0].version, got[2].version);
        assert!(Arc::ptr_eq(&got[1], &got[4]));
        assert_eq!(cache.computed(), 3);
    }

    #[test]
    fn a_new_model_replaces_every_cached_snapshot() {
        let cache = SnapshotCache::new();
        let applied = Instant::now();
        let old = state(model(), applied);
        let before = get(&cache, &old, "demo", "client-1");
        let mut changed = model();
        changed
            .services
            .get_mut(&ObjectKey::new("demo", "web"))
            .unwrap()
            .ports[0]
            .endpoints
            .pop();
        let new = state(changed, applied + Duration::from_millis(1));
        let after = get(&cache, &new, "demo", "client-1");
        assert_ne!(before.version, after.version);
        assert_eq!(after.bytes, expected(&new, "demo", "client-1"));
        assert_eq!(cache.computed(), 2);
        // Only the new model's entries are kept.
        let generation = cache.generation.lock().unwrap();
        assert!(Arc::ptr_eq(generation.state.as_ref().unwrap(), &new));
        assert_eq!(generation.classes.len(), 1);
        assert_eq!(generation.workloads.len(), 1);
    }

    #[test]
    fn a_stream_late_with_the_previous_model_gets_its_snapshot_without_evicting_the_newer() {
        let cache = SnapshotCache::new();
        let applied = Instant::now();
        let old = state(model(), applied);
        let mut changed = model();
        changed
            .workloads
            .remove(&ObjectKey::new("demo", "client-2"));
        changed
            .services
            .get_mut(&ObjectKey::new("demo", "web"))
            .unwrap()
            .cluster_ip = None;
        let new = state(changed, applied + Duration::from_millis(1));
        let current = get(&cache, &new, "demo", "client-1");
        let late = get(&cache, &old, "demo", "client-1");
        assert_eq!(late.bytes, expected(&old, "demo", "client-1"));
        assert_ne!(late.version, current.version);
        let again = get(&cache, &new, "demo", "client-1");
        assert!(Arc::ptr_eq(&current, &again));
        assert_eq!(cache.computed(), 2);
    }

    #[test]
    fn the_cache_holds_at_most_one_entry_per_workload_of_the_model() {
        let cache = SnapshotCache::new();
        let mut many = model();
        for i in 0..200 {
            let w = workload("demo", &format!("client-x{i}"), "client", "10.0.3.1");
            many.workloads.insert(w.key.clone(), w);
        }
        let state = state(many, Instant::now());
        for _ in 0..3 {
            for workload in state.model.workloads.values() {
                cache.snapshot(&state, workload);
            }
        }
        let generation = cache.generation.lock().unwrap();
        assert_eq!(generation.workloads.len(), state.model.workloads.len());
        assert_eq!(generation.classes.len(), 3);
        assert_eq!(generation.outbound.len(), 2);
    }
}
