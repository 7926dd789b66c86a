//! Header names both the control plane and the proxy reason about: which ones a route filter
//! may never touch, and what counts as a look-alike of a reserved name. One home, so the
//! control plane refuses exactly what a proxy would refuse in a snapshot.

/// Header names a route filter may not set, add or remove: the mesh's own (the proxy sets or
/// strips them) and those describing the connection or the message framing rather than the
/// request. Lower case with `-`.
pub const FILTER_PROTECTED: [&str; 12] = [
    "strait-client-id",
    "strait-proxy-error",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "content-length",
    "proxy-authorization",
];

/// Whether `name` would be read as `reserved` by a server that ignores case and treats `_`
/// as `-`. `reserved` is lower case with `-`.
///
/// ```
/// use strait_proto::header_names::is_lookalike;
/// assert!(is_lookalike("Strait_Client-ID", "strait-client-id"));
/// assert!(!is_lookalike("strait-client-idx", "strait-client-id"));
/// ```
pub fn is_lookalike(name: &str, reserved: &str) -> bool {
    name.len() == reserved.len()
        && name
            .bytes()
            .zip(reserved.bytes())
            .all(|(n, r)| n.to_ascii_lowercase() == r || (n == b'_' && r == b'-'))
}

/// Whether a route filter may modify the header `name` (any case, `_` for `-`).
pub fn filter_may_modify(name: &str) -> bool {
    !FILTER_PROTECTED.iter().any(|p| is_lookalike(name, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_may_not_touch_reserved_names_or_their_lookalikes() {
        for name in [
            "strait-client-id",
            "STRAIT_CLIENT_ID",
            "Host",
            "te",
            "Content_Length",
        ] {
            assert!(!filter_may_modify(name), "{name}");
        }
        for name in [
            "x-strait-client-id",
            "strait-client",
            "x-request-id",
            "accept",
        ] {
            assert!(filter_may_modify(name), "{name}");
        }
    }
}
