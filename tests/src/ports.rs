//! Free loopback ports for settings that must be known before a process starts (a workload's
//! proxy port appears in the control plane's configuration before the proxy runs).
//!
//! Ports are drawn at random below the kernel's ephemeral range, so they do not collide with
//! the ports the kernel hands out for port-0 binds and outgoing connections, and each is
//! checked to be bindable right now. Tests run as parallel processes, so a port is also
//! claimed with an exclusive lock on a file named after it, held until the test process ends:
//! two tests can never both be handed the same port before either binds it.

use std::fs::File;
use std::net::TcpListener;
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

/// Locks of the ports this process was handed.
static CLAIMED: Mutex<Vec<Flock<File>>> = Mutex::new(Vec::new());

/// A port on 127.0.0.1 nothing listens on at the time of the call, and no other test process
/// has been handed.
pub fn free_port() -> u16 {
    let dir = std::env::temp_dir().join("strait-test-ports");
    std::fs::create_dir_all(&dir).expect("creating the port claims directory");
    for _ in 0..1000 {
        let port = fastrand::u16(20_000..32_000);
        let Ok(file) = File::create(dir.join(port.to_string())) else {
            continue;
        };
        let Ok(claim) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            CLAIMED.lock().expect("port claims lock").push(claim);
            return port;
        }
    }
    panic!("no free port found in 20000-32000")
}
