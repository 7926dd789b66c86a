//! Protocol detection: reads the first bytes a client sends and decides how to proxy the rest.
//!
//! The decision is a pure function of the bytes ([`classify`]); [`detect`] is the thin I/O
//! shell that reads with a byte limit and a timeout. Detection never drops a connection: what
//! it cannot recognise is opaque TCP, and the bytes it read are replayed to whoever handles
//! the connection next.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The HTTP/2 connection preface a prior-knowledge client (gRPC included) starts with.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a connection say about its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
    /// Anything else, TLS from the app included: forwarded as a byte stream.
    Opaque,
}

/// The verdict on a prefix of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The bytes seen so far decide the protocol.
    Known(Protocol),
    /// The bytes are consistent with HTTP but too few to decide.
    NeedMore,
}

/// Classifies a stream prefix. HTTP/1 is recognised by the start of its request line: an
/// upper-case method token and a space. A line that starts like a request but is malformed
/// later is still HTTP/1, so the HTTP server answers it with a 400 instead of it slipping
/// through as opaque bytes.
pub fn classify(prefix: &[u8]) -> Verdict {
    if prefix.is_empty() {
        return Verdict::NeedMore;
    }
    if H2_PREFACE.starts_with(prefix) {
        return if prefix.len() >= H2_PREFACE.len() {
            Verdict::Known(Protocol::Http2)
        } else {
            Verdict::NeedMore
        };
    }
    if prefix.starts_with(H2_PREFACE) {
        return Verdict::Known(Protocol::Http2);
    }
    classify_http1(prefix)
}

fn classify_http1(prefix: &[u8]) -> Verdict {
    // Longest registered method names are around 20 bytes; a token longer than this is not HTTP.
    const MAX_METHOD: usize = 24;
    let method_len = prefix.iter().take_while(|b| is_tchar(**b)).count();
    if method_len == 0 || method_len > MAX_METHOD {
        return Verdict::Known(Protocol::Opaque);
    }
    match prefix.get(method_len) {
        None => return Verdict::NeedMore,
        Some(b' ') => {}
        Some(_) => return Verdict::Known(Protocol::Opaque),
    }
    if !prefix[..method_len].iter().all(u8::is_ascii_uppercase) {
        // Methods are case-sensitive and every registered one is upper case; lower case
        // words followed by a space are common in line-based protocols (SMTP's `helo `, ...).
        return Verdict::Known(Protocol::Opaque);
    }
    // The method and its space are enough to hand the connection to the HTTP server, which
    // applies its own limits and refusals to the rest of the request.
    Verdict::Known(Protocol::Http1)
}

/// `tchar` from RFC 9110 §5.6.2: the characters a method token may hold.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Reads from `io` until [`classify`] decides, `max_bytes` have been read, the client closes,
/// or `timeout` passes. Returns the verdict and every byte read, which the caller must replay.
/// A client that sends nothing within the timeout may be a server-speaks-first protocol, so
/// it is opaque rather than refused.
pub async fn detect<I: AsyncRead + Unpin>(
    io: &mut I,
    max_bytes: usize,
    timeout: Duration,
) -> std::io::Result<(Protocol, BytesMut)> {
    let mut buf = BytesMut::with_capacity(max_bytes.min(8192));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Verdict::Known(protocol) = classify(&buf) {
            return Ok((protocol, buf));
        }
        if buf.len() >= max_bytes {
            return Ok((Protocol::Opaque, buf));
        }
        let read = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await;
        match read {
            Err(_elapsed) => return Ok((Protocol::Opaque, buf)),
            Ok(Ok(0)) => return Ok((Protocol::Opaque, buf)),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http2_preface_is_http2_once_complete() {
        assert_eq!(classify(H2_PREFACE), Verdict::Known(Protocol::Http2));
        assert_eq!(classify(&H2_PREFACE[..10]), Verdict::NeedMore);
        let mut with_frames = H2_PREFACE.to_vec();
        with_frames.extend_from_slice(&[0, 0, 0, 4, 0]);
        assert_eq!(classify(&with_frames), Verdict::Known(Protocol::Http2));
    }

    #[test]
    fn request_lines_are_http1() {
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /upload HTTP/1.0\r\n",
            b"CONNECT db:5432 HTTP/1.1\r\n",
            b"GET ",
            b"PROPFIND /x",
        ] {
            assert_eq!(classify(line), Verdict::Known(Protocol::Http1), "{line:?}");
        }
    }

    #[test]
    fn a_method_without_its_space_needs_more_bytes() {
        assert_eq!(classify(b"GE"), Verdict::NeedMore);
        assert_eq!(classify(b"P"), Verdict::NeedMore);
        assert_eq!(classify(b""), Verdict::NeedMore);
    }

    #[test]
    fn a_garbled_request_line_is_still_http1_so_the_server_can_refuse_it() {
        assert_eq!(
            classify(b"GET /\x01\x02 HTTP/9.9\r\n"),
            Verdict::Known(Protocol::Http1)
        );
    }

    #[test]
    fn tls_and_binary_and_line_protocols_are_opaque() {
        assert_eq!(
            classify(&[0x16, 0x03, 0x01, 0x00, 0x10]),
            Verdict::Known(Protocol::Opaque)
        );
        assert_eq!(classify(b"\0\0\0\x08"), Verdict::Known(Protocol::Opaque));
        assert_eq!(
            classify(b"helo example.com\r\n"),
            Verdict::Known(Protocol::Opaque)
        );
        assert_eq!(
            classify(b"SSH-2.0-OpenSSH\r\n"),
            Verdict::Known(Protocol::Opaque)
        );
        assert_eq!(classify(&[b'A'; 40]), Verdict::Known(Protocol::Opaque));
    }

    #[tokio::test]
    async fn detect_stops_at_the_byte_limit() {
        let mut io: &[u8] = &[b'A'; 100];
        let (protocol, buf) = detect(&mut io, 10, Duration::from_secs(1)).await.unwrap();
        // The token is too long to be a method, which decides before the limit.
        assert_eq!(protocol, Protocol::Opaque);
        assert!(!buf.is_empty());
    }

    #[tokio::test]
    async fn detect_treats_an_early_close_as_opaque_and_keeps_the_bytes() {
        let mut io: &[u8] = b"GE";
        let (protocol, buf) = detect(&mut io, 1024, Duration::from_secs(1)).await.unwrap();
        assert_eq!(protocol, Protocol::Opaque);
        assert_eq!(&buf[..], b"GE");
    }

    #[tokio::test(start_paused = true)]
    async fn detect_treats_a_silent_client_as_opaque_after_the_timeout() {
        let (mut client, _server) = tokio::io::duplex(64);
        let (protocol, buf) = detect(&mut client, 1024, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(protocol, Protocol::Opaque);
        assert!(buf.is_empty());
    }
}
