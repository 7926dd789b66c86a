//! The header that opens every proxy-to-proxy connection: which application port the client
//! meant and which protocol follows, so the inbound proxy neither guesses the port nor waits on
//! protocol detection.
//!
//! On the wire: the 8-byte magic `STRAIT1\n`, then a length-delimited protobuf
//! `strait.transport.v1.TransportHeader`. The magic lets the inbound proxy tell a plaintext
//! mesh connection from anything else arriving on its port.

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use strait_proto::discovery::v1::Protocol as WireProtocol;
use strait_proto::transport::v1::TransportHeader;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::detect::Protocol;

/// First bytes of every plaintext or TLS-wrapped mesh connection.
pub const MAGIC: &[u8; 8] = b"STRAIT1\n";

/// Largest encoded header accepted; a real one is a handful of bytes.
const MAX_LEN: usize = 64;

/// What a mesh connection carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The application port on the destination workload.
    pub port: u16,
    /// How the bytes after the header are to be read.
    pub protocol: Protocol,
}

/// Why a header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The connection did not start with [`MAGIC`].
    #[error("connection does not start with the Strait transport header magic")]
    NoMagic,
    /// The header's length prefix or body is malformed.
    #[error("malformed transport header: {0}")]
    Malformed(String),
    /// Reading failed.
    #[error("reading transport header: {0}")]
    Io(#[from] std::io::Error),
}

impl Header {
    /// Encodes the header with its magic, ready to be written first on a connection.
    ///
    /// ```
    /// use strait_proxy::{detect::Protocol, transport_header::Header};
    /// let bytes = Header { port: 8080, protocol: Protocol::Http2 }.encode();
    /// assert!(bytes.starts_with(b"STRAIT1\n"));
    /// ```
    pub fn encode(&self) -> Bytes {
        let message = TransportHeader {
            port: u32::from(self.port),
            protocol: wire_protocol(self.protocol) as i32,
        };
        let mut buf = BytesMut::with_capacity(MAGIC.len() + 1 + message.encoded_len());
        buf.extend_from_slice(MAGIC);
        message
            .encode_length_delimited(&mut buf)
            .expect("BytesMut grows as needed");
        buf.freeze()
    }

    /// Reads the header from the start of `io`, magic included, consuming nothing beyond it.
    pub async fn read<I: AsyncRead + Unpin>(io: &mut I) -> Result<Self, HeaderError> {
        let mut magic = [0u8; MAGIC.len()];
        io.read_exact(&mut magic).await?;
        if &magic != MAGIC {
            return Err(HeaderError::NoMagic);
        }
        Self::read_after_magic(io).await
    }

    /// Reads the length-delimited message that follows the magic.
    pub async fn read_after_magic<I: AsyncRead + Unpin>(io: &mut I) -> Result<Self, HeaderError> {
        // The length is one varint byte for any header up to 127 bytes; MAX_LEN is below that.
        let len = usize::from(io.read_u8().await?);
        if len > MAX_LEN {
            return Err(HeaderError::Malformed(format!(
                "length {len} exceeds the limit of {MAX_LEN} bytes"
            )));
        }
        let mut body = vec![0u8; len];
        io.read_exact(&mut body).await?;
        Self::decode(&body)
    }

    /// Decodes the protobuf body (without magic and length).
    pub fn decode(mut body: &[u8]) -> Result<Self, HeaderError> {
        let message = TransportHeader::decode(&mut body)
            .map_err(|e| HeaderError::Malformed(e.to_string()))?;
        if body.has_remaining() {
            return Err(HeaderError::Malformed("trailing bytes".into()));
        }
        let port = u16::try_from(message.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| HeaderError::Malformed(format!("port {} is invalid", message.port)))?;
        let protocol = match WireProtocol::try_from(message.protocol) {
            Ok(WireProtocol::Http1) => Protocol::Http1,
            Ok(WireProtocol::Http2) => Protocol::Http2,
            Ok(WireProtocol::Opaque) => Protocol::Opaque,
            Ok(WireProtocol::Detect) | Err(_) => {
                return Err(HeaderError::Malformed(format!(
                    "protocol {} is not one a mesh connection can carry",
                    message.protocol
                )));
            }
        };
        Ok(Self { port, protocol })
    }
}

fn wire_protocol(protocol: Protocol) -> WireProtocol {
    match protocol {
        Protocol::Http1 => WireProtocol::Http1,
        Protocol::Http2 => WireProtocol::Http2,
        Protocol::Opaque => WireProtocol::Opaque,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn headers_round_trip_for_every_protocol() {
        for protocol in [Protocol::Http1, Protocol::Http2, Protocol::Opaque] {
            let header = Header {
                port: 65535,
                protocol,
            };
            let mut bytes = header.encode().to_vec();
            bytes.extend_from_slice(b"payload");
            let mut io = &bytes[..];
            assert_eq!(Header::read(&mut io).await.unwrap(), header);
            assert_eq!(io, b"payload", "nothing past the header is consumed");
        }
    }

    #[tokio::test]
    async fn a_connection_without_magic_is_refused() {
        let mut io: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert!(matches!(
            Header::read(&mut io).await,
            Err(HeaderError::NoMagic)
        ));
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_reading_the_body() {
        let mut bytes = MAGIC.to_vec();
        bytes.push(120);
        let mut io = &bytes[..];
        let err = Header::read(&mut io).await.unwrap_err();
        assert!(err.to_string().contains("120"), "{err}");
    }

    #[test]
    fn port_zero_and_detect_protocol_are_refused() {
        let zero_port = TransportHeader {
            port: 0,
            protocol: WireProtocol::Http1 as i32,
        }
        .encode_to_vec();
        assert!(Header::decode(&zero_port).is_err());
        let big_port = TransportHeader {
            port: 70000,
            protocol: WireProtocol::Http1 as i32,
        }
        .encode_to_vec();
        assert!(Header::decode(&big_port).is_err());
        let detect = TransportHeader {
            port: 80,
            protocol: WireProtocol::Detect as i32,
        }
        .encode_to_vec();
        assert!(Header::decode(&detect).is_err());
    }
}
