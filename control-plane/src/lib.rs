//! Strait's control plane: the certificate authority behind `Identity.Certify`, the
//! configuration model, and the discovery service that streams each proxy its snapshot.
//!
//! Start at [`run::run`]. The configuration flows [`config`] (YAML → validated model) →
//! [`discovery`] (model → per-proxy snapshots → gRPC stream); identities flow [`ca`] and
//! [`authority`] (the CA in force) → [`certify`] (the `Identity.Certify` service), with [`tokens`] deciding who a
//! caller is and [`reserved`] what no caller may be. [`tls_incoming`] admits connections to the
//! gRPC port ([`connection_slots`] holds its caps) and [`grpc_server`] serves them. [`inject`] is the sidecar injector webhook.

pub mod admin;
pub mod authority;
pub mod ca;
pub mod certify;
#[allow(
    missing_docs,
    reason = "config::raw mirrors the YAML documents field for field; docs/configuration.md documents them"
)]
pub mod config;
pub mod connection_slots;
pub mod digest;
pub mod discovery;
pub mod grpc_server;
pub mod inject;
pub mod kubernetes;
pub mod reload;
pub mod reserved;
pub mod run;
pub mod settings;
pub mod tls_incoming;
pub mod tokens;
