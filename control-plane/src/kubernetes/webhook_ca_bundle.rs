//! The injector webhook's `caBundle`, kept by the control plane (`--injector-webhook`, the
//! chart's default, as istiod keeps its webhook's): the chart renders no serving certificate
//! and no `caBundle`, so every `helm template` is the same; the control plane serves the
//! injector with its own certificate (issued by the mesh CA for its `--dns-name` names, renewed
//! by [`crate::authority::Authority`]) and writes the trust anchors into the `caBundle` of
//! every webhook of the one MutatingWebhookConfiguration it is named, at start and whenever the
//! anchors change, and puts them back if something else changes them.
//!
//! It writes with a JSON patch that touches only `webhooks[i].clientConfig.caBundle`, each
//! guarded by a `test` of that webhook's name, so a concurrent reorder fails the patch rather
//! than writing the wrong entry. RBAC grants `get` and `patch` on that one object by name
//! ([`crate::kubernetes::rbac::INJECTOR_WEBHOOK`]). A failure is logged as an error and makes
//! `/ready` fail until a retry succeeds; it never stops the control plane.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use strait_identity::bundle::TrustBundle;

/// How often the webhook is read back and repaired even when the anchors did not change (an
/// upgrade that re-applies it, a person editing it).
pub const RESYNC: Duration = Duration::from_secs(60);
/// The longest wait between retries after a failure (doubling from one second).
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// Why the `caBundle` could not be set.
#[derive(Debug, thiserror::Error)]
pub enum WebhookCaBundleError {
    /// The API refused a call.
    #[error("the MutatingWebhookConfiguration {name}: {action} failed: {source}")]
    Api {
        /// Its name.
        name: String,
        /// `reading` or `patching`.
        action: &'static str,
        /// The API's answer (boxed: kube's error is large).
        source: Box<kube::Error>,
    },
    /// The object has no webhook to set a `caBundle` on.
    #[error("the MutatingWebhookConfiguration {name} has no webhooks; nothing serves the injector")]
    NoWebhooks {
        /// Its name.
        name: String,
    },
    /// The patch could not be built (never expected: it is made of strings).
    #[error("building the caBundle patch for {name}: {reason}")]
    Patch {
        /// Its name.
        name: String,
        /// What failed.
        reason: String,
    },
}

/// The RFC 6902 operations that set every webhook's `clientConfig.caBundle` to `bundle_pem`,
/// each after a `test` of the webhook's name; empty when every webhook already has it.
pub fn ca_bundle_operations(
    config: &MutatingWebhookConfiguration,
    bundle_pem: &str,
) -> Vec<serde_json::Value> {
    let wanted = bundle_pem.as_bytes();
    config
        .webhooks
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, hook)| {
            hook.client_config
                .ca_bundle
                .as_ref()
                .map(|b| b.0.as_slice())
                != Some(wanted)
        })
        .flat_map(|(i, hook)| {
            use base64::Engine as _;
            [
                json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": hook.name}),
                json!({
                    "op": "add",
                    "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                    "value": base64::engine::general_purpose::STANDARD.encode(wanted),
                }),
            ]
        })
        .collect()
}

