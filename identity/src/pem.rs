//! Reading certificates and private keys from PEM, with errors that name the file.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why PEM material could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The content is not the PEM expected.
    #[error("{what} in {path}: {reason}")]
    Content {
        /// What was expected (certificates, a private key).
        what: &'static str,
        /// The file (or a description of the input).
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Parses every `CERTIFICATE` block in `pem`; `source` names the input in errors.
pub fn certificates(pem: &str, source: &str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Content {
            what: "certificates",
            path: source.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PemError::Content {
            what: "certificates",
            path: source.to_owned(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Parses the first private key in `pem` (PKCS#8, SEC1 or PKCS#1).
pub fn private_key(pem: &str, source: &str) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PemError::Content {
        what: "a private key",
        path: source.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads a file to a string, naming it in the error.
pub fn read(path: &Path) -> Result<String, PemError> {
    std::fs::read_to_string(path).map_err(|source| PemError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Reads every certificate in the PEM file at `path`.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    certificates(&read(path)?, &path.display().to_string())
}

/// Reads the private key in the PEM file at `path`.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    private_key(&read(path)?, &path.display().to_string())
}

/// Encodes certificates as PEM.
pub fn encode_certificates<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs
        .into_iter()
        .map(|cert| ::pem::encode(&::pem::Pem::new("CERTIFICATE", cert.as_ref())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_round_trip_through_pem() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = encode_certificates([cert.der()]);
        assert_eq!(
            certificates(&pem, "test").unwrap(),
            vec![cert.der().clone()]
        );
        assert!(private_key(&key.serialize_pem(), "test").is_ok());
    }

    #[test]
    fn empty_or_garbled_pem_names_its_source() {
        let err = certificates("hello", "anchors.pem")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("anchors.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );
        let err = private_key("nope", "issuer.key").unwrap_err().to_string();
        assert!(err.contains("issuer.key"), "{err}");
    }
}
