//! `strait-demo`: a working mesh on one machine, in one command.
//!
//! It starts the control plane (with a development CA, watching `examples/local/`), one real
//! `strait-proxy` process per workload declared there, and the demo apps behind them: a
//! frontend that calls `backend`, which the route splits 90/10 between `backend-v1` (two
//! replicas, one of which fails 30 % of requests) and the canary `backend-v2`. It drives
//! steady traffic at the frontend and prints, every few seconds, what the client sees and what
//! the proxies measure. Ctrl-C stops every process it started and removes its temporary files.

mod apps;
mod output;
mod processes;
mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use output::say;
use strait_control_plane::config::model::Workload;

/// The workload whose app fails a share of requests, to show retries hiding it.
const FLAKY: &str = "backend-v1-b";
/// How often it fails, in percent.
const FLAKY_PERCENT: u64 = 30;

/// Runs a local Strait mesh with demo traffic.
#[derive(Parser)]
#[command(name = "strait-demo", version, about)]
struct Args {
    /// The mesh configuration (watched: edit it while the demo runs).
    #[arg(long, env = "STRAIT_DEMO_CONFIG", default_value = "examples/local")]
    config: PathBuf,
    /// Seconds between reports.
    #[arg(long, env = "STRAIT_DEMO_REFRESH", value_parser = strait_control_plane::settings::parse_duration, default_value = "3s")]
    refresh: Duration,
    /// Requests per second the traffic driver sends to the frontend.
    #[arg(long, env = "STRAIT_DEMO_RPS", default_value_t = 100)]
    rps: u32,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, env = "STRAIT_DEMO_DURATION", value_parser = strait_control_plane::settings::parse_duration)]
    duration: Option<Duration>,
    /// Control plane gRPC port.
    #[arg(long, default_value_t = 18090)]
    control_plane_port: u16,
    /// Control plane admin port.
    #[arg(long, default_value_t = 19990)]
    control_plane_admin_port: u16,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(args))
}

/// A workload and the addresses its app and proxy use.
#[derive(Clone, Debug)]
pub struct DemoWorkload {
    /// Workload name.
    pub name: String,
    /// Its service account.
    pub service_account: String,
    /// Where its app listens.
    pub app: SocketAddr,
    /// Its proxy's inbound port.
    pub inbound_port: u16,
    /// Its proxy's admin address.
    pub admin: SocketAddr,
    /// Its proxy's outbound address.
    pub outbound: SocketAddr,
    /// Its version label, if any.
    pub version: String,
}

fn demo_workload(workload: &Workload) -> anyhow::Result<DemoWorkload> {
    let name = workload.key.name.clone();
    let port = |p: Option<u16>, what: &str| {
        p.with_context(|| format!("workload {name} declares no proxy {what} port"))
    };
    let app_port = *workload
        .ports
        .get("http")
        .with_context(|| format!("workload {name} declares no port named http"))?;
    let localhost = |port: u16| SocketAddr::new(workload.address, port);
    Ok(DemoWorkload {
        service_account: workload.identity.service_account().to_owned(),
        app: localhost(app_port),
        inbound_port: workload.proxy_inbound_port,
        admin: localhost(port(workload.proxy_admin_port, "admin")?),
        outbound: localhost(port(workload.proxy_outbound_port, "outbound")?),
        version: workload.labels.get("version").cloned().unwrap_or_default(),
        name,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config.canonicalize().with_context(|| {
        format!(
            "the demo configuration {} does not exist (run from the repository root)",
            args.config.display()
        )
    })?;
    let model = strait_control_plane::config::load(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    let workloads: Vec<DemoWorkload> = model
        .workloads
        .values()
        .map(demo_workload)
        .collect::<Result<_, _>>()?;
    let frontend = workloads
        .iter()
        .find(|w| w.name.starts_with("frontend"))
        .context("the configuration has no frontend workload")?
        .clone();

    let control_plane = SocketAddr::from(([127, 0, 0, 1], args.control_plane_port));
    let control_plane_admin = SocketAddr::from(([127, 0, 0, 1], args.control_plane_admin_port));
    let mut ports: Vec<SocketAddr> = vec![control_plane, control_plane_admin];
    for w in &workloads {
        ports.extend([
            w.app,
            SocketAddr::new(w.app.ip(), w.inbound_port),
            w.admin,
            w.outbound,
        ]);
    }
    processes::ensure_free(&ports)?;

    let binaries = processes::binaries()?;
    let scratch = processes::Scratch::create()?;
    say!(
        "strait-demo: temporary files in {}",
        scratch.path().display()
    );

    // Apps first, so the proxies find them; each workload's app is named after it.
    for w in &workloads {
        if w.name == frontend.name {
            apps::start_frontend(w.app, frontend.outbound, "backend.demo:80").await?;
        } else {
            let fail = if w.name == FLAKY { FLAKY_PERCENT } else { 0 };
            apps::start_backend(w.app, &w.name, &w.version, fail).await?;
        }
    }

    let mut children = processes::Children::default();
    let result = async {
        children.start_control_plane(
            &binaries,
            &config,
            &scratch,
            control_plane,
            control_plane_admin,
        )?;
        processes::wait_ready(control_plane_admin, Duration::from_secs(30)).await?;
        for w in &workloads {
            children.start_proxy(&binaries, &config, &scratch, control_plane, w)?;
        }
        for w in &workloads {
            processes::wait_ready(w.admin, Duration::from_secs(30))
                .await
                .with_context(|| {
                    format!(
                        "the proxy of {} did not become ready; its log: {}",
                        w.name,
                        scratch.log(&w.name).display()
                    )
                })?;
        }
        report::banner(
            &workloads,
            control_plane,
            control_plane_admin,
            &config,
            &scratch,
        );
        let driver = apps::Driver::start(frontend.app, args.rps);
        report::run(
            &workloads,
            &frontend,
            &driver,
            args.refresh,
            args.duration,
            &mut children,
        )
        .await
    }
    .await;

    children.stop_all().await;
    let path = scratch.path().to_owned();
    match scratch.remove() {
        Ok(()) => say!(
            "strait-demo: stopped every process and removed {}",
            path.display()
        ),
        Err(error) => eprintln!("strait-demo: could not remove {}: {error}", path.display()),
    }
    result
}

/// Where a path is shown relative to the current directory when it is inside it.
pub fn display(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
}