/// Reads the webhook configuration `name` and patches the `caBundle`s that differ from
/// `bundle_pem`; returns how many webhooks it changed.
pub async fn ensure(
    api: &Api<MutatingWebhookConfiguration>,
    name: &str,
    bundle_pem: &str,
) -> Result<usize, WebhookCaBundleError> {
    let api_err = |action: &'static str| {
        move |source: kube::Error| WebhookCaBundleError::Api {
            name: name.to_owned(),
            action,
            source: Box::new(source),
        }
    };
    let config = api.get(name).await.map_err(api_err("reading"))?;
    if config.webhooks.as_ref().is_none_or(Vec::is_empty) {
        return Err(WebhookCaBundleError::NoWebhooks {
            name: name.to_owned(),
        });
    }
    let operations = ca_bundle_operations(&config, bundle_pem);
    if operations.is_empty() {
        return Ok(0);
    }
    let changed = operations.len() / 2;
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(operations))
        .map_err(|e| WebhookCaBundleError::Patch {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(api_err("patching"))?;
    Ok(changed)
}

/// The anchors as the `caBundle` carries them (PEM).
fn bundle_pem(bundle: &TrustBundle) -> String {
    strait_identity::pem::encode_certificates(&bundle.anchors())
}

/// One attempt; logs the outcome and records it in `healthy` (which `/ready` reads).
async fn attempt(
    api: &Api<MutatingWebhookConfiguration>,
    name: &str,
    pem: &str,
    healthy: &AtomicBool,
) -> bool {
    match ensure(api, name, pem).await {
        Ok(changed) => {
            if changed > 0 {
                tracing::info!(
                    webhook = name,
                    changed,
                    "injector webhook caBundle set to the trust anchors"
                );
            }
            healthy.store(true, Ordering::Release);
            true
        }
        Err(error) => {
            tracing::error!(
                %error,
                "the injector webhook's caBundle could not be set: the API server cannot verify the injector, so pods are not injected; /ready fails until a retry succeeds"
            );
            healthy.store(false, Ordering::Release);
            false
        }
    }
}

/// The webhook `name` kept trusting the anchors: one attempt now (before the injector is
/// served), then a task that checks the anchors every `period`, patches when they change,
/// re-reads the webhook every [`RESYNC`], and retries a failure with backoff, forever.
pub async fn start(
    client: kube::Client,
    name: String,
    bundle: Arc<TrustBundle>,
    healthy: Arc<AtomicBool>,
    period: Duration,
) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client);
    let mut written = bundle_pem(&bundle);
    let mut ok = attempt(&api, &name, &written, &healthy).await;
    tokio::spawn(async move {
        let mut retry = Duration::from_secs(1);
        let mut next = tokio::time::Instant::now() + if ok { RESYNC } else { retry };
        loop {
            tokio::time::sleep(period).await;
            let pem = bundle_pem(&bundle);
            let changed = pem != written;
            if !changed && tokio::time::Instant::now() < next {
                continue;
            }
            written = pem;
            ok = attempt(&api, &name, &written, &healthy).await;
            if ok {
                retry = Duration::from_secs(1);
                next = tokio::time::Instant::now() + RESYNC;
            } else {
                next = tokio::time::Instant::now() + retry;
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, WebhookClientConfig};

    fn config(bundles: &[Option<&str>]) -> MutatingWebhookConfiguration {
        MutatingWebhookConfiguration {
            webhooks: Some(
                bundles
                    .iter()
                    .enumerate()
                    .map(|(i, b)| MutatingWebhook {
                        name: format!("hook{i}.inject.strait.dev"),
                        client_config: WebhookClientConfig {
                            ca_bundle: b.map(|b| ByteString(b.as_bytes().to_vec())),
                            ..WebhookClientConfig::default()
                        },
                        ..MutatingWebhook::default()
                    })
                    .collect(),
            ),
            ..MutatingWebhookConfiguration::default()
        }
    }

    #[test]
    fn every_webhook_without_the_anchors_gets_them_guarded_by_its_name() {
        let ops = ca_bundle_operations(&config(&[None, Some("old"), Some("PEM")]), "PEM");
        assert_eq!(
            ops,
            vec![
                json!({"op": "test", "path": "/webhooks/0/name", "value": "hook0.inject.strait.dev"}),
                json!({"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "UEVN"}),
                json!({"op": "test", "path": "/webhooks/1/name", "value": "hook1.inject.strait.dev"}),
                json!({"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "UEVN"}),
            ]
        );
        let patch: json_patch::Patch = serde_json::from_value(json!(ops)).unwrap();
        assert_eq!(patch.0.len(), 4);
    }

    #[test]
    fn a_webhook_that_already_trusts_the_anchors_is_not_patched() {
        assert!(ca_bundle_operations(&config(&[Some("PEM"), Some("PEM")]), "PEM").is_empty());
    }
}
