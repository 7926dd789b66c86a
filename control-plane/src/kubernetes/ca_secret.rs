//! The mesh CA kept in a Secret of the control plane's own namespace (the chart's default, as
//! istiod keeps `istio-ca-secret`): read at start, or generated and created when absent, so
//! the chart renders no key material and every `helm template` is the same.
//!
//! Several replicas may start at once: each reads the Secret and, finding none, creates it
//! with its own CA; the API server lets exactly one create succeed (409 `AlreadyExists` for the
//! others), and a loser reads and uses the winner's, before it signs or serves anything. So
//! every replica, and every proxy any replica certifies or injects, sees one CA.
//!
//! The Secret has the `kubernetes.io/tls` shape cert-manager writes (`tls.crt`, `tls.key`,
//! `ca.crt`: issuer, its key, trust anchors), so one reader serves both. The Opaque shape of
//! older charts (`trust-anchors.pem`, `issuer.crt`, `issuer.key`) is read too, so a Secret kept
//! across an upgrade stays the mesh's CA.
//!
//! It never logs, formats or returns Secret data in errors: only the Secret's name and which
//! key is wrong. It reads only its own namespace, the one its API credentials belong to.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use crate::ca::{CaPem, NamedPem};

/// The Secret type cert-manager and the control plane write.
pub const TLS_TYPE: &str = "kubernetes.io/tls";
/// The issuer certificate (and any intermediates up to an anchor).
pub const TLS_CRT: &str = "tls.crt";
/// The issuer's private key.
pub const TLS_KEY: &str = "tls.key";
/// The trust anchors.
pub const CA_CRT: &str = "ca.crt";
/// Keys of the Opaque Secret older charts wrote: anchors, issuer, key.
const LEGACY_KEYS: [&str; 3] = ["trust-anchors.pem", "issuer.crt", "issuer.key"];
/// How long a generated CA lives: as istiod's self-signed root (ten years). It is not renewed
/// automatically; docs/kubernetes.md says how to rotate it.
pub const GENERATED_VALIDITY: time::Duration = time::Duration::days(3650);
/// Label on a Secret the control plane created.
pub const CREATED_BY_LABEL: &str = "strait.dev/created-by";

/// Why the CA Secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaSecretError {
    /// The Secret exists but does not hold a CA in a shape the control plane reads.
    #[error("the CA Secret {namespace}/{name}: {reason}")]
    Unusable {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What is wrong (never its data).
        reason: String,
    },
    /// The control plane was told to keep its CA outside its own namespace.
    #[error(
        "the CA Secret is kept in the control plane's own namespace {own} (where its service account is), but --namespace is {flag}; refusing to read or create a CA Secret in another namespace"
    )]
    ForeignNamespace {
        /// The namespace the API credentials belong to.
        own: String,
        /// What `--namespace` says.
        flag: String,
    },
    /// The API refused a call.
    #[error("the CA Secret {namespace}/{name}: {action} failed: {source}")]
    Api {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// `reading` or `creating`.
        action: &'static str,
        /// The API's answer (boxed: kube's error is large).
        source: Box<kube::Error>,
    },
    /// Generating the CA failed.
    #[error("generating a CA for the Secret {namespace}/{name}: {reason}")]
    Generate {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What failed.
        reason: String,
    },
}

/// How the CA in force came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The Secret was there at start.
    Existing,
    /// This control plane generated the CA and created the Secret.
    Created,
    /// Another replica created the Secret first; this one uses that replica's CA.
    CreatedByAnother,
}

impl Origin {
    /// A short name for the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Existing => "existing",
            Origin::Created => "created",
            Origin::CreatedByAnother => "created-by-another-replica",
        }
    }
}

/// The CA material a Secret holds: the `kubernetes.io/tls` keys, or the older Opaque keys.
/// Refuses any other shape, naming the Secret and the key, never the data.
pub fn material(secret: &Secret, namespace: &str, name: &str) -> Result<CaPem, CaSecretError> {
    let unusable = |reason: String| CaSecretError::Unusable {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        reason,
    };
    let empty = BTreeMap::new();
    let data = secret.data.as_ref().unwrap_or(&empty);
    let secret_type = secret.type_.as_deref().unwrap_or("Opaque");
    let keys: [&str; 3] = if secret_type == TLS_TYPE {
        [CA_CRT, TLS_CRT, TLS_KEY]
    } else if LEGACY_KEYS.iter().all(|k| data.contains_key(*k)) {
        LEGACY_KEYS
    } else {
        return Err(unusable(format!(
            "it is of type {secret_type}; expected {TLS_TYPE} with keys {TLS_CRT}, {TLS_KEY} and {CA_CRT}"
        )));
    };
    let named = |key: &str| -> Result<NamedPem, CaSecretError> {
        let bytes = data
            .get(key)
            .filter(|b| !b.0.is_empty())
            .ok_or_else(|| unusable(format!("it has no key {key} (or it is empty)")))?;
        let pem = String::from_utf8(bytes.0.clone())
            .map_err(|_| unusable(format!("key {key} is not PEM text")))?;
        Ok(NamedPem {
            source: format!("Secret {namespace}/{name} key {key}"),
            pem,
        })
    };
    Ok(CaPem {
        trust_anchors: named(keys[0])?,
        issuer_cert: named(keys[1])?,
        issuer_key: named(keys[2])?,
    })
}

