//! The decisions that keep calls healthy: retries ([`retry`], [`budget`], [`replay`]),
//! timeouts ([`timeouts`]), circuit breaking ([`breaker`]) and load balancing ([`balance`]).
//! Each is a pure function or a small lock-free state; the outbound request path
//! ([`crate::outbound::request`]) calls them.

pub mod balance;
pub mod breaker;
pub mod budget;
pub mod clock;
pub mod replay;
pub mod retry;
pub mod timeouts;
