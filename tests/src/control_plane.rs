//! A running `strait-control-plane` and its bound addresses.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::binaries;
use crate::process::{Process, in_netns};

/// A control plane process.
pub struct ControlPlane {
    /// The process.
    pub process: Process,
    /// gRPC (identity, discovery).
    pub grpc: SocketAddr,
    /// Admin.
    pub admin: SocketAddr,
}

impl ControlPlane {
    /// Starts a control plane on `config_dir` with extra `flags` (e.g. a CA), on free
    /// loopback ports unless `flags` give them.
    pub fn start(config_dir: &Path, flags: &[(&str, String)]) -> Self {
        Self::start_in(None, config_dir, flags)
    }

    /// [`ControlPlane::start`] inside network namespace `netns`, when given.
    pub fn start_in(netns: Option<&str>, config_dir: &Path, flags: &[(&str, String)]) -> Self {
        let mut command = in_netns(netns, None, &binaries::path("strait-control-plane"));
        command.arg("run").arg("--config").arg(config_dir);
        Self::spawn(command, flags)
    }

    /// Starts a control plane reading its configuration from the Kubernetes API that
    /// `kubeconfig` points at, with extra `flags`.
    pub fn start_kubernetes(kubeconfig: &Path, flags: &[(&str, String)]) -> Self {
        let mut command = Command::new(binaries::path("strait-control-plane"));
        command
            .arg("run")
            .args(["--config-source", "kubernetes"])
            .env("KUBECONFIG", kubeconfig);
        Self::spawn(command, flags)
    }

    fn spawn(mut command: Command, flags: &[(&str, String)]) -> Self {
        let has = |flag: &str| flags.iter().any(|(f, _)| *f == flag);
        for (flag, default) in [
            ("--grpc-addr", "127.0.0.1:0"),
            ("--admin-addr", "127.0.0.1:0"),
            ("--log-format", "json"),
            ("--reload-interval", "100ms"),
        ] {
            if !has(flag) {
                command.arg(flag).arg(default);
            }
        }
        for (flag, value) in flags {
            command.arg(flag).arg(value);
        }
        let mut process = Process::spawn(
            "strait-control-plane",
            command,
            "strait-control-plane listening",
        );
        let fields = process.wait_ready(Duration::from_secs(20));
        let addr = |key: &str| -> SocketAddr {
            fields[key]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("listening line lacks {key}: {fields}"))
        };
        Self {
            grpc: addr("grpc"),
            admin: addr("admin"),
            process,
        }
    }
}
