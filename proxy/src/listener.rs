//! Listeners and accept loops: bind a listener's addresses (one socket each, so a pod's
//! listener takes both IPv4 and IPv6), accept until told to stop, bound the number of open
//! connections, and run each connection as a task the drain can wait for.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::FutureExt as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::memory::MemoryGuard;
use crate::memory::budget::SHED_FLOOR;

/// Linux's `EAFNOSUPPORT` (asm-generic/errno.h): the kernel has no IPv6 at all.
const EAFNOSUPPORT: i32 = 97;
/// Linux's `EADDRNOTAVAIL`: e.g. `::1` in a namespace where IPv6 is disabled.
const EADDRNOTAVAIL: i32 = 99;

/// Connections a socket queues before the proxy accepts them (tokio's own default).
const BACKLOG: i32 = 1024;

/// One listener's sockets, accepted from as one.
#[derive(Debug)]
pub struct Listener {
    sockets: Vec<TcpListener>,
    /// Which socket is polled first on the next accept, so a busy one cannot starve another.
    next: AtomicUsize,
}

impl Listener {
    /// The bound addresses, in the order given.
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.sockets.iter().map(TcpListener::local_addr).collect()
    }

    /// The first bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sockets[0].local_addr()
    }

    /// Accepts the next connection on any of the sockets. The client's address is canonical:
    /// an IPv4 client of a dual-stack socket shows as IPv4, not `::ffff:a.b.c.d`, so checks
    /// such as "is this caller on loopback" see what it is.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        poll_fn(|cx| {
            let count = self.sockets.len();
            for i in 0..count {
                if let Poll::Ready(result) = self.sockets[(start + i) % count].poll_accept(cx) {
                    return Poll::Ready(result.map(|(stream, client)| {
                        (
                            stream,
                            SocketAddr::new(client.ip().to_canonical(), client.port()),
                        )
                    }));
                }
            }
            Poll::Pending
        })
        .await
    }
}

/// Binds every address in `addrs` (one socket each), naming the listener in errors.
///
/// An address with port 0 after one already bound takes that one's port, so a listener has
/// one port. When the list holds an IPv4 address, IPv6 sockets are IPv6-only (both families
/// on one port need it), and an IPv6 `::` or `::1` that the host cannot bind because it has no
/// IPv6 is skipped with a log line: there is no IPv6 traffic to take there.
pub async fn bind(name: &str, addrs: &[SocketAddr]) -> anyhow::Result<Listener> {
    let has_ipv4 = addrs.iter().any(SocketAddr::is_ipv4);
    let mut sockets: Vec<TcpListener> = Vec::new();
    for &addr in addrs {
        let addr = match (addr.port(), sockets.first()) {
            (0, Some(first)) => SocketAddr::new(addr.ip(), first.local_addr()?.port()),
            _ => addr,
        };
        match bind_socket(addr, addr.is_ipv6() && has_ipv4) {
            Ok(socket) => sockets.push(socket),
            Err(error) if has_ipv4 && ipv6_unavailable(addr, &error) => {
                tracing::info!(listener = name, %addr, %error, "no IPv6 here; this listener takes IPv4 only");
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("binding the {name} listener to {addr}"));
            }
        }
    }
    anyhow::ensure!(
        !sockets.is_empty(),
        "the {name} listener has no address to bind (given: {addrs:?})"
    );
    Ok(Listener {
        sockets,
        next: AtomicUsize::new(0),
    })
}

fn bind_socket(addr: SocketAddr, only_v6: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if only_v6 {
        socket.set_only_v6(true)?;
    }
    // As std and tokio do: a restarted proxy can bind while old connections are in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Whether binding `addr` failed only because the host has no IPv6.
fn ipv6_unavailable(addr: SocketAddr, error: &io::Error) -> bool {
    let wildcard_or_loopback = addr.ip().is_unspecified() || addr.ip().is_loopback();
    addr.is_ipv6()
        && wildcard_or_loopback
        && matches!(error.raw_os_error(), Some(EAFNOSUPPORT | EADDRNOTAVAIL))
}

/// Accepts connections until `stop` fires, then drops the listener so further connection
/// attempts are refused. Each connection runs `serve` on `tracker`; past `max_connections`
/// open at once, or while `memory` is over budget, new connections are closed at accept.
pub async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: Listener,
    max_connections: usize,
    memory: Arc<MemoryGuard>,
    stop: CancellationToken,
    tracker: TaskTracker,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max_connections));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(listener = name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Past the floor only: see `memory::budget` for why.
        let open = max_connections - limit.available_permits();
        if memory.over_budget() && open >= SHED_FLOOR {
            metrics::counter!("strait_tcp_connections_refused_total", "listener" => name, "reason" => "memory")
                .increment(1);
            tracing::warn!(listener = name, %client, "connection refused: memory budget reached");
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::counter!("strait_tcp_connections_refused_total", "listener" => name, "reason" => "max-connections")
                .increment(1);
            tracing::warn!(listener = name, %client, max_connections, "connection refused: limit reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = serve(stream, client);
        // A combinator, not an `async move` block: a block would hold the connection's future
        // twice (as captured and as awaited), doubling every connection's task allocation.
        tracker.spawn(connection.map(move |()| drop(permit)));
    }
    tracing::info!(listener = name, "stopped accepting connections");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn only_a_missing_ipv6_wildcard_or_loopback_is_skippable() {
        let no_family = io::Error::from_raw_os_error(EAFNOSUPPORT);
        let not_here = io::Error::from_raw_os_error(EADDRNOTAVAIL);
        let in_use = io::Error::from(io::ErrorKind::AddrInUse);
        for addr in ["[::]:4143", "[::1]:4140"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert!(ipv6_unavailable(addr, &no_family), "{addr}");
            assert!(ipv6_unavailable(addr, &not_here), "{addr}");
            assert!(!ipv6_unavailable(addr, &in_use), "{addr}");
        }
        let specific: SocketAddr = "[fd00::1]:4143".parse().unwrap();
        assert!(!ipv6_unavailable(specific, &not_here));
        let v4: SocketAddr = "127.0.0.1:4140".parse().unwrap();
        assert!(!ipv6_unavailable(v4, &not_here));
    }

    #[tokio::test]
    async fn both_families_share_one_port_and_each_accepts_its_own() {
        let listener = bind("test", &addrs(&["127.0.0.1:0", "[::1]:0"]))
            .await
            .unwrap();
        let bound = listener.local_addrs().unwrap();
        assert_eq!(bound.len(), 2, "{bound:?}");
        assert_eq!(bound[0].port(), bound[1].port());
        for addr in &bound {
            let _client = TcpStream::connect(addr).await.unwrap();
            let (_, client) = listener.accept().await.unwrap();
            assert_eq!(client.ip(), addr.ip(), "{addr}");
        }
    }

    #[tokio::test]
    async fn an_ipv4_client_of_a_dual_stack_socket_shows_as_ipv4() {
        // An IPv6-only list keeps the host's default, dual-stack on Linux.
        let listener = bind("test", &addrs(&["[::]:0"])).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (_, client) = listener.accept().await.unwrap();
        assert_eq!(client.ip(), std::net::Ipv4Addr::LOCALHOST);
    }

    #[tokio::test]
    async fn a_taken_port_fails_naming_the_listener_and_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let error = bind("inbound", &[addr]).await.unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("inbound listener") && text.contains(&addr.to_string()),
            "{text}"
        );
    }
}
