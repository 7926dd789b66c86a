//! What a running process uses, read from `/proc`: resident memory (`VmRSS`), open file
//! descriptors, and time on CPU (the first field of every thread's `schedstat`, in
//! nanoseconds, which counts exactly the time the scheduler ran the thread).

use std::io;
use std::path::Path;
use std::time::Duration;

fn context(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("reading {}: {error}", path.display()))
}

/// Resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let path = Path::new("/proc").join(pid.to_string()).join("status");
    let status = std::fs::read_to_string(&path).map_err(|e| context(&path, e))?;
    status
        .lines()
        .find_map(|line| {
            let kib = line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?;
            kib.trim().parse::<u64>().ok()
        })
        .map(|kib| kib * 1024)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} has no VmRSS line", path.display()),
            )
        })
}

/// File descriptors process `pid` has open.
pub fn open_fds(pid: u32) -> io::Result<usize> {
    let path = Path::new("/proc").join(pid.to_string()).join("fd");
    Ok(std::fs::read_dir(&path)
        .map_err(|e| context(&path, e))?
        .count())
}

/// Time the threads of process `pid` have spent on CPU so far. Threads that exit between
/// listing and reading are skipped: their time is lost to both readings of a before/after
/// pair only if they exit in between, which the proxies' long-lived workers do not.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    let mut total = 0u64;
    for task in std::fs::read_dir(&tasks).map_err(|e| context(&tasks, e))? {
        let path = task
            .map_err(|e| context(&tasks, e))?
            .path()
            .join("schedstat");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let on_cpu = text
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} does not start with a number: {text:?}", path.display()),
                )
            })?;
        total += on_cpu;
    }
    Ok(Duration::from_nanos(total))
}

/// Raises this process's open-file limit to at least `wanted` (up to the hard limit, which
/// root may raise too). Child processes started afterwards inherit it. Returns the limit now
/// in force.
pub fn raise_fd_limit(wanted: u64) -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft >= wanted {
        return Ok(soft);
    }
    // Root may lift the hard limit; anyone else gets what the hard limit allows.
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted.max(hard)).is_ok() {
        return Ok(wanted);
    }
    let soft = wanted.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).map_err(|e| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("raising the open-file limit to {soft}: {e}"),
        )
    })?;
    Ok(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_descriptors_and_cpu_time() {
        let pid = std::process::id();
        let rss = rss_bytes(pid).unwrap();
        assert!(rss > 1024 * 1024, "{rss}");
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let fds = open_fds(pid).unwrap();
        assert!(fds >= 4, "stdin, stdout, stderr and the open file: {fds}");
        drop(file);
        // Spin until the scheduler says 20 ms were spent on CPU; on a busy machine that takes
        // longer than 20 ms of wall time, never less.
        let before = cpu_time(pid).unwrap();
        let wall = std::time::Instant::now();
        let mut spent = Duration::ZERO;
        while spent < Duration::from_millis(20) && wall.elapsed() < Duration::from_secs(10) {
            std::hint::black_box(0u64);
            spent = cpu_time(pid).unwrap() - before;
        }
        assert!(spent >= Duration::from_millis(20), "{spent:?}");
        // Every thread of the process counts (the harness has more than this one), so CPU time
        // may run a little ahead of wall time; what matters is that the units agree.
        assert!(
            wall.elapsed() * 3 / 2 >= spent,
            "{spent:?} on CPU in {:?}",
            wall.elapsed()
        );
    }

    #[test]
    fn a_missing_process_is_an_error_naming_the_file() {
        let error = rss_bytes(u32::MAX).unwrap_err();
        assert!(
            error.to_string().contains("/proc/4294967295/status"),
            "{error}"
        );
    }
}
