//! The peers' mutual-TLS material: one CA, a server certificate for the inbound side and a
//! client certificate for the outbound side, written as PEM files both nginx and HAProxy read.
//!
//! ECDSA P-256 keys (rcgen's default), as Strait's own workload certificates, so every hop
//! signs and verifies with the same algorithm.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The name the inbound side's certificate carries and the outbound side verifies.
pub const SERVER_NAME: &str = "inbound.bench";

/// Paths of the PEM files.
#[derive(Clone, Debug)]
pub struct PeerCerts {
    /// The CA certificate both sides trust.
    pub ca: PathBuf,
    /// The inbound side's certificate.
    pub server_cert: PathBuf,
    /// Its key.
    pub server_key: PathBuf,
    /// The outbound side's client certificate.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// Server certificate and key in one file (HAProxy's `crt`).
    pub server_bundle: PathBuf,
    /// Client certificate and key in one file (HAProxy's `crt`).
    pub client_bundle: PathBuf,
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate().context("generating a leaf key")?;
    let mut params = CertificateParams::new(vec![name.to_owned()])
        .with_context(|| format!("certificate parameters for {name}"))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params
        .signed_by(&key, issuer)
        .with_context(|| format!("signing the certificate for {name}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(dir: &Path, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

impl PeerCerts {
    /// Generates the CA and both leaves into `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate().context("generating the peers' CA key")?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
        ca.distinguished_name
            .push(DnType::CommonName, "strait-bench peers CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_pem = ca
            .self_signed(&ca_key)
            .context("self-signing the CA")?
            .pem();
        let issuer = Issuer::new(ca, ca_key);
        let (server_cert, server_key) =
            leaf(&issuer, SERVER_NAME, ExtendedKeyUsagePurpose::ServerAuth)?;
        let (client_cert, client_key) = leaf(
            &issuer,
            "outbound.bench",
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(Self {
            ca: write(dir, "ca.pem", &ca_pem)?,
            server_bundle: write(
                dir,
                "server-bundle.pem",
                &format!("{server_cert}{server_key}"),
            )?,
            client_bundle: write(
                dir,
                "client-bundle.pem",
                &format!("{client_cert}{client_key}"),
            )?,
            server_cert: write(dir, "server.pem", &server_cert)?,
            server_key: write(dir, "server.key", &server_key)?,
            client_cert: write(dir, "client.pem", &client_cert)?,
            client_key: write(dir, "client.key", &client_key)?,
        })
    }
}
