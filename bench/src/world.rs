//! The scenarios' worlds over the same backends: `direct` (nothing in between), the peers
//! users would pick instead (`nginx`, `haproxy`: a two-hop mutual-TLS pair each, see
//! `peers`), `mesh-plain` (outbound proxy → inbound proxy, static snapshot, plaintext) and
//! `mesh-mtls` (a control plane with a development CA, two workloads, mTLS between their
//! proxies).
//!
//! Processes are started with the test harness (`strait_tests`), so the benchmark runs
//! exactly the meshes the integration tests do, from the binaries `binaries::use_dir` names.

use std::net::SocketAddr;

use serde::Serialize;
use strait_tests::backend::{HttpBackend, start_grpc};
use strait_tests::mesh::{LocalMesh, Mesh, MeshBuilder};
use strait_tests::process::Proxy;

use crate::clients::{Protocol, Target};
use crate::peers::{Peer, PeerPair, Upstreams};
use crate::tcp_backend;

/// Port of the TCP service inside the mesh (`tcp.demo:9000`).
const TCP_PORT: u16 = 9000;

/// A scenario of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Load generator → backend.
    Direct,
    /// → nginx outbound side → mutual TLS → nginx inbound side → backend.
    Nginx,
    /// → HAProxy outbound side → mutual TLS → HAProxy inbound side → backend.
    Haproxy,
    /// → outbound proxy → inbound proxy → backend, plaintext.
    MeshPlain,
    /// The same with mTLS between the proxies.
    MeshMtls,
}

impl Scenario {
    /// Every scenario, in report order.
    pub const ALL: [Scenario; 5] = [
        Scenario::Direct,
        Scenario::Nginx,
        Scenario::Haproxy,
        Scenario::MeshPlain,
        Scenario::MeshMtls,
    ];

    /// The peer this scenario runs, if it is a peer's.
    pub fn peer(self) -> Option<Peer> {
        match self {
            Scenario::Nginx => Some(Peer::Nginx),
            Scenario::Haproxy => Some(Peer::Haproxy),
            _ => None,
        }
    }

    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Direct => "direct",
            Scenario::Nginx => "nginx",
            Scenario::Haproxy => "haproxy",
            Scenario::MeshPlain => "mesh-plain",
            Scenario::MeshMtls => "mesh-mtls",
        }
    }
}

/// The backends every scenario reaches: one HTTP server (HTTP/1.1 and HTTP/2), one gRPC
/// echo service, one TCP echo/sink.
pub struct Backends {
    /// HTTP/1.1 and HTTP/2.
    pub http: HttpBackend,
    /// gRPC.
    pub grpc: SocketAddr,
    /// TCP.
    pub tcp: SocketAddr,
}

impl Backends {
    /// Starts them on free loopback ports.
    pub async fn start() -> anyhow::Result<Self> {
        Ok(Self {
            http: HttpBackend::start("bench").await,
            grpc: start_grpc().await,
            tcp: tcp_backend::start().await?,
        })
    }
}

/// One proxy of a world, as the measurements see it.
#[derive(Clone, Debug)]
pub struct ProxyProcess {
    /// `outbound` (the client's side) or `inbound` (the backend's side).
    pub role: &'static str,
    /// Its process id.
    pub pid: u32,
    /// Its admin listener (Strait's proxies; the peers have none).
    pub admin: Option<SocketAddr>,
}

/// A running scenario.
pub struct World {
    /// Which one.
    pub scenario: Scenario,
    /// Its proxies (none for `direct`).
    pub proxies: Vec<ProxyProcess>,
    entry: SocketAddr,
    backends_direct: (SocketAddr, SocketAddr, SocketAddr),
    processes: Processes,
}

// The processes a world keeps running; dropping them stops them.
enum Processes {
    None,
    Plain(Box<LocalMesh>),
    Mtls(Box<Mesh>),
    Peer(Box<PeerPair>),
}