/// The Secret the control plane creates for a CA it generated.
pub fn secret_for(namespace: &str, name: &str, cert_pem: &str, key_pem: &str) -> Secret {
    let data = [
        (TLS_CRT, cert_pem),
        (TLS_KEY, key_pem),
        // One self-signed CA is anchor and issuer at once.
        (CA_CRT, cert_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(
                [(
                    CREATED_BY_LABEL.to_owned(),
                    "strait-control-plane".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        type_: Some(TLS_TYPE.to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Whether the control plane may keep its CA in `flag_namespace`: only its own, the namespace
/// its API credentials belong to (in a pod, its service account's).
pub fn check_namespace(own: &str, flag_namespace: &str) -> Result<(), CaSecretError> {
    if own == flag_namespace {
        Ok(())
    } else {
        Err(CaSecretError::ForeignNamespace {
            own: own.to_owned(),
            flag: flag_namespace.to_owned(),
        })
    }
}

/// Reads the CA Secret `name` in `namespace`, or generates a CA and creates it; a create that
/// loses a race to another replica reads the winner's. The caller checks the material with
/// [`crate::ca::Ca::from_pem`]; a Secret that fails those checks is never replaced.
pub async fn read_or_create(
    client: kube::Client,
    namespace: &str,
    name: &str,
    trust_domain: &str,
) -> Result<(CaPem, Origin), CaSecretError> {
    check_namespace(client.default_namespace(), namespace)?;
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let api_err = |action: &'static str| {
        move |source: kube::Error| CaSecretError::Api {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            action,
            source: Box::new(source),
        }
    };
    if let Some(secret) = api.get_opt(name).await.map_err(api_err("reading"))? {
        return Ok((material(&secret, namespace, name)?, Origin::Existing));
    }
    let (cert_pem, key_pem) = crate::ca::generate_self_signed(trust_domain, GENERATED_VALIDITY)
        .map_err(|e| CaSecretError::Generate {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
    let secret = secret_for(namespace, name, &cert_pem, &key_pem);
    match api.create(&PostParams::default(), &secret).await {
        Ok(created) => Ok((material(&created, namespace, name)?, Origin::Created)),
        Err(kube::Error::Api(status)) if status.is_already_exists() || status.code == 409 => {
            let winner = api.get(name).await.map_err(api_err("reading"))?;
            Ok((
                material(&winner, namespace, name)?,
                Origin::CreatedByAnother,
            ))
        }
        Err(error) => Err(api_err("creating")(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(type_: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            type_: Some(type_.to_owned()),
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn a_tls_secret_gives_ca_crt_as_anchors_and_tls_crt_key_as_issuer() {
        let pem = material(
            &secret(
                TLS_TYPE,
                &[
                    ("ca.crt", "anchors"),
                    ("tls.crt", "issuer"),
                    ("tls.key", "key"),
                ],
            ),
            "strait-system",
            "strait-identity",
        )
        .unwrap();
        assert_eq!(pem.trust_anchors.pem, "anchors");
        assert_eq!(pem.issuer_cert.pem, "issuer");
        assert_eq!(pem.issuer_key.pem, "key");
        assert_eq!(
            pem.issuer_key.source,
            "Secret strait-system/strait-identity key tls.key"
        );
    }

    #[test]
    fn an_older_charts_opaque_secret_is_still_read() {
        let pem = material(
            &secret(
                "Opaque",
                &[
                    ("trust-anchors.pem", "anchors"),
                    ("issuer.crt", "issuer"),
                    ("issuer.key", "key"),
                ],
            ),
            "ns",
            "n",
        )
        .unwrap();
        assert_eq!(pem.trust_anchors.pem, "anchors");
        assert_eq!(pem.issuer_key.pem, "key");
    }

    #[test]
    fn other_shapes_are_refused_naming_the_secret_and_key_never_the_data() {
        let err = material(
            &secret("Opaque", &[("password", "hunter2")]),
            "ns",
            "strait-identity",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ns/strait-identity"), "{err}");
        assert!(err.contains("kubernetes.io/tls"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = material(
            &secret(TLS_TYPE, &[("tls.crt", "x"), ("tls.key", "SECRET-KEY")]),
            "ns",
            "n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no key ca.crt"), "{err}");
        assert!(!err.contains("SECRET-KEY"), "{err}");
    }

    #[test]
    fn the_secret_is_kept_only_in_the_control_planes_own_namespace() {
        assert!(check_namespace("strait-system", "strait-system").is_ok());
        let err = check_namespace("strait-system", "tenant")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tenant") && err.contains("strait-system"),
            "{err}"
        );
    }

    #[test]
    fn a_created_secret_reads_back_as_the_same_ca() {
        let (cert, key) =
            crate::ca::generate_self_signed("cluster.local", GENERATED_VALIDITY).unwrap();
        let secret = secret_for("strait-system", "strait-identity", &cert, &key);
        assert_eq!(secret.type_.as_deref(), Some(TLS_TYPE));
        let pem = material(&secret, "strait-system", "strait-identity").unwrap();
        let ca = crate::ca::Ca::from_pem(&pem, std::time::Duration::from_secs(3600)).unwrap();
        assert_eq!(ca.anchors().len(), 1);
        assert!(
            !format!("{pem:?}").contains("PRIVATE KEY"),
            "Debug must not print key material"
        );
    }
}
