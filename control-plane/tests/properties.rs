//! Property tests of the control plane's parsers of user and peer input, the same entry points
//! the cargo-fuzz targets in `fuzz/` drive (docs/fuzzing.md): the YAML configuration loader
//! (parse and validate, on arbitrary text and on the shipped example with values replaced),
//! and CSR handling behind `Identity.Certify` (arbitrary DER, a valid CSR with bytes changed,
//! and valid CSRs asking for more than they may have). Each property runs `PROPTEST_CASES`
//! cases (defaults below keep each to a few seconds).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use proptest::collection::vec;
use proptest::prelude::*;
use rcgen::{CertificateParams, KeyPair, KeyUsagePurpose, SanType};
use serde_json::{Value, json};
use strait_control_plane::ca::Ca;
use strait_control_plane::certify::{IdentityService, TokenReviewLimit};
use strait_control_plane::config::{ConfigErrors, load, validate};
use strait_control_plane::reserved::ReservedIdentities;
use strait_control_plane::tokens::LocalTokens;
use strait_identity::SpiffeId;
use strait_identity::leaf::{Usage, check};
use strait_proto::identity::v1::CertifyRequest;
use strait_proto::identity::v1::identity_server::Identity;
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/local")
}

// ---------------------------------------------------------------------------------------
// The configuration loader

/// Loads `text` as the file `name` of `dir` and validates it, as a reload does; returns every
/// error found.
fn load_and_validate(text: &str, name: &str, dir: &Path) -> ConfigErrors {
    let mut loaded = Vec::new();
    let mut errors = ConfigErrors::default();
    load::load_text(text, Path::new(name), dir, &mut loaded, &mut errors);
    if let Err(more) = validate::build_model(&loaded) {
        errors.0.extend(more.0);
    }
    errors
}

/// Every error names the file, a document that exists (if it is about one), and a reason.
fn assert_located(
    errors: &ConfigErrors,
    name: &str,
    documents: usize,
) -> Result<(), TestCaseError> {
    for error in &errors.0 {
        prop_assert_eq!(error.location.file.as_path(), Path::new(name), "{}", error);
        if let Some(document) = error.location.document {
            prop_assert!((1..=documents.max(1)).contains(&document), "{}", error);
        }
        prop_assert!(!error.reason.is_empty(), "{}", error);
        prop_assert!(error.to_string().starts_with(name), "{}", error);
    }
    Ok(())
}

/// The shipped example configuration, one JSON value per YAML document (file by file).
fn example_documents() -> Vec<Value> {
    let mut files = load::files(&example_dir()).unwrap();
    files.sort();
    files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            serde_saphyr::from_multiple::<Value>(&text).unwrap()
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// Documents as one YAML stream; JSON is YAML, so each document is written as JSON.
fn render(documents: &[Value]) -> String {
    documents.iter().map(|d| format!("---\n{d}\n")).collect()
}

/// Replaces the node that `path` leads to (each step picks a child by index modulo the
/// number of children, stopping early at a leaf) with `replacement`.
fn replace(value: &mut Value, path: &[usize], replacement: Value) {
    let Some((step, rest)) = path.split_first() else {
        *value = replacement;
        return;
    };
    let child = match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).unwrap().clone();
            map.get_mut(&key)
        }
        Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            items.get_mut(step % len)
        }
        _ => None,
    };
    match child {
        Some(child) => replace(child, rest, replacement),
        None => *value = replacement,
    }
}

/// Values of every wrong type and range a user might write.
fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        Just(json!(-0.5)),
        Just(json!(0)),
        Just(json!(65536)),
        "\\PC{0,16}".prop_map(Value::from),
        Just(json!("10 seconds")),
        Just(json!("1h1h1h1h1h")),
        Just(json!("99999999999h")),
        Just(json!("spiffe://other.domain/ns/x/sa/y")),
        Just(json!("/(unclosed")),
        Just(json!([])),
        Just(json!([1, "two", null])),
        Just(json!({})),
        Just(json!({"unknownField": 1})),
    ]
}

