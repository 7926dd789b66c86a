//! Discovery fan-out through the real control plane: many `Watch` streams, each on its own
//! mTLS connection, all receive a change, each receives exactly the snapshot `snapshot_for`
//! computes for its own workload, and the control plane computes each distinct snapshot once
//! per change rather than once per stream. The attack: two tenants' workloads that share a
//! name and a service account, watching at once, must never receive each other's snapshot.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use prost::Message as _;
use strait_control_plane::config::Model;
use strait_control_plane::config::model::ObjectKey;
use strait_control_plane::discovery::snapshot::snapshot_for;
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::store::CertStore;
use strait_proto::discovery::v1::discovery_client::DiscoveryClient;
use strait_proto::discovery::v1::{Snapshot, WatchRequest};
use strait_proxy::control_plane::ControlPlane as ControlPlaneAddr;
use strait_tests::certs::{Defects, TestCa};
use strait_tests::client;
use strait_tests::control_plane::ControlPlane;
use strait_tests::snapshot::TempDir;
use tokio::sync::mpsc;

/// How long every stream may take to get a snapshot, first or after a change.
const DELIVERY: Duration = Duration::from_secs(30);

/// `namespace/workload` of a stream and the snapshot it received.
type Delivery = (ObjectKey, Snapshot);

fn service(namespace: &str, name: &str, selector: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  selector: {{{selector}}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n"
    )
}

fn workload(namespace: &str, name: &str, account: &str, labels: &str, address: &str) -> String {
    format!(
        "---\napiVersion: strait.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{{labels}}}}}\nspec:\n  serviceAccount: {account}\n  address: {address}\n  ports: [{{name: http, port: 8080}}]\n"
    )
}

fn route(namespace: &str, canary: u32) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: canary, namespace: {namespace}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: web, port: 80}}]\n  rules:\n  - backendRefs:\n    - {{name: web-v1, port: 80, weight: {}}}\n    - {{name: web-v2, port: 80, weight: {canary}}}\n",
        100 - canary
    )
}

/// In each namespace of `namespaces`: Services `web`, `web-v1`, `web-v2` served by workloads
/// `web-v1-K`/`web-v2-K` (`replicas` each, account `web`) and `clients` workloads `client-K`
/// (account `client`) that serve nothing. Returns the workloads, as `(namespace, name,
/// account)`.
fn write_mesh(
    config: &Path,
    namespaces: &[&str],
    replicas: usize,
    clients: usize,
) -> Vec<(String, String, String)> {
    let mut workloads = Vec::new();
    for (n, namespace) in namespaces.iter().enumerate() {
        let mut yaml = String::new();
        yaml.push_str(&service(namespace, "web", "app: web"));
        yaml.push_str(&service(namespace, "web-v1", "app: web, version: v1"));
        yaml.push_str(&service(namespace, "web-v2", "app: web, version: v2"));
        for (v, version) in ["v1", "v2"].iter().enumerate() {
            for k in 0..replicas {
                let name = format!("web-{version}-{k}");
                yaml.push_str(&workload(
                    namespace,
                    &name,
                    "web",
                    &format!("app: web, version: {version}"),
                    &format!("127.3.{}.{}", n * 2 + v, k + 1),
                ));
                workloads.push(((*namespace).to_owned(), name, "web".to_owned()));
            }
        }
        for k in 0..clients {
            let name = format!("client-{k}");
            yaml.push_str(&workload(
                namespace,
                &name,
                "client",
                "app: client",
                &format!("127.4.{n}.{}", k + 1),
            ));
            workloads.push(((*namespace).to_owned(), name, "client".to_owned()));
        }
        std::fs::write(config.join(format!("{namespace}.yaml")), yaml).unwrap();
        write_route(config, namespace, 10);
    }
    workloads
}

fn write_route(config: &Path, namespace: &str, canary: u32) {
    let tmp = config.join(format!(".route-{namespace}.tmp"));
    std::fs::write(&tmp, route(namespace, canary)).unwrap();
    std::fs::rename(&tmp, config.join(format!("route-{namespace}.yaml"))).unwrap();
}

