//! The discovery client: watches the control plane for this proxy's snapshot and applies each
//! one atomically (entries the proxy cannot build are set aside, the rest applies; see
//! [`crate::table::SetAside`]). When the control plane goes away the last snapshot stays in
//! force and the proxy reconnects with backoff and jitter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use strait_identity::store::CertStore;
use strait_proto::discovery::v1::WatchRequest;
use strait_proto::discovery::v1::discovery_client::DiscoveryClient;

use crate::backoff::Backoff;
use crate::control_plane::ControlPlane;
use crate::table::TableHandle;

/// A number standing for a snapshot version, for the `strait_discovery_snapshot_version`
/// gauge: the version's first 12 hex digits (exact in an f64), or 0.
pub fn version_number(version: &str) -> f64 {
    version
        .get(..12)
        .and_then(|prefix| u64::from_str_radix(prefix, 16).ok())
        .map(|n| n as f64)
        .unwrap_or(0.0)
}

/// Whether the discovery stream is up, for the admin `/status`.
#[derive(Clone, Default)]
pub struct Connected(Arc<AtomicBool>);

impl Connected {
    /// Whether the stream is up now.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
        metrics::gauge!("strait_discovery_connected").set(if up { 1.0 } else { 0.0 });
    }
}

/// Watches discovery for `workload` in `namespace`, forever.
pub async fn run(
    control_plane: ControlPlane,
    namespace: String,
    workload: String,
    table: TableHandle,
    store: Arc<CertStore>,
    connected: Connected,
    readiness: Arc<crate::readiness::Readiness>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    connected.set(false);
    while !store.has_certificate() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        // A fresh channel per attempt presents the current certificate.
        let mut client = DiscoveryClient::new(control_plane.channel(true));
        let request = WatchRequest {
            workload: workload.clone(),
            namespace: namespace.clone(),
            version: table.load().snapshot.version.clone(),
        };
        match client.watch(request).await {
            Ok(response) => {
                connected.set(true);
                tracing::info!(control_plane = control_plane.addr(), %workload, "watching discovery");
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(snapshot)) => {
                            backoff.reset();
                            let version = snapshot.version.clone();
                            let set_aside = table.apply(snapshot);
                            readiness.set_snapshot();
                            metrics::counter!("strait_discovery_updates_total", "result" => "applied").increment(1);
                            metrics::gauge!("strait_discovery_snapshot_version")
                                .set(version_number(&version));
                            metrics::gauge!("strait_discovery_last_update_timestamp_seconds").set(
                                SystemTime::now()
                                    .duration_since(SystemTime::UNIX_EPOCH)
                                    .map(|d| d.as_secs_f64())
                                    .unwrap_or(0.0),
                            );
                            tracing::info!(
                                %version,
                                services = table.load().service_count(),
                                set_aside = set_aside.len(),
                                "snapshot applied"
                            );
                        }
                        Ok(None) => {
                            tracing::warn!("the control plane ended the discovery stream");
                            break;
                        }
                        Err(status) => {
                            tracing::warn!(%status, "discovery stream failed");
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::warn!(control_plane = control_plane.addr(), %status, "discovery watch refused or unreachable")
            }
        }
        connected.set(false);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_become_comparable_numbers() {
        assert_eq!(version_number("000000000001ffff"), 1.0);
        assert_eq!(version_number("abcdef012345"), 0xabcdef012345u64 as f64);
        assert_eq!(version_number("short"), 0.0);
        assert_eq!(version_number("not-hex-at-all!!"), 0.0);
    }
}
