//! `strait`: the operator CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use strait_cli::{check, http_get, proxy_config, stat};

/// Operate a Strait mesh: check its health, read its golden signals, validate configuration,
/// inspect a proxy.
#[derive(Parser)]
#[command(name = "strait", version, about)]
struct Cli {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table", global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned columns.
    Table,
    /// JSON, for scripts.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check the control plane, the proxies' certificates and their sync; non-zero on failure.
    Check {
        /// Control plane gRPC address (host:port).
        #[arg(long, env = "STRAIT_CONTROL_PLANE")]
        control_plane: Option<String>,
        /// Control plane admin address, to compare the proxies' snapshot versions.
        #[arg(long, env = "STRAIT_CONTROL_PLANE_ADMIN")]
        control_plane_admin: Option<SocketAddr>,
        /// Trust anchors (PEM) to verify the control plane with.
        #[arg(long, env = "STRAIT_TRUST_ANCHORS")]
        trust_anchors: Option<PathBuf>,
        /// The identity the control plane must prove.
        #[arg(
            long,
            default_value = "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane"
        )]
        control_plane_identity: String,
        /// A proxy's admin address (repeatable).
        #[arg(long = "proxy")]
        proxies: Vec<SocketAddr>,
        /// Certificates expiring sooner than this fail the check.
        #[arg(long, value_parser = strait_control_plane::settings::parse_duration, default_value = "1h")]
        min_validity: Duration,
    },
    /// Golden signals (rate, success, latency, split) from proxies' metrics.
    Stat {
        /// A proxy's admin address (repeatable).
        #[arg(long = "proxy", required = true)]
        proxies: Vec<SocketAddr>,
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
        /// The proxy's admin address.
        addr: SocketAddr,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.output == Output::Json;
    match cli.command {
        Command::Check {
            control_plane,
            control_plane_admin,
            trust_anchors,
            control_plane_identity,
            proxies,
            min_validity,
        } => {
            if control_plane.is_none() && control_plane_admin.is_none() && proxies.is_empty() {
                eprintln!(
                    "strait check: nothing to check; give --control-plane, --control-plane-admin or --proxy"
                );
                return ExitCode::from(2);
            }
            let results = check::run(&check::CheckOptions {
                control_plane,
                control_plane_admin,
                trust_anchors,
                control_plane_identity,
                proxies,
                min_validity,
            })
            .await;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&results).unwrap_or_default()
                );
            } else {
                print!("{}", check::table(&results));
            }
            if results.iter().all(|r| r.ok) {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "strait check: {} of {} checks failed",
                    results.iter().filter(|r| !r.ok).count(),
                    results.len()
                );
                ExitCode::FAILURE
            }
        }
        Command::Stat {
            proxies,
            service,
            interval,
        } => {
            let mut before = Vec::new();
            for proxy in &proxies {
                match stat::scrape(*proxy).await {
                    Ok(snapshot) => before.push(snapshot),
                    Err(error) => return fail(&error.to_string()),
                }
            }
            tokio::time::sleep(interval).await;
            let mut after = Vec::new();
            for proxy in &proxies {
                match stat::scrape(*proxy).await {
                    Ok(snapshot) => after.push(snapshot),
                    Err(error) => return fail(&error.to_string()),
                }
            }
            let rows = stat::outbound(
                &before.iter().collect::<Vec<_>>(),
                &after.iter().collect::<Vec<_>>(),
                service.as_deref(),
            );
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                );
            } else if rows.is_empty() {
                println!("no outbound requests through these proxies in the last {interval:?}");
            } else {
                print!("{}", stat::outbound_table(&rows));
            }
            ExitCode::SUCCESS
        }
        Command::Validate { dir } => match strait_control_plane::config::load(&dir) {
            Ok(model) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "valid": true,
                            "services": model.services.len(),
                            "workloads": model.workloads.len(),
                            "routes": strait_control_plane::config::status_lines::json(&model),
                        })
                    );
                } else {
                    println!(
                        "{}: valid ({} services, {} workloads)",
                        dir.display(),
                        model.services.len(),
                        model.workloads.len()
                    );
                    for line in strait_control_plane::config::status_lines::lines(&model) {
                        println!("  {line}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                if json {
                    let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                    println!("{}", serde_json::json!({"valid": false, "errors": list}));
                } else {
                    eprint!("{}: {errors}", dir.display());
                }
                ExitCode::FAILURE
            }
        },
        Command::ProxyConfig { addr } => {
            let body = match http_get::get(addr, "/config", Duration::from_secs(5)).await {
                Ok(body) => body,
                Err(error) => return fail(&error.to_string()),
            };
            if json {
                println!("{body}");
                return ExitCode::SUCCESS;
            }
            match serde_json::from_str(&body) {
                Ok(snapshot) => {
                    print!("{}", proxy_config::summary(&snapshot));
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&format!("{addr}/config is not a snapshot: {error}")),
            }
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("strait: {message}");
    ExitCode::FAILURE
}
