//! Strait patch: process-wide memory settings that hyper and tonic give no way to pass to a
//! connection.
//!
//! By default (upstream's behaviour plus the Strait patch in `proto::connection`) a connection
//! gives back its codec buffers only when no stream is open. A server whose connections each
//! carry one long-lived stream that is quiet nearly all the time (the control plane's
//! `Discovery.Watch`, one per proxy, open for hours) never reaches that point, and keeps
//! ~28 KiB of buffers per connection. [`release_buffers_while_streams_open`] lets such a
//! process give them back whenever a connection has flushed everything and has nothing to
//! read, streams open or not. A busy connection then re-allocates on each wake-up, which is
//! why a proxy's data path does not turn it on.

use std::sync::atomic::{AtomicBool, Ordering};

static WHILE_STREAMS_OPEN: AtomicBool = AtomicBool::new(false);

/// Makes every connection in this process give back its codec buffers whenever it is quiet
/// (everything flushed, nothing to read), even while streams are open. Call it once at start.
pub fn release_buffers_while_streams_open() {
    WHILE_STREAMS_OPEN.store(true, Ordering::Relaxed);
}

/// Whether [`release_buffers_while_streams_open`] was called.
pub(crate) fn releases_while_streams_open() -> bool {
    WHILE_STREAMS_OPEN.load(Ordering::Relaxed)
}
