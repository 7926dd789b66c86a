//! Printing that never panics: the demo's output may go to a pipe that closes (`| head`), and a
//! panic on a failed write would skip the clean-up that stops the processes it started.
//! A failed write instead records that output is gone, and the report loop stops cleanly.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output, recording a failure instead of panicking.
pub fn write(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Whether standard output has stopped accepting writes.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// `println!` that never panics.
macro_rules! say {
    () => {
        $crate::output::write("\n")
    };
    ($($arg:tt)*) => {
        $crate::output::write(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use say;