fn proxy(role: &'static str, proxy: &Proxy) -> ProxyProcess {
    ProxyProcess {
        role,
        pid: proxy.process.pid(),
        admin: Some(proxy.admin),
    }
}

/// The services `mesh-mtls` routes to, each selecting the server workload and pointing at
/// a backend port by number (the backends listen where they already do).
fn mtls_services(backends: &Backends) -> String {
    [
        ("http", 80, backends.http.addr.port()),
        ("grpc", 80, backends.grpc.port()),
        ("tcp", TCP_PORT, backends.tcp.port()),
    ]
    .iter()
    .map(|(name, port, target)| {
        // The TCP service says it is opaque, as a real Service for a server-speaks-first or
        // binary protocol would: otherwise the inbound proxy re-detects the caller's claim
        // and its first bytes (HTTP token characters) wait out the detection timeout.
        let protocol = if *name == "tcp" { ", appProtocol: tcp" } else { "" };
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  selector: {{app: bench-server}}\n  ports: [{{name: {name}, port: {port}, targetPort: {target}{protocol}}}]\n"
        )
    })
    .collect()
}

impl World {
    /// Starts `scenario` in front of `backends`; every Strait proxy gets `proxy_flags` (e.g.
    /// `--threads 1`, tracing).
    pub fn start(
        scenario: Scenario,
        backends: &Backends,
        proxy_flags: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let backends_direct = (backends.http.addr, backends.grpc, backends.tcp);
        let with_flags = |mut builder: strait_tests::process::ProxyBuilder| {
            for (flag, value) in proxy_flags {
                builder = builder.flag(flag, value);
            }
            builder
        };
        Ok(match scenario {
            Scenario::Direct => Self {
                scenario,
                proxies: Vec::new(),
                entry: backends.http.addr,
                backends_direct,
                processes: Processes::None,
            },
            Scenario::Nginx | Scenario::Haproxy => {
                let peer = scenario.peer().expect("a peer's scenario");
                let pair = PeerPair::start(
                    peer,
                    Upstreams {
                        http: backends.http.addr,
                        grpc: backends.grpc,
                        tcp: backends.tcp,
                    },
                )?;
                let side = |role, process: &strait_tests::process::Process| ProxyProcess {
                    role,
                    pid: process.pid(),
                    admin: None,
                };
                Self {
                    scenario,
                    proxies: vec![
                        side("outbound", &pair.outbound),
                        side("inbound", &pair.inbound),
                    ],
                    entry: backends.http.addr,
                    backends_direct,
                    processes: Processes::Peer(Box::new(pair)),
                }
            }
            Scenario::MeshPlain => {
                let tcp = format!("tcp:{TCP_PORT}");
                // No snapshot declares the TCP port's protocol on the server's side: the
                // port is named opaque there (see `mtls_services`).
                let tcp_port = backends.tcp.port();
                let mesh = LocalMesh::start_with(
                    &[
                        ("http", backends.http.addr),
                        ("grpc", backends.grpc),
                        (&tcp, backends.tcp),
                    ],
                    with_flags,
                    |builder| with_flags(builder).flag("--opaque-ports", tcp_port),
                );
                Self {
                    scenario,
                    proxies: vec![
                        proxy("outbound", &mesh.client),
                        proxy("inbound", &mesh.server),
                    ],
                    entry: mesh.client.outbound,
                    backends_direct,
                    processes: Processes::Plain(Box::new(mesh)),
                }
            }
            Scenario::MeshMtls => {
                let mut builder = MeshBuilder::new()
                    .workload("bench-client", "bench-client", &[("app", "bench-client")])
                    .workload("bench-server", "bench-server", &[("app", "bench-server")])
                    .yaml("bench.yaml", &mtls_services(backends));
                for (flag, value) in proxy_flags {
                    builder = builder.proxy_flag(flag, value);
                }
                let mesh = builder.start();
                Self {
                    scenario,
                    proxies: vec![
                        proxy("outbound", mesh.proxy("bench-client")),
                        proxy("inbound", mesh.proxy("bench-server")),
                    ],
                    entry: mesh.proxy("bench-client").outbound,
                    backends_direct,
                    processes: Processes::Mtls(Box::new(mesh)),
                }
            }
        })
    }

