//! The memory budget: from the container's memory limit, the caps that keep the proxy inside
//! it. One pure function, [`plan`], decides them; `run` applies them and the admission check
//! in [`super::MemoryGuard`] enforces the last line.
//!
//! The reasoning, with the figures it rests on (measured by `scripts/bench`, recorded in
//! bench/RESULTS.md):
//!
//! - [`RESERVE_BYTES`] is what the proxy needs with no connections at all: the runtime, the
//!   routing table, TLS configuration, metrics and tracing (idle RSS is 5–10 MiB).
//! - What remains of [`USABLE_PERCENT`] of the limit is for connections. Each connection is
//!   planned at [`PER_CONNECTION_BYTES`]: an idle one costs a few KiB, a busy one holds read
//!   and write buffers and, on the outbound side, a share of a pooled upstream connection
//!   with its TLS state. The connection cap is that share's count.
//! - An HTTP/2 client may make the proxy buffer a whole connection window before it has
//!   passed the bytes on. The window is sized so that [`FULL_WINDOWS`] connections doing so
//!   at once still fit; a flow-controlled peer that never fills it loses nothing.
//! - Whatever the plan, the proxy refuses new connections while its resident memory is
//!   above [`SHED_PERCENT`] of the limit, so a mix the plan did not foresee (large bodies
//!   held by slow apps, say) sheds load instead of reaching the OOM killer. It always admits
//!   up to [`SHED_FLOOR`] connections per listener: the allocator need not hand freed pages
//!   back, so resident memory can stay high after a burst has gone, and a proxy refusing
//!   everything then would be an outage of its own making.

/// Memory the proxy needs before it carries a connection.
pub const RESERVE_BYTES: u64 = 12 << 20;
/// Share of the limit the plan spends; the rest is headroom for allocator slack.
pub const USABLE_PERCENT: u64 = 85;
/// What one open connection is planned to cost, busy or idle.
pub const PER_CONNECTION_BYTES: u64 = 32 << 10;
/// How many HTTP/2 connections with full connection windows the budget holds at once.
pub const FULL_WINDOWS: u64 = 64;
/// Resident memory, as a share of the limit, above which new connections are refused.
pub const SHED_PERCENT: u64 = 90;
/// The plan never caps connections below this, however small the limit: a proxy that can
/// hold nothing is no use, and the shedding line still protects it.
pub const MIN_CONNECTIONS: usize = 64;
/// Open connections per listener below which nothing is shed, whatever resident memory says.
pub const SHED_FLOOR: usize = 16;
/// HTTP/2's initial window (RFC 9113 §6.9.2): no window is planned below it.
pub const MIN_WINDOW: u32 = 65_535;

/// The caps the flags ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requested {
    /// `--max-connections` (per listener).
    pub max_connections: usize,
    /// `--h2-connection-window`.
    pub h2_connection_window: u32,
    /// `--h2-stream-window`.
    pub h2_stream_window: u32,
}

/// The caps in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The memory limit planned for; `None`: no limit known, the flags apply as given.
    pub limit: Option<u64>,
    /// Most client connections open at once per listener.
    pub max_connections: usize,
    /// HTTP/2 connection window for clients.
    pub h2_connection_window: u32,
    /// HTTP/2 stream window for clients.
    pub h2_stream_window: u32,
    /// Resident memory above which new connections are refused.
    pub shed_above: Option<u64>,
}

/// The caps for a proxy with memory limit `limit`: the flags' values, lowered where the
/// limit cannot hold them.
pub fn plan(limit: Option<u64>, requested: Requested) -> Plan {
    let Some(limit) = limit else {
        return Plan {
            limit: None,
            max_connections: requested.max_connections,
            h2_connection_window: requested.h2_connection_window,
            h2_stream_window: requested.h2_stream_window,
            shed_above: None,
        };
    };
    let usable = (limit / 100 * USABLE_PERCENT).saturating_sub(RESERVE_BYTES);
    let affordable = usize::try_from(usable / PER_CONNECTION_BYTES).unwrap_or(usize::MAX);
    let max_connections = requested
        .max_connections
        .min(affordable.max(MIN_CONNECTIONS));
    let window = u32::try_from(usable / FULL_WINDOWS).unwrap_or(u32::MAX);
    let h2_connection_window = requested.h2_connection_window.min(window.max(MIN_WINDOW));
    Plan {
        limit: Some(limit),
        max_connections,
        h2_connection_window,
        h2_stream_window: requested.h2_stream_window.min(h2_connection_window),
        shed_above: Some(limit / 100 * SHED_PERCENT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: Requested = Requested {
        max_connections: 20_000,
        h2_connection_window: 2 << 20,
        h2_stream_window: 1 << 20,
    };

    #[test]
    fn without_a_limit_the_flags_apply_as_given_and_nothing_is_shed() {
        let plan = plan(None, FLAGS);
        assert_eq!(plan.max_connections, 20_000);
        assert_eq!(plan.h2_connection_window, 2 << 20);
        assert_eq!(plan.shed_above, None);
    }

    #[test]
    fn a_64_mib_container_caps_connections_and_windows_to_fit() {
        let plan = plan(Some(64 << 20), FLAGS);
        // 85 % of 64 MiB less the 12 MiB reserve leaves ~42 MiB: ~1 350 connections at 32 KiB.
        assert!((1_300..=1_400).contains(&plan.max_connections), "{plan:?}");
        // 64 full connection windows fit in the same ~42 MiB.
        assert!(u64::from(plan.h2_connection_window) * FULL_WINDOWS <= 43 << 20);
        assert!(plan.h2_stream_window <= plan.h2_connection_window);
        assert_eq!(plan.shed_above, Some((64 << 20) / 100 * 90));
    }

    #[test]
    fn a_large_limit_never_raises_a_flag() {
        let plan = plan(Some(64 << 30), FLAGS);
        assert_eq!(plan.max_connections, 20_000);
        assert_eq!(plan.h2_connection_window, 2 << 20);
        assert_eq!(plan.h2_stream_window, 1 << 20);
    }

    #[test]
    fn a_limit_below_the_reserve_keeps_a_working_floor() {
        let plan = plan(Some(8 << 20), FLAGS);
        assert_eq!(plan.max_connections, MIN_CONNECTIONS);
        assert_eq!(plan.h2_connection_window, MIN_WINDOW);
        assert_eq!(plan.h2_stream_window, MIN_WINDOW);
        assert!(plan.shed_above.unwrap() < 8 << 20);
    }

    #[test]
    fn a_smaller_flag_wins_over_the_plan() {
        let flags = Requested {
            max_connections: 100,
            ..FLAGS
        };
        assert_eq!(plan(Some(1 << 30), flags).max_connections, 100);
    }

    #[test]
    fn caps_never_grow_as_the_limit_shrinks() {
        let mut previous = plan(Some(1 << 40), FLAGS);
        for shift in (20..40).rev() {
            let next = plan(Some(1 << shift), FLAGS);
            assert!(next.max_connections <= previous.max_connections);
            assert!(next.h2_connection_window <= previous.h2_connection_window);
            previous = next;
        }
    }
}
