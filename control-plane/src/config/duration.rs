//! Durations in configuration: the one grammar of [`strait_proto::duration`] (the Gateway
//! API's, GEP-2257, widened to the decimal forms proxy flags take), so YAML, the control plane's
//! flags and the proxy's flags read `1m30s`, `250ms` and `1.5s` alike.
//!
//! Configuration durations travel in snapshots as `google.protobuf.Duration`, whose range ends
//! at 10 000 years; a longer one would wrap to a negative value there, so it is refused here.
//! (Before the grammars were one, YAML could not write more than four groups of five digits,
//! about 165 years, so nothing that parsed before is refused.)

use std::time::Duration;

pub use strait_proto::duration::format;

/// The longest duration configuration may hold: `google.protobuf.Duration`'s documented range.
pub const MAX: Duration = Duration::from_secs(315_576_000_000);

/// Parses a duration, explaining what is wrong otherwise (the message quotes the input).
///
/// ```
/// use std::time::Duration;
/// use strait_control_plane::config::duration::parse;
/// assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
/// assert!(parse("10 seconds").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let duration = strait_proto::duration::parse(text).map_err(|e| e.to_string())?;
    if duration > MAX {
        return Err(format!(
            "{text:?} is not a duration a snapshot can carry: the longest is 10000 years ({}s)",
            MAX.as_secs()
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_a_snapshot_cannot_carry_are_refused_with_the_input_quoted() {
        assert_eq!(parse("315576000000s"), Ok(MAX));
        let err = parse("315576000001s").unwrap_err();
        assert!(
            err.starts_with("\"315576000001s\" is not a duration"),
            "{err}"
        );
        assert!(parse("18446744073709551615s").is_err());
    }

    #[test]
    fn the_longest_duration_yaml_could_write_before_still_parses() {
        assert_eq!(
            parse("99999h99999h99999h99999h"),
            Ok(Duration::from_secs(4 * 99_999 * 3600))
        );
    }
}
