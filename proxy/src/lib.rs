//! Strait's data plane: the per-pod proxy.
//!
//! Start at [`run::run`], which binds the outbound (app → mesh), inbound (mesh → app) and admin
//! listeners. A connection's life: [`listener`] accepts it, [`detect`] decides its protocol,
//! [`outbound`] or [`inbound`] routes it ([`table`], [`route`], [`split`]), [`http`] or [`tcp`]
//! carries the bytes, [`connect`] opens the upstream side, and [`errors`] turns any failure
//! into a response. ARCHITECTURE.md at the repository root walks through it in more detail.
//!
//! ## Layers
//!
//! Lowest first. A module uses modules of its own layer or a lower one, never a higher one,
//! and no modules form a cycle; `proxy/tests/module_layers.rs` checks both and fails naming
//! the reference that breaks them (doc links count: a lower module names a higher one in
//! prose only).
//!
//! 1. `admin_access`, `authz`, `backoff`, `body`, `control_plane`, `detect`, `flags`,
//!    `filters`, `head_limits`, `io`, `listener`, `memory`, `mesh_tls`, `original_dst`, `readiness`,
//!    `redirect`, `reserved`, `route`, `split`, `tcp`, `telemetry`, `transport_header`: the
//!    foundations, types, pure decisions and I/O helpers that use only each other.
//! 2. `errors`: every failure of a request ([`errors::ProxyError`], [`errors::SendError`])
//!    and the responses that report it.
//! 3. `connect`, `resilience`: opening upstream connections; the retry, timeout, breaker and
//!    balancing decisions, which judge the outcome of a send but not how it was made.
//! 4. `http`: serving client connections, pooled upstream connections, forwarding.
//! 5. `table`: the routing table in force, its backends and endpoints.
//! 6. `shared`: the runtime state both directions read.
//! 7. `inbound`, `outbound`: the two directions of traffic.
//! 8. `admin`, `certify`, `discovery`, `snapshot_file`: the admin server and the loops that
//!    keep the table and the certificate current.
//! 9. `run`: wires everything together.

pub mod admin;
pub mod admin_access;
pub mod authz;
pub mod backoff;
pub mod body;
pub mod certify;
pub mod connect;
pub mod control_plane;
pub mod detect;
pub mod discovery;
pub mod errors;
pub mod filters;
pub mod flags;
pub mod head_limits;
pub mod http;
pub mod inbound;
pub mod io;
pub mod listener;
pub mod memory;
pub mod mesh_tls;
pub mod original_dst;
pub mod outbound;
pub mod readiness;
pub mod redirect;
pub mod reserved;
pub mod resilience;
pub mod route;
pub mod run;
pub mod shared;
pub mod snapshot_file;
pub mod split;
pub mod table;
pub mod tcp;
pub mod telemetry;
pub mod transport_header;
