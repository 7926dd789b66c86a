//! The processes the demo starts (the control plane and one proxy per workload), the scratch
//! directory they write to, and stopping and cleaning up all of it.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::DemoWorkload;
use crate::output::say;

/// The binaries the demo runs.
pub struct Binaries {
    /// `strait-proxy`.
    pub proxy: PathBuf,
    /// `strait-control-plane`.
    pub control_plane: PathBuf,
}

/// Finds `strait-proxy` and `strait-control-plane` next to this binary, building them first
/// when the demo runs under `cargo run` (which builds only the demo itself).
pub fn binaries() -> anyhow::Result<Binaries> {
    let exe = std::env::current_exe().context("locating the demo binary")?;
    let dir = exe
        .parent()
        .context("the demo binary has no directory")?
        .to_owned();
    if let Ok(cargo) = std::env::var("CARGO") {
        let release = dir.file_name().is_some_and(|n| n == "release");
        say!(
            "strait-demo: building strait-proxy and strait-control-plane ({} profile)…",
            if release { "release" } else { "dev" }
        );
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "--quiet",
            "--bin",
            "strait-proxy",
            "--bin",
            "strait-control-plane",
        ]);
        if release {
            build.arg("--release");
        }
        let status = build.status().context("running cargo build")?;
        anyhow::ensure!(
            status.success(),
            "building the proxy and control plane failed"
        );
    }
    let binaries = Binaries {
        proxy: dir.join("strait-proxy"),
        control_plane: dir.join("strait-control-plane"),
    };
    for path in [&binaries.proxy, &binaries.control_plane] {
        anyhow::ensure!(
            path.exists(),
            "{} is missing; run the demo with `cargo run --release --bin strait-demo`",
            path.display()
        );
    }
    Ok(binaries)
}

/// Fails with a clear message when one of `addrs` is taken (another demo still running?).
pub fn ensure_free(addrs: &[SocketAddr]) -> anyhow::Result<()> {
    for addr in addrs {
        TcpListener::bind(addr).with_context(|| {
            format!("{addr} is in use; the demo needs the ports in examples/local (is another strait-demo running?)")
        })?;
    }
    Ok(())
}

/// The demo's temporary directory: the development CA and the processes' logs.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A fresh directory under the system's temporary directory.
    pub fn create() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("strait-demo-{}", std::process::id()));
        std::fs::create_dir_all(path.join("logs"))
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log file of `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.path.join("logs").join(format!("{name}.log"))
    }

    /// Deletes the directory and everything in it.
    pub fn remove(self) -> std::io::Result<()> {
        std::fs::remove_dir_all(&self.path)
    }
}

/// The processes started, stopped together.
#[derive(Default)]
pub struct Children {
    processes: Vec<(String, Child)>,
}

impl Children {
    fn spawn(&mut self, name: &str, mut command: Command, scratch: &Scratch) -> anyhow::Result<()> {
        let log = File::create(scratch.log(name))
            .with_context(|| format!("creating the log of {name}"))?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("STRAIT_LOG_FORMAT", "text");
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.processes.push((name.to_owned(), child));
        Ok(())
    }

    /// Starts the control plane with a development CA in the scratch directory.
    pub fn start_control_plane(
        &mut self,
        binaries: &Binaries,
        config: &Path,
        scratch: &Scratch,
        grpc: SocketAddr,
        admin: SocketAddr,
    ) -> anyhow::Result<()> {
        let mut command = Command::new(&binaries.control_plane);
        command
            .arg("run")
            .arg("--config")
            .arg(config)
            .arg("--dev-ca")
            .arg(scratch.path().join("ca"))
            .args([
                "--grpc-addr",
                &grpc.to_string(),
                "--admin-addr",
                &admin.to_string(),
            ]);
        self.spawn("control-plane", command, scratch)
    }

    /// Starts `workload`'s proxy, identified by its token from the configuration.
    pub fn start_proxy(
        &mut self,
        binaries: &Binaries,
        config: &Path,
        scratch: &Scratch,
        control_plane: SocketAddr,
        workload: &DemoWorkload,
    ) -> anyhow::Result<()> {
        let mut command = Command::new(&binaries.proxy);
        command
            .arg("run")
            .args(["--control-plane", &control_plane.to_string()])
            .arg("--trust-anchors")
            .arg(scratch.path().join("ca/trust-anchors.pem"))
            .args(["--namespace", "demo", "--workload", &workload.name])
            .args(["--service-account", &workload.service_account])
            .arg("--token-file")
            .arg(
                config
                    .join("tokens")
                    .join(format!("{}.token", workload.name)),
            )
            .args([
                "--inbound-addr",
                &SocketAddr::new(workload.app.ip(), workload.inbound_port).to_string(),
            ])
            .args(["--outbound-addr", &workload.outbound.to_string()])
            .args(["--admin-addr", &workload.admin.to_string()])
            .args(["--threads", "1"]);
        self.spawn(&workload.name, command, scratch)
    }

    /// Names of started processes that have exited.
    pub fn exited(&mut self) -> Vec<String> {
        self.processes
            .iter_mut()
            .filter_map(|(name, child)| {
                child
                    .try_wait()
                    .ok()
                    .flatten()
                    .map(|status| format!("{name} ({status})"))
            })
            .collect()
    }

    /// SIGTERM to every process, then SIGKILL to whatever is left after a few seconds.
    pub async fn stop_all(&mut self) {
        for (_, child) in &self.processes {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        for _ in 0..50 {
            if self
                .processes
                .iter_mut()
                .all(|(_, c)| c.try_wait().ok().flatten().is_some())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (_, child) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `admin`'s `/ready` to answer 200.
pub async fn wait_ready(admin: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if strait_cli::http_get::get(admin, "/ready", Duration::from_secs(1))
            .await
            .is_ok()
        {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{admin} was not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
