//! Joins the two halves of an upgraded connection (WebSocket, CONNECT tunnel) once both the
//! client and the upstream have switched protocols, and copies bytes between them.

use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::io::BoxedIo;
use crate::tcp::{self, Revoked};

/// Waits in the background for both sides to upgrade, then relays bytes until both close,
/// the connection idles past `idle_timeout`, or `revoked` completes.
pub fn splice_upgrades(
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle_timeout: Duration,
    revoked: Option<Revoked>,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                return;
            }
        };
        let client: BoxedIo = Box::new(TokioIo::new(client));
        let upstream: BoxedIo = Box::new(TokioIo::new(upstream));
        if let Err(error) = tcp::relay_until(client, upstream, idle_timeout, revoked).await {
            tracing::debug!(%error, "upgraded connection ended with an error");
        }
    });
}

/// Waits in the background for the client to upgrade, then relays bytes between it and an
/// already-connected upstream stream (a CONNECT tunnel).
pub fn splice_tunnel(client: OnUpgrade, upstream: BoxedIo, idle_timeout: Duration) {
    tokio::spawn(async move {
        let client: BoxedIo = match client.await {
            Ok(upgraded) => Box::new(TokioIo::new(upgraded)),
            Err(error) => {
                tracing::debug!(%error, "CONNECT tunnel was not established");
                return;
            }
        };
        if let Err(error) = tcp::relay(client, upstream, idle_timeout).await {
            tracing::debug!(%error, "CONNECT tunnel ended with an error");
        }
    });
}
