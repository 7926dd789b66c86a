//! `strait-bench discovery`: how fast one change reaches every proxy, and what the control
//! plane costs in memory while thousands watch.
//!
//! For each stream count N it writes a configuration with N client workloads (one service
//! account, distinct addresses) and one shared `backend` Service split by an HTTPRoute,
//! starts the real release control plane with its default reload interval, and opens N
//! `Discovery.Watch` streams from this process, each on its own mTLS connection with a
//! certificate from the control plane's CA, as N proxies would. Then it rewrites the route's
//! weights several times (write and rename, as an editor or a ConfigMap update does) and
//! times, from the rename, until every stream has received a snapshot with a new version.
//! The control plane's RSS is read idle and sampled during the pushes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use serde::Serialize;
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::store::CertStore;
use strait_proto::discovery::v1::WatchRequest;
use strait_proto::discovery::v1::discovery_client::DiscoveryClient;
use strait_proxy::control_plane::ControlPlane as ControlPlaneAddr;
use strait_tests::certs::{Defects, TestCa};
use strait_tests::control_plane::ControlPlane;
use strait_tests::procstat;
use strait_tests::snapshot::TempDir;
use tokio::sync::mpsc;

use crate::settings::DiscoveryArgs;

const NAMESPACE: &str = "bench";
const CLIENT_IDENTITY: &str = "spiffe://cluster.local/ns/bench/sa/client";

/// One stream count's measurements.
#[derive(Debug, Serialize)]
pub struct FanOut {
    /// Watch streams open.
    pub streams: usize,
    /// From the first connection attempt until every stream held its first snapshot.
    pub connect_all_seconds: f64,
    /// Control-plane RSS with every stream connected and nothing changing.
    pub rss_idle_bytes: u64,
    /// Highest control-plane RSS sampled while the changes were pushed.
    pub rss_peak_bytes: u64,
    /// One entry per change.
    pub changes: Vec<Change>,
}

/// One configuration change and its delivery.
#[derive(Debug, Serialize)]
pub struct Change {
    /// Rename → the first stream's new snapshot (file watch, reload, first push).
    pub first_seconds: f64,
    /// Rename → half the streams had it.
    pub p50_seconds: f64,
    /// Rename → 99 % had it.
    pub p99_seconds: f64,
    /// Rename → every stream had it.
    pub all_seconds: f64,
    /// Control-plane CPU time spent between the rename and the last delivery.
    pub control_plane_cpu_seconds: f64,
}

/// Runs every stream count in `args` and returns their measurements.
pub async fn run(args: &DiscoveryArgs) -> anyhow::Result<Vec<FanOut>> {
    let mut results = Vec::new();
    for &streams in &args.streams {
        eprintln!("discovery fan-out: {streams} streams");
        let result = measure(args, streams)
            .await
            .with_context(|| format!("measuring {streams} discovery streams"))?;
        eprintln!(
            "  connected in {:.2} s, RSS {:.1} MiB idle; change → all streams: {}",
            result.connect_all_seconds,
            mib(result.rss_idle_bytes),
            result
                .changes
                .iter()
                .map(|c| format!("{:.0} ms", c.all_seconds * 1e3))
                .collect::<Vec<_>>()
                .join(", ")
        );
        results.push(result);
    }
    Ok(results)
}

