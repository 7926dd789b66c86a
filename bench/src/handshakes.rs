//! New connections per second through each scenario: the cost of a connection, and for
//! `mesh-mtls` of an mTLS handshake between the proxies.
//!
//! Each iteration opens a fresh client connection, crosses to the TCP echo (through the
//! outbound proxy's `CONNECT` tunnel in the meshes, through the outbound side's TCP listener
//! for the peers), makes one round trip and closes. Opaque
//! TCP is never pooled: every tunnel makes its own connection from the outbound proxy to the
//! inbound one, and with mTLS its own full handshake (the proxies allow no session
//! resumption). The benchmark checks that instead of assuming it: the inbound proxy's
//! `strait_tls_handshakes_total{direction="inbound",result="success"}` must grow by at least
//! the number of connections made.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use strait_tests::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clients::{Target, open_tcp};
use crate::tcp_backend;
use crate::world::World;

/// What a connection-rate measurement achieved.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Handshakes {
    /// Connections opened, used and closed.
    pub connections: u64,
    /// Connections that failed.
    pub errors: u64,
    /// `connections` per second.
    pub per_second: f64,
    /// Concurrent openers.
    pub concurrency: usize,
    /// Successful inbound mTLS handshakes the inbound proxy counted meanwhile (`mesh-mtls`).
    pub tls_handshakes: Option<u64>,
}

const HANDSHAKES: &str = "strait_tls_handshakes_total";
const INBOUND_SUCCESS: [(&str, &str); 2] = [("direction", "inbound"), ("result", "success")];

async fn one(target: &Target) -> anyhow::Result<()> {
    let mut stream = open_tcp(target, tcp_backend::ECHO).await?;
    stream.write_all(b"!").await?;
    let mut echo = [0u8; 1];
    stream.read_exact(&mut echo).await?;
    anyhow::ensure!(&echo == b"!", "the echo answered {echo:?}");
    Ok(())
}

/// Opens connections with `concurrency` openers for `duration`.
pub async fn measure(
    world: &World,
    target: &Target,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Handshakes> {
    let counted = |admin| async move {
        Metrics::fetch(admin)
            .await
            .sum(HANDSHAKES, &INBOUND_SUCCESS)
    };
    let inbound_admin = world
        .inbound_proxy()
        .filter(|_| world.scenario == crate::world::Scenario::MeshMtls)
        .and_then(|p| p.admin);
    let before = match inbound_admin {
        Some(admin) => Some(counted(admin).await),
        None => None,
    };
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut openers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (target, done, errors) = (target.clone(), done.clone(), errors.clone());
        openers.spawn(async move {
            while Instant::now() < deadline {
                match one(&target).await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while openers.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let connections = done.load(Ordering::SeqCst);
    let tls_handshakes = match (inbound_admin, before) {
        (Some(admin), Some(before)) => Some((counted(admin).await - before) as u64),
        _ => None,
    };
    if let Some(tls) = tls_handshakes {
        anyhow::ensure!(
            tls >= connections,
            "{connections} tunnels but only {tls} inbound mTLS handshakes: connections were reused"
        );
    }
    Ok(Handshakes {
        connections,
        errors: errors.load(Ordering::SeqCst),
        per_second: connections as f64 / elapsed,
        concurrency,
        tls_handshakes,
    })
}
