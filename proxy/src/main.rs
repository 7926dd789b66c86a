//! `strait-proxy`: the command-line entry point. Parses flags, sets up logging and the
//! runtime, and hands over to `strait_proxy::run::run`.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use strait_proxy::admin::LogLevel;
use strait_proxy::flags::{LogFormat, ProxyFlags};
use strait_proxy::redirect::InitConfig;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Strait's sidecar proxy.
#[derive(Parser)]
#[command(name = "strait-proxy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy: outbound, inbound and admin listeners.
    Run(Box<ProxyFlags>),
    /// Install the iptables rules that redirect this network namespace's TCP traffic to the
    /// proxy (a pod's init step); with --cleanup, remove them.
    Init(InitConfig),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Init(config) => {
            strait_proxy::redirect::run(&config).context("installing the traffic redirection rules")
        }
        Command::Run(config) => {
            let log_level = init_logging(&config.log, config.log_format)?;
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if config.threads > 0 {
                runtime.worker_threads(config.threads);
            }
            let runtime = runtime
                .enable_all()
                .thread_name("strait-proxy")
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(strait_proxy::run::run(
                *config,
                Some(log_level),
                shutdown_signal(),
            ))
        }
    }
}

/// The log filter, reloadable through the admin server's `/log-level`.
struct ReloadableFilter {
    handle: reload::Handle<EnvFilter, Registry>,
    current: Mutex<String>,
}

impl LogLevel for ReloadableFilter {
    fn current(&self) -> String {
        self.current
            .lock()
            .expect("log filter lock poisoned")
            .clone()
    }

    fn set(&self, filter: &str) -> Result<(), String> {
        let parsed = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
        self.handle.reload(parsed).map_err(|e| e.to_string())?;
        *self.current.lock().expect("log filter lock poisoned") = filter.to_owned();
        Ok(())
    }
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<Arc<dyn LogLevel>> {
    let parsed =
        EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?;
    let (layer, handle) = reload::Layer::new(parsed);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let registry = tracing_subscriber::registry().with(layer);
    match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(ansi))
            .init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json())
            .init(),
    }
    Ok(Arc::new(ReloadableFilter {
        handle,
        current: Mutex::new(filter.to_owned()),
    }))
}

/// Completes on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}
