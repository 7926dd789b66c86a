//! Network namespaces the tests create for themselves, so iptables redirection can be tested
//! for real without touching the machine's own network.
//!
//! A namespace is removed (with its rules and interfaces) when dropped. Code runs inside it
//! either as a child process (`ip netns exec`) or on a dedicated thread that has entered it
//! ([`NetNs::run`]) with its own single-threaded runtime.

use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;

use nix::sched::{CloneFlags, setns};

/// A network namespace owned by a test.
pub struct NetNs {
    name: String,
}

/// Whether the tests run as root, which namespaces and iptables need.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Returns `true` when a root-only test may run. Off CI, a non-root run skips with a message;
/// on CI (`CI=true`), which runs as root, a missing privilege is a failure, never a skip.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root for network namespaces and iptables, and CI must run it"
    );
    eprintln!("SKIPPED {test}: needs root for network namespaces and iptables");
    false
}

/// Runs `program args...`, panicking with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl NetNs {
    /// Creates a namespace named `strait-<tag>-<pid>` with loopback up.
    pub fn create(tag: &str) -> Self {
        let name = format!("strait-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.exec("ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace, panicking with its output when it fails.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs `f` on a thread inside the namespace with a fresh single-threaded runtime; every
    /// socket it opens lives in the namespace.
    pub fn run<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        self.spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// A TCP listener bound to `addr` inside the namespace, for the caller's own runtime to
    /// serve (a socket stays in the namespace it was created in, whichever thread uses it).
    pub fn bind_tcp(&self, addr: SocketAddr) -> std::net::TcpListener {
        let listener = self
            .run(move || async move { std::net::TcpListener::bind(addr) })
            .unwrap_or_else(|e| panic!("binding {addr} in namespace {}: {e}", self.name));
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        listener
    }

    /// [`NetNs::run`] without waiting: the thread's handle, to join when the work is done.
    pub fn spawn<F, Fut, T>(&self, f: F) -> std::thread::JoinHandle<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            setns(file, CloneFlags::CLONE_NEWNET).expect("entering the network namespace");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building the namespace runtime")
                .block_on(f())
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
