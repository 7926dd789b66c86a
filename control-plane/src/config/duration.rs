//! Durations in configuration: the one grammar of [`strait_proto::duration`] (the Gateway
//! API's, GEP-2257, widened to the decimal forms proxy flags take), so YAML, the control plane's
//! flags and the proxy's flags read `1m30s`, `250ms` and `1.5s` alike.

use std::time::Duration;

pub use strait_proto::duration::format;

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
    strait_proto::duration::parse(text).map_err(|e| e.to_string())
}
