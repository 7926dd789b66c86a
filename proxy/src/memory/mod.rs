//! Keeping the proxy inside its memory limit: [`cgroup`] finds the limit, [`budget`] turns it
//! into caps, and [`MemoryGuard`] watches resident memory so the accept loops shed new
//! connections (counted in `strait_tcp_connections_refused_total{reason="memory"}`) before
//! the kernel's OOM killer ends every connection at once.

pub mod budget;
pub mod cgroup;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often resident memory is read. A burst of new connections between two readings is
/// still bounded by the connection cap the plan derived.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Where the memory limit in force came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitSource {
    /// `--memory-limit`.
    Flag,
    /// The container's cgroup, at this path.
    Cgroup(std::path::PathBuf),
}

/// The memory limit to plan for: the flag when given, else the container's cgroup limit.
pub fn limit_in_force(flag: Option<u64>) -> Option<(u64, LimitSource)> {
    match flag {
        Some(bytes) => Some((bytes, LimitSource::Flag)),
        None => cgroup::container_limit().map(|(bytes, at)| (bytes, LimitSource::Cgroup(at.dir))),
    }
}

/// The proxy's resident memory, sampled, and the line above which new connections are shed.
#[derive(Debug)]
pub struct MemoryGuard {
    resident: AtomicU64,
    shed_above: Option<u64>,
}

impl MemoryGuard {
    /// A guard that sheds above `shed_above` bytes resident (never, when `None`).
    pub fn new(shed_above: Option<u64>) -> Self {
        MemoryGuard {
            resident: AtomicU64::new(resident_bytes().unwrap_or(0)),
            shed_above,
        }
    }

    /// Whether a new connection should be refused to stay within the limit.
    pub fn over_budget(&self) -> bool {
        self.shed_above
            .is_some_and(|line| self.resident.load(Ordering::Relaxed) > line)
    }

    /// Reads resident memory every [`SAMPLE_EVERY`] and exports it as
    /// `process_resident_memory_bytes`, until the process exits.
    pub async fn sample(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(bytes) = resident_bytes() {
                self.resident.store(bytes, Ordering::Relaxed);
                metrics::gauge!("process_resident_memory_bytes").set(bytes as f64);
            }
        }
    }
}

/// The process's resident set (`VmRSS` of `/proc/self/status`), in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_rss(&status)
}

fn vm_rss(status: &str) -> Option<u64> {
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim();
    kib.parse::<u64>().ok()?.checked_mul(1024)
}

/// Parses a memory size as Kubernetes writes one: bytes, or with a binary (`Ki`, `Mi`, `Gi`,
/// `Ti`) or decimal (`k`, `M`, `G`, `T`) suffix.
///
/// ```
/// assert_eq!(strait_proxy::memory::parse_size("64Mi"), Ok(64 << 20));
/// assert_eq!(strait_proxy::memory::parse_size("1G"), Ok(1_000_000_000));
/// assert!(strait_proxy::memory::parse_size("64MB").is_err());
/// ```
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("memory size {text:?} does not start with a whole number of bytes"))?;
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(format!(
                "memory size {text:?} has unknown suffix {suffix:?} (use Ki, Mi, Gi, Ti, k, M, G or T)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("memory size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_kubernetes_suffixes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_size("2Gi"), Ok(2 << 30));
        assert_eq!(parse_size("128M"), Ok(128_000_000));
    }

    #[test]
    fn bad_sizes_are_refused_with_the_input_named() {
        for bad in ["", "Mi", "64 Mi", "64MB", "-1", "1.5Gi", "99999999999Ti"] {
            let error = parse_size(bad).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn resident_memory_is_read_from_the_status_file() {
        let status = "Name:\tstrait-proxy\nVmPeak:\t  20000 kB\nVmRSS:\t    9876 kB\n";
        assert_eq!(vm_rss(status), Some(9876 * 1024));
        assert_eq!(vm_rss("Name:\tx\n"), None);
        assert!(resident_bytes().unwrap() > 0);
    }

    #[test]
    fn a_guard_sheds_only_above_its_line() {
        let guard = MemoryGuard::new(Some(1 << 20));
        guard.resident.store(2 << 20, Ordering::Relaxed);
        assert!(guard.over_budget());
        guard.resident.store(512 << 10, Ordering::Relaxed);
        assert!(!guard.over_budget());
        assert!(!MemoryGuard::new(None).over_budget());
    }
}
