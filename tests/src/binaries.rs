//! Finds the workspace's binaries next to the running test executable, so tests use exactly
//! the debug build `cargo build --workspace --bins` produced alongside them.

use std::path::PathBuf;

/// The path of the workspace binary `name` (e.g. `strait-proxy`).
///
/// Panics with a hint when it has not been built: the test command builds all binaries
/// before running the tests.
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("locating the test executable");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let binary = dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`)",
        binary.display()
    );
    binary
}
