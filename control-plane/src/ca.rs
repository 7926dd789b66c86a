//! The certificate authority: trust anchors, the issuer that signs workload certificates, and
//! the signing of CSRs into short-lived mesh identities.
//!
//! Anchors and issuer are loaded from PEM files (supplied by the operator, or generated with
//! `--dev-ca` for development). Loading checks what a misconfiguration would otherwise turn
//! into handshake failures hours later: the issuer is a CA, its key matches, and it chains to
//! one of the anchors.
//!
//! Longer than 500 lines because its unit tests live beside the checks they specify (about 500
//! lines of code: loading, generating, CSR checks and signing are one CA's steps).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{
    CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use strait_identity::SpiffeId;
use strait_identity::pem::{self, PemError};
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

/// Where the CA's material lives.
#[derive(Clone, Debug)]
pub struct CaFiles {
    /// PEM bundle of trust anchors (one or more root certificates).
    pub trust_anchors: PathBuf,
    /// PEM certificate of the issuer, optionally followed by intermediates up to an anchor.
    pub issuer_cert: PathBuf,
    /// PEM private key of the issuer.
    pub issuer_key: PathBuf,
}

impl CaFiles {
    /// The conventional file names inside `dir` (what `--dev-ca` writes).
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            trust_anchors: dir.join("trust-anchors.pem"),
            issuer_cert: dir.join("issuer.crt"),
            issuer_key: dir.join("issuer.key"),
        }
    }
}

/// One piece of CA material as PEM text, and where it came from (a file, a Secret's key).
#[derive(Clone)]
pub struct NamedPem {
    /// Where it came from, for error messages: a path, or `Secret ns/name key tls.crt`.
    pub source: String,
    /// The PEM text.
    pub pem: String,
}

/// Never prints the PEM: the issuer key must not reach a log line through a `{:?}`.
impl std::fmt::Debug for NamedPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedPem")
            .field("source", &self.source)
            .field("pem", &format_args!("<{} bytes>", self.pem.len()))
            .finish()
    }
}

/// The CA's material as PEM text: what [`Ca::from_pem`] checks and loads.
#[derive(Clone, Debug)]
pub struct CaPem {
    /// One or more trust anchors.
    pub trust_anchors: NamedPem,
    /// The issuer certificate, optionally followed by intermediates up to an anchor.
    pub issuer_cert: NamedPem,
    /// The issuer's private key.
    pub issuer_key: NamedPem,
}

/// Why the CA could not be loaded or generated.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// PEM could not be read.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The issuer is unusable.
    #[error("issuer certificate {path}: {reason}")]
    Issuer {
        /// The issuer certificate file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The trust anchors are unusable.
    #[error("trust anchors {path}: {reason}")]
    Anchors {
        /// The anchors file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Generating development material failed.
    #[error("generating the development CA in {dir}: {reason}")]
    Generate {
        /// The directory.
        dir: String,
        /// What failed.
        reason: String,
    },
}

/// Why a CSR was refused. [`CsrError::reason`] names it for metrics.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// Not a DER PKCS#10 request.
    #[error("the CSR is not a valid DER-encoded PKCS#10 request")]
    Malformed,
    /// The CSR's self-signature does not verify.
    #[error("the CSR's signature does not verify against its public key")]
    BadSignature,
    /// The key is not ECDSA P-256.
    #[error("the CSR's key type is not accepted: {0}; use ECDSA P-256")]
    UnsupportedKey(String),
    /// The CSR asks for an extension the CA does not understand.
    #[error("the CSR requests an extension the CA does not accept")]
    UnsupportedExtension,
    /// The CSR is larger than any real one.
    #[error("the CSR is {0} bytes, more than the {MAX_CSR_BYTES}-byte limit")]
    TooLarge(usize),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Largest CSR accepted.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

impl CsrError {
    /// A short, stable name for metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            CsrError::Malformed => "malformed-csr",
            CsrError::BadSignature => "bad-csr-signature",
            CsrError::UnsupportedKey(_) => "unsupported-key-type",
            CsrError::UnsupportedExtension => "unsupported-csr-extension",
            CsrError::TooLarge(_) => "csr-too-large",
            CsrError::Sign(_) => "signing-failed",
        }
    }
}

