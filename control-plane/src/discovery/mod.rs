//! Discovery: per-proxy snapshots computed from the model, and the gRPC `Discovery.Watch`
//! service that streams them.

pub mod service;
pub mod snapshot;
