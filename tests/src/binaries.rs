//! Finds the workspace's binaries: by default next to the running test executable, so tests
//! use exactly the debug build `cargo build --workspace --bins` produced alongside them; a
//! program outside `deps/` (the benchmark, which drives the release build) names the
//! directory once with [`use_dir`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Makes [`path`] look in `dir` (e.g. `target/release`) instead of next to the test
/// executable. Only the first call counts: every process in one run comes from one build.
pub fn use_dir(dir: &Path) {
    let _ = DIR.set(dir.to_owned());
}

/// The path of the workspace binary `name` (e.g. `strait-proxy`).
///
/// Panics with a hint when it has not been built: the test command builds all binaries
/// before running the tests.
pub fn path(name: &str) -> PathBuf {
    let dir = DIR.get().cloned().unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("locating the test executable");
        // target/<profile>/deps/<test> → target/<profile>/<name>
        exe.parent()
            .and_then(|deps| deps.parent())
            .expect("test executable lives in target/<profile>/deps")
            .to_owned()
    });
    let binary = dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`)",
        binary.display()
    );
    binary
}
