//! A packet capture inside a test's network namespace: an `AF_PACKET` socket that sees every
//! frame crossing the namespace's interfaces, reduced to the TCP segments over IPv4 or IPv6,
//! so a test can check what really went over the wire (TLS, not HTTP).
//!
//! Written here rather than driving tcpdump: the test needs the segments' payloads as bytes,
//! and parsing Ethernet, IPv4, IPv6 and TCP headers is a few lines.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use nix::sys::socket::{
    AddressFamily, SockFlag, SockProtocol, SockType, setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::netns::NetNs;

/// One TCP segment seen on the wire.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The TCP payload (empty for a bare ACK, SYN or FIN).
    pub payload: Vec<u8>,
}

/// A capture running on its own thread inside a namespace.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Segment>>,
}

impl Capture {
    /// Starts capturing every frame in `ns`.
    pub fn start(ns: &NetNs) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || async move {
            let fd = socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::empty(),
                SockProtocol::EthAll,
            )
            .expect("opening an AF_PACKET socket (needs root)");
            setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 50_000))
                .expect("setting the capture's receive timeout");
            let _ = ready_tx.send(());
            let mut socket = std::fs::File::from(fd);
            let mut segments = Vec::new();
            let mut frame = vec![0u8; 65_536 + 64];
            while !stopping.load(Ordering::Acquire) {
                match socket.read(&mut frame) {
                    Ok(n) => segments.extend(parse(&frame[..n])),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => panic!("capture failed: {e}"),
                }
            }
            segments
        });
        ready.recv().expect("the capture thread starts");
        Self { stop, thread }
    }

    /// Stops the capture and returns every TCP segment it saw, in order.
    pub fn finish(self) -> Vec<Segment> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The TCP segment in an Ethernet frame carrying IPv4 or IPv6, if it holds one.
fn parse(frame: &[u8]) -> Option<Segment> {
    const ETHERNET: usize = 14;
    let ip = frame.get(ETHERNET..)?;
    let (src, dst, tcp) = match frame.get(12..14)? {
        [0x08, 0x00] => ipv4(ip)?,
        [0x86, 0xdd] => ipv6(ip)?,
        _ => return None,
    };
    let offset = usize::from(tcp.get(12)? >> 4) * 4;
    let port =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*tcp.get(at)?, *tcp.get(at + 1)?])) };
    Some(Segment {
        src: SocketAddr::new(src, port(0)?),
        dst: SocketAddr::new(dst, port(2)?),
        payload: tcp.get(offset..)?.to_vec(),
    })
}

/// Source, destination and TCP bytes of an IPv4 packet carrying TCP.
fn ipv4(ip: &[u8]) -> Option<(IpAddr, IpAddr, &[u8])> {
    let header = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    if *ip.get(9)? != 6 || header < 20 || total < header || total > ip.len() {
        return None;
    }
    let address = |at: usize| -> Option<IpAddr> {
        let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
        Some(Ipv4Addr::from(b).into())
    };
    Some((address(12)?, address(16)?, ip.get(header..total)?))
}

/// Source, destination and TCP bytes of an IPv6 packet whose next header is TCP (the tests'
/// traffic has no extension headers).
fn ipv6(ip: &[u8]) -> Option<(IpAddr, IpAddr, &[u8])> {
    const HEADER: usize = 40;
    let payload = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    if *ip.get(6)? != 6 || HEADER + payload > ip.len() {
        return None;
    }
    let address = |at: usize| -> Option<IpAddr> {
        let b: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
        Some(Ipv6Addr::from(b).into())
    };
    Some((address(8)?, address(24)?, ip.get(HEADER..HEADER + payload)?))
}
