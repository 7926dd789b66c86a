//! The integration-test harness: starts the real Strait binaries, builds their routing
//! snapshots, and provides the backends and clients the tests talk through them.
//!
//! Tests live in `tests/tests/`; each one reads as a specification of one behaviour.

pub mod admission;
pub mod backend;
pub mod binaries;
pub mod capture;
pub mod certs;
pub mod chart;
pub mod client;
pub mod control_plane;
pub mod echo;
pub mod gamma;
pub mod grpc;
pub mod h2raw;
pub mod helm;
pub mod kube_api;
pub mod load;
pub mod manifests;
pub mod mesh;
pub mod metrics;
pub mod netns;
pub mod otlp;
pub mod ports;
pub mod process;
pub mod procstat;
pub mod snapshot;
pub mod soak;
pub mod tls_client;