/// A signed workload certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf.
    pub leaf: CertificateDer<'static>,
    /// Intermediates from the issuer up to (excluding) the anchor.
    pub chain: Vec<CertificateDer<'static>>,
    /// When the leaf expires.
    pub not_after: SystemTime,
}

/// A loaded certificate authority.
pub struct Ca {
    anchors: Vec<CertificateDer<'static>>,
    issuer: Issuer<'static, KeyPair>,
    chain: Vec<CertificateDer<'static>>,
    issuer_not_after: i64,
    leaf_ttl: Duration,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("anchors", &self.anchors.len())
            .field("chain", &self.chain.len())
            .field("leaf_ttl", &self.leaf_ttl)
            .finish()
    }
}

fn parse_cert<'a>(der: &'a CertificateDer<'a>) -> Result<X509Certificate<'a>, String> {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, c)| c)
        .map_err(|e| format!("does not parse: {e}"))
}

impl Ca {
    /// Loads and checks the CA from `files`; certificates it signs live `leaf_ttl`.
    pub fn load(files: &CaFiles, leaf_ttl: Duration) -> Result<Self, CaError> {
        let named = |path: &Path| -> Result<NamedPem, CaError> {
            Ok(NamedPem {
                source: path.display().to_string(),
                pem: pem::read(path)?,
            })
        };
        Self::from_pem(
            &CaPem {
                trust_anchors: named(&files.trust_anchors)?,
                issuer_cert: named(&files.issuer_cert)?,
                issuer_key: named(&files.issuer_key)?,
            },
            leaf_ttl,
        )
    }

