//! The iptables rules that send a pod's TCP traffic through its proxy, as `iptables-restore`
//! input: a pure function of the settings and of what the table already holds, so running the
//! init step twice leaves one set of rules and the plan can be tested without a kernel.
//!
//! Four chains of our own in the `nat` table, entered from `PREROUTING` (inbound) and `OUTPUT`
//! (outbound):
//!
//! ```text
//! PREROUTING -> STRAIT_INBOUND:  the proxy's outbound and admin ports RETURN, skip-inbound ports
//!                                RETURN, else -> STRAIT_INBOUND_REDIRECT (to :4143)
//! OUTPUT     -> STRAIT_OUTBOUND: proxy UID RETURN, loopback RETURN, skip-outbound ports RETURN,
//!                                else -> STRAIT_OUTBOUND_REDIRECT (to :4140)
//! ```
//!
//! The proxy's own outbound and admin ports are never redirected inbound: redirected, the
//! inbound proxy would hand such a connection to the proxy itself over loopback, where the
//! outbound listener would send it on under this pod's identity and the admin server would
//! take the caller for a local one (issue 14). Left alone, a connection to the outbound port
//! reaches nothing (its listener is on loopback only) and the admin port answers kubelet
//! probes and Prometheus scrapes directly, seeing their real source address.
//!
//! The same rules serve IPv4 (`iptables`) and IPv6 (`ip6tables`): `REDIRECT` sends locally
//! generated connections to `127.0.0.1` or `::1`, and incoming ones to the address they
//! arrived on, in both families.
//!
//! Declaring a chain in `iptables-restore --noflush` input creates it or empties it, so our
//! chains are rewritten whole each time; the jumps from the built-in chains are added only when
//! missing, since appending them again would duplicate them.

use std::fmt::Write as _;

/// Chain entered from `PREROUTING` for connections arriving at the pod.
pub const INBOUND_CHAIN: &str = "STRAIT_INBOUND";
/// Chain holding the inbound `REDIRECT`.
pub const INBOUND_REDIRECT_CHAIN: &str = "STRAIT_INBOUND_REDIRECT";
/// Chain entered from `OUTPUT` for connections the pod opens.
pub const OUTBOUND_CHAIN: &str = "STRAIT_OUTBOUND";
/// Chain holding the outbound `REDIRECT`.
pub const OUTBOUND_REDIRECT_CHAIN: &str = "STRAIT_OUTBOUND_REDIRECT";

const CHAINS: [&str; 4] = [
    INBOUND_CHAIN,
    INBOUND_REDIRECT_CHAIN,
    OUTBOUND_CHAIN,
    OUTBOUND_REDIRECT_CHAIN,
];

/// The jumps from built-in chains into ours, exactly as `iptables-save` prints them.
const JUMPS: [(&str, &str); 2] = [("PREROUTING", INBOUND_CHAIN), ("OUTPUT", OUTBOUND_CHAIN)];

/// `iptables` accepts at most 15 ports per `multiport` match; a range counts as two.
const MULTIPORT_SLOTS: usize = 15;

/// A port or an inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (equal to `first` for a single port).
    pub last: u16,
}

impl PortRange {
    fn slots(self) -> usize {
        if self.first == self.last { 1 } else { 2 }
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// Why a port list does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    /// Not a number from 1 to 65535.
    #[error("{0:?} is not a port number (1-65535)")]
    NotAPort(String),
    /// A range whose end comes before its start.
    #[error("{0:?} is not a range: the first port must not exceed the last")]
    Reversed(String),
}

impl std::str::FromStr for PortRange {
    type Err = PortRangeError;

    /// Parses `8080` or `8000-8100`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let port = |t: &str| {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| PortRangeError::NotAPort(t.trim().to_owned()))
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(text)?;
                (p, p)
            }
        };
        if first > last {
            return Err(PortRangeError::Reversed(text.to_owned()));
        }
        Ok(Self { first, last })
    }
}

/// What the rules redirect and what they leave alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectPlan {
    /// The proxy's UID: its own connections are never redirected (they would loop).
    pub proxy_uid: u32,
    /// The proxy's inbound listener port.
    pub inbound_port: u16,
    /// The proxy's outbound listener port.
    pub outbound_port: u16,
    /// The proxy's admin listener port.
    pub admin_port: u16,
    /// Destination ports of incoming connections that go straight to the app.
    pub skip_inbound: Vec<PortRange>,
    /// Destination ports of outgoing connections that bypass the proxy.
    pub skip_outbound: Vec<PortRange>,
}

