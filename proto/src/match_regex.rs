//! What a snapshot's `RegularExpression` match means, and the one function that compiles it.
//!
//! A regex field of a snapshot (path, header value, query parameter value; in routes and in
//! authorization rules) matches the WHOLE value. Both the control plane (to refuse what a proxy
//! could not compile) and the proxy (to compile what it is sent) call [`compile`], so they agree
//! on every pattern: same syntax, same anchoring, same limits.
//!
//! Anchoring is sound by construction, not by hope. The pattern is parsed on its own first,
//! so its groups and classes are balanced; the `x` (ignore whitespace) flag is refused, so `#`
//! is an ordinary character and cannot comment out what follows the pattern (`(?x)/a#` would
//! otherwise swallow the closing anchor; RE2, which Envoy uses, has no `x` flag either). Flags
//! set inside the pattern (`(?m)`, `(?s)`...) are scoped to the group it is wrapped in, so they
//! cannot change the anchors around it. Then the wrapped pattern `\A(?:…)\z` is parsed again and
//! checked to be exactly: start-of-text, one group holding the pattern's bytes, end-of-text.
//! If that ever failed, the pattern is refused rather than compiled.
//!
//! Limits bound what one tenant's route can cost every proxy: the pattern's length, the
//! nesting depth of its groups and repetitions, the size of the compiled program and of the
//! lazy DFA's cache.

use regex::{Regex, RegexBuilder};
use regex_syntax::ast::{self, Ast};

/// Longest pattern accepted, in bytes (Gateway API's limit on a path value).
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Deepest nesting of groups, repetitions and classes accepted.
pub const NEST_LIMIT: u32 = 32;
/// Largest compiled program accepted, in bytes (`RegexBuilder::size_limit`).
pub const SIZE_LIMIT: usize = 256 * 1024;
/// Largest lazy-DFA cache per regex, in bytes (`RegexBuilder::dfa_size_limit`).
pub const DFA_SIZE_LIMIT: usize = 1024 * 1024;

/// What the anchored wrapper puts before the pattern.
const PREFIX: &str = r"\A(?:";
/// What the anchored wrapper puts after the pattern.
const SUFFIX: &str = r")\z";

/// Why a pattern cannot be a match regex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression {pattern}: {reason}")]
pub struct MatchRegexError {
    /// The pattern, quoted (shortened if very long).
    pub pattern: String,
    /// What is wrong with it.
    pub reason: Reason,
}

/// What is wrong with a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// Longer than [`MAX_PATTERN_BYTES`].
    #[error("{0} bytes long; at most {MAX_PATTERN_BYTES} are allowed")]
    TooLong(usize),
    /// Not a regular expression (or nested deeper than [`NEST_LIMIT`]).
    #[error("{0}")]
    Syntax(String),
    /// Uses the `x` flag.
    #[error(
        "the x (ignore whitespace) flag is not allowed: its comments could swallow the anchors around the pattern"
    )]
    IgnoreWhitespace,
    /// Anchoring it would not keep it whole (a defence; no known pattern gets here).
    #[error("the pattern does not stay inside its anchors")]
    Escapes,
    /// Does not compile within the size limits.
    #[error("{0}")]
    Compile(String),
}

/// Compiles `pattern` as a match regex: matching a whole value, within the limits.
///
/// ```
/// use strait_proto::match_regex::compile;
/// let regex = compile("/v[0-9]+/.*").unwrap();
/// assert!(regex.is_match("/v2/items"));
/// assert!(!regex.is_match("/x/v2/items"));
/// assert!(compile("(?x)/a#").is_err());
/// ```
pub fn compile(pattern: &str) -> Result<Regex, MatchRegexError> {
    let refuse = |reason| MatchRegexError {
        pattern: quoted(pattern),
        reason,
    };
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(refuse(Reason::TooLong(pattern.len())));
    }
    let parsed = parser()
        .parse(pattern)
        .map_err(|e| refuse(Reason::Syntax(syntax_reason(&e))))?;
    if ast::visit(&parsed, NoIgnoreWhitespace).is_err() {
        return Err(refuse(Reason::IgnoreWhitespace));
    }
    let anchored = format!("{PREFIX}{pattern}{SUFFIX}");
    if !stays_inside_anchors(&anchored, pattern.len()) {
        return Err(refuse(Reason::Escapes));
    }
    RegexBuilder::new(&anchored)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        // The wrapper's group is one more level.
        .nest_limit(NEST_LIMIT + 1)
        .build()
        .map_err(|e| refuse(Reason::Compile(compile_reason(&e))))
}

fn parser() -> ast::parse::Parser {
    ast::parse::ParserBuilder::new()
        .nest_limit(NEST_LIMIT)
        .ignore_whitespace(false)
        .build()
}

/// The pattern in quotes, cut short if long (a message should not repeat 1 KiB of regex).
fn quoted(pattern: &str) -> String {
    const SHOWN: usize = 80;
    match pattern.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}…", &pattern[..cut]),
        None => format!("{pattern:?}"),
    }
}

/// regex-syntax errors are multi-line (the pattern, a caret, the message); keep the message.
fn syntax_reason(error: &ast::Error) -> String {
    let span = error.span();
    format!(
        "{} (at bytes {}..{})",
        error.kind(),
        span.start.offset,
        span.end.offset
    )
}

fn compile_reason(error: &regex::Error) -> String {
    match error {
        regex::Error::CompiledTooBig(limit) => format!(
            "compiles to more than {limit} bytes; simplify it (fewer or smaller repetitions, narrower classes)"
        ),
        other => other
            .to_string()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .map(|l| l.trim_start_matches("error:").trim().to_owned())
            .next()
            .unwrap_or_else(|| other.to_string()),
    }
}