/// YAML-ish text: fragments of real documents, YAML syntax and noise.
fn yaml_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("apiVersion: v1\nkind: Service\n".to_owned()),
        Just("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n".to_owned()),
        Just("apiVersion: strait.dev/v1alpha1\nkind: Workload\n".to_owned()),
        Just("metadata: {name: web, namespace: demo}\n".to_owned()),
        Just("spec:\n  ports:\n  - {port: 80}\n".to_owned()),
        Just("---\n".to_owned()),
        Just("&a [*a, *a]\n".to_owned()),
        Just("key: !!binary aGVsbG8=\n".to_owned()),
        Just("? complex\n: key\n".to_owned()),
        Just("[[[[[[[[[[".to_owned()),
        Just("{a: 1, a: 2}\n".to_owned()),
        Just("- \t- x\n".to_owned()),
        "\\PC{0,24}\n",
        "[ -~\t\n]{0,40}",
    ];
    vec(fragment, 0..10).prop_map(|parts| parts.concat())
}

#[test]
fn the_example_configuration_rendered_as_one_stream_is_valid() {
    let documents = example_documents();
    assert!(documents.len() > 5, "{} documents", documents.len());
    let errors = load_and_validate(&render(&documents), "all.yaml", &example_dir());
    assert!(errors.is_empty(), "{errors}");
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary text: the loader never panics and every error says where it is.
    #[test]
    fn arbitrary_text_gets_located_errors(text in yaml_text()) {
        let errors = load_and_validate(&text, "fuzz.yaml", Path::new("/nonexistent"));
        let documents = text.matches("---").count() + 1;
        assert_located(&errors, "fuzz.yaml", documents)?;
    }

    /// Deeply nested flow collections, which a recursive parser could overflow the stack on,
    /// get an error, not a crash.
    #[test]
    fn deep_nesting_is_refused_cleanly(depth in 1usize..5000, open in prop_oneof![Just('['), Just('{')]) {
        let text: String = std::iter::repeat_n(open, depth).collect();
        let errors = load_and_validate(&text, "deep.yaml", Path::new("/nonexistent"));
        prop_assert!(!errors.is_empty());
        assert_located(&errors, "deep.yaml", 1)?;
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// The example configuration with one value replaced by one of the wrong type or range:
    /// never a panic, and every error names the file, an existing document and a reason.
    #[test]
    fn a_wrong_value_anywhere_gets_a_located_error(
        document in any::<usize>(),
        path in vec(any::<usize>(), 0..8),
        replacement in wrong_value(),
    ) {
        let mut documents = example_documents();
        let count = documents.len();
        replace(&mut documents[document % count], &path, replacement);
        let errors = load_and_validate(&render(&documents), "mutated.yaml", &example_dir());
        assert_located(&errors, "mutated.yaml", count)?;
    }
}

// ---------------------------------------------------------------------------------------
// CSR handling behind Identity.Certify

/// The identity service as the control plane runs it: a development CA and the example's
/// local tokens, with the token of `frontend-1`.
struct Certify {
    service: IdentityService,
    token: String,
    identity: SpiffeId,
}

impl Certify {
    /// One per test process: generating the CA is the slow part.
    fn get() -> &'static Self {
        static CERTIFY: OnceLock<Certify> = OnceLock::new();
        CERTIFY.get_or_init(Self::new)
    }

    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("strait-properties-ca-{}", std::process::id()));
        let (ca, _) =
            Ca::load_or_generate_dev(&dir, "cluster.local", Duration::from_secs(3600)).unwrap();
        // The CA lives in memory from here on; its files would only pile up in /tmp.
        let _ = std::fs::remove_dir_all(&dir);
        let model = strait_control_plane::config::load(&example_dir()).unwrap();
        let token = std::fs::read_to_string(example_dir().join("tokens/frontend-1.token")).unwrap();
        Self {
            service: IdentityService::new(
                Arc::new(ArcSwap::from_pointee(ca)),
                LocalTokens::from_model(&model),
                "cluster.local",
                ReservedIdentities::new(
                    "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane"
                        .parse()
                        .unwrap(),
                ),
                TokenReviewLimit::new(32, TokenReviewLimit::DEFAULT_WAIT),
            ),
            token: token.trim().to_owned(),
            identity: "spiffe://cluster.local/ns/demo/sa/frontend"
                .parse()
                .unwrap(),
        }
    }

    /// Sends `csr` with the right token for the right identity: only the CSR can be wrong.
    fn certify(&self, csr: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
        let request = tonic::Request::new(CertifyRequest {
            identity: self.identity.to_string(),
            token: self.token.clone(),
            csr_der: csr,
        });
        // With a timer: the service bounds its wait for a token-review slot.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime
            .block_on(self.service.certify(request))
            .map(|response| response.into_inner().leaf_der)
    }

    /// Whatever is issued is a mesh leaf for exactly the token's identity, with the key of
    /// `csr`, whose self-signature verifies; whatever is refused is an invalid argument whose
    /// message does not echo the token.
    fn assert_sound(
        &self,
        csr: &[u8],
        outcome: Result<Vec<u8>, tonic::Status>,
    ) -> Result<(), TestCaseError> {
        match outcome {
            Ok(leaf) => {
                let (_, request) = X509CertificationRequest::from_der(csr).map_err(|e| {
                    TestCaseError::fail(format!("issued for a CSR that does not parse: {e}"))
                })?;
                prop_assert!(
                    request.verify_signature().is_ok(),
                    "issued for a CSR whose signature fails"
                );
                let der = leaf.clone().into();
                for usage in [Usage::Client, Usage::Server] {
                    let id = check(&der, "cluster.local", usage)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(&id, &self.identity);
                }
                let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
                prop_assert_eq!(
                    cert.public_key().raw,
                    request.certification_request_info.subject_pki.raw
                );
                prop_assert!(!cert.is_ca());
            }
            Err(status) => {
                prop_assert_eq!(
                    status.code(),
                    tonic::Code::InvalidArgument,
                    "{}",
                    status.message()
                );
                prop_assert!(!status.message().is_empty());
                prop_assert!(!status.message().contains(&self.token));
            }
        }
        Ok(())
    }
}

