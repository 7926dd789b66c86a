//! Durations in the Gateway API's format (GEP-2257): one to four number-and-unit pairs, units
//! `h`, `m`, `s`, `ms`, e.g. `10s`, `1h30m`, `250ms`, `0s`.

use std::time::Duration;

/// Parses a Gateway API duration, explaining what is wrong otherwise.
///
/// ```
/// use std::time::Duration;
/// use strait_control_plane::config::duration::parse;
/// assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse("10 seconds").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let fail = || {
        format!(
            "{text:?} is not a duration: use up to four number-unit pairs with units h, m, s, ms (e.g. \"1m30s\", \"250ms\")"
        )
    };
    if text.is_empty() {
        return Err(fail());
    }
    let bytes = text.as_bytes();
    let mut total = Duration::ZERO;
    let mut pairs = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &text[start..i];
        if digits.is_empty() || digits.len() > 5 {
            return Err(fail());
        }
        let value: u64 = digits.parse().map_err(|_| fail())?;
        let unit = if text[i..].starts_with("ms") {
            i += 2;
            Duration::from_millis(value)
        } else {
            let unit = match bytes.get(i) {
                Some(b'h') => Duration::from_secs(value * 3600),
                Some(b'm') => Duration::from_secs(value * 60),
                Some(b's') => Duration::from_secs(value),
                _ => return Err(fail()),
            };
            i += 1;
            unit
        };
        total += unit;
        pairs += 1;
        if pairs > 4 {
            return Err(fail());
        }
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it.
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_and_combinations_parse() {
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert_eq!(parse("99999ms"), Ok(Duration::from_millis(99_999)));
    }

    #[test]
    fn malformed_durations_are_refused_with_the_input_quoted() {
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "10 s",
            "-1s",
            "100000s",
            "1d",
            "1s1s1s1s1s",
            "1sms",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(10),
            Duration::ZERO,
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
