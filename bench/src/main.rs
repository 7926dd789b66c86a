//! `strait-bench`: the benchmark command. `run` compares `direct`, the peers (`nginx` and
//! `haproxy` as two-hop mutual-TLS pairs), `mesh-plain` and `mesh-mtls` side by side for HTTP/1.1, HTTP/2, gRPC and TCP through the real binaries;
//! `soak` holds many connections under steady load for a long time; `discovery` times one
//! configuration change reaching thousands of watching proxies. Each prints its tables and
//! records them (dated markdown and JSON, and a section appended to bench/RESULTS.md).
//!
//! `scripts/bench` builds the release binaries and runs this with its arguments.

mod clients;
mod comparison;
mod discovery_fanout;
mod handshakes;
mod idle_command;
mod latency;
mod machine;
mod markdown;
mod peers;
mod record;
mod resources;
mod results;
mod settings;
mod soak_command;
mod suite;
mod tcp_backend;
mod throughput;
mod world;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::machine::Machine;
use crate::record::Record;
use crate::results::Results;
use crate::settings::{DiscoveryArgs, IdleArgs, Output, Settings, SoakArgs};

/// Strait's benchmark command.
#[derive(Parser)]
#[command(name = "strait-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// direct, nginx, HAProxy, mesh-plain and mesh-mtls for HTTP/1.1, HTTP/2, gRPC and TCP.
    Run(Box<Settings>),
    /// Many connections through one proxy under steady load; judges RSS, fds and errors.
    Soak(Box<SoakArgs>),
    /// One configuration change pushed to N watching proxies: time until all have it, CP RSS.
    Discovery(Box<DiscoveryArgs>),
    /// Memory per idle client connection (HTTP/1.1, HTTP/2) on fresh meshes, alone.
    Idle(Box<IdleArgs>),
}

/// The command line as typed: `scripts/bench` passes its own invocation on, so the history
/// shows the command a reader would run.
fn command_line() -> String {
    std::env::var("STRAIT_BENCH_COMMAND").unwrap_or_else(|_| {
        let args: Vec<String> = std::env::args().skip(1).collect();
        format!("strait-bench {}", args.join(" "))
    })
}

fn use_binaries(output: &Output) -> anyhow::Result<PathBuf> {
    let dir = match &output.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("locating strait-bench")?
            .parent()
            .context("strait-bench has no directory")?
            .to_owned(),
    };
    for binary in ["strait-proxy", "strait-control-plane"] {
        anyhow::ensure!(
            dir.join(binary).exists(),
            "{} has no {binary}: build it (scripts/bench does) or pass --bin-dir",
            dir.display()
        );
    }
    strait_tests::binaries::use_dir(&dir);
    Ok(dir)
}

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// What every recorded run shares: the machine, the commit and the time it started.
struct Session {
    machine: Machine,
    commit: String,
    day: String,
    minute: String,
}

impl Session {
    fn begin() -> Self {
        let (day, minute) = machine::now();
        Self {
            machine: Machine::read(),
            commit: machine::commit(repo_root()),
            day,
            minute,
        }
    }

    /// Prints `markdown` and, unless `--no-record`, writes it with `json` (to which the
    /// date, commit, command and machine are added) and appends it to the history.
    fn record(
        &self,
        output: &Output,
        kind: &str,
        title: &str,
        markdown: &str,
        mut json: serde_json::Value,
    ) -> anyhow::Result<()> {
        println!("{markdown}");
        if output.no_record {
            return Ok(());
        }
        if let Some(fields) = json.as_object_mut() {
            fields.insert("date".into(), self.minute.clone().into());
            fields.insert("commit".into(), self.commit.clone().into());
            fields.insert("command".into(), command_line().into());
            fields.insert(
                "machine".into(),
                serde_json::to_value(&self.machine).context("encoding the machine")?,
            );
        }
        let written = record::write(
            output,
            &Record {
                day: &self.day,
                minute: &self.minute,
                commit: &self.commit,
                kind,
                title,
                markdown,
                json: &json,
            },
        )?;
        for path in written {
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let bin_dir = use_binaries(&settings.output)?;
    let session = Session::begin();
    eprintln!(
        "strait-bench run: binaries from {}, {}",
        bin_dir.display(),
        session.machine.describe()
    );
    let (modes, tracing) = suite::run(&settings).await?;
    // The peers stand beside the one-thread mode; without it, the first mode is judged.
    let judged = modes.iter().find(|m| m.threads == 1).or(modes.first());
    let peers = judged.map(comparison::against_peers).unwrap_or_default();
    let targets = judged
        .map(|mode| results::targets(mode, &peers))
        .unwrap_or_default();
    let results = Results {
        date: session.minute.clone(),
        commit: session.commit.clone(),
        command: command_line(),
        machine: session.machine.clone(),
        settings: settings.clone(),
        modes,
        tracing,
        peers,
        targets,
    };
    let json = serde_json::to_value(&results).context("encoding the results")?;
    session.record(
        &settings.output,
        "",
        "Benchmark: direct, nginx, HAProxy, mesh-plain, mesh-mtls",
        &markdown::render(&results),
        json,
    )
}

async fn soak(args: SoakArgs) -> anyhow::Result<()> {
    use_binaries(&args.output)?;
    let session = Session::begin();
    let report = soak_command::run(&args).await?;
    let markdown = soak_command::render(&report, &session.machine.describe(), &command_line());
    let json = serde_json::json!({ "soak": report, "pass": report.verdict.pass() });
    session.record(&args.output, "soak", "Soak", &markdown, json)?;
    anyhow::ensure!(report.verdict.pass(), "the soak failed its criterion");
    Ok(())
}

async fn discovery(args: DiscoveryArgs) -> anyhow::Result<()> {
    use_binaries(&args.output)?;
    let session = Session::begin();
    let results = discovery_fanout::run(&args).await?;
    let markdown = discovery_fanout::render(&results, &session.machine.describe(), &command_line());
    let json = serde_json::json!({ "settings": args, "fan_out": results });
    session.record(
        &args.output,
        "discovery",
        "Discovery fan-out",
        &markdown,
        json,
    )
}

async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    use_binaries(&args.output)?;
    let session = Session::begin();
    let rows = idle_command::run(&args).await?;
    let markdown = idle_command::render(&rows, &args, &session.machine.describe(), &command_line());
    let json = serde_json::json!({ "settings": args, "idle": rows });
    session.record(
        &args.output,
        "idle",
        "Memory per idle client connection",
        &markdown,
        json,
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(settings) => run(*settings).await,
        Command::Soak(args) => soak(*args).await,
        Command::Discovery(args) => discovery(*args).await,
        Command::Idle(args) => idle(*args).await,
    }
}
