//! The defaults as docs/configuration.md shows them: the "Defaults at a glance" table (kept
//! between `<!-- defaults:begin -->` and `<!-- defaults:end -->` markers, rendered whole) and
//! the default column of the per-kind field tables. Tests compare both with the document, so
//! changing a default without its documentation fails.
//!
//! A few behaviours the table describes are not configuration and live in the proxy (how many
//! times a request that reached nothing is re-sent, the load balancer's latency decay); the
//! caller passes them in as [`ProxyBehaviour`].

use std::fmt::Write;
use std::time::Duration;

use super::*;

/// Fixed proxy behaviours the table describes, from the proxy crate.
#[derive(Debug, Clone, Copy)]
pub struct ProxyBehaviour {
    /// Re-sends of a request that reached no application (connect failure, refused stream).
    pub not_sent_retries: u32,
    /// The peak-EWMA latency estimate's decay time.
    pub ewma_decay: Duration,
}

/// The first line of the rendered table in docs/configuration.md.
pub const BEGIN_MARKER: &str =
    "<!-- defaults:begin (rendered by strait_proto::defaults::reference; edit there) -->";
/// The line after the rendered table.
pub const END_MARKER: &str = "<!-- defaults:end -->";

/// The "Defaults at a glance" table, markdown, one row per line (markers not included).
pub fn glance_table(proxy: ProxyBehaviour) -> String {
    let flag = |text: &str| human(crate::duration::parse(text).unwrap_or_default());
    let rows: [(&str, String, &str); 17] = [
        (
            "Connect timeout",
            flag(CONNECT_TIMEOUT),
            "BackendPolicy `connectTimeout`, proxy `--connect-timeout`",
        ),
        (
            "Request / per-try timeout",
            "none / none".into(),
            "HTTPRoute `timeouts`",
        ),
        (
            "Pooled connection idle timeout",
            flag(POOL_IDLE_TIMEOUT),
            "BackendPolicy `idleTimeout`, `--pool-idle-timeout`",
        ),
        (
            "Opaque TCP idle timeout",
            flag(TCP_IDLE_TIMEOUT),
            "`--tcp-idle-timeout`",
        ),
        (
            "Retries on answers",
            "none".into(),
            "HTTPRoute `retry`, annotations",
        ),
        (
            "Retries of a `retry` without `attempts`",
            ROUTE_RETRY_ATTEMPTS.to_string(),
            "HTTPRoute `retry.attempts`, annotation `strait.dev/retry-attempts`",
        ),
        (
            "Retries when nothing reached the app",
            format!(
                "up to {} (or the route's), when this proxy saw it: connect failure, refused stream, a pooled connection closed before the request was written (never on a peer's or app's say-so)",
                proxy.not_sent_retries
            ),
            "always on",
        ),
        (
            "Retry buffer",
            format!("{} KiB", RETRY_BUFFER_BYTES / 1024),
            "`--retry-buffer-bytes`",
        ),
        (
            "Retry backoff",
            format!(
                "{} base, {} cap, full jitter",
                human(RETRY_BACKOFF_BASE),
                human(RETRY_BACKOFF_MAX)
            ),
            "HTTPRoute `retry.backoff`, BackendPolicy `retryBackoff`",
        ),
        (
            "Retry budget",
            format!(
                "{RETRY_BUDGET_PERCENT} % + {RETRY_BUDGET_MIN_PER_SECOND}/s over {}",
                human(RETRY_BUDGET_INTERVAL)
            ),
            "BackendPolicy `retryBudget`",
        ),
        (
            "Circuit breaker",
            format!(
                "{BREAKER_CONSECUTIVE_FAILURES} failures, {} → {}, ≤ {BREAKER_MAX_EJECTED_PERCENT} % ejected",
                human(BREAKER_BASE_EJECTION),
                human(BREAKER_MAX_EJECTION)
            ),
            "BackendPolicy `circuitBreaker`",
        ),
        (
            "Pending requests per backend",
            thousands(MAX_PENDING_REQUESTS.into()),
            "BackendPolicy `maxPendingRequests`",
        ),
        (
            "Load balancer",
            format!("P2C over peak EWMA ({} decay)", human(proxy.ewma_decay)),
            "BackendPolicy `loadBalancer`",
        ),
        (
            "Backend weight",
            BACKEND_WEIGHT.to_string(),
            "`backendRefs[].weight`",
        ),
        (
            "Certificate lifetime",
            format!("{}, renewed at 60–70 %", flag(CERT_TTL)),
            "control plane `--cert-ttl`",
        ),
        (
            "Inbound mode",
            INBOUND_MODE.into(),
            "MeshConfig `inboundMode`, proxy `--inbound-mode`",
        ),
        (
            "Proxy ports",
            format!(
                "outbound {PROXY_OUTBOUND_PORT}, inbound {PROXY_INBOUND_PORT}, admin {PROXY_ADMIN_PORT}"
            ),
            "proxy `--outbound-addr`, `--inbound-addr`, `--admin-addr`; Workload `spec.proxy`",
        ),
    ];
    let mut out = String::from("| setting | default | where to change it |\n|---|---|---|\n");
    for (setting, default, change) in rows {
        let _ = writeln!(out, "| {setting} | {default} | {change} |");
    }
    out
}

