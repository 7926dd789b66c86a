//! rustls verifiers for mesh handshakes: chain to the trust bundle (rustls's own checks), then
//! the mesh policy of [`crate::leaf`], and on the client side, the expected peer identity.
//!
//! Peer input never panics here: every failure is a rustls error carrying a [`LeafError`]
//! where the policy is at fault, so handshake metrics can name the reason.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};

use crate::bundle::TrustBundle;
use crate::leaf::{self, LeafError, Usage};
use crate::spiffe::SpiffeId;

fn policy_error(error: LeafError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(error))))
}

fn verify_tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &crate::crypto::provider().signature_verification_algorithms,
    )
}

fn schemes() -> Vec<SignatureScheme> {
    crate::crypto::provider()
        .signature_verification_algorithms
        .supported_schemes()
}

/// Verifies a server (the peer proxy, or the control plane) presents `expected`.
#[derive(Debug)]
pub struct MeshServerVerifier {
    bundle: Arc<TrustBundle>,
    expected: SpiffeId,
}

impl MeshServerVerifier {
    /// A verifier accepting only `expected`, chained to `bundle`.
    pub fn new(bundle: Arc<TrustBundle>, expected: SpiffeId) -> Self {
        Self { bundle, expected }
    }
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let anchors = self.bundle.current();
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &anchors.roots,
            intermediates,
            now,
            crate::crypto::provider()
                .signature_verification_algorithms
                .all,
        )?;
        let presented = leaf::check(end_entity, self.bundle.trust_domain(), Usage::Server)
            .map_err(policy_error)?;
        if presented != self.expected {
            return Err(policy_error(LeafError::WrongIdentity {
                presented: Box::new(presented),
                expected: Box::new(self.expected.clone()),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// Verifies clients present a mesh identity chained to the bundle. With `mandatory` off,
/// clients may present no certificate at all (the control plane's `Certify`, which is how a
/// proxy gets its first certificate); one that is presented is still fully checked.
#[derive(Debug)]
pub struct MeshClientVerifier {
    bundle: Arc<TrustBundle>,
    mandatory: bool,
}

impl MeshClientVerifier {
    /// A verifier over `bundle`.
    pub fn new(bundle: Arc<TrustBundle>, mandatory: bool) -> Self {
        Self { bundle, mandatory }
    }
}

impl ClientCertVerifier for MeshClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let anchors = self.bundle.current();
        let chain = if self.mandatory {
            &anchors.mandatory_client_auth
        } else {
            &anchors.optional_client_auth
        };
        chain.verify_client_cert(end_entity, intermediates, now)?;
        leaf::check(end_entity, self.bundle.trust_domain(), Usage::Client).map_err(policy_error)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// A short, stable reason for a failed handshake, for metric labels and logs.
pub fn failure_reason(error: &Error) -> &'static str {
    match error {
        Error::InvalidCertificate(cert) => match cert {
            CertificateError::Other(other) => match (
                other.0.downcast_ref::<LeafError>(),
                other.0.downcast_ref::<webpki::Error>(),
            ) {
                (Some(leaf), _) => leaf.reason(),
                (None, Some(webpki::Error::CaUsedAsEndEntity)) => "ca-as-leaf",
                (None, Some(webpki::Error::EndEntityUsedAsCa)) => "leaf-as-ca",
                _ => "invalid-certificate",
            },
            CertificateError::UnknownIssuer => "unknown-issuer",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not-yet-valid"
            }
            CertificateError::BadSignature => "bad-signature",
            CertificateError::BadEncoding => "malformed-certificate",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "missing-extended-key-usage"
            }
            _ => "invalid-certificate",
        },
        Error::NoCertificatesPresented => "no-client-certificate",
        Error::PeerIncompatible(_) => "incompatible-peer",
        Error::AlertReceived(_) => "peer-alert",
        Error::InvalidMessage(_)
        | Error::PeerMisbehaved(_)
        | Error::InappropriateHandshakeMessage { .. }
        | Error::InappropriateMessage { .. } => "protocol-error",
        _ => "other",
    }
}

/// A readable description of a handshake error: the mesh policy's own message when the
/// policy refused the certificate, rustls's otherwise.
pub fn describe(error: &std::io::Error) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    else {
        return error.to_string();
    };
    if let Error::InvalidCertificate(CertificateError::Other(other)) = tls
        && let Some(leaf) = other.0.downcast_ref::<LeafError>()
    {
        return leaf.to_string();
    }
    tls.to_string()
}

/// The reason behind an I/O error from a TLS handshake (tokio-rustls wraps rustls errors).
pub fn io_failure_reason(error: &std::io::Error) -> &'static str {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    {
        Some(tls) => failure_reason(tls),
        None if error.kind() == std::io::ErrorKind::UnexpectedEof => "connection-closed",
        None if error.kind() == std::io::ErrorKind::TimedOut => "timeout",
        None => "io-error",
    }
}
