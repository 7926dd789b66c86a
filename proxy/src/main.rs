//! `strait-proxy`: the command-line entry point. Parses flags, sets up logging and the
//! runtime, and hands over to `strait_proxy::run::run`.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use strait_proxy::config::{LogFormat, ProxyConfig};
use tracing_subscriber::EnvFilter;

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
    Run(Box<ProxyConfig>),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(config) => {
            init_logging(&config.log, config.log_format)?;
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if config.threads > 0 {
                runtime.worker_threads(config.threads);
            }
            let runtime = runtime
                .enable_all()
                .thread_name("strait-proxy")
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(strait_proxy::run::run(*config, shutdown_signal()))
        }
    }
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
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
