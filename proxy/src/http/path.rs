//! Request path normalisation: the one form of a path that route matching, authorization and
//! the app all see.
//!
//! An authorization rule for `/public` must not admit `/public/../admin`, which an app server
//! resolves to `/admin`. So before a request is routed (outbound) or authorized (inbound), its
//! path is normalised as Envoy's `normalize_path` + `merge_slashes` do (Istio's default), and
//! the normalised path is the one FORWARDED: the proxy and the app then agree on what was
//! asked for. In order:
//! 1. a raw `\` is refused (some servers read it as `/`);
//! 2. percent-encoded unreserved characters (RFC 3986 §2.3: ALPHA DIGIT `-` `.` `_` `~`) are
//!    decoded, every other escape is kept with upper-case hex (so `%2e%2e` is `..`), and an
//!    escape that is not `%` plus two hex digits is refused; an encoded `/` (`%2F`) or `\`
//!    (`%5C`) is refused, since servers disagree on whether it separates segments;
//! 3. a segment made only of path parameters or a dot segment with parameters (`/;x/`,
//!    `/.;x/`, `/..;/`) is refused: Tomcat and Spring strip parameters and then resolve such a
//!    segment as empty, `.` or `..`, which would move the request elsewhere;
//! 4. empty segments are merged (`//a` is `/a`) and dot segments removed (RFC 3986 §5.2.4).
//!
//! A trailing `/` is kept. The query is never touched. A target that is not a path (`*`, a
//! CONNECT authority) is left alone. The function is pure, and allocates only when the path
//! changes.

use std::borrow::Cow;

use http::request::Parts;
use http::uri::{PathAndQuery, Uri};

/// Why a request path is refused (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A raw `\`.
    #[error("the request path contains '\\'")]
    Backslash,
    /// `%2F`.
    #[error("the request path contains an encoded '/' (%2F)")]
    EncodedSlash,
    /// `%5C`.
    #[error("the request path contains an encoded '\\' (%5C)")]
    EncodedBackslash,
    /// `%` not followed by two hex digits.
    #[error("the request path contains a '%' that is not followed by two hex digits")]
    BadEscape,
    /// `/;x/`, `/.;x/`, `/..;x/`.
    #[error(
        "the request path has a segment of only path parameters, or a dot segment with parameters"
    )]
    ParameterSegment,
}

/// The normalised form of `path` (see the module documentation), borrowed when it is
/// already normal.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') || is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    if path.contains('\\') {
        return Err(PathError::Backslash);
    }
    let decoded = decode_unreserved(path)?;
    let normal = remove_dot_segments(&decoded)?;
    Ok(if normal == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normal)
    })
}

/// Normalises the path of `head`'s target in place, keeping its query (and scheme and
/// authority, if any).
pub fn normalize_head(head: &mut Parts) -> Result<(), PathError> {
    let Cow::Owned(path) = normalize(head.uri.path())? else {
        return Ok(());
    };
    let path_and_query = match head.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = std::mem::take(&mut head.uri).into_parts();
    // The normal form holds only characters the original target already had (or unreserved
    // ones), so it is always a valid target; the fallbacks only keep this free of panics.
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    head.uri = Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"));
    Ok(())
}

/// Whether `path` needs no work: no escapes, backslashes or parameters, no empty or dot
/// segments (a trailing `/` aside). The common case; no allocation.
fn is_normal(path: &str) -> bool {
    if path.bytes().any(|b| matches!(b, b'%' | b'\\' | b';')) {
        return false;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if (segment.is_empty() && !last) || segment == "." || segment == ".." {
            return false;
        }
    }
    true
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes escaped unreserved characters, upper-cases the hex of the other escapes, and
/// refuses malformed escapes and encoded separators.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        let (Some(high), Some(low)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::BadEscape);
        };
        let value = high * 16 + low;
        // `%` is ASCII, so these are character boundaries.
        out.push_str(&path[copied..i]);
        match value {
            b'/' => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::EncodedBackslash),
            v if is_unreserved(v) => out.push(char::from(v)),
            v => {
                out.push('%');
                out.push(char::from(HEX[usize::from(v >> 4)]));
                out.push(char::from(HEX[usize::from(v & 0xf)]));
            }
        }
        i += 3;
        copied = i;
    }
    out.push_str(&path[copied..]);
    Ok(out)
}

