//! The Strait control-plane API, generated at build time from `proto/*.proto`.
//!
//! Every message has prost (binary) and serde (protobuf JSON mapping) implementations; the
//! services have tonic client and server stubs.
//!
//! ```
//! use strait_proto::discovery::v1::Snapshot;
//! let snapshot: Snapshot = serde_json::from_str(r#"{"version": "1"}"#).unwrap();
//! assert_eq!(snapshot.version, "1");
//! ```

pub mod defaults;
pub mod duration;
pub mod header_names;
pub mod match_regex;

/// Protocol-level types of the discovery API (`strait.discovery.v1`).
pub mod discovery {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/strait.discovery.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/strait.discovery.v1.serde.rs"));
    }
}

/// The identity API (`strait.identity.v1`).
pub mod identity {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/strait.identity.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/strait.identity.v1.serde.rs"));
    }
}

/// The proxy-to-proxy connection header (`strait.transport.v1`).
pub mod transport {
    /// Version 1.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/strait.transport.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/strait.transport.v1.serde.rs"));
    }
}
