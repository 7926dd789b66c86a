//! `strait`: the operator CLI.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use strait_cli::args::{Cli, Command, Output};
use strait_cli::target::{Endpoint, KubeOptions, Resolver, Role, Target};
use strait_cli::{check, http_get, proxy_config, stat};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.output == Output::Json;
    let mut kube = KubeOptions {
        kubeconfig: cli.kubeconfig,
        context: cli.context,
        namespace: cli.namespace,
        control_plane_namespace: String::new(),
    };
    match cli.command {
        Command::Check {
            control_plane,
            control_plane_admin,
            control_plane_namespace,
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
            kube.control_plane_namespace = control_plane_namespace;
            let resolver = Resolver::new(kube);
            let control_plane_admin = match control_plane_admin {
                Some(target) => match resolver.resolve(&target, Role::ControlPlaneAdmin).await {
                    Ok(endpoint) => Some(endpoint),
                    Err(error) => return fail(&error.to_string()),
                },
                None => None,
            };
            let proxies = match resolve_all(&resolver, &proxies).await {
                Ok(endpoints) => endpoints,
                Err(message) => return fail(&message),
            };
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
            mut targets,
            proxies,
            service,
            interval,
        } => {
            targets.extend(proxies);
            if targets.is_empty() {
                eprintln!(
                    "strait stat: no proxy to read; name one or more (HOST:PORT, deploy/NAME, pod/NAME, svc/NAME)"
                );
                return ExitCode::from(2);
            }
            let resolver = Resolver::new(kube);
            let endpoints = match resolve_all(&resolver, &targets).await {
                Ok(endpoints) => endpoints,
                Err(message) => return fail(&message),
            };
            stat_command(&endpoints, service.as_deref(), interval, json).await
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
            let endpoint = match Resolver::new(kube).resolve(&addr, Role::Proxy).await {
                Ok(endpoint) => endpoint,
                Err(error) => return fail(&error.to_string()),
            };
            let body = match http_get::get_from(&endpoint, "/config", Duration::from_secs(5)).await
            {
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
                Err(error) => fail(&format!("{endpoint}/config is not a snapshot: {error}")),
            }
        }
    }
}

async fn resolve_all(resolver: &Resolver, targets: &[Target]) -> Result<Vec<Endpoint>, String> {
    let mut endpoints = Vec::with_capacity(targets.len());
    for target in targets {
        endpoints.push(
            resolver
                .resolve(target, Role::Proxy)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(endpoints)
}

async fn stat_command(
    proxies: &[Endpoint],
    service: Option<&str>,
    interval: Duration,
    json: bool,
) -> ExitCode {
    let mut before = Vec::new();
    for proxy in proxies {
        match stat::scrape_endpoint(proxy).await {
            Ok(snapshot) => before.push(snapshot),
            Err(error) => return fail(&error.to_string()),
        }
    }
    tokio::time::sleep(interval).await;
    let mut after = Vec::new();
    for proxy in proxies {
        match stat::scrape_endpoint(proxy).await {
            Ok(snapshot) => after.push(snapshot),
            Err(error) => return fail(&error.to_string()),
        }
    }
    let rows = stat::outbound(
        &before.iter().collect::<Vec<_>>(),
        &after.iter().collect::<Vec<_>>(),
        service,
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

fn fail(message: &str) -> ExitCode {
    eprintln!("strait: {message}");
    ExitCode::FAILURE
}