    /// Where `protocol`'s calls go in this world.
    pub fn target(&self, protocol: Protocol) -> Target {
        let (http, grpc, tcp) = self.backends_direct;
        if let Processes::Peer(pair) = &self.processes {
            let addr = SocketAddr::from(([127, 0, 0, 1], pair.listen.of(protocol)));
            let authority = match protocol {
                Protocol::Http1 | Protocol::Http2 => "http.demo:80",
                Protocol::Grpc => "grpc.demo:80",
                Protocol::Tcp => "",
            };
            return Target {
                addr,
                authority: authority.to_owned(),
                tunnel: None,
            };
        }
        let direct = self.scenario == Scenario::Direct;
        let (addr, authority, tunnel) = match protocol {
            Protocol::Http1 | Protocol::Http2 => (http, "http.demo:80".to_owned(), None),
            Protocol::Grpc => (grpc, "grpc.demo:80".to_owned(), None),
            Protocol::Tcp => (tcp, String::new(), Some(format!("tcp.demo:{TCP_PORT}"))),
        };
        if direct {
            Target {
                addr,
                authority,
                tunnel: None,
            }
        } else {
            Target {
                addr: self.entry,
                authority,
                tunnel,
            }
        }
    }

    /// The proxy on the backend's side, whose inbound listener terminates the mesh hop.
    pub fn inbound_proxy(&self) -> Option<&ProxyProcess> {
        self.proxies.iter().find(|p| p.role == "inbound")
    }

    /// The last `n` log lines of every process of the world, to explain a failed measurement.
    pub fn recent_logs(&self, n: usize) -> String {
        let processes: Vec<(&str, &strait_tests::process::Process)> = match &self.processes {
            Processes::None => Vec::new(),
            Processes::Plain(mesh) => vec![
                ("outbound proxy", &mesh.client.process),
                ("inbound proxy", &mesh.server.process),
            ],
            Processes::Mtls(mesh) => vec![
                ("control plane", &mesh.control_plane.process),
                ("outbound proxy", &mesh.proxy("bench-client").process),
                ("inbound proxy", &mesh.proxy("bench-server").process),
            ],
            Processes::Peer(pair) => vec![
                ("outbound side", &pair.outbound),
                ("inbound side", &pair.inbound),
            ],
        };
        processes
            .into_iter()
            .map(|(name, process)| {
                let logs = process.logs();
                let tail = &logs[logs.len().saturating_sub(n)..];
                format!(
                    "--- {name}, last {} lines:\n{}\n",
                    tail.len(),
                    tail.join("\n")
                )
            })
            .collect()
    }
}

/// Longest a proxy gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Drop for World {
    /// Stops the proxies with SIGTERM, as Kubernetes does, so they exit through their own
    /// shutdown (a profiler wrapping them writes its data at exit); only a proxy still
    /// running after [`STOP_TIMEOUT`] is killed, by the harness.
    fn drop(&mut self) {
        let proxies: Vec<&mut strait_tests::process::Process> = match &mut self.processes {
            Processes::None => Vec::new(),
            Processes::Plain(mesh) => vec![&mut mesh.client.process, &mut mesh.server.process],
            Processes::Mtls(mesh) => mesh
                .proxies
                .values_mut()
                .map(|proxy| &mut proxy.process)
                .collect(),
            Processes::Peer(pair) => vec![&mut pair.outbound, &mut pair.inbound],
        };
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        let mut running = Vec::new();
        for process in proxies {
            process.signal(nix::sys::signal::Signal::SIGTERM);
            running.push(process);
        }
        while std::time::Instant::now() < deadline {
            running.retain_mut(|p| !p.has_exited());
            if running.is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