    /// Checks and loads the CA from PEM text (files read, or a Secret's keys); errors name
    /// each piece by its `source`. Certificates it signs live `leaf_ttl`.
    pub fn from_pem(material: &CaPem, leaf_ttl: Duration) -> Result<Self, CaError> {
        let anchors_path = material.trust_anchors.source.clone();
        let issuer_path = material.issuer_cert.source.clone();
        let anchors = pem::certificates(&material.trust_anchors.pem, &anchors_path)?;
        for (i, anchor) in anchors.iter().enumerate() {
            let cert = parse_cert(anchor).map_err(|reason| CaError::Anchors {
                path: anchors_path.clone(),
                reason: format!("anchor #{i} {reason}"),
            })?;
            if !cert.is_ca() {
                return Err(CaError::Anchors {
                    path: anchors_path,
                    reason: format!("anchor #{i} ({}) is not a CA certificate", cert.subject()),
                });
            }
        }
        let issuer_chain = pem::certificates(&material.issuer_cert.pem, &issuer_path)?;
        // The key's parse error is not shown: it could quote key material.
        let key = KeyPair::from_pem(&material.issuer_key.pem).map_err(|_| CaError::Issuer {
            path: material.issuer_key.source.clone(),
            reason: "the private key does not parse (PEM PKCS#8, SEC1 or PKCS#1 expected)".into(),
        })?;
        let issuer_err = |reason: String| CaError::Issuer {
            path: issuer_path.clone(),
            reason,
        };
        let issuer_cert = parse_cert(&issuer_chain[0]).map_err(&issuer_err)?;
        if !issuer_cert.is_ca() {
            return Err(issuer_err(
                "it is not a CA certificate (basicConstraints cA is not set)".into(),
            ));
        }
        if issuer_cert.public_key().raw
            != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        {
            return Err(issuer_err(format!(
                "the key in {} does not belong to this certificate",
                material.issuer_key.source
            )));
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let issuer_not_after = issuer_cert.validity().not_after.timestamp();
        if issuer_not_after <= now {
            return Err(issuer_err("it has expired".into()));
        }
        // Each certificate must be signed by the next; the last by an anchor (or be one).
        let parsed: Vec<X509Certificate<'_>> = issuer_chain
            .iter()
            .map(parse_cert)
            .collect::<Result<_, _>>()
            .map_err(&issuer_err)?;
        for pair in parsed.windows(2) {
            pair[0]
                .verify_signature(Some(pair[1].public_key()))
                .map_err(|_| {
                    issuer_err(format!(
                        "{} is not signed by {}",
                        pair[0].subject(),
                        pair[1].subject()
                    ))
                })?;
        }
        let top = parsed
            .last()
            .expect("a PEM file yields at least one certificate");
        let anchored = anchors.iter().any(|anchor| {
            anchor.as_ref() == issuer_chain.last().expect("non-empty").as_ref()
                || parse_cert(anchor)
                    .is_ok_and(|a| top.verify_signature(Some(a.public_key())).is_ok())
        });
        if !anchored {
            return Err(issuer_err(format!(
                "it does not chain to any trust anchor in {anchors_path}"
            )));
        }
        // The chain sent with leaves stops below the anchor.
        let chain = issuer_chain
            .iter()
            .filter(|c| !anchors.iter().any(|a| a.as_ref() == c.as_ref()))
            .cloned()
            .collect();
        let issuer = Issuer::from_ca_cert_der(&issuer_chain[0], key)
            .map_err(|e| issuer_err(e.to_string()))?;
        Ok(Self {
            anchors,
            issuer,
            chain,
            issuer_not_after,
            leaf_ttl,
        })
    }

    /// Loads the development CA in `dir`, generating it first if the directory holds none.
    /// Returns the CA and whether it was generated.
    pub fn load_or_generate_dev(
        dir: &Path,
        trust_domain: &str,
        leaf_ttl: Duration,
    ) -> Result<(Self, bool), CaError> {
        let files = CaFiles::in_dir(dir);
        let generated = if files.trust_anchors.exists()
            && files.issuer_cert.exists()
            && files.issuer_key.exists()
        {
            false
        } else {
            generate_dev(dir, trust_domain)?;
            true
        };
        Ok((Self::load(&files, leaf_ttl)?, generated))
    }

    /// The trust anchors.
    pub fn anchors(&self) -> &[CertificateDer<'static>] {
        &self.anchors
    }

    /// Signs `csr_der` for `identity`. Everything in the CSR but its key is ignored: the
    /// certificate carries exactly the identity, the mesh key usages and the CA's lifetime.
    pub fn sign(&self, csr_der: &[u8], identity: &SpiffeId) -> Result<Issued, CsrError> {
        self.sign_checked(check_csr(csr_der)?, identity)
    }

    /// Signs a CSR [`check_csr`] accepted for `identity`, as [`Ca::sign`].
    pub fn sign_checked(&self, csr: CheckedCsr, identity: &SpiffeId) -> Result<Issued, CsrError> {
        let csr = csr.0;
        let params = self
            .leaf_params(identity, &[])
            .map_err(|e| CsrError::Sign(e.to_string()))?;
        let request = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let leaf = request
            .signed_by(&self.issuer)
            .map_err(|e| CsrError::Sign(e.to_string()))?;
        let leaf = leaf.der().clone();
        let not_after =
            strait_identity::leaf::not_after(&leaf).map_err(|e| CsrError::Sign(e.to_string()))?;
        Ok(Issued {
            leaf,
            chain: self.chain.clone(),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.max(0) as u64),
        })
    }

