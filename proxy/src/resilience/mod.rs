//! The decisions that keep calls healthy: retries ([`attempts`], the state machine of one
//! request's attempts, built on [`retry`], [`budget`] and [`replay`]), timeouts
//! ([`timeouts`]), circuit breaking ([`breaker`]) and load balancing ([`balance`]).
//! Each is a pure function or a small lock-free state; the outbound request path
//! (`outbound/request.rs`) calls them.
//!
//! This module sits above [`crate::errors`] and below the connection pool (`http`), the
//! routing table and the request loop (see the layering in the crate's top comment): it
//! names the outcome of a send ([`crate::errors::SendError`]), never the pool or the loop,
//! so it mentions them only in prose.

pub mod attempts;
pub mod balance;
pub mod breaker;
pub mod budget;
pub mod clock;
pub mod replay;
pub mod retry;
pub mod timeouts;
