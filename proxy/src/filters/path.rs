//! New request paths for `URLRewrite` and `RequestRedirect`: `ReplaceFullPath` and the
//! Gateway API's `ReplacePrefixMatch` joining rules.

/// The path after replacing the matched prefix `matched` of `path` with `replacement`, as the
/// Gateway API's table for `ReplacePrefixMatch` says: the prefix is matched on whole segments
/// with any trailing `/` ignored, the rest of the path keeps its own leading `/`, and an empty
/// result is `/` (so `/foo/bar` with `/foo` → `/xyz` is `/xyz/bar`, with `/foo` → `` is
/// `/bar`, and `/foo` with `/foo` → `/` is `/`).
pub fn replace_prefix(path: &str, matched: &str, replacement: &str) -> String {
    let matched = matched.trim_end_matches('/');
    let rest = match path.strip_prefix(matched) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        // The route matched, so this cannot happen; keep the path rather than invent one.
        _ => return path.to_owned(),
    };
    let replacement = replacement.trim_end_matches('/');
    let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
    out.push_str(replacement);
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    } else if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

/// The path and query after a path modifier: `modified` path, the original query kept.
pub fn with_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_prefix_match_follows_the_gateway_api_table() {
        // (request path, prefix match, replacement, result), the spec's own table.
        let table = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
        ];
        for (path, matched, replacement, expected) in table {
            assert_eq!(
                replace_prefix(path, matched, replacement),
                expected,
                "{path} with {matched} → {replacement:?}"
            );
        }
    }

    #[test]
    fn upstream_rewrite_path_cases() {
        // MeshHTTPRouteRewritePath's prefix rules.
        assert_eq!(
            replace_prefix("/prefix/one/two", "/prefix/one", "/one"),
            "/one/two"
        );
        assert_eq!(
            replace_prefix("/strip-prefix/three", "/strip-prefix", "/"),
            "/three"
        );
        assert_eq!(replace_prefix("/strip-prefix", "/strip-prefix", "/"), "/");
        assert_eq!(
            replace_prefix(
                "/prefix/rewrite-path-and-modify-headers/one",
                "/prefix/rewrite-path-and-modify-headers",
                "/prefix"
            ),
            "/prefix/one"
        );
    }

    #[test]
    fn a_prefix_from_the_root_keeps_the_whole_path() {
        assert_eq!(replace_prefix("/a/b", "/", "/x"), "/x/a/b");
        assert_eq!(replace_prefix("/a/b", "/", ""), "/a/b");
    }

    #[test]
    fn the_query_is_kept() {
        assert_eq!(with_query("/x", Some("a=1")), "/x?a=1");
        assert_eq!(with_query("/x", None), "/x");
    }
}
