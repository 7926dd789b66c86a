//! Strait's data plane: the per-pod proxy.
//!
//! Start at [`run::run`], which binds the outbound (app → mesh), inbound (mesh → app) and admin
//! listeners. A connection's life: [`listener`] accepts it, [`detect`] decides its protocol,
//! [`outbound`] or [`inbound`] routes it ([`table`], [`route`], [`split`]), [`http`] or [`tcp`]
//! carries the bytes, [`connect`] opens the upstream side, and [`errors`] turns any failure
//! into a response. ARCHITECTURE.md at the repository root walks through it in more detail.

pub mod admin;
pub mod admin_access;
pub mod authz;
pub mod backoff;
pub mod config;
pub mod connect;
pub mod control_plane;
pub mod detect;
pub mod discovery;
pub mod errors;
pub mod http;
pub mod identity;
pub mod inbound;
pub mod io;
pub mod listener;
pub mod memory;
pub mod mesh_tls;
pub mod original_dst;
pub mod outbound;
pub mod redirect;
pub mod resilience;
pub mod route;
pub mod run;
pub mod snapshot_file;
pub mod split;
pub mod table;
pub mod tcp;
pub mod telemetry;
pub mod transport_header;