fn p256_csr(params: &CertificateParams) -> Vec<u8> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    params.serialize_request(&key).unwrap().der().to_vec()
}

/// What a hostile proxy might ask for in an otherwise valid CSR.
fn greedy_params() -> impl Strategy<Value = CertificateParams> {
    (
        vec(
            prop_oneof![
                "spiffe://cluster\\.local/ns/[a-z]{1,8}/sa/[a-z]{1,8}"
                    .prop_map(|u| SanType::URI(u.try_into().unwrap())),
                "[a-z]{1,8}\\.[a-z]{2,4}".prop_map(|d| SanType::DnsName(d.try_into().unwrap())),
                Just(SanType::IpAddress([127, 0, 0, 1].into())),
            ],
            0..4,
        ),
        vec(
            prop_oneof![
                Just(KeyUsagePurpose::KeyCertSign),
                Just(KeyUsagePurpose::CrlSign),
                Just(KeyUsagePurpose::DigitalSignature),
                Just(KeyUsagePurpose::KeyEncipherment),
            ],
            0..3,
        ),
        "[ -~]{0,20}",
    )
        .prop_map(|(sans, usages, common_name)| {
            let mut params = CertificateParams::default();
            params.subject_alt_names = sans;
            params.key_usages = usages;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            params
        })
}

proptest! {
    #![proptest_config(config(64))]

    /// Arbitrary bytes as the CSR: refused as an invalid argument, never a panic.
    #[test]
    fn arbitrary_csr_bytes_are_refused_cleanly(csr in vec(any::<u8>(), 1..2048)) {
        let certify = Certify::get();
        let outcome = certify.certify(csr.clone());
        certify.assert_sound(&csr, outcome)?;
    }

    /// A valid CSR with bytes changed, cut short or extended: refused, or (where the change
    /// left it valid) signed soundly.
    #[test]
    fn mutated_csrs_are_refused_or_signed_soundly(
        edits in vec((any::<usize>(), 1u8..), 0..6),
        cut in proptest::option::of(any::<usize>()),
        extra in vec(any::<u8>(), 0..8),
    ) {
        let certify = Certify::get();
        let mut csr = p256_csr(&CertificateParams::default());
        for (at, xor) in edits {
            let len = csr.len();
            csr[at % len] ^= xor;
        }
        if let Some(cut) = cut {
            csr.truncate(cut % (csr.len() + 1));
        }
        csr.extend(extra);
        if csr.is_empty() {
            csr.push(0);
        }
        let outcome = certify.certify(csr.clone());
        certify.assert_sound(&csr, outcome)?;
    }

    /// A valid CSR that asks for other identities, DNS names, IP addresses or CA key usages
    /// gets exactly the caller's identity and nothing else.
    #[test]
    fn a_greedy_csr_gets_only_the_callers_identity(params in greedy_params()) {
        let certify = Certify::get();
        let csr = p256_csr(&params);
        let outcome = certify.certify(csr.clone());
        prop_assert!(outcome.is_ok(), "{:?}", outcome.as_ref().err());
        certify.assert_sound(&csr, outcome)?;
    }
}
