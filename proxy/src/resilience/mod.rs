//! The decisions that keep calls healthy: retries ([`attempts`], the state machine of one
//! request's attempts, built on [`retry`], [`budget`] and [`replay`]), timeouts
//! ([`timeouts`]), circuit breaking ([`breaker`]) and load balancing ([`balance`]).
//! Each is a pure function or a small lock-free state; the outbound request path
//! ([`crate::outbound::request`]) calls them.

pub mod attempts;
pub mod balance;
pub mod breaker;
pub mod budget;
pub mod clock;
pub mod replay;
pub mod retry;
pub mod timeouts;
