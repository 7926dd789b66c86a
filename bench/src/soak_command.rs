//! `strait-bench soak`: runs the harness's soak (`strait_tests::soak`, the code CI's short
//! soak runs) for as long as asked, prints every sample and the verdict, and records them.

use std::fmt::Write as _;

use strait_tests::soak::{self, CRITERION, Report, Settings};

use crate::settings::SoakArgs;

/// The soak's result as markdown.
pub fn render(report: &Report, machine: &str, command: &str) -> String {
    let s = &report.settings;
    let mut out = String::new();
    let _ = writeln!(out, "- Machine: {machine}");
    let _ = writeln!(out, "- Command: `{command}`");
    let _ = writeln!(
        out,
        "- Load: {} keep-alive HTTP/1.1 connections through one proxy (outbound → backend, `--threads {}`), {:.0} requests/s in all, {:.0} s with {:.0} s warm-up, sampled every {:.0} s",
        s.connections,
        s.threads,
        s.rate,
        s.duration.as_secs_f64(),
        s.warmup.as_secs_f64(),
        s.sample_every.as_secs_f64()
    );
    let _ = writeln!(out, "- Criterion: {CRITERION}");
    let _ = writeln!(
        out,
        "- Verdict: **{}**\n",
        if report.verdict.pass() {
            "pass"
        } else {
            "fail"
        }
    );
    let _ = writeln!(out, "| check | held | numbers |\n|---|---|---|");
    for check in &report.verdict.checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            check.name,
            if check.pass { "yes" } else { "**no**" },
            check.detail
        );
    }
    if let Some(error) = &report.first_error {
        let _ = writeln!(out, "\nFirst error: `{error}`");
    }
    let _ = writeln!(
        out,
        "\n| t (s) | RSS MiB | fds | connections | requests | errors |\n|---|---|---|---|---|---|"
    );
    for sample in &report.samples {
        let _ = writeln!(out, "{}", row(sample));
    }
    out
}

fn row(s: &soak::Sample) -> String {
    format!(
        "| {:.0} | {:.1} | {} | {} | {} | {} |",
        s.at_secs,
        s.rss_bytes as f64 / (1024.0 * 1024.0),
        s.fds,
        s.connections_open,
        s.requests,
        s.errors
    )
}

/// Runs the soak, printing samples as they come.
pub async fn run(args: &SoakArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.warmup < args.duration,
        "--warmup {:?} must be shorter than --duration {:?}",
        args.warmup,
        args.duration
    );
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let settings = Settings {
        connections: args.connections,
        duration: args.duration,
        warmup: args.warmup,
        rate: args.rate,
        sample_every: args.sample_every,
        threads: args.threads,
    };
    eprintln!("| t (s) | RSS MiB | fds | connections | requests | errors |");
    Ok(soak::run(&settings, |sample| eprintln!("{}", row(sample))).await)
}
