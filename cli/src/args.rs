//! The command line of `strait`, as a library item so tests parse documented commands with
//! the very definition the binary uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::target::Target;

/// Operate a Strait mesh: check its health, read its golden signals, validate configuration,
/// inspect a proxy.
///
/// Admin endpoints are named `HOST:PORT` (an IP address or a DNS name) or, in Kubernetes,
/// `deploy/NAME`, `pod/NAME` or `svc/NAME` (optionally `:PORT`, a pod port), reached through
/// a port-forward like `kubectl port-forward`.
#[derive(Debug, Parser)]
#[command(name = "strait", version, about)]
pub struct Cli {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table", global = true)]
    pub output: Output,
    /// Kubeconfig file for deploy/, pod/ and svc/ targets. Default: KUBECONFIG, then
    /// ~/.kube/config, then the in-cluster service account.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for deploy/, pod/ and svc/ targets. Default: the current context.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of deploy/, pod/ and svc/ proxy targets. Default: the context's namespace,
    /// else `default`.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// JSON, for scripts.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the control plane, the proxies' certificates and their sync; non-zero on failure.
    Check {
        /// Control plane gRPC address (host:port).
        #[arg(long, env = "STRAIT_CONTROL_PLANE")]
        control_plane: Option<String>,
        /// Control plane admin endpoint, to compare the proxies' snapshot versions:
        /// HOST:PORT, or deploy/NAME or svc/NAME in --control-plane-namespace (port: the
        /// pod's `admin` port, else 9990).
        #[arg(long, env = "STRAIT_CONTROL_PLANE_ADMIN")]
        control_plane_admin: Option<Target>,
        /// Namespace of a deploy/, pod/ or svc/ --control-plane-admin.
        #[arg(
            long,
            env = "STRAIT_CONTROL_PLANE_NAMESPACE",
            default_value = "strait-system"
        )]
        control_plane_namespace: String,
        /// Trust anchors (PEM) to verify the control plane with.
        #[arg(long, env = "STRAIT_TRUST_ANCHORS")]
        trust_anchors: Option<PathBuf>,
        /// The identity the control plane must prove.
        #[arg(
            long,
            default_value = "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane"
        )]
        control_plane_identity: String,
        /// A proxy's admin endpoint (repeatable): HOST:PORT, or deploy/NAME, pod/NAME or
        /// svc/NAME (port: the strait-proxy container's admin port, else 4191).
        #[arg(long = "proxy")]
        proxies: Vec<Target>,
        /// Certificates expiring sooner than this fail the check.
        #[arg(long, value_parser = strait_control_plane::settings::parse_duration, default_value = "1h")]
        min_validity: Duration,
    },
    /// Golden signals (rate, success, latency, split) from proxies' metrics.
    Stat {
        /// Proxies to read: HOST:PORT, or deploy/NAME, pod/NAME or svc/NAME.
        targets: Vec<Target>,
        /// A proxy's admin endpoint (repeatable), as the positional targets.
        #[arg(long = "proxy")]
        proxies: Vec<Target>,
        /// Only services whose name contains this.
        #[arg(long)]
        service: Option<String>,
        /// Time between the two scrapes.
        #[arg(long, value_parser = strait_control_plane::settings::parse_duration, default_value = "5s")]
        interval: Duration,
    },
    /// Validate a configuration directory; prints every error, non-zero when any.
    Validate {
        /// The directory of YAML files.
        dir: PathBuf,
    },
    /// A proxy's current snapshot, readable.
    ProxyConfig {
        /// The proxy's admin endpoint: HOST:PORT, or deploy/NAME, pod/NAME or svc/NAME.
        addr: Target,
    },
}
