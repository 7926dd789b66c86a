//! Discovery: per-proxy snapshots computed from the model, shared by every proxy of a class,
//! and the gRPC `Discovery.Watch` service that streams them.

mod filters;
pub mod server;
pub mod service;
pub mod shared;
pub mod snapshot;
