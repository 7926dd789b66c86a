//! The static routing table: a discovery snapshot read from a JSON file (the protobuf JSON
//! mapping of `strait.discovery.v1.Snapshot`), for running without a control plane.
//!
//! The file is re-read when it changes. A file that does not parse is reported with its path
//! and the reason, and the table in force stays in force; entries of a parsed snapshot that
//! cannot be built are set aside and the rest applies (see [`crate::table::SetAside`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use strait_identity::file_poll::FilePoll;
use strait_proto::discovery::v1::Snapshot;

use crate::table::TableHandle;

/// Why a snapshot file could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// Reading the file failed.
    #[error("reading snapshot file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid snapshot in JSON.
    #[error("snapshot file {path} is not a valid snapshot: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why parsing failed (line and column included).
        source: serde_json::Error,
    },
}

/// Reads, parses and applies the snapshot in `path`.
pub fn load(path: &Path, table: &TableHandle) -> Result<(), SnapshotFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SnapshotFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let snapshot: Snapshot =
        serde_json::from_str(&text).map_err(|source| SnapshotFileError::Parse {
            path: path.to_owned(),
            source,
        })?;
    let version = snapshot.version.clone();
    let set_aside = table.apply(snapshot);
    tracing::info!(path = %path.display(), %version, set_aside = set_aside.len(), "routing table loaded from snapshot file");
    Ok(())
}

/// Re-applies the file whenever its modification time or size changes, checking every
/// `period` ([`FilePoll`]: polling works on every filesystem, config-map mounts included).
pub async fn watch(path: PathBuf, table: TableHandle, period: Duration) {
    let mut file = FilePoll::new([path.clone()], period);
    loop {
        file.changed().await;
        if let Err(error) = load(&path, &table) {
            metrics::counter!("strait_snapshot_file_errors_total").increment(1);
            tracing::error!(%error, "snapshot file change rejected; the previous table stays in force");
        }
    }
}
