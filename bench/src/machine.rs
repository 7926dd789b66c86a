//! Where and what a run measured: the machine (cores, CPU model, kernel, load), the commit
//! and the time, as every recorded result states them.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// The machine a run measured on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU cores available to the run.
    pub cores: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// The kernel release.
    pub kernel: String,
    /// /proc/loadavg when the run started: other work on a shared machine shows here.
    pub load_at_start: String,
}

impl Machine {
    /// Reads this machine.
    pub fn read() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_at_start: read("/proc/loadavg").trim().to_owned(),
        }
    }

    /// One line for the history.
    pub fn describe(&self) -> String {
        format!(
            "{} cores, {}, Linux {}, load average at start {}",
            self.cores, self.cpu, self.kernel, self.load_at_start
        )
    }
}

/// The commit checked out in `repo` (`-dirty` when tracked files changed), or `unknown`
/// when git cannot tell.
pub fn commit(repo: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{commit}-dirty"),
            _ => commit,
        },
        None => "unknown".into(),
    }
}

/// Now, UTC: the day (`2026-12-02`) and the minute (`2026-12-02 07:41 UTC`).
pub fn now() -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let day = format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let minute = format!("{day} {:02}:{:02} UTC", now.hour(), now.minute());
    (day, minute)
}
