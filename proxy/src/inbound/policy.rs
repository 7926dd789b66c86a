//! Authorization of inbound requests and connections as the table says now, and the
//! re-checking of long-lived connections (opaque, upgraded) whenever the table changes.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::authz;
use crate::flags::InboundMode;
use crate::shared::Shared;
use crate::tcp::Revoked;

use super::Peer;

/// A future that completes once what admitted a long-lived connection (opaque, upgraded) no
/// longer does: each table change re-runs its authorization and, for plaintext callers, the
/// port's inbound mode. `changes` must be taken before the first check.
pub(super) fn revocation(
    shared: Arc<Shared>,
    mut changes: tokio::sync::watch::Receiver<u64>,
    port: u16,
    client: SocketAddr,
    peer: Peer,
    head: Option<http::request::Parts>,
) -> Revoked {
    Box::pin(async move {
        loop {
            if changes.changed().await.is_err() {
                // The table can no longer change: what admitted the connection stands.
                return std::future::pending().await;
            }
            let plaintext_refused = !peer.tls
                && shared
                    .table
                    .load()
                    .inbound_mode(port, shared.settings.default_inbound_mode)
                    == InboundMode::Strict;
            if plaintext_refused || authorize(&shared, port, client, &peer, head.as_ref()).is_err()
            {
                tracing::info!(%client, port, "closing a connection that is no longer authorized");
                metrics::counter!("strait_inbound_revoked_total").increment(1);
                return;
            }
        }
    })
}

/// Checks a connection (`head` is `None`) or a request against the port's authorization as
/// it is now, so policy changes apply to the next request on a connection already open;
/// counts and logs a refusal.
pub(super) fn authorize(
    shared: &Shared,
    port: u16,
    client: SocketAddr,
    peer: &Peer,
    head: Option<&http::request::Parts>,
) -> Result<(), authz::DenyReason> {
    let table = shared.table.load();
    let caller = peer.identity.as_ref();
    let Err(denial) = table.authorize(port, &shared.settings.trust_domain, caller, head) else {
        return Ok(());
    };
    // Denials are the rare path, so formatting labels here costs the data path nothing.
    metrics::counter!(
        "strait_inbound_denied_total",
        "port" => port.to_string(),
        "policy" => denial.policy.to_string(),
        "reason" => denial.reason.as_str(),
        "tls" => if peer.tls { "true" } else { "false" },
    )
    .increment(1);
    tracing::info!(
        %client,
        port,
        peer = caller.map(tracing::field::display),
        policy = %denial.policy,
        reason = denial.reason.as_str(),
        method = head.map(|h| tracing::field::display(&h.method)),
        // The path only: a query string may carry secrets.
        path = head.map(|h| h.uri.path()),
        "inbound {} denied by authorization policy",
        if head.is_some() { "request" } else { "connection" },
    );
    Err(denial.reason)
}