    /// Issues a certificate and key for the control plane itself, with extra DNS names so
    /// clients outside the mesh's naming can reach it too.
    pub fn issue_own(
        &self,
        identity: &SpiffeId,
        dns_names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CsrError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| CsrError::Sign(e.to_string()))?;
        let params = self
            .leaf_params(identity, dns_names)
            .map_err(|e| CsrError::Sign(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CsrError::Sign(e.to_string()))?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        Ok((
            chain,
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }

    fn leaf_params(
        &self,
        identity: &SpiffeId,
        dns_names: &[String],
    ) -> Result<CertificateParams, rcgen::Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("{}.{}", identity.service_account(), identity.namespace()),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(identity.to_string().try_into()?)];
        for name in dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(name.clone().try_into()?));
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        // Tolerate a minute of clock skew between the control plane and its proxies.
        params.not_before = now - time::Duration::minutes(1);
        let ttl = time::Duration::try_from(self.leaf_ttl).unwrap_or(time::Duration::days(1));
        let not_after = (now + ttl).unix_timestamp().min(self.issuer_not_after);
        params.not_after =
            time::OffsetDateTime::from_unix_timestamp(not_after).unwrap_or(now + ttl);
        params.serial_number = Some(random_serial());
        Ok(params)
    }
}

/// A CSR whose size, encoding, self-signature and key type [`check_csr`] accepted.
pub struct CheckedCsr(CertificateSigningRequestParams);

/// Checks everything about `csr_der` that needs no CA and no caller identity: its size, its
/// DER, its self-signature and that its key is ECDSA P-256. Cheap and local, so callers run
/// it before anything that costs a remote call (a TokenReview).
pub fn check_csr(csr_der: &[u8]) -> Result<CheckedCsr, CsrError> {
    if csr_der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge(csr_der.len()));
    }
    let csr =
        CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
            .map_err(|e| match e {
                rcgen::Error::InvalidCertificationRequestSignature => CsrError::BadSignature,
                rcgen::Error::UnsupportedExtension => CsrError::UnsupportedExtension,
                rcgen::Error::UnsupportedSignatureAlgorithm => {
                    CsrError::UnsupportedKey("unsupported signature algorithm".into())
                }
                _ => CsrError::Malformed,
            })?;
    if csr.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
        return Err(CsrError::UnsupportedKey(format!(
            "{:?}",
            csr.public_key.algorithm()
        )));
    }
    // rcgen's algorithm above is the signature's, which for ECDSA names the hash only: a
    // P-384 key signed with SHA-256 passes it, and would be issued a P-256 leaf that
    // holds a P-384 point. The key's own declaration decides.
    let key = key_type(csr_der);
    if key != "ECDSA P-256" {
        return Err(CsrError::UnsupportedKey(key));
    }
    Ok(CheckedCsr(csr))
}

