//! A deliberately misbehaving HTTP/2 client that writes frames by hand, for the tests that
//! check how the proxy treats clients a well-behaved library would never imitate (opening
//! more streams than the server allows, flooding resets).
//!
//! Hand-written on purpose: hyper and h2 respect the server's limits, which is exactly what
//! these clients must not do. Only the frames the tests need are here.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Frame types (RFC 9113 §6).
pub mod frame_type {
    /// DATA
    pub const DATA: u8 = 0x0;
    /// HEADERS
    pub const HEADERS: u8 = 0x1;
    /// RST_STREAM
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS
    pub const SETTINGS: u8 = 0x4;
    /// GOAWAY
    pub const GOAWAY: u8 = 0x7;
    /// CONTINUATION
    pub const CONTINUATION: u8 = 0x9;
}

/// Error code REFUSED_STREAM.
pub const REFUSED_STREAM: u32 = 0x7;

/// A frame read from the server.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream id.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM frame.
    pub fn error_code(&self) -> Option<u32> {
        (self.kind == frame_type::RST_STREAM && self.payload.len() == 4)
            .then(|| u32::from_be_bytes(self.payload[..4].try_into().expect("4 bytes")))
    }
}

/// Encodes one frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(9 + payload.len());
    let len = payload.len() as u32;
    buf.put_u8((len >> 16) as u8);
    buf.put_u16(len as u16);
    buf.put_u8(kind);
    buf.put_u8(flags);
    buf.put_u32(stream & 0x7fff_ffff);
    buf.put_slice(payload);
    buf
}

/// An HPACK header block for `GET http://authority/path` using literal fields without
/// indexing, so each block stands alone.
pub fn request_block(authority: &str, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http (static table)
    for (index, value) in [(4u8, path), (1u8, authority)] {
        block.push(index); // literal without indexing, indexed name (4-bit prefix)
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// A raw HTTP/2 connection.
pub struct RawH2 {
    stream: TcpStream,
    buf: BytesMut,
}

impl RawH2 {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("connecting (raw HTTP/2)");
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("writing the preface");
        stream
            .write_all(&frame(frame_type::SETTINGS, 0, 0, &[]))
            .await
            .expect("writing SETTINGS");
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads the next frame; `None` when the server closed the connection.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let head = self.buf.split_to(9);
                    let payload = self.buf.split_to(len).to_vec();
                    return Some(Frame {
                        kind: head[3],
                        flags: head[4],
                        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]])
                            & 0x7fff_ffff,
                        payload,
                    });
                }
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}