fn start(config: &Path, ca_dir: &Path, streams: usize) -> ControlPlane {
    ControlPlane::start(
        config,
        &[
            ("--dev-ca", ca_dir.display().to_string()),
            ("--max-grpc-connections", (streams + 64).to_string()),
            ("--max-connections-per-identity", streams.to_string()),
            ("--max-unproven-connections-per-source", "64".to_owned()),
        ],
    )
}

/// One certificate store per identity, shared by that identity's streams.
fn stores(ca_dir: &Path, identities: &[String]) -> BTreeMap<String, Arc<CertStore>> {
    let ca = TestCa::from_dir(ca_dir);
    identities
        .iter()
        .map(|identity| {
            let leaf = ca.leaf(identity, &Defects::default());
            let store = CertStore::new(identity.parse().unwrap());
            store.install(leaf.chain, leaf.key).unwrap();
            (identity.clone(), store)
        })
        .collect()
}

fn trust_bundle(ca_dir: &Path) -> Arc<TrustBundle> {
    let path = ca_dir.join("trust-anchors.pem");
    let pem = std::fs::read_to_string(&path).unwrap();
    let anchors = strait_identity::pem::certificates(&pem, "trust anchors").unwrap();
    TrustBundle::new("cluster.local", anchors).unwrap()
}

