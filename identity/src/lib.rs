//! Mesh identity, shared by the proxy and the control plane.
//!
//! - [`crypto`]: the one crypto provider (aws-lc-rs) everything below uses;
//! - [`spiffe`]: the identity itself, `spiffe://<trust-domain>/ns/<namespace>/sa/<account>`;
//! - [`leaf`]: the mesh certificate policy rustls does not check (one SPIFFE URI SAN in the
//!   trust domain, an end-entity certificate, the right key usages);
//! - [`bundle`]: the trust anchors, swappable at run time for anchor rotation;
//! - [`verifier`]: rustls verifiers that check chains against the bundle and apply the policy;
//! - [`store`]: the workload's current certificate and key, swapped in place on renewal;
//! - [`renewal`]: when to renew a certificate (about 70 % of its remaining lifetime);
//! - [`tls`]: the TLS 1.3-only client and server configurations built from all of the above;
//! - [`pem`]: reading certificates and keys from PEM files;
//! - [`file_poll`]: noticing that files changed (certificates, keys, snapshots), by polling.

pub mod bundle;
pub mod crypto;
pub mod file_poll;
pub mod leaf;
pub mod pem;
pub mod renewal;
pub mod spiffe;
pub mod store;
pub mod tls;
pub mod verifier;

pub use spiffe::SpiffeId;