async fn measure(args: &DiscoveryArgs, streams: usize) -> anyhow::Result<FanOut> {
    anyhow::ensure!(streams > 0, "--streams: every count must be at least 1");
    // Each stream holds a descriptor here and one in the control plane, which inherits this
    // limit.
    let wanted = 2 * streams as u64 + 1024;
    let limit = procstat::raise_fd_limit(wanted).context("raising the open-file limit")?;
    anyhow::ensure!(
        limit >= wanted,
        "{streams} streams need {wanted} open files; the limit here is {limit}"
    );
    let dir = TempDir::new("bench-discovery");
    let config = dir.path().join("config");
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir_all(&config).context("creating the config dir")?;
    for (file, yaml) in mesh_files(streams) {
        std::fs::write(config.join(&file), yaml).with_context(|| format!("writing {file}"))?;
    }
    write_route(&config, 0)?;
    let control_plane = ControlPlane::start(
        &config,
        &[
            ("--dev-ca", ca_dir.display().to_string()),
            // The shipped default, not the tests' faster one: this is what operators get.
            ("--reload-interval", "250ms".to_owned()),
            // Every simulated proxy shares the `client` identity and connects from 127.0.0.1,
            // as a Deployment of `streams` replicas behind one address would: raise the caps
            // an operator would raise for it.
            ("--max-grpc-connections", (streams + 1024).to_string()),
            ("--max-connections-per-identity", streams.to_string()),
            (
                "--max-unproven-connections-per-source",
                (2 * args.connect_concurrency).max(64).to_string(),
            ),
        ],
    );
    let pid = control_plane.process.pid();

    let (tx, mut deliveries) = mpsc::unbounded_channel();
    let connect = ControlPlaneAddr::new(
        control_plane.grpc.to_string(),
        SpiffeId::new("cluster.local", "strait-system", "strait-control-plane")?,
        trust_bundle(&ca_dir)?,
        client_store(&ca_dir)?,
    );
    let started = Instant::now();
    let opened: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..streams)
        .map(|i| open_stream(&connect, i, tx.clone()))
        .buffer_unordered(args.connect_concurrency)
        .collect()
        .await;
    opened.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let mut versions = HashMap::new();
    let connect_all_seconds = collect(
        &mut deliveries,
        &mut versions,
        streams,
        started,
        args.timeout,
    )
    .await
    .context("waiting for every stream's first snapshot")?
    .into_iter()
    .max()
    .unwrap_or_default()
    .as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle_bytes = procstat::rss_bytes(pid).context("reading the control plane's RSS")?;

    let peak = Arc::new(AtomicU64::new(rss_idle_bytes));
    let sampler = tokio::spawn(sample_rss(pid, peak.clone()));
    let mut changes = Vec::new();
    for change in 1..=args.changes {
        let cpu_before = procstat::cpu_time(pid)?;
        write_route(&config, change)?;
        let renamed = Instant::now();
        let mut latencies = collect(
            &mut deliveries,
            &mut versions,
            streams,
            renamed,
            args.timeout,
        )
        .await
        .with_context(|| format!("waiting for change {change} to reach every stream"))?;
        let cpu = procstat::cpu_time(pid)? - cpu_before;
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        changes.push(Change {
            first_seconds: latencies[0].as_secs_f64(),
            p50_seconds: at(0.5).as_secs_f64(),
            p99_seconds: at(0.99).as_secs_f64(),
            all_seconds: latencies[latencies.len() - 1].as_secs_f64(),
            control_plane_cpu_seconds: cpu.as_secs_f64(),
        });
        // Let the control plane settle so one change's tail does not overlap the next.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sampler.abort();
    Ok(FanOut {
        streams,
        connect_all_seconds,
        rss_idle_bytes,
        rss_peak_bytes: peak.load(Ordering::Relaxed),
        changes,
    })
}

/// A new snapshot version on stream `.0`, received at `.2`.
type Delivery = (usize, String, Instant);