/// The default column of the per-kind field tables: `(field cell, default cell)`.
pub fn field_defaults() -> Vec<(&'static str, String)> {
    let yaml = |d: Duration| format!("`{}`", crate::duration::format(d));
    let flag = |text: &str| format!("`{text}` (proxy flag)");
    vec![
        (
            "`spec.proxy.inboundPort`",
            format!("`{PROXY_INBOUND_PORT}`"),
        ),
        (
            "`spec.rules[].retry.attempts`",
            format!("{ROUTE_RETRY_ATTEMPTS} when `retry` is set"),
        ),
        (
            "`spec.rules[].retry.backoff`",
            format!("the backend policy's base ({})", human(RETRY_BACKOFF_BASE)),
        ),
        ("`spec.connectTimeout`", flag(CONNECT_TIMEOUT)),
        ("`spec.idleTimeout`", flag(POOL_IDLE_TIMEOUT)),
        (
            "`spec.circuitBreaker.consecutiveFailures`",
            format!("`{BREAKER_CONSECUTIVE_FAILURES}`"),
        ),
        (
            "`spec.circuitBreaker.baseEjectionTime`",
            yaml(BREAKER_BASE_EJECTION),
        ),
        (
            "`spec.circuitBreaker.maxEjectionTime`",
            yaml(BREAKER_MAX_EJECTION),
        ),
        (
            "`spec.circuitBreaker.maxEjectedPercent`",
            format!("`{BREAKER_MAX_EJECTED_PERCENT}`"),
        ),
        (
            "`spec.maxPendingRequests`",
            format!("`{MAX_PENDING_REQUESTS}`"),
        ),
        (
            "`spec.retryBudget.percent`",
            format!("`{RETRY_BUDGET_PERCENT}`"),
        ),
        (
            "`spec.retryBudget.minRetriesPerSecond`",
            format!("`{RETRY_BUDGET_MIN_PER_SECOND}`"),
        ),
        ("`spec.retryBudget.interval`", yaml(RETRY_BUDGET_INTERVAL)),
        (
            "`spec.retryBackoff.base`, `.max`",
            format!("{}, {}", yaml(RETRY_BACKOFF_BASE), yaml(RETRY_BACKOFF_MAX)),
        ),
    ]
}

