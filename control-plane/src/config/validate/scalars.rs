//! Checks of single values every kind shares: Kubernetes names, port numbers and durations.

use std::time::Duration;

use super::Ctx;
use crate::config::duration;
use crate::config::error::Location;

/// A Kubernetes name (RFC 1123 subdomain: lower-case alphanumerics, `-`, `.`).
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

pub(super) fn port(value: i64) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{value} is not a port number (1-65535)"))
}

pub(super) fn parse_duration(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    text: &Option<String>,
) -> Option<Duration> {
    let text = text.as_ref()?;
    match duration::parse(text) {
        Ok(d) => Some(d),
        Err(reason) => {
            ctx.err(location, field, reason);
            None
        }
    }
}
