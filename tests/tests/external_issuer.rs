//! An issuer from a `kubernetes.io/tls` Secret (cert-manager or any external CA), laid out as
//! the kubelet mounts it (`tls.crt`, `tls.key`, `ca.crt` behind the `..data` symlink it swaps
//! atomically), with trust anchors from a separate mount (a ConfigMap or ClusterTrustBundle):
//! real proxies are certified through `Certify`; a renewal (cert-manager writing a new issuer)
//! is used without a restart; an issuer that is not a CA is refused naming the file.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::store::CertStore;
use strait_proto::identity::v1::CertifyRequest;
use strait_proto::identity::v1::identity_client::IdentityClient;
use strait_tests::binaries;
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::process::Process;
use strait_tests::snapshot::TempDir;

const WEB: &str = "spiffe://cluster.local/ns/demo/sa/web";

fn ca_params(cn: &str, path_len: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params
}

/// The external root (kept offline by its owner): its PEM and an issuer to sign with.
fn root() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = ca_params("Example Corp root", 1);
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

/// What cert-manager writes for a `Certificate` with `isCA: true` signed by `root`:
/// (tls.crt, tls.key, ca.crt).
fn issuer_secret(root: &Issuer<'static, KeyPair>, root_pem: &str, cn: &str) -> [String; 3] {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = ca_params(cn, 0).signed_by(&key, root).unwrap();
    [cert.pem(), key.serialize_pem(), root_pem.to_owned()]
}

/// A Secret volume as the kubelet writes it: the files in a timestamped directory, `..data`
/// pointing at it, and each key a symlink through `..data`.
struct SecretMount {
    dir: PathBuf,
    generation: u32,
}

impl SecretMount {
    fn new(dir: PathBuf, files: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let mut mount = Self { dir, generation: 0 };
        mount.update(files);
        for (name, _) in files {
            symlink(format!("..data/{name}"), mount.dir.join(name)).unwrap();
        }
        mount
    }

    /// The kubelet's atomic update: a new directory, then `..data` renamed over.
    fn update(&mut self, files: &[(&str, &str)]) {
        self.generation += 1;
        let version = format!(
            "..2026_12_07_10_00_0{}.{}",
            self.generation,
            1000 + self.generation
        );
        let versioned = self.dir.join(&version);
        std::fs::create_dir_all(&versioned).unwrap();
        for (name, content) in files {
            std::fs::write(versioned.join(name), content).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn tls_files(secret: &[String; 3]) -> [(&'static str, &str); 3] {
    [
        ("tls.crt", secret[0].as_str()),
        ("tls.key", secret[1].as_str()),
        ("ca.crt", secret[2].as_str()),
    ]
}

fn der(pem: &str) -> Vec<u8> {
    strait_identity::pem::certificates(pem, "test").unwrap()[0]
        .as_ref()
        .to_vec()
}

/// A real `Certify` for the workload `web-1`; returns the chain after the leaf.
async fn certify(mesh: &Mesh, anchors: &Path) -> Vec<Vec<u8>> {
    let bundle = TrustBundle::new(
        "cluster.local",
        strait_identity::pem::read_certificates(anchors).unwrap(),
    )
    .unwrap();
    let cp_identity: SpiffeId = "spiffe://cluster.local/ns/strait-system/sa/strait-control-plane"
        .parse()
        .unwrap();
    let channel = strait_proxy::control_plane::ControlPlane::new(
        mesh.control_plane.grpc.to_string(),
        cp_identity,
        bundle,
        CertStore::new(WEB.parse().unwrap()),
    )
    .channel(false);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let response = IdentityClient::new(channel)
        .certify(CertifyRequest {
            token: mesh.workload("web-1").token.clone(),
            identity: WEB.into(),
            csr_der: csr,
        })
        .await
        .expect("Certify")
        .into_inner();
    response.intermediates_der
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_secret_issuer_certifies_proxies_and_its_renewal_is_used_without_a_restart() {
    let dir = TempDir::new("external-issuer");
    let (root_pem, root) = root();
    let first = issuer_secret(&root, &root_pem, "Strait issuer (cert-manager) 1");
    let mut issuer = SecretMount::new(dir.path().join("issuer"), &tls_files(&first));
    // Trust anchors from their own mount (a ConfigMap trust-manager writes).
    let anchors = SecretMount::new(dir.path().join("anchors"), &[("ca.crt", &root_pem)]);
    let mesh = MeshBuilder::new()
        .workload("web-1", "web", &[("app", "web")])
        .ca_files(
            anchors.path("ca.crt"),
            issuer.path("tls.crt"),
            issuer.path("tls.key"),
        )
        .start();
    mesh.wait_meshed("web-1");
    assert_eq!(
        certify(&mesh, &anchors.path("ca.crt")).await,
        [der(&first[0])],
        "leaves carry the Secret's issuer, not the root"
    );

    // cert-manager renews the issuer: a new certificate and key under the same root.
    let renewed = issuer_secret(&root, &root_pem, "Strait issuer (cert-manager) 2");
    issuer.update(&tls_files(&renewed));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mesh.control_plane.process.logged("CA reloaded") {
        assert!(
            Instant::now() < deadline,
            "the renewal was not picked up: {:#?}",
            mesh.control_plane.process.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        certify(&mesh, &anchors.path("ca.crt")).await,
        [der(&renewed[0])],
        "new leaves come from the renewed issuer"
    );
}

#[test]
fn a_tls_secret_whose_certificate_is_not_a_ca_is_refused_naming_the_file() {
    let dir = TempDir::new("external-issuer-not-ca");
    let (root_pem, root) = root();
    // A serving certificate (what a Certificate without isCA: true gives), signed by the root.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = CertificateParams::new(vec!["strait.example".to_owned()])
        .unwrap()
        .signed_by(&key, &root)
        .unwrap();
    let not_ca = [leaf.pem(), key.serialize_pem(), root_pem.clone()];
    let issuer = SecretMount::new(dir.path().join("issuer"), &tls_files(&not_ca));
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let mut command = Command::new(binaries::path("strait-control-plane"));
    command
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .arg("--trust-anchors")
        .arg(issuer.path("ca.crt"))
        .arg("--issuer-cert")
        .arg(issuer.path("tls.crt"))
        .arg("--issuer-key")
        .arg(issuer.path("tls.key"));
    let mut process = Process::spawn(
        "strait-control-plane",
        command,
        "strait-control-plane listening",
    );
    assert!(!process.wait_exit(Duration::from_secs(20)).success());
    let logs = process.logs().join("\n");
    assert!(
        logs.contains(&issuer.path("tls.crt").display().to_string())
            && logs.contains("it is not a CA certificate"),
        "{logs}"
    );
    assert!(!logs.contains("PRIVATE KEY"), "{logs}");
}