/// Opens stream `i` and forwards every snapshot it receives to `tx`, until it ends.
async fn open_stream(
    connect: &ControlPlaneAddr,
    i: usize,
    tx: mpsc::UnboundedSender<Delivery>,
) -> anyhow::Result<()> {
    let mut client = DiscoveryClient::new(connect.channel(true));
    let request = WatchRequest {
        workload: format!("client-{i}"),
        namespace: NAMESPACE.to_owned(),
        version: String::new(),
    };
    let mut stream = client
        .watch(request)
        .await
        .with_context(|| format!("opening the watch of client-{i}"))?
        .into_inner();
    tokio::spawn(async move {
        // The client (and its connection) lives as long as this task.
        let _client = client;
        while let Ok(Some(snapshot)) = stream.message().await {
            if tx.send((i, snapshot.version, Instant::now())).is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// Reads deliveries until each of the `streams` has a version other than the one in
/// `versions`; returns how long after `since` each got it.
async fn collect(
    deliveries: &mut mpsc::UnboundedReceiver<Delivery>,
    versions: &mut HashMap<usize, String>,
    streams: usize,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let before = versions.clone();
    let mut latencies = HashMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while latencies.len() < streams {
        let Ok(delivery) = tokio::time::timeout_at(deadline, deliveries.recv()).await else {
            anyhow::bail!(
                "only {} of {streams} streams got a new snapshot within {timeout:?}",
                latencies.len()
            );
        };
        let (i, version, at) = delivery.context("every stream ended")?;
        if before.get(&i) != Some(&version) {
            latencies
                .entry(i)
                .or_insert(at.saturating_duration_since(since));
            versions.insert(i, version);
        }
    }
    Ok(latencies.into_values().collect())
}

async fn sample_rss(pid: u32, peak: Arc<AtomicU64>) {
    loop {
        if let Ok(rss) = procstat::rss_bytes(pid) {
            peak.fetch_max(rss, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn trust_bundle(ca_dir: &Path) -> anyhow::Result<Arc<TrustBundle>> {
    let path = ca_dir.join("trust-anchors.pem");
    let pem =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let anchors = strait_identity::pem::certificates(&pem, &path.display().to_string())?;
    Ok(TrustBundle::new("cluster.local", anchors)?)
}

/// One certificate for every simulated proxy: they all run as the same service account, as
/// the replicas of one Deployment do.
fn client_store(ca_dir: &Path) -> anyhow::Result<Arc<CertStore>> {
    let leaf = TestCa::from_dir(ca_dir).leaf(CLIENT_IDENTITY, &Defects::default());
    let store = CertStore::new(CLIENT_IDENTITY.parse()?);
    store.install(leaf.chain, leaf.key)?;
    Ok(store)
}

/// Workloads per file: the loader takes at most 1 024 documents from one file.
const WORKLOADS_PER_FILE: usize = 500;

/// The shared services and backends (`mesh.yaml`) and `streams` client workloads, each on
/// its own loopback address (`clients-K.yaml`), as `(file name, YAML)`.
fn mesh_files(streams: usize) -> Vec<(String, String)> {
    let mut mesh = String::new();
    for (name, selector) in [
        ("backend", "app: backend"),
        ("backend-v1", "app: backend, version: v1"),
        ("backend-v2", "app: backend, version: v2"),
    ] {
        let _ = write!(
            mesh,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NAMESPACE}}}\nspec:\n  selector: {{{selector}}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n"
        );
    }
    for (i, version) in ["v1", "v2"].iter().enumerate() {
        let _ = write!(
            mesh,
            "---\napiVersion: strait.dev/v1alpha1\nkind: Workload\nmetadata: {{name: backend-{version}, namespace: {NAMESPACE}, labels: {{app: backend, version: {version}}}}}\nspec:\n  serviceAccount: backend\n  address: 127.1.0.{}\n  ports: [{{name: http, port: 8080}}]\n",
            i + 1
        );
    }
    let mut files = vec![("mesh.yaml".to_owned(), mesh)];
    for first in (0..streams).step_by(WORKLOADS_PER_FILE) {
        let mut clients = String::new();
        for i in first..streams.min(first + WORKLOADS_PER_FILE) {
            let _ = write!(
                clients,
                "---\napiVersion: strait.dev/v1alpha1\nkind: Workload\nmetadata: {{name: client-{i}, namespace: {NAMESPACE}, labels: {{app: client}}}}\nspec:\n  serviceAccount: client\n  address: 127.2.{}.{}\n",
                i / 250,
                i % 250 + 1
            );
        }
        files.push((
            format!("clients-{}.yaml", first / WORKLOADS_PER_FILE),
            clients,
        ));
    }
    files
}

/// The canary route with a weight that differs for every `change`.
fn write_route(config: &Path, change: usize) -> anyhow::Result<()> {
    let canary = 1 + change % 99;
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: backend-canary, namespace: {NAMESPACE}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: backend, port: 80}}]\n  rules:\n  - backendRefs:\n    - {{name: backend-v1, port: 80, weight: {}}}\n    - {{name: backend-v2, port: 80, weight: {canary}}}\n",
        100 - canary
    );
    let tmp = config.join(".route.yaml.tmp");
    let path = config.join("route.yaml");
    std::fs::write(&tmp, yaml).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The measurements as markdown.
pub fn render(results: &[FanOut], machine: &str, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "- Machine: {machine}");
    let _ = writeln!(out, "- Command: `{command}`");
    let _ = writeln!(
        out,
        "- Setup: the control plane binary (release, as scripts/bench builds it; default `--reload-interval 250ms`) and N watch streams from one process, each on its own mTLS connection; each change rewrites a shared HTTPRoute's weights, which changes every stream's snapshot. Times run from the file's rename; the reload interval bounds the first delivery.\n"
    );
    let _ = writeln!(
        out,
        "| streams | connect all (s) | CP RSS idle (MiB) | CP RSS peak (MiB) | change → first (ms) | → p50 (ms) | → p99 (ms) | → all (ms), median of changes | → all, worst (ms) | CP CPU per change (ms) |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in results {
        let median = |f: fn(&Change) -> f64| {
            let mut v: Vec<f64> = r.changes.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let worst = r.changes.iter().map(|c| c.all_seconds).fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            r.streams,
            r.connect_all_seconds,
            mib(r.rss_idle_bytes),
            mib(r.rss_peak_bytes),
            median(|c| c.first_seconds) * 1e3,
            median(|c| c.p50_seconds) * 1e3,
            median(|c| c.p99_seconds) * 1e3,
            median(|c| c.all_seconds) * 1e3,
            worst * 1e3,
            median(|c| c.control_plane_cpu_seconds) * 1e3,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_configuration_is_valid() {
        let dir = TempDir::new("bench-discovery-config");
        for (file, yaml) in mesh_files(1200) {
            std::fs::write(dir.path().join(file), yaml).unwrap();
        }
        write_route(dir.path(), 7).unwrap();
        let model = strait_control_plane::config::load(dir.path())
            .unwrap_or_else(|e| panic!("the benchmark's configuration is invalid: {e}"));
        assert_eq!(model.workloads.len(), 1202);
    }
}
