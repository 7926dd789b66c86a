//! Routing snapshots for proxies that run without a control plane (`--snapshot FILE`), built
//! from the same protobuf types the discovery API streams.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use strait_proto::discovery::v1 as pb;

/// An endpoint of a service: the app's address, and the inbound proxy in front of it (if any).
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The application's address.
    pub app: SocketAddr,
    /// The port of the inbound proxy on the same IP; `None` for an endpoint reached directly.
    pub proxy_port: Option<u16>,
}

/// A single-backend service `name.ns` on `port`, answering to `name.ns:port` and
/// `name.ns.svc.cluster.local:port`, and to the cluster `addresses` given.
pub fn service(
    name: &str,
    ns: &str,
    port: u16,
    addresses: &[&str],
    endpoints: &[Endpoint],
) -> pb::OutboundService {
    let backend = format!("{ns}/{name}:{port}");
    pb::OutboundService {
        name: name.into(),
        namespace: ns.into(),
        port: port.into(),
        authorities: vec![
            format!("{name}.{ns}:{port}"),
            format!("{name}.{ns}.svc.cluster.local:{port}"),
        ],
        addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
        protocol: pb::Protocol::Detect as i32,
        routes: vec![pb::Route {
            name: "default".into(),
            backends: vec![pb::WeightedBackend {
                backend: backend.clone(),
                weight: 1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        backends: vec![pb::Backend {
            name: backend,
            endpoints: endpoints
                .iter()
                .map(|e| pb::Endpoint {
                    address: e.app.to_string(),
                    proxy_port: e.proxy_port.map(u32::from).unwrap_or(0),
                    identity: String::new(),
                    workload: format!("{name}-{}", e.app.port()),
                    owner: None,
                })
                .collect(),
            policy: None,
        }],
    }
}

/// An application port of the snapshot's own workload, read as `protocol`, with the mesh
/// defaults (permissive, no authorization rules): a proxy with a configuration source serves
/// inbound only the ports its snapshot names.
pub fn inbound_port(port: u16, protocol: pb::Protocol) -> pb::InboundPort {
    pb::InboundPort {
        port: port.into(),
        protocol: protocol as i32,
        ..Default::default()
    }
}

/// A snapshot of the given services.
pub fn snapshot(version: &str, services: Vec<pb::OutboundService>) -> pb::Snapshot {
    pb::Snapshot {
        version: version.into(),
        services,
        ..Default::default()
    }
}

/// A scratch directory removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh directory under the system temp dir.
    pub fn new(prefix: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("strait-{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `snapshot` as JSON to `name` in the directory and returns the file's path.
    pub fn write_snapshot(&self, name: &str, snapshot: &pb::Snapshot) -> PathBuf {
        let path = self.path.join(name);
        let json = serde_json::to_string_pretty(snapshot).expect("snapshots serialise");
        // Write then rename, so a watching proxy never reads a half-written file.
        let tmp = self.path.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, json).expect("writing the snapshot");
        std::fs::rename(&tmp, &path).expect("renaming the snapshot into place");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
