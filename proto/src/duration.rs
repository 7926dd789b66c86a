//! The one duration grammar of Strait, read the same way in YAML configuration, in snapshots'
//! documentation and on every command line (proxy, control plane, CLI, demo, bench).
//!
//! It is the Gateway API's (GEP-2257: number-and-unit groups with units `h`, `m`, `s`, `ms`,
//! such as `1h30m`, `500ms`, `1m30s`), widened so every form either side accepted before still
//! parses: a number may have a decimal fraction (`1.5s`, `.5s`, `2.m`, as proxy flags took), a
//! number may have more than five digits, and any number of groups may follow each other in
//! any order (`30s1m` is 90 s, as the Gateway API's own regular expression allows). Arithmetic
//! is checked, so an input too large for a [`Duration`] is an error, never a wrap or a panic;
//! fractions finer than a nanosecond are dropped.

use std::time::Duration;

/// Why a text is not a duration; the message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a duration: {reason}; write number-unit groups with units h, m, s, ms (e.g. \"1m30s\", \"250ms\", \"1.5s\")"
)]
pub struct DurationError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses a duration, explaining what is wrong otherwise.
///
/// ```
/// use std::time::Duration;
/// use strait_proto::duration::parse;
/// assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse("10 seconds").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: text.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(fail("it is empty"));
    }
    let bytes = text.as_bytes();
    let mut total: u128 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (whole, fraction, next) = number(bytes, i).ok_or_else(|| {
            fail(if bytes[i].is_ascii_alphabetic() {
                "a unit has no number before it"
            } else {
                "expected a number"
            })
        })?;
        i = next;
        let unit_nanos: u128 = match (bytes.get(i), bytes.get(i + 1)) {
            (Some(b'm'), Some(b's')) => {
                i += 2;
                1_000_000
            }
            (Some(b'h'), _) => {
                i += 1;
                3_600_000_000_000
            }
            (Some(b'm'), _) => {
                i += 1;
                60_000_000_000
            }
            (Some(b's'), _) => {
                i += 1;
                1_000_000_000
            }
            (None, _) => return Err(fail("the last number has no unit")),
            (Some(_), _) => return Err(fail("a number is followed by an unknown unit")),
        };
        let group = whole
            .checked_mul(unit_nanos)
            .and_then(|n| n.checked_add(fraction_nanos(fraction, unit_nanos)))
            .ok_or_else(|| fail("it is too long"))?;
        total = total
            .checked_add(group)
            .ok_or_else(|| fail("it is too long"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| fail("it is too long"))?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Reads a decimal number at `start`: its whole part, the digits of its fraction and where it
/// ends; `None` when there is no digit at all. A whole part too large for a `u128` saturates,
/// which the caller's checked multiplication by the unit then refuses.
fn number(bytes: &[u8], start: usize) -> Option<(u128, &[u8], usize)> {
    let mut i = start;
    let mut whole: u128 = 0;
    while let Some(digit) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
        whole = whole
            .saturating_mul(10)
            .saturating_add(u128::from(digit - b'0'));
        i += 1;
    }
    let whole_digits = i - start;
    let mut fraction: &[u8] = &[];
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        let from = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        fraction = &bytes[from..i];
    }
    (whole_digits + fraction.len() > 0).then_some((whole, fraction, i))
}

/// The nanoseconds a fraction's digits add to one unit of `unit_nanos`, truncated.
fn fraction_nanos(digits: &[u8], unit_nanos: u128) -> u128 {
    // Beyond 18 digits, 10^-18 of the longest unit (an hour) is far below a nanosecond.
    let digits = &digits[..digits.len().min(18)];
    let (numerator, denominator) = digits.iter().fold((0u128, 1u128), |(n, d), digit| {
        (n * 10 + u128::from(digit - b'0'), d * 10)
    });
    numerator * unit_nanos / denominator
}

