//! Spawns the real binaries, reads their JSON logs, and stops them.
//!
//! Every binary logs one JSON object per line (`--log-format json`); the harness waits for a
//! known "listening" message and reads the bound addresses from its fields, so tests can use
//! port 0 everywhere and never race for ports.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::binaries;

/// A running child process whose output is captured line by line.
pub struct Process {
    child: Child,
    name: String,
    logs: Arc<Mutex<Vec<String>>>,
    ready: mpsc::Receiver<Value>,
}

impl Process {
    /// Spawns `command`, capturing stdout and stderr. `ready_message` is the log message
    /// whose fields [`Process::wait_ready`] returns.
    pub fn spawn(name: &str, mut command: Command, ready_message: &'static str) -> Self {
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        for (stream, ready_tx) in [
            (
                Box::new(stdout) as Box<dyn std::io::Read + Send>,
                Some(ready_tx),
            ),
            (Box::new(stderr), None),
        ] {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(tx) = &ready_tx
                        && let Ok(json) = serde_json::from_str::<Value>(&line)
                        && json["fields"]["message"] == ready_message
                    {
                        let _ = tx.send(json["fields"].clone());
                    }
                    logs.lock().expect("log lock").push(line);
                }
            });
        }
        Self {
            child,
            name: name.to_owned(),
            logs,
            ready,
        }
    }

    /// Waits for the ready message and returns its fields.
    pub fn wait_ready(&mut self, timeout: Duration) -> Value {
        match self.ready.recv_timeout(timeout) {
            Ok(fields) => fields,
            Err(_) => {
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "{} did not become ready within {timeout:?} (exit status {status:?}); output:\n{}",
                    self.name,
                    self.logs().join("\n")
                );
            }
        }
    }

    /// Every line the process printed so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Whether any log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.logs().iter().any(|line| line.contains(needle))
    }

    /// How many log lines contain `needle`.
    pub fn count_logged(&self, needle: &str) -> usize {
        self.logs()
            .iter()
            .filter(|line| line.contains(needle))
            .count()
    }

    /// Waits up to `timeout` for a log line containing `needle` (output is read by another
    /// thread, so a line may land a moment after the event it reports).
    pub fn wait_logged(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logged(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.logged(needle)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signalling the child");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}; output:\n{}",
                self.name,
                self.logs().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("polling the child").is_some()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `strait-proxy` and its bound addresses.
pub struct Proxy {
    /// The process.
    pub process: Process,
    /// Outbound listener.
    pub outbound: SocketAddr,
    /// Inbound listener.
    pub inbound: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
}

/// A command running `binary`, inside network namespace `netns` (`ip netns exec`) and under
/// `uid` (util-linux `setpriv`, since entering a namespace needs root) when given.
pub fn in_netns(netns: Option<&str>, uid: Option<u32>, binary: &Path) -> Command {
    let mut args: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["ip", "netns", "exec", ns].map(String::from));
    }
    if let Some(uid) = uid {
        args.extend([
            "setpriv".to_owned(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".to_owned(),
        ]);
    }
    args.push(binary.display().to_string());
    let mut command = Command::new(&args[0]);
    command.args(&args[1..]);
    command
}

/// Settings for a proxy to start: flags default to loopback port 0 and JSON logs.
pub struct ProxyBuilder {
    flags: BTreeMap<String, String>,
    env: Vec<(String, String)>,
    netns: Option<String>,
    uid: Option<u32>,
    cgroup: Option<PathBuf>,
}

impl Proxy {
    /// A proxy with the default test flags.
    pub fn builder() -> ProxyBuilder {
        let mut flags = BTreeMap::new();
        for (flag, value) in [
            ("--outbound-addr", "127.0.0.1:0"),
            ("--inbound-addr", "127.0.0.1:0"),
            ("--admin-addr", "127.0.0.1:0"),
            ("--log-format", "json"),
            ("--log", "info"),
        ] {
            flags.insert(flag.to_owned(), value.to_owned());
        }
        ProxyBuilder {
            flags,
            env: Vec::new(),
            netns: None,
            uid: None,
            cgroup: None,
        }
    }

    /// Fetches `path` from the admin server.
    pub async fn admin_get(&self, path: &str) -> crate::client::Collected {
        crate::client::get(self.admin, "admin", path).await
    }
}

impl ProxyBuilder {
    /// Sets (or replaces) a flag, e.g. `flag("--detect-timeout", "1s")`.
    pub fn flag(mut self, flag: &str, value: impl ToString) -> Self {
        self.flags.insert(flag.to_owned(), value.to_string());
        self
    }

    /// Removes a default flag, e.g. to set it through the environment instead.
    pub fn without_flag(mut self, flag: &str) -> Self {
        self.flags.remove(flag);
        self
    }

    /// Sets an environment variable for the proxy.
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    /// Uses a static snapshot file.
    pub fn snapshot(self, path: &Path) -> Self {
        self.flag("--snapshot", path.display())
    }

    /// Runs the proxy inside the network namespace `name` (`ip netns exec`).
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_owned());
        self
    }

    /// Runs the proxy under `uid` (and the same gid), as the injector's pod spec does, so
    /// iptables can tell the proxy's own connections from the app's.
    pub fn run_as(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Starts the proxy inside the cgroup directory `dir` (it joins through `cgroup.procs`
    /// before the binary starts, so the proxy reads that cgroup's limits from its first line).
    pub fn cgroup(mut self, dir: &Path) -> Self {
        self.cgroup = Some(dir.to_owned());
        self
    }

    /// Starts the proxy and waits until it listens.
    pub fn start(self) -> Proxy {
        let binary = binaries::path("strait-proxy");
        let mut command = match &self.cgroup {
            Some(dir) => {
                assert!(
                    self.netns.is_none() && self.uid.is_none(),
                    "cgroup with netns or uid is not supported"
                );
                let mut command = Command::new("sh");
                command
                    .arg("-c")
                    .arg("echo $$ > \"$0\" && exec \"$@\"")
                    .arg(dir.join("cgroup.procs"))
                    .arg(&binary);
                command
            }
            None => in_netns(self.netns.as_deref(), self.uid, &binary),
        };
        command.arg("run");
        for (flag, value) in &self.flags {
            command.arg(flag).arg(value);
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut process = Process::spawn("strait-proxy", command, "strait-proxy listening");
        let fields = process.wait_ready(Duration::from_secs(20));
        let addr = |key: &str| -> SocketAddr {
            fields[key]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("listening line lacks {key}: {fields}"))
        };
        Proxy {
            outbound: addr("outbound"),
            inbound: addr("inbound"),
            admin: addr("admin"),
            process,
        }
    }
}