/// The `iptables-restore --noflush` input that installs the rules, given the current
/// `iptables-save -t nat` output.
pub fn install(plan: &RedirectPlan, saved: &str) -> String {
    let mut out = String::from("*nat\n");
    for chain in CHAINS {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let _ = writeln!(
        out,
        "-A {INBOUND_REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {}",
        plan.inbound_port
    );
    let _ = writeln!(
        out,
        "-A {INBOUND_CHAIN} -p tcp -m multiport --dports {},{} -j RETURN",
        plan.outbound_port, plan.admin_port
    );
    for ports in multiport_groups(&plan.skip_inbound) {
        let _ = writeln!(
            out,
            "-A {INBOUND_CHAIN} -p tcp -m multiport --dports {ports} -j RETURN"
        );
    }
    let _ = writeln!(out, "-A {INBOUND_CHAIN} -p tcp -j {INBOUND_REDIRECT_CHAIN}");
    let _ = writeln!(
        out,
        "-A {OUTBOUND_REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {}",
        plan.outbound_port
    );
    let _ = writeln!(
        out,
        "-A {OUTBOUND_CHAIN} -m owner --uid-owner {} -j RETURN",
        plan.proxy_uid
    );
    let _ = writeln!(out, "-A {OUTBOUND_CHAIN} -o lo -j RETURN");
    for ports in multiport_groups(&plan.skip_outbound) {
        let _ = writeln!(
            out,
            "-A {OUTBOUND_CHAIN} -p tcp -m multiport --dports {ports} -j RETURN"
        );
    }
    let _ = writeln!(
        out,
        "-A {OUTBOUND_CHAIN} -p tcp -j {OUTBOUND_REDIRECT_CHAIN}"
    );
    for (builtin, chain) in JUMPS {
        if jump_count(saved, builtin, chain) == 0 {
            let _ = writeln!(out, "{}", jump(builtin, chain));
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// The `iptables-restore --noflush` input that removes every rule and chain [`install`] adds,
/// given the current `iptables-save -t nat` output; `None` when there is nothing to remove.
pub fn cleanup(saved: &str) -> Option<String> {
    let mut out = String::from("*nat\n");
    let mut changes = 0;
    for (builtin, chain) in JUMPS {
        for _ in 0..jump_count(saved, builtin, chain) {
            let _ = writeln!(out, "-D {builtin} -j {chain}");
            changes += 1;
        }
    }
    let present: Vec<&str> = CHAINS
        .into_iter()
        .filter(|chain| {
            saved
                .lines()
                .any(|line| line.starts_with(&format!(":{chain} ")))
        })
        .collect();
    // Every chain is emptied before any is deleted: ours jump to each other.
    for chain in &present {
        let _ = writeln!(out, "-F {chain}");
    }
    for chain in &present {
        let _ = writeln!(out, "-X {chain}");
        changes += 1;
    }
    out.push_str("COMMIT\n");
    (changes > 0).then_some(out)
}

fn jump(builtin: &str, chain: &str) -> String {
    format!("-A {builtin} -j {chain}")
}

fn jump_count(saved: &str, builtin: &str, chain: &str) -> usize {
    let rule = jump(builtin, chain);
    saved.lines().filter(|line| line.trim_end() == rule).count()
}

/// Port lists for `-m multiport --dports`, each within the match's limit.
fn multiport_groups(ports: &[PortRange]) -> Vec<String> {
    let mut groups = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut slots = 0;
    for range in ports {
        if slots + range.slots() > MULTIPORT_SLOTS {
            groups.push(current.join(","));
            current.clear();
            slots = 0;
        }
        current.push(range.to_string());
        slots += range.slots();
    }
    if !current.is_empty() {
        groups.push(current.join(","));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> RedirectPlan {
        RedirectPlan {
            proxy_uid: 2102,
            inbound_port: 4143,
            outbound_port: 4140,
            admin_port: 4191,
            skip_inbound: vec!["9000".parse().unwrap()],
            skip_outbound: vec!["443".parse().unwrap(), "8000-8100".parse().unwrap()],
        }
    }

    const EMPTY: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

    #[test]
    fn a_fresh_table_gets_our_chains_and_both_jumps() {
        assert_eq!(
            install(&plan(), EMPTY),
            "*nat\n\
             :STRAIT_INBOUND - [0:0]\n\
             :STRAIT_INBOUND_REDIRECT - [0:0]\n\
             :STRAIT_OUTBOUND - [0:0]\n\
             :STRAIT_OUTBOUND_REDIRECT - [0:0]\n\
             -A STRAIT_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 4143\n\
             -A STRAIT_INBOUND -p tcp -m multiport --dports 4140,4191 -j RETURN\n\
             -A STRAIT_INBOUND -p tcp -m multiport --dports 9000 -j RETURN\n\
             -A STRAIT_INBOUND -p tcp -j STRAIT_INBOUND_REDIRECT\n\
             -A STRAIT_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 4140\n\
             -A STRAIT_OUTBOUND -m owner --uid-owner 2102 -j RETURN\n\
             -A STRAIT_OUTBOUND -o lo -j RETURN\n\
             -A STRAIT_OUTBOUND -p tcp -m multiport --dports 443,8000:8100 -j RETURN\n\
             -A STRAIT_OUTBOUND -p tcp -j STRAIT_OUTBOUND_REDIRECT\n\
             -A PREROUTING -j STRAIT_INBOUND\n\
             -A OUTPUT -j STRAIT_OUTBOUND\n\
             COMMIT\n"
        );
    }

    #[test]
    fn jumps_already_present_are_not_added_again() {
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:STRAIT_INBOUND - [0:0]\n\
                     -A PREROUTING -j STRAIT_INBOUND\n-A OUTPUT -j STRAIT_OUTBOUND\nCOMMIT\n";
        let script = install(&plan(), saved);
        assert!(!script.contains("-A PREROUTING"), "{script}");
        assert!(!script.contains("-A OUTPUT"), "{script}");
        assert!(
            script.contains(":STRAIT_INBOUND - [0:0]"),
            "chains are rewritten whole"
        );
    }

    #[test]
    fn no_skip_ports_leave_only_the_proxys_own_ports_unredirected() {
        let plan = RedirectPlan {
            skip_inbound: vec![],
            skip_outbound: vec![],
            ..plan()
        };
        let script = install(&plan, EMPTY);
        let multiport: Vec<_> = script.lines().filter(|l| l.contains("multiport")).collect();
        assert_eq!(
            multiport,
            ["-A STRAIT_INBOUND -p tcp -m multiport --dports 4140,4191 -j RETURN"]
        );
    }

    #[test]
    fn the_outbound_and_admin_ports_return_before_any_inbound_redirect() {
        let plan = RedirectPlan {
            outbound_port: 5140,
            admin_port: 5191,
            ..plan()
        };
        let script = install(&plan, EMPTY);
        let inbound: Vec<_> = script
            .lines()
            .filter(|l| l.starts_with("-A STRAIT_INBOUND "))
            .collect();
        assert_eq!(
            inbound[0],
            "-A STRAIT_INBOUND -p tcp -m multiport --dports 5140,5191 -j RETURN"
        );
        assert_eq!(
            inbound.last().unwrap(),
            &"-A STRAIT_INBOUND -p tcp -j STRAIT_INBOUND_REDIRECT"
        );
    }

    #[test]
    fn long_port_lists_are_split_within_the_multiport_limit() {
        let ports: Vec<PortRange> = (1..=20)
            .map(|p| PortRange {
                first: p * 10,
                last: p * 10,
            })
            .chain(["9000-9100".parse().unwrap()])
            .collect();
        let groups = multiport_groups(&ports);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].split(',').count(), 15);
        assert_eq!(groups[1], "160,170,180,190,200,9000:9100");
    }

    #[test]
    fn cleanup_removes_every_jump_and_chain_that_exists() {
        let saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:STRAIT_INBOUND - [0:0]\n\
                     :STRAIT_OUTBOUND - [0:0]\n-A PREROUTING -j STRAIT_INBOUND\n\
                     -A PREROUTING -j STRAIT_INBOUND\n-A STRAIT_INBOUND -p tcp -j RETURN\nCOMMIT\n";
        assert_eq!(
            cleanup(saved).unwrap(),
            "*nat\n-D PREROUTING -j STRAIT_INBOUND\n-D PREROUTING -j STRAIT_INBOUND\n\
             -F STRAIT_INBOUND\n-F STRAIT_OUTBOUND\n-X STRAIT_INBOUND\n-X STRAIT_OUTBOUND\nCOMMIT\n"
        );
        assert_eq!(cleanup(EMPTY), None);
    }

    #[test]
    fn port_ranges_parse_and_refuse_nonsense() {
        assert_eq!(
            "8080".parse::<PortRange>(),
            Ok(PortRange {
                first: 8080,
                last: 8080
            })
        );
        assert_eq!(
            " 10 - 20".parse::<PortRange>(),
            Ok(PortRange {
                first: 10,
                last: 20
            })
        );
        assert_eq!(
            "0".parse::<PortRange>(),
            Err(PortRangeError::NotAPort("0".into()))
        );
        assert_eq!(
            "70000".parse::<PortRange>(),
            Err(PortRangeError::NotAPort("70000".into()))
        );
        assert_eq!(
            "20-10".parse::<PortRange>(),
            Err(PortRangeError::Reversed("20-10".into()))
        );
        assert!("http".parse::<PortRange>().is_err());
    }
}