/// RFC 3986 §5.2.4 on an absolute path, with empty segments merged and parameter-only or
/// parameterised dot segments refused.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if let Some((name, _)) = segment.split_once(';')
            && matches!(name, "" | "." | "..")
        {
            return Err(PathError::ParameterSegment);
        }
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            name => kept.push(name),
        }
        trailing_slash = last && matches!(segment, "" | "." | "..");
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if kept.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(path: &str) -> String {
        normalize(path).unwrap().into_owned()
    }

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        for path in [
            "/",
            "/a",
            "/a/b/",
            "/a.b/c-d_e~f",
            "/echo.Echo/Say",
            "/a/.b/..c/...",
        ] {
            assert!(
                matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn dot_segments_are_removed_as_rfc_3986_says() {
        let cases = [
            ("/public/../admin", "/admin"),
            ("/public/./a", "/public/a"),
            ("/public/a/./b", "/public/a/b"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/..", "/"),
            ("/.", "/"),
            ("/../../a", "/a"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/b/../", "/a/"),
        ];
        for (path, expected) in cases {
            assert_eq!(normal(path), expected, "{path}");
        }
    }

    #[test]
    fn slashes_merge_and_a_trailing_one_stays() {
        assert_eq!(normal("//admin"), "/admin");
        assert_eq!(normal("/a//b///c"), "/a/b/c");
        assert_eq!(normal("/a//"), "/a/");
        assert_eq!(normal("//"), "/");
        assert_eq!(normal("///..//admin"), "/admin");
    }

    #[test]
    fn escapes_of_unreserved_characters_are_decoded_and_others_upper_cased() {
        assert_eq!(normal("/public/%2e%2e/admin"), "/admin");
        assert_eq!(normal("/public/%2E%2E/admin"), "/admin");
        assert_eq!(normal("/public/.%2e/admin"), "/admin");
        assert_eq!(normal("/%61%62%7e%2D%5f"), "/ab~-_");
        assert_eq!(normal("/a%20b%3bc%3F"), "/a%20b%3Bc%3F");
        assert_eq!(
            normal("/%25%32%65"),
            "/%252e",
            "a decoded % is never decoded again"
        );
        assert_eq!(normal("/caf%C3%A9"), "/caf%C3%A9");
        assert_eq!(normal("/café/./x"), "/café/x");
    }

    #[test]
    fn encoded_separators_backslashes_and_bad_escapes_are_refused() {
        let cases = [
            ("/public/%2fadmin", PathError::EncodedSlash),
            ("/public%2F..%2Fadmin", PathError::EncodedSlash),
            ("/public/%5c../admin", PathError::EncodedBackslash),
            ("/public\\..\\admin", PathError::Backslash),
            ("/a\\b", PathError::Backslash),
            ("/a%", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/a%%41", PathError::BadEscape),
        ];
        for (path, error) in cases {
            assert_eq!(normalize(path), Err(error), "{path}");
        }
    }

    #[test]
    fn parameter_only_and_parameterised_dot_segments_are_refused() {
        for path in [
            "/public/..;/admin",
            "/public/..;x=1/admin",
            "/public/.;/admin",
            "/public/;/../admin",
            "/public/;x",
            "/public/%2e%2e;/admin",
        ] {
            assert_eq!(normalize(path), Err(PathError::ParameterSegment), "{path}");
        }
        assert_eq!(normal("/a;jsessionid=1/b"), "/a;jsessionid=1/b");
        assert_eq!(normal("/a;v=1/../b"), "/b");
        assert_eq!(
            normal("/a/..%3B/b"),
            "/a/..%3B/b",
            "an encoded ';' is not one"
        );
    }

    #[test]
    fn targets_that_are_not_paths_are_left_alone() {
        assert!(matches!(normalize("*"), Ok(Cow::Borrowed("*"))));
        assert!(matches!(normalize(""), Ok(Cow::Borrowed(""))));
    }

    #[test]
    fn a_head_keeps_its_query_scheme_and_authority() {
        let mut head = http::Request::get("http://web.demo:80/a/../b//c?x=/../&y=%2F")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        normalize_head(&mut head).unwrap();
        assert_eq!(head.uri.to_string(), "http://web.demo:80/b/c?x=/../&y=%2F");
        let mut origin = http::Request::get("/public/%2e%2e/admin?q")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        normalize_head(&mut origin).unwrap();
        assert_eq!(origin.uri, "/admin?q");
        let mut refused = http::Request::get("/a/%2F")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(normalize_head(&mut refused), Err(PathError::EncodedSlash));
    }

    proptest::proptest! {
        #[test]
        fn normal_forms_are_fixed_points_without_dot_or_empty_segments(
            segments in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(String::new()),
                    proptest::strategy::Just(".".to_owned()),
                    proptest::strategy::Just("..".to_owned()),
                    proptest::strategy::Just("%2e".to_owned()),
                    proptest::strategy::Just("%2E.".to_owned()),
                    "[a-zA-Z0-9._~;=%-]{1,6}",
                ],
                0..10,
            )
        ) {
            let path = format!("/{}", segments.join("/"));
            if let Ok(normal) = normalize(&path) {
                let again = normalize(&normal).expect("a normal form is accepted");
                proptest::prop_assert_eq!(&again, &normal, "idempotent");
                proptest::prop_assert!(normal.starts_with('/'));
                for bad in ["//", "/./", "/../"] {
                    proptest::prop_assert!(!normal.contains(bad), "{} in {}", bad, normal);
                }
                proptest::prop_assert!(!normal.ends_with("/.") && !normal.ends_with("/.."));
            }
        }
    }
}