/// The key type a CSR's SubjectPublicKeyInfo declares, e.g. "ECDSA P-256".
fn key_type(csr_der: &[u8]) -> String {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    };
    let Ok((_, csr)) = X509CertificationRequest::from_der(csr_der) else {
        return "a key that does not parse".into();
    };
    let algorithm = &csr.certification_request_info.subject_pki.algorithm;
    if algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return format!("key algorithm {}", algorithm.algorithm);
    }
    match algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()) {
        Some(curve) if curve == OID_EC_P256 => "ECDSA P-256".into(),
        Some(curve) if curve == OID_NIST_EC_P384 => "ECDSA P-384".into(),
        Some(curve) if curve == OID_NIST_EC_P521 => "ECDSA P-521".into(),
        Some(curve) => format!("ECDSA on curve {curve}"),
        None => "ECDSA without a named curve".into(),
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG works");
    // A positive INTEGER: clear the top bit.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// Generates a development trust anchor (10 years) and issuer (1 year) into `dir`.
pub fn generate_dev(dir: &Path, trust_domain: &str) -> Result<(), CaError> {
    let fail = |reason: String| CaError::Generate {
        dir: dir.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let (anchor_pem, issuer_pem, key_pem) = generate_pair(
        trust_domain,
        "root",
        time::Duration::days(3650),
        time::Duration::days(365),
    )
    .map_err(|e| fail(e.to_string()))?;
    let files = CaFiles::in_dir(dir);
    let write = |path: &Path, content: &str| {
        std::fs::write(path, content).map_err(|e| fail(format!("{}: {e}", path.display())))
    };
    write(&files.trust_anchors, &anchor_pem)?;
    write(&files.issuer_cert, &issuer_pem)?;
    write(&files.issuer_key, &key_pem)?;
    restrict_permissions(&files.issuer_key).map_err(|e| fail(e.to_string()))?;
    Ok(())
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// Generates one self-signed CA that is trust anchor and issuer at once, as PEM (certificate,
/// PKCS#8 key): what the control plane keeps in its CA Secret when it makes the CA itself.
pub fn generate_self_signed(
    trust_domain: &str,
    lifetime: time::Duration,
) -> Result<(String, String), rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("Strait trust anchor ({trust_domain})"),
    );
    params.distinguished_name = dn;
    // It signs leaves only: no intermediate below it.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + lifetime;
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Generates a root and an issuer signed by it, as PEM: (anchor, issuer certificate, issuer
/// key). `label` distinguishes several anchors in their subjects (for rotation).
pub fn generate_pair(
    trust_domain: &str,
    label: &str,
    root_lifetime: time::Duration,
    issuer_lifetime: time::Duration,
) -> Result<(String, String, String), rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut root = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("Strait trust anchor {label} ({trust_domain})"),
    );
    root.distinguished_name = dn;
    root.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root.not_before = now - time::Duration::minutes(1);
    root.not_after = now + root_lifetime;
    root.serial_number = Some(random_serial());
    let root_cert = root.self_signed(&root_key)?;
    let root_issuer = Issuer::new(root, root_key);

    let issuer_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut issuer = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("Strait issuer {label} ({trust_domain})"),
    );
    issuer.distinguished_name = dn;
    issuer.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    issuer.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    issuer.not_before = now - time::Duration::minutes(1);
    issuer.not_after = now + issuer_lifetime;
    issuer.serial_number = Some(random_serial());
    issuer.use_authority_key_identifier_extension = true;
    let issuer_cert = issuer.signed_by(&issuer_key, &root_issuer)?;
    Ok((
        root_cert.pem(),
        issuer_cert.pem(),
        issuer_key.serialize_pem(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev_ca(dir: &Path) -> Ca {
        Ca::load_or_generate_dev(dir, "cluster.local", Duration::from_secs(3600))
            .unwrap()
            .0
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strait-ca-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn csr(key: &KeyPair) -> Vec<u8> {
        let params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.serialize_request(key).unwrap().der().to_vec()
    }

    #[test]
    fn a_generated_ca_signs_mesh_leaves_that_chain_and_pass_the_policy() {
        let dir = scratch("sign");
        let ca = dev_ca(&dir);
        let id: SpiffeId = "spiffe://cluster.local/ns/demo/sa/web".parse().unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let issued = ca.sign(&csr(&key), &id).unwrap();
        assert_eq!(issued.chain.len(), 1, "the issuer, not the anchor");
        for usage in [
            strait_identity::leaf::Usage::Client,
            strait_identity::leaf::Usage::Server,
        ] {
            assert_eq!(
                strait_identity::leaf::check(&issued.leaf, "cluster.local", usage).unwrap(),
                id
            );
        }
        let lifetime = issued.not_after.duration_since(SystemTime::now()).unwrap();
        assert!(lifetime <= Duration::from_secs(3600) && lifetime > Duration::from_secs(3500));
        // Reloading the same directory gives the same anchors.
        assert_eq!(dev_ca(&dir).anchors(), ca.anchors());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refused_csrs_name_their_reason() {
        let dir = scratch("refuse");
        let ca = dev_ca(&dir);
        let id: SpiffeId = "spiffe://cluster.local/ns/demo/sa/web".parse().unwrap();
        assert_eq!(
            ca.sign(b"garbage", &id).unwrap_err().reason(),
            "malformed-csr"
        );
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut tampered = csr(&key);
        let last = tampered.len() - 5;
        tampered[last] ^= 0xff;
        let reason = ca.sign(&tampered, &id).unwrap_err().reason();
        assert!(
            reason == "bad-csr-signature" || reason == "malformed-csr",
            "{reason}"
        );
        let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        assert_eq!(
            ca.sign(&csr(&p384), &id).unwrap_err().reason(),
            "unsupported-key-type"
        );
        let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert_eq!(
            ca.sign(&csr(&ed25519), &id).unwrap_err().reason(),
            "unsupported-key-type"
        );
        assert_eq!(
            ca.sign(&vec![0u8; MAX_CSR_BYTES + 1], &id)
                .unwrap_err()
                .reason(),
            "csr-too-large"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Found by review while writing the CSR fuzz target: the key check looked at the
    /// CSR's signature algorithm, which for ECDSA names the hash, not the curve.
    #[test]
    fn a_p384_key_signed_with_sha256_is_refused_as_an_unsupported_key() {
        let dir = scratch("p384-sha256");
        let ca = dev_ca(&dir);
        let id: SpiffeId = "spiffe://cluster.local/ns/demo/sa/web".parse().unwrap();
        let csr = include_bytes!("../tests/data/csr-p384-signed-ecdsa-with-sha256.der");
        let err = ca.sign(csr, &id).unwrap_err();
        assert_eq!(err.reason(), "unsupported-key-type", "{err}");
        assert!(err.to_string().contains("P-384"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_issuer_that_does_not_chain_to_the_anchors_is_refused_at_load() {
        let dir = scratch("mismatch");
        generate_dev(&dir, "cluster.local").unwrap();
        let (other_anchor, _, _) = generate_pair(
            "cluster.local",
            "other",
            time::Duration::days(10),
            time::Duration::days(5),
        )
        .unwrap();
        std::fs::write(dir.join("trust-anchors.pem"), other_anchor).unwrap();
        let err = Ca::load(&CaFiles::in_dir(&dir), Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not chain to any trust anchor"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The Helm chart's quick start (`genPrivateKey "ecdsa"` + `genCAWithKey`): one
    /// self-signed CA that is anchor and issuer at once, its key in SEC1 (`EC PRIVATE KEY`).
    #[test]
    fn a_self_signed_ca_with_a_sec1_key_serves_as_anchor_and_issuer() {
        use aws_lc_rs::encoding::AsDer as _;
        use base64::Engine as _;
        let dir = scratch("sec1");
        std::fs::create_dir_all(&dir).unwrap();
        let signing = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap();
        let sec1 = signing.private_key().as_der().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(sec1.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        let key_pem = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let key = KeyPair::from_pem(&key_pem).unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Strait trust anchor (cluster.local)");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.self_signed(&key).unwrap().pem();
        let files = CaFiles::in_dir(&dir);
        std::fs::write(&files.trust_anchors, &cert).unwrap();
        std::fs::write(&files.issuer_cert, &cert).unwrap();
        std::fs::write(&files.issuer_key, &key_pem).unwrap();

        let ca = Ca::load(&files, Duration::from_secs(3600)).unwrap();
        assert_eq!(ca.anchors().len(), 1);
        let id: SpiffeId = "spiffe://cluster.local/ns/demo/sa/web".parse().unwrap();
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let issued = ca.sign(&csr(&leaf_key), &id).unwrap();
        assert!(
            issued.chain.is_empty(),
            "the anchor is the issuer: no intermediates"
        );
        let anchor = x509_parser::pem::parse_x509_pem(cert.as_bytes()).unwrap().1;
        let anchor = anchor.parse_x509().unwrap();
        let (_, leaf) = X509Certificate::from_der(issued.leaf.as_ref()).unwrap();
        leaf.verify_signature(Some(anchor.public_key())).unwrap();
        assert_eq!(
            strait_identity::leaf::check(
                &issued.leaf,
                "cluster.local",
                strait_identity::leaf::Usage::Server
            )
            .unwrap(),
            id
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_issuer_key_that_does_not_match_is_refused_at_load() {
        let dir = scratch("key");
        generate_dev(&dir, "cluster.local").unwrap();
        std::fs::write(
            dir.join("issuer.key"),
            KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        let err = Ca::load(&CaFiles::in_dir(&dir), Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not belong to this certificate"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
