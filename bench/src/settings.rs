//! The benchmark's flags: every duration, rate and size is a parameter, so a quick check
//! and a careful run differ only in their command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use strait_proxy::flags::parse_duration;

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Where the binaries come from and where results go.
#[derive(Args, Clone, Debug, Serialize)]
pub struct Output {
    /// Directory holding `strait-proxy` and `strait-control-plane`. Default: the directory
    /// of this executable (target/release when run by scripts/bench)
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Directory the dated markdown and JSON results are written to
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub out_dir: PathBuf,
    /// The history file a dated section is appended to
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/RESULTS.md"))]
    pub history: PathBuf,
    /// Print the results only: write no files, append no history
    #[arg(long)]
    pub no_record: bool,
}

/// `strait-bench run`: the side-by-side comparison.
#[derive(Args, Clone, Debug, Serialize)]
pub struct Settings {
    /// Proxy modes to measure: `1` pins each proxy to one worker thread, `0` is the default
    /// (one per core). Comma-separated
    #[arg(long, value_delimiter = ',', default_value = "1,0")]
    pub threads: Vec<usize>,
    /// Protocols to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "http1,http2,grpc,tcp")]
    pub protocols: Vec<crate::clients::Protocol>,
    /// Closed-loop latency: how long one connection makes one call after another
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    #[serde(serialize_with = "secs")]
    pub closed_loop: Duration,
    /// Fixed-rate latency: requests per second
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Fixed-rate latency: how long
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    #[serde(serialize_with = "secs")]
    pub rate_duration: Duration,
    /// Fixed-rate latency: HTTP/1.1 and TCP connections the requests are spread over
    /// (HTTP/2 and gRPC multiplex them on one)
    #[arg(long, default_value_t = 16)]
    pub rate_connections: usize,
    /// Maximum throughput: how long (whole seconds for wrk and h2load)
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    #[serde(serialize_with = "secs")]
    pub throughput_duration: Duration,
    /// Maximum throughput: requests in flight (HTTP/1.1 connections; HTTP/2 and gRPC streams)
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Maximum throughput: connections the HTTP/2 and gRPC streams share
    #[arg(long, default_value_t = 4)]
    pub h2_connections: usize,
    /// Threads of wrk and h2load
    #[arg(long, default_value_t = 1)]
    pub generator_threads: usize,
    /// New connections per second: how long
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    #[serde(serialize_with = "secs")]
    pub connection_duration: Duration,
    /// New connections per second: concurrent openers
    #[arg(long, default_value_t = 16)]
    pub connection_concurrency: usize,
    /// Client connections held open for the memory reading
    #[arg(long, default_value_t = 1000)]
    pub held_connections: usize,
    /// Skip the metrics + tracing overhead runs
    #[arg(long)]
    pub no_tracing: bool,
    /// The peers measured beside the mesh in the one-thread mode (two-hop mutual-TLS pairs).
    #[arg(long, value_delimiter = ',', default_value = "nginx,haproxy")]
    pub peers: Vec<crate::peers::Peer>,
    /// Leave the peers out.
    #[arg(long)]
    pub no_peers: bool,
    /// Where binaries come from and results go
    #[command(flatten)]
    #[serde(skip)]
    pub output: Output,
}

/// `strait-bench soak`: many connections, steady load, a long time.
#[derive(Args, Clone, Debug)]
pub struct SoakArgs {
    /// The whole run, warm-up included
    #[arg(long, value_parser = parse_duration, default_value = "30m")]
    pub duration: Duration,
    /// Client connections held open through the proxy
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Requests per second over all connections
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Start of the run that is not judged
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub warmup: Duration,
    /// How often the proxy is sampled
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub sample_every: Duration,
    /// The proxy's worker threads (0: one per core)
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Where binaries come from and results go
    #[command(flatten)]
    pub output: Output,
}

/// `strait-bench discovery`: one change fanned out to many watching proxies.
#[derive(Args, Clone, Debug, Serialize)]
pub struct DiscoveryArgs {
    /// Watch streams (simulated proxies, each on its own mTLS connection), comma-separated;
    /// one control plane per count
    #[arg(long, value_delimiter = ',', default_value = "100,1000,5000")]
    pub streams: Vec<usize>,
    /// Configuration changes timed per count
    #[arg(long, default_value_t = 5)]
    pub changes: usize,
    /// Connections opened at once while the streams are set up
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,
    /// How long every stream may take to get a snapshot before the run fails
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    #[serde(serialize_with = "secs")]
    pub timeout: Duration,
    #[command(flatten)]
    pub output: Output,
}

/// `strait-bench idle`: memory per idle client connection alone, the quick check of issue
/// 15's budget (`run` measures the same figure among everything else).
#[derive(Args, Clone, Debug, Serialize)]
pub struct IdleArgs {
    /// Client connections held open per measurement
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Fresh meshes measured one after the other (each figure is reported per round)
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Which of HTTP/1.1 and HTTP/2 to measure, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "http1,http2")]
    pub protocols: Vec<crate::clients::Protocol>,
    /// The proxies' worker threads (0: one per core)
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Where binaries come from and results go
    #[command(flatten)]
    pub output: Output,
}