/// Fails on any flag group or flag setting that turns `x` on.
struct NoIgnoreWhitespace;

impl ast::Visitor for NoIgnoreWhitespace {
    type Output = ();
    type Err = ();

    fn finish(self) -> Result<(), ()> {
        Ok(())
    }

    fn visit_pre(&mut self, node: &Ast) -> Result<(), ()> {
        let flags = match node {
            Ast::Flags(set) => Some(&set.flags),
            Ast::Group(group) => group.flags(),
            _ => None,
        };
        match flags.and_then(|f| f.flag_state(ast::Flag::IgnoreWhitespace)) {
            Some(true) => Err(()),
            _ => Ok(()),
        }
    }
}

/// Whether `anchored` parses as exactly start-of-text, one flagless non-capturing group
/// spanning the pattern's bytes, end-of-text.
fn stays_inside_anchors(anchored: &str, pattern_len: usize) -> bool {
    let Ok(parsed) = parser().parse(anchored) else {
        return false;
    };
    let Ast::Concat(concat) = &parsed else {
        return false;
    };
    let [start, group, end] = concat.asts.as_slice() else {
        return false;
    };
    let is_assertion =
        |node: &Ast, kind: ast::AssertionKind| matches!(node, Ast::Assertion(a) if a.kind == kind);
    let Ast::Group(group) = group else {
        return false;
    };
    let inner = group.ast.span();
    is_assertion(start, ast::AssertionKind::StartText)
        && is_assertion(end, ast::AssertionKind::EndText)
        && matches!(&group.kind, ast::GroupKind::NonCapturing(flags) if flags.items.is_empty())
        && inner.start.offset == PREFIX.len()
        && inner.end.offset == PREFIX.len() + pattern_len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(pattern: &str) -> Reason {
        compile(pattern).unwrap_err().reason
    }

    #[test]
    fn matches_are_whole_values() {
        let regex = compile("/a|/b").unwrap();
        assert!(regex.is_match("/a") && regex.is_match("/b"));
        assert!(!regex.is_match("/ab") && !regex.is_match("x/a") && !regex.is_match("/b/"));
        assert!(compile("").unwrap().is_match(""));
        assert!(!compile("").unwrap().is_match("x"));
    }

    #[test]
    fn the_x_flag_is_refused_in_every_form() {
        for pattern in [
            "(?x)/a#",
            "(?x)/a",
            "(?ix)/a",
            "(?x:/a)",
            "/a(?i:(?x)b)",
            "(?-i:(?sx:/a))",
        ] {
            assert_eq!(reason(pattern), Reason::IgnoreWhitespace, "{pattern}");
        }
        // Turning it off is harmless, and `#` is a plain character.
        let regex = compile("(?-x)/a#b").unwrap();
        assert!(regex.is_match("/a#b"));
    }

    #[test]
    fn inner_flags_cannot_move_the_anchors() {
        let multi_line = compile("(?m)/a$").unwrap();
        assert!(multi_line.is_match("/a"));
        assert!(!multi_line.is_match("/a\n/b"), "the outer end anchor holds");
        let dot_all = compile("(?s)/a.*").unwrap();
        assert!(dot_all.is_match("/a\nb"));
        assert!(!compile("(?m)^/a").unwrap().is_match("x\n/a"));
    }

    #[test]
    fn patterns_that_would_break_out_of_the_wrapper_are_refused() {
        for pattern in [")|(.*", ").*(", "/a)|(?:", "\\", "/a\\", "[", "(?:"] {
            assert!(
                matches!(reason(pattern), Reason::Syntax(_)),
                "{pattern}: {:?}",
                compile(pattern)
            );
        }
    }

    #[test]
    fn the_wrapper_check_recognises_only_the_exact_shape() {
        assert!(stays_inside_anchors(r"\A(?:/a)\z", 2));
        assert!(!stays_inside_anchors(r"\A(?:/a)\z", 1));
        assert!(!stays_inside_anchors(r"\A(?:/a)|(?:.*)\z", 8));
        assert!(!stays_inside_anchors(r"\A(?i:/a)\z", 2));
    }

    #[test]
    fn limits_are_enforced_with_a_reason() {
        assert_eq!(
            reason(&"a".repeat(MAX_PATTERN_BYTES + 1)),
            Reason::TooLong(MAX_PATTERN_BYTES + 1)
        );
        assert!(compile(&"a".repeat(MAX_PATTERN_BYTES)).is_ok());
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        assert!(
            matches!(reason(&deep), Reason::Syntax(ref s) if s.contains("nest")),
            "{:?}",
            reason(&deep)
        );
        let shallow = format!("{}a{}", "(".repeat(20), ")".repeat(20));
        assert!(compile(&shallow).is_ok());
        let huge = reason(r"\w{1000}");
        assert!(
            matches!(huge, Reason::Compile(ref s) if s.contains("more than")),
            "{huge:?}"
        );
    }

    #[test]
    fn errors_name_the_pattern_and_the_reason_on_one_line() {
        let error = compile("(?x)/a#").unwrap_err().to_string();
        assert!(error.contains("\"(?x)/a#\""), "{error}");
        assert!(error.contains("x (ignore whitespace)"), "{error}");
        let syntax = compile("/a(").unwrap_err().to_string();
        assert!(!syntax.contains('\n'), "{syntax}");
        assert!(syntax.contains("unclosed group"), "{syntax}");
        let long = compile(&"b".repeat(2000)).unwrap_err().to_string();
        assert!(long.len() < 200, "{long}");
    }
}
