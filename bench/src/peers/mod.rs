//! The peers users would pick instead of a mesh's sidecars, run as the same two-hop
//! mutual-TLS path: client → outbound side → TLS 1.3 with client certificates → inbound side
//! → backend, each side one process with one worker, over the benchmark's own backends.
//!
//! Their configurations are written here (`nginx.rs`, `haproxy.rs`) and explained in
//! bench/README.md, so anyone can check that the comparison is fair.

pub mod certs;
pub mod haproxy;
pub mod nginx;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use strait_tests::ports::free_port;
use strait_tests::process::Process;
use strait_tests::snapshot::TempDir;

use self::certs::PeerCerts;
use crate::clients::Protocol;

/// A peer proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Peer {
    /// nginx (Debian `nginx-light` with `libnginx-mod-stream`).
    Nginx,
    /// HAProxy (Debian `haproxy`).
    Haproxy,
}

impl Peer {
    /// The binary that runs it.
    pub fn binary(self) -> &'static str {
        match self {
            Peer::Nginx => "nginx",
            Peer::Haproxy => "haproxy",
        }
    }

    /// Why it cannot run here, if it cannot (a binary or module missing).
    pub fn missing(self) -> Option<String> {
        let found = Command::new(self.binary())
            .arg("-v")
            .output()
            .is_ok_and(|out| out.status.success());
        if !found {
            return Some(format!(
                "`{}` is not installed (scripts/bench installs it)",
                self.binary()
            ));
        }
        if self == Peer::Nginx && !Path::new(nginx::STREAM_MODULE).exists() {
            return Some(format!(
                "{} is missing (Debian package libnginx-mod-stream)",
                nginx::STREAM_MODULE
            ));
        }
        None
    }
}

/// One listener per protocol on one side.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// HTTP/1.1.
    pub http1: u16,
    /// HTTP/2.
    pub http2: u16,
    /// gRPC.
    pub grpc: u16,
    /// Opaque TCP.
    pub tcp: u16,
}

impl Ports {
    fn free() -> Self {
        Self {
            http1: free_port(),
            http2: free_port(),
            grpc: free_port(),
            tcp: free_port(),
        }
    }

    /// The client-facing port for `protocol`.
    pub fn of(self, protocol: Protocol) -> u16 {
        match protocol {
            Protocol::Http1 => self.http1,
            Protocol::Http2 => self.http2,
            Protocol::Grpc => self.grpc,
            Protocol::Tcp => self.tcp,
        }
    }

    fn all(self) -> [u16; 4] {
        [self.http1, self.http2, self.grpc, self.tcp]
    }
}

/// The backends the inbound side forwards to.
#[derive(Clone, Copy, Debug)]
pub struct Upstreams {
    /// HTTP/1.1 and HTTP/2.
    pub http: SocketAddr,
    /// gRPC.
    pub grpc: SocketAddr,
    /// TCP.
    pub tcp: SocketAddr,
}

/// A running pair.
pub struct PeerPair {
    /// The client's side.
    pub outbound: Process,
    /// The backend's side.
    pub inbound: Process,
    /// The outbound side's client-facing listeners.
    pub listen: Ports,
    /// The inbound side's mutual-TLS listeners.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the tests reach the inbound side")
    )]
    pub inbound_listen: Ports,
    /// The certificates both sides use.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the tests reach the inbound side")
    )]
    pub certs: PeerCerts,
    _dir: TempDir,
}

/// Longest a side gets to open its listeners.
const START_TIMEOUT: Duration = Duration::from_secs(10);