/// `25 ms`, `1 s`, `1 h`: how the prose of the documentation writes a duration.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 3_600_000 && ms.is_multiple_of(3_600_000) {
        format!("{} h", ms / 3_600_000)
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// `10 000`: thousands separated by a space, as the documentation writes numbers.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Compares `document` (docs/configuration.md's text) with the rendered defaults; `Err` lists
/// every difference, each with what the document says and what the code says.
pub fn check_document(document: &str, proxy: ProxyBehaviour) -> Result<(), String> {
    let mut problems = Vec::new();
    match between_markers(document) {
        None => problems.push(format!(
            "the document has no defaults table between {BEGIN_MARKER:?} and {END_MARKER:?}"
        )),
        Some(found) => {
            let expected = glance_table(proxy);
            if found != expected {
                problems.push(format!(
                    "the defaults table differs from the code (- document, + code):\n{}",
                    line_diff(&found, &expected)
                ));
            }
        }
    }
    for (field, default) in field_defaults() {
        let prefix = format!("| {field} |");
        let rows: Vec<&str> = document
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .collect();
        let expected = format!("{prefix} {default} |");
        if rows.is_empty() {
            problems.push(format!("no table row for {field}"));
        }
        for row in rows {
            if !row.starts_with(&expected) {
                problems.push(format!(
                    "the default of {field} differs:\n- {row}\n+ {expected} …"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// `document` with the text between the markers replaced by the rendered table (to bless a
/// change of a default); `None` without markers.
pub fn render_into(document: &str, proxy: ProxyBehaviour) -> Option<String> {
    let begin = document.find(BEGIN_MARKER)? + BEGIN_MARKER.len();
    let end = begin + document[begin..].find(END_MARKER)?;
    Some(format!(
        "{}\n{}{}",
        &document[..begin],
        glance_table(proxy),
        &document[end..]
    ))
}

fn between_markers(document: &str) -> Option<String> {
    let begin = document.find(BEGIN_MARKER)? + BEGIN_MARKER.len();
    let end = begin + document[begin..].find(END_MARKER)?;
    Some(document[begin..end].trim_start_matches('\n').to_owned())
}

/// Lines only in `found` (`-`) and only in `expected` (`+`), in order.
fn line_diff(found: &str, expected: &str) -> String {
    let found: Vec<&str> = found.lines().collect();
    let expected: Vec<&str> = expected.lines().collect();
    let mut out = String::new();
    for line in &found {
        if !expected.contains(line) {
            let _ = writeln!(out, "- {line}");
        }
    }
    for line in &expected {
        if !found.contains(line) {
            let _ = writeln!(out, "+ {line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROXY: ProxyBehaviour = ProxyBehaviour {
        not_sent_retries: 2,
        ewma_decay: Duration::from_secs(10),
    };

    #[test]
    fn durations_and_numbers_read_as_prose() {
        assert_eq!(human(Duration::from_millis(25)), "25 ms");
        assert_eq!(human(Duration::from_secs(60)), "60 s");
        assert_eq!(human(Duration::from_secs(86_400)), "24 h");
        assert_eq!(thousands(10_000), "10 000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1 234 567");
    }

    #[test]
    fn a_drifted_document_is_refused_with_both_lines() {
        let good = format!("{BEGIN_MARKER}\n{}{END_MARKER}\n", glance_table(PROXY));
        let drifted = good.replace("7 failures", "5 failures");
        let err = check_document(&drifted, PROXY).unwrap_err();
        assert!(err.contains("- | Circuit breaker | 5 failures"), "{err}");
        assert!(err.contains("+ | Circuit breaker | 7 failures"), "{err}");
        assert!(
            check_document("no markers", PROXY)
                .unwrap_err()
                .contains("no defaults table")
        );
    }

    #[test]
    fn rendering_into_a_document_replaces_only_the_table() {
        let document = format!("intro\n{BEGIN_MARKER}\n| old |\n{END_MARKER}\noutro\n");
        let rendered = render_into(&document, PROXY).unwrap();
        assert!(rendered.starts_with(&format!("intro\n{BEGIN_MARKER}\n| setting |")));
        assert!(rendered.ends_with(&format!("|\n{END_MARKER}\noutro\n")));
        assert_eq!(between_markers(&rendered), Some(glance_table(PROXY)));
    }
}