/// Formats a duration the way [`parse`] reads it: whole seconds as `10s`, whole milliseconds as
/// `250ms` (both in the Gateway API's stricter grammar too), anything finer as `0.5ms`.
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    let sub_ms = duration.subsec_nanos() % 1_000_000;
    if sub_ms != 0 {
        let fraction = format!("{sub_ms:06}");
        format!("{ms}.{}ms", fraction.trim_end_matches('0'))
    } else if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Duration {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_gateway_api_unit_and_combination_parses() {
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(ok("99999ms"), Duration::from_millis(99_999));
    }

    #[test]
    fn forms_proxy_flags_accepted_before_still_parse() {
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("2.m"), Duration::from_secs(120));
        assert_eq!(ok("0.25h"), Duration::from_secs(900));
        assert_eq!(ok("0.5ms"), Duration::from_micros(500));
        assert_eq!(ok("0ms"), Duration::ZERO);
        assert_eq!(ok("100000s"), Duration::from_secs(100_000));
        assert_eq!(ok("1.5m30s"), Duration::from_secs(120));
    }

    #[test]
    fn units_may_come_in_any_order_and_repeat() {
        assert_eq!(ok("30s1m"), ok("1m30s"));
        assert_eq!(ok("1s1h"), ok("1h1s"));
        assert_eq!(ok("1s1s1s1s1s"), Duration::from_secs(5));
        assert_eq!(ok("1ms1m"), Duration::from_millis(60_001));
    }

    #[test]
    fn fractions_finer_than_a_nanosecond_are_dropped() {
        assert_eq!(ok("1.0000000009s"), Duration::from_secs(1));
        assert_eq!(
            ok("0.123456789123456789123456789h"),
            Duration::from_nanos(444_444_440_844)
        );
    }

    #[test]
    fn malformed_durations_are_refused_with_the_input_quoted_and_the_reason() {
        for (bad, reason) in [
            ("", "empty"),
            ("0", "no unit"),
            ("10", "no unit"),
            ("1m30", "no unit"),
            ("s", "no number"),
            ("ms", "no number"),
            ("1sms", "no number"),
            (".s", "expected a number"),
            ("1..5s", "unknown unit"),
            ("10 s", "unknown unit"),
            ("10 seconds", "unknown unit"),
            ("-1s", "expected a number"),
            ("+1s", "expected a number"),
            ("1d", "unknown unit"),
            ("1e3s", "unknown unit"),
            ("1S", "unknown unit"),
            ("1µs", "unknown unit"),
            ("1s ", "expected a number"),
            (" 1s", "expected a number"),
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{bad:?} is not a duration: ")),
                "{bad}: {err}"
            );
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }

    #[test]
    fn too_long_durations_are_refused_not_wrapped() {
        let max_secs = u64::MAX.to_string();
        assert_eq!(ok(&format!("{max_secs}s")), Duration::from_secs(u64::MAX));
        for bad in [
            format!("{max_secs}s1s"),
            format!("{max_secs}h"),
            "9".repeat(60) + "s",
            format!("{}.5ms", "9".repeat(40)),
        ] {
            let err = parse(&bad).unwrap_err();
            assert_eq!(err.reason, "it is too long", "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(10),
            Duration::ZERO,
            Duration::from_micros(1500),
            Duration::from_nanos(1),
            Duration::new(3, 1),
        ] {
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// `strait_proxy::config::parse_duration` as it was before the grammars were one.
        fn proxy_flag_parser_before(text: &str) -> Option<Duration> {
            let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
            let (number, unit) = text.split_at(split);
            let value: f64 = number.parse().ok()?;
            let seconds = match unit {
                "ms" => value / 1000.0,
                "s" => value,
                "m" => value * 60.0,
                "h" => value * 3600.0,
                _ => return None,
            };
            Duration::try_from_secs_f64(seconds).ok()
        }

        proptest! {
            #[test]
            fn no_input_panics(text in "\\PC{0,40}") {
                let _ = parse(&text);
            }

            #[test]
            fn no_input_of_grammar_characters_panics(text in "[0-9.hms]{0,60}") {
                if let Err(e) = parse(&text) {
                    let quoted = format!("{text:?}");
                    prop_assert!(e.to_string().contains(&quoted));
                }
            }

            #[test]
            fn groups_add_up_in_any_order(
                groups in proptest::collection::vec((0u64..100_000, 0usize..4), 1..6)
            ) {
                const UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)];
                let text: String = groups.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
                let reversed: String = groups.iter().rev().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
                let millis: u64 = groups.iter().map(|(n, u)| n * UNITS[*u].1).sum();
                prop_assert_eq!(parse(&text), Ok(Duration::from_millis(millis)));
                prop_assert_eq!(parse(&reversed), Ok(Duration::from_millis(millis)));
            }

            /// Whatever the proxy's flag parser took before this grammar, it still takes, with
            /// the same value up to its `f64` rounding (the exact decimal is taken now).
            #[test]
            fn what_proxy_flags_accepted_still_parses_to_the_same_value(
                text in "[0-9]{0,12}(\\.[0-9]{0,6})?(ms|s|m|h)"
            ) {
                if let Some(before) = proxy_flag_parser_before(&text) {
                    let now = parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let diff = now.abs_diff(before);
                    let rounding = 1e-9 + before.as_secs_f64() * 1e-15;
                    prop_assert!(diff.as_secs_f64() <= rounding, "{}: {:?} vs {:?}", text, now, before);
                }
            }

            #[test]
            fn formatted_durations_parse_back(nanos in 0u64..u64::MAX) {
                let d = Duration::from_nanos(nanos);
                prop_assert_eq!(parse(&format(d)), Ok(d));
            }
        }
    }
}
