//! Request deadlines: the route's `timeouts.request`, shortened by a gRPC client's own
//! `grpc-timeout` when that is sooner.

use std::time::Duration;

use http::HeaderMap;

/// Parses a `grpc-timeout` header value: up to eight digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`), per the gRPC-over-HTTP/2 spec.
///
/// ```
/// use std::time::Duration;
/// use strait_proxy::resilience::timeouts::parse_grpc_timeout;
/// assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
/// assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
/// assert_eq!(parse_grpc_timeout("1.5S"), None);
/// ```
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The whole-request timeout: the route's, or the client's `grpc-timeout` if shorter.
pub fn request_timeout(route: Option<Duration>, headers: &HeaderMap) -> Option<Duration> {
    let grpc = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    match (route, grpc) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses_and_junk_does_not() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for junk in ["", "S", "123456789S", "10s", "-1S", "10"] {
            assert_eq!(parse_grpc_timeout(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_shorter_of_route_and_client_deadline_wins() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            request_timeout(Some(Duration::from_secs(5)), &headers),
            Some(Duration::from_secs(5))
        );
        headers.insert("grpc-timeout", "200m".parse().unwrap());
        assert_eq!(
            request_timeout(Some(Duration::from_secs(5)), &headers),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            request_timeout(None, &headers),
            Some(Duration::from_millis(200))
        );
        headers.insert("grpc-timeout", "9S".parse().unwrap());
        assert_eq!(
            request_timeout(Some(Duration::from_secs(5)), &headers),
            Some(Duration::from_secs(5))
        );
    }
}
