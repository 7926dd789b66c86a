//! CSR handling in the CA (`Ca::sign`, what `Identity.Certify` calls with the CSR a caller
//! sends): arbitrary DER, and a valid P-256 CSR with bytes changed, cut or appended (the first
//! input byte picks which; the rest are the edits).
//!
//! Asserts: nothing panics; a refusal has one of the documented reasons; anything signed is a
//! mesh leaf for exactly the identity asked for, with the key of a CSR whose self-signature
//! verifies.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rcgen::{CertificateParams, KeyPair};
use strait_control_plane::ca::Ca;
use strait_identity::SpiffeId;
use strait_identity::leaf::{Usage, check};
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

const TRUST_DOMAIN: &str = "cluster.local";
const REASONS: [&str; 6] = [
    "malformed-csr",
    "bad-csr-signature",
    "unsupported-key-type",
    "unsupported-csr-extension",
    "csr-too-large",
    "signing-failed",
];

struct World {
    ca: Ca,
    identity: SpiffeId,
    valid_csr: Vec<u8>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("strait-fuzz-ca-{}", std::process::id()));
        let (ca, _) = Ca::load_or_generate_dev(&dir, TRUST_DOMAIN, Duration::from_secs(3600))
            .expect("a development CA generates");
        // The CA lives in memory from here on; its files would only pile up in /tmp.
        let _ = std::fs::remove_dir_all(&dir);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
        // Shaped like the proxy's CSR, but asking for more than it may have: another
        // identity and CA key usage, which the CA must ignore.
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://cluster.local/ns/kube-system/sa/admin"
                .try_into()
                .expect("URI"),
        )];
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let valid_csr = params.serialize_request(&key).expect("CSR").der().to_vec();
        World {
            ca,
            identity: "spiffe://cluster.local/ns/demo/sa/web"
                .parse()
                .expect("SPIFFE ID"),
            valid_csr,
        }
    })
}

/// The CSR the input describes.
fn csr(data: &[u8], valid: &[u8]) -> Vec<u8> {
    let Some((&mode, edits)) = data.split_first() else {
        return Vec::new();
    };
    match mode % 3 {
        0 => edits.to_vec(),
        1 => {
            // (offset: u16, xor: u8) triples.
            let mut csr = valid.to_vec();
            for edit in edits.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % csr.len();
                csr[at] ^= edit[2];
            }
            csr
        }
        _ => {
            // Cut at an offset, then append the rest of the input.
            let (cut, tail) = edits.split_at(edits.len().min(2));
            let at = match cut {
                [a, b] => usize::from(u16::from_le_bytes([*a, *b])) % (valid.len() + 1),
                _ => valid.len(),
            };
            [&valid[..at], tail].concat()
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let csr = csr(data, &world.valid_csr);
    match world.ca.sign(&csr, &world.identity) {
        Ok(issued) => {
            let (_, request) = X509CertificationRequest::from_der(&csr).expect("signed a CSR");
            request
                .verify_signature()
                .expect("signed a CSR whose signature fails");
            for usage in [Usage::Client, Usage::Server] {
                let id = check(&issued.leaf, TRUST_DOMAIN, usage).expect("mesh policy");
                assert_eq!(id, world.identity);
            }
            let (_, leaf) = X509Certificate::from_der(&issued.leaf).expect("leaf parses");
            assert_eq!(
                leaf.public_key().raw,
                request.certification_request_info.subject_pki.raw,
                "the leaf carries another key than the CSR's"
            );
        }
        Err(error) => {
            assert!(REASONS.contains(&error.reason()), "{error}");
            assert!(!error.to_string().is_empty());
        }
    }
});
