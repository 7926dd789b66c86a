//! Certificates made to order for the refusal tests, signed by a mesh's CA (read from its
//! files) or by a stranger CA, with exactly the defect a test needs.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA that can sign test certificates.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    chain: Vec<CertificateDer<'static>>,
}

/// A certificate chain (leaf first) and its key.
pub struct Identity {
    /// Leaf first, then intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

/// What to get wrong.
#[derive(Clone, Debug, Default)]
pub struct Defects {
    /// Validity ended an hour ago.
    pub expired: bool,
    /// Validity starts in an hour.
    pub not_yet_valid: bool,
    /// A CA certificate rather than an end-entity one.
    pub ca: bool,
    /// Server authentication only, no client authentication.
    pub no_client_auth: bool,
}

impl TestCa {
    /// The CA whose issuer certificate and key are in `dir` (`issuer.crt`, `issuer.key`).
    pub fn from_dir(dir: &Path) -> Self {
        let cert_pem = std::fs::read_to_string(dir.join("issuer.crt")).expect("reading issuer.crt");
        let key = KeyPair::from_pem(
            &std::fs::read_to_string(dir.join("issuer.key")).expect("reading issuer.key"),
        )
        .expect("parsing issuer.key");
        let chain =
            strait_identity::pem::certificates(&cert_pem, "issuer.crt").expect("issuer PEM");
        Self {
            issuer: Issuer::from_ca_cert_pem(&cert_pem, key).expect("issuer certificate"),
            chain,
        }
    }

    /// A CA nobody in the mesh trusts. With `same_names`, its certificates carry the same
    /// names as a development CA's, as a forgery would.
    pub fn stranger(same_names: bool) -> Self {
        let label = if same_names { "root" } else { "stranger" };
        let (_, cert_pem, key_pem) = strait_control_plane::ca::generate_pair(
            "cluster.local",
            label,
            time::Duration::days(1),
            time::Duration::days(1),
        )
        .expect("generating a CA");
        let key = KeyPair::from_pem(&key_pem).expect("parsing the stranger's key");
        Self {
            chain: strait_identity::pem::certificates(&cert_pem, "stranger").expect("stranger PEM"),
            issuer: Issuer::from_ca_cert_pem(&cert_pem, key).expect("stranger issuer"),
        }
    }

    /// A leaf for the URI `identity`, with `defects`.
    pub fn leaf(&self, identity: &str, defects: &Defects) -> Identity {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "test");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            identity.to_owned().try_into().expect("URI SAN"),
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if defects.no_client_auth {
            vec![ExtendedKeyUsagePurpose::ServerAuth]
        } else {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        };
        if defects.ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages.push(KeyUsagePurpose::KeyCertSign);
        }
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::hours(1);
        if defects.expired {
            params.not_before = now - time::Duration::hours(2);
            params.not_after = now - time::Duration::hours(1);
        }
        if defects.not_yet_valid {
            params.not_before = now + time::Duration::hours(1);
            params.not_after = now + time::Duration::hours(2);
        }
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("signing");
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        Identity {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}
