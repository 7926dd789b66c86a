//! The mesh certificate policy: what a peer's leaf certificate must be, beyond chaining to a
//! trust anchor (which rustls checks).
//!
//! A mesh identity is more than a valid chain. The leaf must be an end-entity certificate
//! (not a CA), carry exactly one SPIFFE URI SAN, in this mesh's trust domain, and have the key
//! usage (`digitalSignature`) and extended key usage (client or server authentication) a mesh
//! handshake needs. rustls's defaults check none of the trust domain, the CA flag of a leaf or
//! its key usage; [`check`] does, as a pure function of the certificate bytes.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::spiffe::SpiffeId;

/// Which side of a handshake the certificate authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A client certificate: needs the `clientAuth` extended key usage.
    Client,
    /// A server certificate: needs the `serverAuth` extended key usage.
    Server,
}

/// Why a leaf certificate is not an acceptable mesh identity. The variants' names are the
/// reasons in metrics and logs ([`LeafError::reason`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafError {
    /// The certificate does not parse.
    #[error("the certificate does not parse: {0}")]
    Malformed(String),
    /// The certificate is a CA certificate used as a leaf.
    #[error("a CA certificate cannot be a mesh identity")]
    CaAsLeaf,
    /// No `keyUsage` extension, or one without `digitalSignature`.
    #[error("the certificate lacks the digitalSignature key usage")]
    KeyUsage,
    /// The extended key usage this side of the handshake needs is missing.
    #[error("the certificate lacks the {0} extended key usage")]
    ExtendedKeyUsage(&'static str),
    /// Not exactly one URI SAN, or it is not a SPIFFE identity.
    #[error("the certificate must carry exactly one SPIFFE URI SAN, found {0}")]
    Identity(String),
    /// The identity is in another trust domain.
    #[error("identity {identity} is outside trust domain {expected}")]
    TrustDomain {
        /// The identity presented.
        identity: Box<SpiffeId>,
        /// The mesh's trust domain.
        expected: String,
    },
    /// The identity is not the one the peer was expected to have.
    #[error("the peer presented identity {presented}, expected {expected}")]
    WrongIdentity {
        /// The identity presented.
        presented: Box<SpiffeId>,
        /// The identity the control plane said the peer has.
        expected: Box<SpiffeId>,
    },
}

impl LeafError {
    /// A short, stable name for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            LeafError::Malformed(_) => "malformed-certificate",
            LeafError::CaAsLeaf => "ca-as-leaf",
            LeafError::KeyUsage => "missing-key-usage",
            LeafError::ExtendedKeyUsage(_) => "missing-extended-key-usage",
            LeafError::Identity(_) => "no-spiffe-identity",
            LeafError::TrustDomain { .. } => "wrong-trust-domain",
            LeafError::WrongIdentity { .. } => "wrong-identity",
        }
    }
}

