//! Whether the proxy is ready for traffic: the conditions `/ready` waits for (listeners
//! bound, a certificate and a first snapshot when there is a control plane, not draining).
//!
//! The certificate client and the discovery client set their conditions, `run` sets
//! the listeners and draining, and the admin server reads the answer. It lives in its own
//! module so those writers depend on this state and not on the admin server.

use std::sync::atomic::{AtomicBool, Ordering};

/// The conditions `/ready` waits for. Each starts false and is set once.
#[derive(Debug, Default)]
pub struct Readiness {
    listeners: AtomicBool,
    identity_required: AtomicBool,
    identity: AtomicBool,
    snapshot: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Makes readiness wait for the first certificate.
    pub fn require_identity(&self) {
        self.identity_required.store(true, Ordering::Release);
    }

    /// Records that a certificate is held.
    pub fn set_identity(&self) {
        self.identity.store(true, Ordering::Release);
    }

    /// Records that the first discovery snapshot is applied.
    pub fn set_snapshot(&self) {
        self.snapshot.store(true, Ordering::Release);
    }

    /// Records that every listener is bound.
    pub fn set_listening(&self) {
        self.listeners.store(true, Ordering::Release);
    }

    /// Records that the proxy is shutting down; it stops being ready.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// `Ok` when ready, otherwise what is missing.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Acquire) {
            return Err("draining");
        }
        if !self.listeners.load(Ordering::Acquire) {
            return Err("listeners not bound");
        }
        if self.identity_required.load(Ordering::Acquire) && !self.identity.load(Ordering::Acquire)
        {
            return Err("no certificate from the control plane yet");
        }
        if self.identity_required.load(Ordering::Acquire) && !self.snapshot.load(Ordering::Acquire)
        {
            return Err("no routing snapshot from the control plane yet");
        }
        Ok(())
    }
}
