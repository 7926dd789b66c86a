//! Discovery: per-proxy snapshots computed from the model, and the gRPC `Discovery.Watch`
//! service that streams them.

mod filters;
pub mod service;
pub mod snapshot;
