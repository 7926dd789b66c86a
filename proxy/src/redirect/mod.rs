//! `strait-proxy init`: installs (or, with `--cleanup`, removes) the iptables rules that
//! redirect a pod's TCP traffic to its proxy, in the current network namespace.
//!
//! The rules themselves are planned by [`rules`], a pure function; this module is the shell
//! around it: read the table with `iptables-save`, apply the plan with
//! `iptables-restore --noflush` (one atomic commit per table), print what it applied.
//! It runs once per pod, before the app starts, as the injector's init container.
//!
//! IPv6 gets the same rules through `ip6tables` whenever the pod's network namespace has an
//! IPv6 address other than loopback (`--ipv6 auto`, the default): Kubernetes tells an
//! admission webhook nothing about a pod's IP families, but the namespace the init container
//! runs in knows them for certain, so deciding here needs no setting to keep in step with the
//! cluster, and an IPv4-only pod (no IPv6 in its kernel, or loopback only) is left exactly as
//! before.

pub mod family;
pub mod rules;

use std::io::Write as _;
use std::process::{Command, Stdio};

use clap::Args;

use family::Ipv6Rules;
use rules::{PortRange, RedirectPlan};

/// Settings of `strait-proxy init`.
#[derive(Args, Clone, Debug)]
pub struct InitConfig {
    /// UID the proxy runs as; its own connections are never redirected.
    #[arg(long, env = "STRAIT_INIT_PROXY_UID", default_value_t = 2102)]
    pub proxy_uid: u32,

    /// Port of the proxy's inbound listener, where incoming connections are redirected.
    #[arg(long, env = "STRAIT_INIT_INBOUND_PORT", default_value_t = 4143)]
    pub inbound_port: u16,

    /// Port of the proxy's outbound listener, where the pod's own connections are redirected.
    /// Incoming connections to this port are never redirected (they reach nothing: the
    /// outbound listener is on loopback).
    #[arg(long, env = "STRAIT_INIT_OUTBOUND_PORT", default_value_t = 4140)]
    pub outbound_port: u16,

    /// Port of the proxy's admin listener. Incoming connections to it are never redirected,
    /// so probes and scrapes reach it directly, with their own source address.
    #[arg(long, env = "STRAIT_INIT_ADMIN_PORT", default_value_t = 4191)]
    pub admin_port: u16,

    /// Destination ports of incoming connections that go straight to the app, bypassing the
    /// proxy (comma-separated ports or `first-last` ranges).
    #[arg(long, env = "STRAIT_INIT_SKIP_INBOUND_PORTS", value_delimiter = ',')]
    pub skip_inbound_ports: Vec<PortRange>,

    /// Destination ports of the pod's outgoing connections that bypass the proxy
    /// (comma-separated ports or `first-last` ranges).
    #[arg(long, env = "STRAIT_INIT_SKIP_OUTBOUND_PORTS", value_delimiter = ',')]
    pub skip_outbound_ports: Vec<PortRange>,

    /// Whether to install the rules for IPv6 too (with `ip6tables`). `auto`: when this network
    /// namespace has an IPv6 address besides loopback (a dual-stack or IPv6 pod), else skipped
    /// with a line saying so. `on` (`--ipv6` alone): always. `off`: never, and the pod's IPv6
    /// traffic bypasses the proxy.
    #[arg(
        long,
        env = "STRAIT_INIT_IPV6",
        value_enum,
        default_value = "auto",
        num_args = 0..=1,
        default_missing_value = "on"
    )]
    pub ipv6: Ipv6Rules,

    /// The iptables command to use: `iptables`, `iptables-nft` or `iptables-legacy`; its
    /// `-save` and `-restore` siblings are used, and `ip6tables…` for IPv6.
    #[arg(long, env = "STRAIT_INIT_IPTABLES", default_value = "iptables")]
    pub iptables: String,

    /// Remove the rules and chains instead of installing them.
    #[arg(long, env = "STRAIT_INIT_CLEANUP")]
    pub cleanup: bool,

    /// Print the rules without applying them.
    #[arg(long, env = "STRAIT_INIT_DRY_RUN")]
    pub dry_run: bool,
}

/// Why the rules could not be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// An iptables command could not be started.
    #[error("running {command}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why it could not run.
        source: std::io::Error,
    },
    /// An iptables command exited with an error.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

impl InitConfig {
    fn plan(&self) -> RedirectPlan {
        RedirectPlan {
            proxy_uid: self.proxy_uid,
            inbound_port: self.inbound_port,
            outbound_port: self.outbound_port,
            admin_port: self.admin_port,
            skip_inbound: self.skip_inbound_ports.clone(),
            skip_outbound: self.skip_outbound_ports.clone(),
        }
    }

    /// The iptables command prefixes to apply the rules with: IPv4, and IPv6 when wanted.
    fn families(&self) -> Vec<String> {
        let mut families = vec![self.iptables.clone()];
        let ip6tables = self.iptables.replacen("iptables", "ip6tables", 1);
        let addresses = family::read_ipv6_addresses();
        if family::wants_ipv6(self.ipv6, &addresses) {
            families.push(ip6tables);
        } else {
            println!(
                "# {ip6tables}: skipped ({})",
                family::skip_reason(self.ipv6, &addresses)
            );
        }
        families
    }
}

/// Installs (or removes) the rules, printing each script it applies to stdout.
pub fn run(config: &InitConfig) -> Result<(), InitError> {
    let plan = config.plan();
    for iptables in config.families() {
        let saved = command_output(&format!("{iptables}-save"), &["-t", "nat"], None)?;
        let script = if config.cleanup {
            rules::cleanup(&saved)
        } else {
            Some(rules::install(&plan, &saved))
        };
        let Some(script) = script else {
            println!("# {iptables}: no Strait rules to remove");
            continue;
        };
        println!("# {iptables}-restore --noflush <<EOF\n{script}EOF");
        if !config.dry_run {
            command_output(
                &format!("{iptables}-restore"),
                &["--noflush"],
                Some(&script),
            )?;
        }
    }
    Ok(())
}

/// Runs `program args`, feeding it `stdin`, and returns its stdout.
fn command_output(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, InitError> {
    let command = format!("{program} {}", args.join(" "));
    let spawn_error = |source| InitError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if !output.status.success() {
        return Err(InitError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