/// Checks the mesh policy on a leaf and returns the identity it proves.
pub fn check(
    der: &CertificateDer<'_>,
    trust_domain: &str,
    usage: Usage,
) -> Result<SpiffeId, LeafError> {
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| LeafError::Malformed(e.to_string()))?;
    let mut key_usage_ok = false;
    let mut eku_ok = false;
    let mut uris = Vec::new();
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) if bc.ca => return Err(LeafError::CaAsLeaf),
            ParsedExtension::KeyUsage(ku) => key_usage_ok = ku.digital_signature(),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                eku_ok = match usage {
                    Usage::Client => eku.client_auth,
                    Usage::Server => eku.server_auth,
                }
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::URI(uri) = name {
                        uris.push((*uri).to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    if !key_usage_ok {
        return Err(LeafError::KeyUsage);
    }
    if !eku_ok {
        return Err(LeafError::ExtendedKeyUsage(match usage {
            Usage::Client => "clientAuth",
            Usage::Server => "serverAuth",
        }));
    }
    let identity = match uris.as_slice() {
        [uri] => uri
            .parse::<SpiffeId>()
            .map_err(|e| LeafError::Identity(e.to_string()))?,
        other => {
            return Err(LeafError::Identity(format!(
                "{} URI SANs: {other:?}",
                other.len()
            )));
        }
    };
    if identity.trust_domain() != trust_domain {
        return Err(LeafError::TrustDomain {
            identity: Box::new(identity),
            expected: trust_domain.to_owned(),
        });
    }
    Ok(identity)
}

/// The not-after time of a certificate, in seconds since the Unix epoch.
pub fn not_after(der: &CertificateDer<'_>) -> Result<i64, LeafError> {
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| LeafError::Malformed(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp())
}

/// The not-before time of a certificate, in seconds since the Unix epoch.
pub fn not_before(der: &CertificateDer<'_>) -> Result<i64, LeafError> {
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| LeafError::Malformed(e.to_string()))?;
    Ok(cert.validity().not_before.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose, SanType,
    };

    fn leaf(edit: impl FnOnce(&mut CertificateParams)) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(
            "spiffe://cluster.local/ns/demo/sa/web".try_into().unwrap(),
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        edit(&mut params);
        params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .clone()
    }

    #[test]
    fn a_proper_mesh_leaf_yields_its_identity_for_both_usages() {
        let cert = leaf(|_| {});
        for usage in [Usage::Client, Usage::Server] {
            let id = check(&cert, "cluster.local", usage).unwrap();
            assert_eq!(id.to_string(), "spiffe://cluster.local/ns/demo/sa/web");
        }
    }

    #[test]
    fn each_violation_is_named() {
        let cases: Vec<(CertificateDer<'static>, Usage, &str)> = vec![
            (
                leaf(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
                Usage::Client,
                "ca-as-leaf",
            ),
            (
                leaf(|p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]),
                Usage::Client,
                "missing-key-usage",
            ),
            (
                leaf(|p| p.key_usages.clear()),
                Usage::Client,
                "missing-key-usage",
            ),
            (
                leaf(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]),
                Usage::Client,
                "missing-extended-key-usage",
            ),
            (
                leaf(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth]),
                Usage::Server,
                "missing-extended-key-usage",
            ),
            (
                leaf(|p| p.subject_alt_names.clear()),
                Usage::Client,
                "no-spiffe-identity",
            ),
            (
                leaf(|p| {
                    p.subject_alt_names.push(SanType::URI(
                        "spiffe://cluster.local/ns/demo/sa/other"
                            .try_into()
                            .unwrap(),
                    ))
                }),
                Usage::Client,
                "no-spiffe-identity",
            ),
            (
                leaf(|p| {
                    p.subject_alt_names =
                        vec![SanType::URI("https://example.com/x".try_into().unwrap())]
                }),
                Usage::Client,
                "no-spiffe-identity",
            ),
            (
                leaf(|p| {
                    p.subject_alt_names = vec![SanType::URI(
                        "spiffe://other.domain/ns/demo/sa/web".try_into().unwrap(),
                    )]
                }),
                Usage::Client,
                "wrong-trust-domain",
            ),
        ];
        for (cert, usage, reason) in cases {
            let err = check(&cert, "cluster.local", usage).unwrap_err();
            assert_eq!(err.reason(), reason, "{err}");
        }
        assert_eq!(
            check(
                &CertificateDer::from(vec![1, 2, 3]),
                "cluster.local",
                Usage::Client
            )
            .unwrap_err()
            .reason(),
            "malformed-certificate"
        );
    }

    #[test]
    fn dns_sans_next_to_the_spiffe_uri_are_allowed() {
        let cert = leaf(|p| {
            p.subject_alt_names
                .push(SanType::DnsName("cp.strait-system.svc".try_into().unwrap()))
        });
        assert!(check(&cert, "cluster.local", Usage::Server).is_ok());
    }
}
