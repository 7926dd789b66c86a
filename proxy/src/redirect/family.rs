//! Whether `init` installs the IPv6 rules too: a pure decision from the `--ipv6` setting and
//! the IPv6 addresses of the network namespace it runs in (`/proc/net/if_inet6`, which is
//! per network namespace).
//!
//! An IPv6 address besides loopback (global, unique-local, or link-local, which other pods on
//! a bridged node network can reach) is a path into and out of the pod; left without rules,
//! traffic over it would bypass the proxy. Loopback alone is not: nothing reaches `::1` from
//! outside, and the app cannot leave the pod over IPv6 without another address.

use std::net::Ipv6Addr;

use clap::ValueEnum;

/// The `--ipv6` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ipv6Rules {
    /// When the namespace has an IPv6 address besides loopback.
    Auto,
    /// Always; a failure to install them fails `init`.
    #[value(alias = "true")]
    On,
    /// Never: the pod's IPv6 traffic bypasses the proxy.
    #[value(alias = "false")]
    Off,
}

/// What `/proc/net/if_inet6` says about the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ipv6Addresses {
    /// The kernel has no IPv6 (the file does not exist).
    NoKernelSupport,
    /// These addresses (possibly none).
    Present(Vec<Ipv6Addr>),
    /// The file could not be read; treated as having IPv6, so rules are attempted rather than
    /// silently skipped.
    Unknown(String),
}

/// Reads the namespace's IPv6 addresses.
pub fn read_ipv6_addresses() -> Ipv6Addresses {
    match std::fs::read_to_string("/proc/net/if_inet6") {
        Ok(text) => Ipv6Addresses::Present(parse_if_inet6(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ipv6Addresses::NoKernelSupport,
        Err(e) => Ipv6Addresses::Unknown(format!("reading /proc/net/if_inet6: {e}")),
    }
}

/// The addresses in `/proc/net/if_inet6` text: one line per address, the address first as 32
/// hex digits. Lines that do not parse are left out.
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|hex| {
            u128::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 32)
        })
        .map(Ipv6Addr::from)
        .collect()
}

/// Whether the IPv6 rules are installed.
pub fn wants_ipv6(setting: Ipv6Rules, addresses: &Ipv6Addresses) -> bool {
    match setting {
        Ipv6Rules::On => true,
        Ipv6Rules::Off => false,
        Ipv6Rules::Auto => match addresses {
            Ipv6Addresses::NoKernelSupport => false,
            Ipv6Addresses::Present(list) => list.iter().any(|a| !a.is_loopback()),
            Ipv6Addresses::Unknown(_) => true,
        },
    }
}

/// Why the IPv6 rules are skipped, for the line `init` prints.
pub fn skip_reason(setting: Ipv6Rules, addresses: &Ipv6Addresses) -> &'static str {
    match (setting, addresses) {
        (Ipv6Rules::Off, _) => "--ipv6 off: this pod's IPv6 traffic is not intercepted",
        (_, Ipv6Addresses::NoKernelSupport) => "the kernel has no IPv6",
        _ => "this network namespace has no IPv6 address besides loopback",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK_ONLY: &str = "00000000000000000000000000000001 01 80 10 80       lo\n";
    const DUAL_STACK: &str = "00000000000000000000000000000001 01 80 10 80       lo\n\
                              fd007702000000000000000000000002 02 40 00 80     eth0\n\
                              fe80000000000000a8bbccfffe000001 02 40 20 80     eth0\n";

    fn present(text: &str) -> Ipv6Addresses {
        Ipv6Addresses::Present(parse_if_inet6(text))
    }

    #[test]
    fn if_inet6_lines_parse_to_addresses() {
        assert_eq!(
            parse_if_inet6(DUAL_STACK),
            [
                Ipv6Addr::LOCALHOST,
                "fd00:7702::2".parse::<Ipv6Addr>().unwrap(),
                "fe80::a8bb:ccff:fe00:1".parse::<Ipv6Addr>().unwrap(),
            ]
        );
        assert!(parse_if_inet6("").is_empty());
        assert!(parse_if_inet6("zz 01 80 10 80 lo\n0001 01\n").is_empty());
    }

    #[test]
    fn auto_installs_ipv6_rules_when_the_pod_has_an_ipv6_address_besides_loopback() {
        assert!(wants_ipv6(Ipv6Rules::Auto, &present(DUAL_STACK)));
        let link_local_only = "fe80000000000000a8bbccfffe000001 02 40 20 80     eth0\n";
        assert!(wants_ipv6(Ipv6Rules::Auto, &present(link_local_only)));
    }

    #[test]
    fn auto_skips_ipv6_rules_in_an_ipv4_only_pod() {
        for addresses in [
            Ipv6Addresses::NoKernelSupport,
            present(""),
            present(LOOPBACK_ONLY),
        ] {
            assert!(!wants_ipv6(Ipv6Rules::Auto, &addresses), "{addresses:?}");
        }
        assert_eq!(
            skip_reason(Ipv6Rules::Auto, &Ipv6Addresses::NoKernelSupport),
            "the kernel has no IPv6"
        );
        assert!(skip_reason(Ipv6Rules::Auto, &present(LOOPBACK_ONLY)).contains("loopback"));
    }

    #[test]
    fn auto_attempts_ipv6_rules_when_the_addresses_cannot_be_read() {
        assert!(wants_ipv6(
            Ipv6Rules::Auto,
            &Ipv6Addresses::Unknown("permission denied".into())
        ));
    }

    #[test]
    fn on_and_off_ignore_the_addresses() {
        assert!(wants_ipv6(Ipv6Rules::On, &Ipv6Addresses::NoKernelSupport));
        assert!(!wants_ipv6(Ipv6Rules::Off, &present(DUAL_STACK)));
        assert!(skip_reason(Ipv6Rules::Off, &present(DUAL_STACK)).contains("not intercepted"));
    }
}
