//! The limits on a message head (its size in bytes and its number of header fields) that the
//! proxy holds every head to, requests from clients and responses from upstreams, HTTP/1 and
//! HTTP/2 alike.
//!
//! A head's size is measured as its HTTP/1 form: the start line, each field as
//! `name: value\r\n`, and the empty line that ends it. hyper enforces the same limits exactly
//! while parsing HTTP/1 (`max_header_size`, `max_headers`); h2 bounds an HTTP/2 header list by
//! its own measure, 32 bytes more per field, and is given a setting ([`HeadLimits::h2_list_size`])
//! never stricter than these limits, so that what h2 lets through is checked here by the same
//! measure on both versions. This module decides; it never sends anything.

use http::HeaderMap;

/// The head limits of the proxy (`--max-header-bytes`, `--max-headers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head, in bytes, start line included.
    pub max_bytes: usize,
    /// Most header fields.
    pub max_fields: usize,
}

/// How a head exceeds [`HeadLimits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadExcess {
    /// Too many bytes.
    #[error("the head is {size} bytes, more than the limit of {limit}")]
    Bytes {
        /// The head's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many header fields.
    #[error("the head has {count} header fields, more than the limit of {limit}")]
    Fields {
        /// The head's field count.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// The HTTP/1 status line a response head is measured with (`HTTP/1.1 200 OK\r\n`, without
/// the reason, which HTTP/2 does not carry).
const STATUS_LINE_BYTES: usize = "HTTP/1.1 200 \r\n".len();

/// h2 counts this many bytes per field on top of its name and value (RFC 9113 §6.5.2).
const H2_FIELD_OVERHEAD: usize = 32;

/// Pseudo-header fields a head may carry besides its regular ones (a request has at most
/// `:method`, `:scheme`, `:authority`, `:path`, `:protocol`).
const MAX_PSEUDO_FIELDS: usize = 5;

/// The names of those pseudo-headers, which h2 counts and the HTTP/1 form has no room for.
const PSEUDO_NAMES_BYTES: usize = ":method:scheme:authority:path:protocol".len();

impl HeadLimits {
    /// How a head with a start line of `start_line` bytes (its line ending included) and
    /// `headers` exceeds the limits, if it does.
    pub fn excess(&self, start_line: usize, headers: &HeaderMap) -> Option<HeadExcess> {
        let count = headers.len();
        if count > self.max_fields {
            return Some(HeadExcess::Fields {
                count,
                limit: self.max_fields,
            });
        }
        let size = start_line + head_fields_bytes(headers) + "\r\n".len();
        (size > self.max_bytes).then_some(HeadExcess::Bytes {
            size,
            limit: self.max_bytes,
        })
    }

    /// [`HeadLimits::excess`] for a response head.
    pub fn response_excess(&self, headers: &HeaderMap) -> Option<HeadExcess> {
        self.excess(STATUS_LINE_BYTES, headers)
    }

    /// The HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE` to give h2: the largest h2-measured list a
    /// head within these limits can have, so h2 refuses only heads that [`HeadLimits::excess`]
    /// would refuse too, and still bounds what it decodes.
    pub fn h2_list_size(&self) -> u32 {
        let fields = self.max_fields.saturating_add(MAX_PSEUDO_FIELDS);
        let size = self
            .max_bytes
            .saturating_add(fields.saturating_mul(H2_FIELD_OVERHEAD))
            .saturating_add(PSEUDO_NAMES_BYTES);
        u32::try_from(size).unwrap_or(u32::MAX)
    }
}

/// The bytes `headers` take as HTTP/1 field lines.
fn head_fields_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + "\r\n".len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 100,
        max_fields: 3,
    };

    fn headers(fields: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn a_head_is_measured_as_its_http1_form() {
        // "GET / HTTP/1.1\r\n" (16) + "a: bc\r\n" (7) + "\r\n" (2) = 25
        let h = headers(&[("a", "bc")]);
        let tight = HeadLimits {
            max_bytes: 25,
            max_fields: 3,
        };
        assert_eq!(tight.excess(16, &h), None);
        let tighter = HeadLimits {
            max_bytes: 24,
            ..tight
        };
        assert_eq!(
            tighter.excess(16, &h),
            Some(HeadExcess::Bytes {
                size: 25,
                limit: 24
            })
        );
    }

    #[test]
    fn one_large_field_exceeds_the_byte_limit() {
        let big = "x".repeat(200);
        assert_eq!(
            LIMITS.excess(16, &headers(&[("big", &big)])),
            Some(HeadExcess::Bytes {
                size: 16 + 3 + 2 + 200 + 2 + 2,
                limit: 100
            })
        );
    }

    #[test]
    fn the_field_count_counts_every_value_of_a_repeated_name() {
        let h = headers(&[("a", "1"), ("a", "2"), ("a", "3"), ("a", "4")]);
        assert_eq!(
            LIMITS.excess(16, &h),
            Some(HeadExcess::Fields { count: 4, limit: 3 })
        );
        assert_eq!(LIMITS.excess(16, &headers(&[("a", "1"), ("b", "2")])), None);
    }

    #[test]
    fn h2_never_refuses_a_head_within_the_limits() {
        // The worst case for h2's measure: as many fields as allowed, each as small as
        // possible, and every request pseudo-header, all within the byte limit.
        for max_fields in [0, 1, 3, 100] {
            let limits = HeadLimits {
                max_bytes: 1000,
                max_fields,
            };
            let map = headers(&vec![("a", ""); max_fields]);
            let pseudo = [
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "a"),
                (":path", "/"),
                (":protocol", ""),
            ];
            let start_line: usize = pseudo.iter().map(|(_, v)| v.len()).sum::<usize>() + 11;
            assert_eq!(limits.excess(start_line, &map), None);
            let h2_measure: usize = map
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + H2_FIELD_OVERHEAD)
                .chain(
                    pseudo
                        .iter()
                        .map(|(n, v)| n.len() + v.len() + H2_FIELD_OVERHEAD),
                )
                .sum();
            // Bytes added up to the limit could only be in names and values, which both
            // measures count once.
            let room = limits.max_bytes - (start_line + max_fields * 4 + 2);
            assert!(
                h2_measure + room <= limits.h2_list_size() as usize,
                "{max_fields} fields"
            );
        }
    }

    #[test]
    fn h2_list_size_saturates() {
        let huge = HeadLimits {
            max_bytes: usize::MAX,
            max_fields: usize::MAX,
        };
        assert_eq!(huge.h2_list_size(), u32::MAX);
    }
}
