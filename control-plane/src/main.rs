//! `strait-control-plane`: the command-line entry point.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use strait_control_plane::settings::{ControlPlaneConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Strait's control plane: certificate authority, configuration and discovery.
#[derive(Parser)]
#[command(name = "strait-control-plane", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve identity and discovery.
    Run(Box<ControlPlaneConfig>),
    /// Check a configuration directory and print every error found.
    Validate {
        /// The directory of YAML files.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Validate { dir } => match strait_control_plane::config::load(&dir) {
            Ok(model) => {
                println!(
                    "{}: valid ({} services, {} workloads, {} routed service ports, {} backend policies, {} authorization policies)",
                    dir.display(),
                    model.services.len(),
                    model.workloads.len(),
                    model.routes.len(),
                    model.backend_policies.len(),
                    model.authorization_policies.len()
                );
                for refused in &model.refused_rules {
                    println!("  refused rule (the route's other rules apply): {refused}");
                }
                for line in strait_control_plane::config::status_lines::lines(&model) {
                    println!("  {line}");
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprint!("{}: {errors}", dir.display());
                ExitCode::FAILURE
            }
        },
        Command::Run(config) => match run(*config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("strait-control-plane: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(config: ControlPlaneConfig) -> anyhow::Result<()> {
    // Each proxy's connection carries one Watch stream, open for hours and quiet between
    // changes: give its HTTP/2 codec buffers (~28 KiB) back while it waits, not only once no
    // stream is open (third_party/README.md).
    h2::strait::release_buffers_while_streams_open();
    let filter = EnvFilter::try_new(&config.log)
        .with_context(|| format!("invalid log filter {:?}", config.log))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strait-cp")
        .build()
        .context("starting the async runtime")?
        .block_on(strait_control_plane::run::run(config, shutdown_signal()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}
