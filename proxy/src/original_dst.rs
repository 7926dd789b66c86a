//! The original destination of a connection that iptables redirected to the proxy.
//!
//! `REDIRECT` rewrites the destination before the proxy accepts; the kernel's connection
//! tracking remembers the address the app meant, and `SO_ORIGINAL_DST` (IPv4) or
//! `IP6T_SO_ORIGINAL_DST` (IPv6) reads it back. socket2 wraps both options safely, so the
//! proxy needs no `unsafe` of its own for them.

use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;

/// Returns the address the client connected to before a redirect, or `None` when the
/// connection was not redirected (no NAT entry, or the destination is the listener itself).
pub fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let local = unmap(stream.local_addr().ok()?);
    let socket = SockRef::from(stream);
    let dst = match local {
        // A dual-stack listener sees IPv4 clients as IPv4-mapped IPv6; their NAT entry is IPv4.
        SocketAddr::V4(_) => socket.original_dst_v4(),
        SocketAddr::V6(_) => socket.original_dst_v6(),
    }
    .ok()?
    .as_socket()?;
    // Flow info and scope id are not part of a service address; keep only IP and port.
    let dst = unmap(SocketAddr::new(dst.ip(), dst.port()));
    (dst != local).then_some(dst)
}

/// Turns an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) into the IPv4 address it stands for.
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().unwrap();
        assert_eq!(unmap(mapped), "10.0.0.1:80".parse().unwrap());
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        assert_eq!(unmap(v6), v6);
    }

    #[tokio::test]
    async fn a_direct_connection_has_no_original_destination() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        assert_eq!(original_dst(&server), None);
    }
}
