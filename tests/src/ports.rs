//! Free loopback ports for settings that must be known before a process starts (a workload's
//! proxy port appears in the control plane's configuration before the proxy runs).
//!
//! Ports are drawn at random below the kernel's ephemeral range, so they do not collide with
//! the ports the kernel hands out for port-0 binds and outgoing connections, and each is
//! checked to be bindable right now.

use std::net::TcpListener;

/// A port on 127.0.0.1 nothing listens on at the time of the call.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = fastrand::u16(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port found in 20000-32000")
}
