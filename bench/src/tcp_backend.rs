//! The TCP backend of the benchmark: the first byte of each connection picks its behaviour,
//! so one port serves both TCP measurements:
//! - [`ECHO`]: every byte read is written back (round-trip latency, new connections);
//! - [`SINK`]: bytes are read and counted until the client half-closes, then the count is
//!   answered as 8 bytes big-endian (stream throughput, counted where the bytes arrive).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// First byte of an echo connection.
pub const ECHO: u8 = b'e';
/// First byte of a sink connection.
pub const SINK: u8 = b's';

/// Starts the backend on a free loopback port.
pub async fn start() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve(stream));
        }
    });
    Ok(addr)
}

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 256 * 1024];
    let Ok(mode) = stream.read_u8().await else {
        return;
    };
    match mode {
        ECHO => loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        },
        SINK => {
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(_) => return,
                }
            }
            let _ = stream.write_u64(total).await;
            let _ = stream.shutdown().await;
        }
        _ => {}
    }
}