/// Opens one `Watch` per workload, each on its own connection, and forwards every snapshot
/// each receives to the returned channel, for as long as the streams live.
async fn watch_all(
    control_plane: &ControlPlane,
    ca_dir: &Path,
    workloads: &[(String, String, String)],
) -> mpsc::UnboundedReceiver<Delivery> {
    let identity = |namespace: &str, account: &str| {
        format!("spiffe://cluster.local/ns/{namespace}/sa/{account}")
    };
    let identities: Vec<String> = workloads
        .iter()
        .map(|(namespace, _, account)| identity(namespace, account))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let stores = stores(ca_dir, &identities);
    let bundle = trust_bundle(ca_dir);
    let server = SpiffeId::new("cluster.local", "strait-system", "strait-control-plane").unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let opened: Vec<()> = futures_util::stream::iter(workloads)
        .map(|(namespace, name, account)| {
            let connect = ControlPlaneAddr::new(
                control_plane.grpc.to_string(),
                server.clone(),
                bundle.clone(),
                stores[&identity(namespace, account)].clone(),
            );
            let tx = tx.clone();
            async move {
                let mut client = DiscoveryClient::new(connect.channel(true));
                let mut stream = client
                    .watch(WatchRequest {
                        workload: name.clone(),
                        namespace: namespace.clone(),
                        version: String::new(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("watching {namespace}/{name}: {e}"))
                    .into_inner();
                let key = ObjectKey::new(namespace, name);
                tokio::spawn(async move {
                    let _client = client;
                    while let Ok(Some(snapshot)) = stream.message().await {
                        if tx.send((key.clone(), snapshot)).is_err() {
                            break;
                        }
                    }
                });
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(opened.len(), workloads.len());
    rx
}

/// Reads deliveries until `streams` workloads received a snapshot of the model in `config`
/// now, checking every snapshot byte for byte against what `snapshot_for` computes for its
/// own workload, in that model or (one still on its way) in `previous`. Returns the model and
/// each stream's new version.
async fn expect_current(
    deliveries: &mut mpsc::UnboundedReceiver<Delivery>,
    previous: Option<&Model>,
    config: &Path,
    streams: usize,
) -> (Model, BTreeMap<ObjectKey, String>) {
    let model = strait_control_plane::config::load(config).unwrap();
    let mut current = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + DELIVERY;
    while current.len() < streams {
        let Ok(Some((key, snapshot))) = tokio::time::timeout_at(deadline, deliveries.recv()).await
        else {
            panic!(
                "only {} of {streams} streams got the current snapshot within {DELIVERY:?}",
                current.len()
            );
        };
        let own = |model: &Model| snapshot_for(model, &model.workloads[&key]).encode_to_vec();
        let received = snapshot.encode_to_vec();
        if received == own(&model) {
            current.insert(key, snapshot.version);
        } else {
            // Never another workload's snapshot: only its own, of the model before.
            assert_eq!(
                Some(received),
                previous.map(own),
                "{key} received a snapshot that is not its own"
            );
        }
    }
    (model, current)
}

/// `strait_discovery_snapshots_computed_total` from the control plane's metrics.
async fn computed(control_plane: &ControlPlane) -> u64 {
    let metrics = client::get(control_plane.admin, "admin", "/metrics")
        .await
        .text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("strait_discovery_snapshots_computed_total "))
        .unwrap_or_else(|| panic!("no strait_discovery_snapshots_computed_total in\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_watchers_all_get_a_change_each_its_own_snapshot_computed_once_per_class() {
    let dir = TempDir::new("discovery-fanout");
    let config = dir.path().join("config");
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir_all(&config).unwrap();
    // Two namespaces, each: 2 × 10 web replicas (one class per version: their inbound ports
    // name different services) and 80 clients (one class).
    let workloads = write_mesh(&config, &["shop", "media"], 10, 80);
    assert_eq!(workloads.len(), 200);
    let control_plane = start(&config, &ca_dir, workloads.len());
    let mut deliveries = watch_all(&control_plane, &ca_dir, &workloads).await;

    let (model, first) = expect_current(&mut deliveries, None, &config, workloads.len()).await;
    let classes = first
        .values()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert_eq!(classes, 6, "{first:?}");
    let after_connect = computed(&control_plane).await;
    assert!(
        (6..=12).contains(&after_connect),
        "200 streams of 6 classes took {after_connect} snapshot computations"
    );

    // One change in `shop` reaches every stream of both namespaces: every proxy may call
    // shop's `web`, so every snapshot carries its routes.
    write_route(&config, "shop", 60);
    let (_, second) = expect_current(&mut deliveries, Some(&model), &config, workloads.len()).await;
    for (key, version) in &second {
        assert_ne!(&first[key], version, "{key} kept its old version");
    }
    let after_change = computed(&control_plane).await;
    assert!(
        after_change - after_connect <= 12,
        "one change to 200 streams of 6 classes took {} computations",
        after_change - after_connect
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_watching_at_once_never_receive_each_others_snapshot() {
    let dir = TempDir::new("discovery-tenants");
    let config = dir.path().join("config");
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir_all(&config).unwrap();
    // The same workload names and service accounts in both namespaces: only the namespace
    // tells their snapshots apart (`web:80` is each tenant's own `web`).
    let workloads = write_mesh(&config, &["tenant-a", "tenant-b"], 1, 20);
    let control_plane = start(&config, &ca_dir, workloads.len());
    let mut deliveries = watch_all(&control_plane, &ca_dir, &workloads).await;
    let (mut model, _) = expect_current(&mut deliveries, None, &config, workloads.len()).await;
    // Changes in both tenants, alternately, while every stream watches: after each, every
    // stream gets exactly its own snapshot.
    for (round, tenant) in ["tenant-a", "tenant-b", "tenant-a", "tenant-b"]
        .iter()
        .enumerate()
    {
        write_route(&config, tenant, 20 + 10 * u32::try_from(round).unwrap());
        let (now, _) =
            expect_current(&mut deliveries, Some(&model), &config, workloads.len()).await;
        model = now;
    }
    // And what each received names its own tenant's services on the short name.
    for tenant in ["tenant-a", "tenant-b"] {
        let client = snapshot_for(
            &model,
            &model.workloads[&ObjectKey::new(tenant, "client-0")],
        );
        let web = client
            .services
            .iter()
            .find(|s| s.authorities.iter().any(|a| a == "web:80"))
            .unwrap();
        assert_eq!(web.namespace, tenant);
    }
}