fn wait_listening(process: &mut Process, ports: &[u16], what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    for &port in ports {
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if process.has_exited() || Instant::now() >= deadline {
                anyhow::bail!(
                    "{what} did not open 127.0.0.1:{port}; its output:\n{}",
                    process.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

fn spawn(peer: Peer, side: &str, config: &Path) -> Process {
    let mut command = Command::new(peer.binary());
    match peer {
        // -p: prefix for relative paths; -e: the startup error log, before the config's own.
        Peer::Nginx => command
            .arg("-p")
            .arg(config.parent().unwrap_or(Path::new("/")))
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(config),
        // -db: foreground, no daemon.
        Peer::Haproxy => command.arg("-db").arg("-f").arg(config),
    };
    Process::spawn(&format!("{} {side}", peer.binary()), command, "")
}

impl PeerPair {
    /// Writes the certificates and both configurations, starts both sides and waits until
    /// every listener accepts connections.
    pub fn start(peer: Peer, backends: Upstreams) -> anyhow::Result<Self> {
        if let Some(why) = peer.missing() {
            anyhow::bail!("cannot run the {} peer: {why}", peer.binary());
        }
        let dir = TempDir::new(peer.binary());
        let certs = PeerCerts::generate(dir.path())?;
        let (listen, inbound_ports) = (Ports::free(), Ports::free());
        let (outbound, inbound) = match peer {
            Peer::Nginx => (
                nginx::outbound_config(dir.path(), &listen, &inbound_ports, &certs),
                nginx::inbound_config(dir.path(), &inbound_ports, &backends, &certs),
            ),
            Peer::Haproxy => (
                haproxy::outbound_config(&listen, &inbound_ports, &certs),
                haproxy::inbound_config(&inbound_ports, &backends, &certs),
            ),
        };
        let write = |name: &str, text: &str| -> anyhow::Result<std::path::PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        let inbound_path = write("inbound.conf", &inbound)?;
        let outbound_path = write("outbound.conf", &outbound)?;
        let mut inbound = spawn(peer, "inbound", &inbound_path);
        let inbound_listeners: Vec<u16> = match peer {
            // nginx carries HTTP/2 between the sides as HTTP/1.1: no HTTP/2 listener inbound.
            Peer::Nginx => vec![inbound_ports.http1, inbound_ports.grpc, inbound_ports.tcp],
            Peer::Haproxy => inbound_ports.all().to_vec(),
        };
        wait_listening(&mut inbound, &inbound_listeners, "the inbound side")?;
        let mut outbound = spawn(peer, "outbound", &outbound_path);
        wait_listening(&mut outbound, &listen.all(), "the outbound side")?;
        Ok(Self {
            outbound,
            inbound,
            listen,
            inbound_listen: inbound_ports,
            certs,
            _dir: dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::clients::Protocol;
    use crate::handshakes;
    use crate::latency;
    use crate::world::{Backends, Scenario, World};

    /// Whether `peer` can run here; on CI (which installs the peers through
    /// scripts/setup-test-tools) a missing peer is a failure, elsewhere a skip.
    fn available(peer: super::Peer) -> bool {
        match peer.missing() {
            None => true,
            Some(why) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("{why}")
            }
            Some(why) => {
                eprintln!("skipping: {why}");
                false
            }
        }
    }

    /// Every protocol crosses each peer's two sides, and new connections are each a full
    /// mutual-TLS handshake that the inbound side accepts: the peers' configurations are
    /// what the benchmark says they are, not just files their binaries parse.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_peer_carries_every_protocol_through_mutual_tls() {
        let backends = Backends::start().await.expect("backends");
        for scenario in [Scenario::Nginx, Scenario::Haproxy] {
            if !available(scenario.peer().expect("a peer")) {
                continue;
            }
            let world = World::start(scenario, &backends, &[]).expect("starting the peer");
            for protocol in Protocol::ALL {
                let target = world.target(protocol);
                let summary = latency::closed_loop(protocol, &target, Duration::from_millis(200))
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "{} through {}: {e:#}\n{}",
                            protocol.label(),
                            scenario.label(),
                            world.recent_logs(20)
                        )
                    });
                assert!(
                    summary.count > 0 && summary.errors == 0,
                    "{} through {}: {} calls, {} errors",
                    protocol.label(),
                    scenario.label(),
                    summary.count,
                    summary.errors
                );
            }
            let made = handshakes::measure(
                &world,
                &world.target(Protocol::Tcp),
                2,
                Duration::from_millis(200),
            )
            .await
            .expect("new connections");
            assert!(
                made.connections > 0 && made.errors == 0,
                "new connections through {}: {made:?}",
                scenario.label()
            );
        }
    }

    /// `curl` to the inbound side's HTTP/1.1 listener, with the client certificate or without.
    fn curl_inbound(pair: &super::PeerPair, with_certificate: bool) -> std::process::Output {
        let port = pair.inbound_listen.http1;
        let mut command = std::process::Command::new("curl");
        command
            .args([
                "--silent",
                "--show-error",
                "--fail",
                "--max-time",
                "5",
                "--tlsv1.3",
            ])
            .arg("--cacert")
            .arg(&pair.certs.ca)
            .arg("--resolve")
            .arg(format!("{}:{port}:127.0.0.1", super::certs::SERVER_NAME))
            .arg(format!(
                "https://{}:{port}/status?code=200",
                super::certs::SERVER_NAME
            ));
        if with_certificate {
            command
                .arg("--cert")
                .arg(&pair.certs.client_cert)
                .arg("--key")
                .arg(&pair.certs.client_key);
        }
        command.output().expect("running curl")
    }

    /// The inbound side is mutual TLS for real: without the client certificate a TLS 1.3
    /// client gets no answer from the backend (HAProxy fails the handshake, nginx answers its
    /// own 400); with it, the backend's 200.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_inbound_side_answers_only_a_client_with_the_certificate() {
        let backends = Backends::start().await.expect("backends");
        for peer in [super::Peer::Nginx, super::Peer::Haproxy] {
            if !available(peer) {
                continue;
            }
            let pair = tokio::task::block_in_place(|| {
                super::PeerPair::start(
                    peer,
                    super::Upstreams {
                        http: backends.http.addr,
                        grpc: backends.grpc,
                        tcp: backends.tcp,
                    },
                )
            })
            .expect("starting the peer");
            let refused = tokio::task::block_in_place(|| curl_inbound(&pair, false));
            assert!(
                !refused.status.success(),
                "{}: answered a client without a certificate: {}",
                peer.binary(),
                String::from_utf8_lossy(&refused.stdout)
            );
            let answered = tokio::task::block_in_place(|| curl_inbound(&pair, true));
            assert!(
                answered.status.success(),
                "{}: refused the client certificate: {}",
                peer.binary(),
                String::from_utf8_lossy(&answered.stderr)
            );
        }
    }
}
