//! `RequestHeaderModifier` / `ResponseHeaderModifier`: set, add and remove, compiled once per
//! snapshot into header names and values so a request pays only for the map operations.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use strait_proto::discovery::v1 as pb;

use super::FilterError;

/// Whether a filter may modify the header `name`: never one the mesh sets or strips itself
/// (or a `_` look-alike), nor one describing the connection or the framing
/// (`strait_proto::header_names::FILTER_PROTECTED`). The control plane refuses them first;
/// this is the proxy's own check, for snapshots from elsewhere (a `--snapshot` file, an older
/// control plane).
pub fn may_modify(name: &HeaderName) -> bool {
    strait_proto::header_names::filter_may_modify(name.as_str())
}

/// Compiled header changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderModifier {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderModifier {
    /// Compiles a snapshot's header modifier; `field` names it in errors.
    pub fn compile(m: &pb::HeaderModifier, field: &str) -> Result<Self, FilterError> {
        let name = |at: String, name: &str| {
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| FilterError::new(&at, format!("{name:?}: {e}")))?;
            if may_modify(&parsed) {
                Ok(parsed)
            } else {
                Err(FilterError::new(
                    &at,
                    format!("{name:?} is reserved to the mesh or the connection"),
                ))
            }
        };
        let pairs = |list: &str, headers: &[pb::Header]| {
            headers
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let at = format!("{field}.{list}[{i}]");
                    let value = HeaderValue::from_str(&h.value)
                        .map_err(|e| FilterError::new(&at, format!("{:?}: {e}", h.value)))?;
                    Ok((name(at, &h.name)?, value))
                })
                .collect::<Result<Vec<_>, FilterError>>()
        };
        Ok(Self {
            set: pairs("set", &m.set)?,
            add: pairs("add", &m.add)?,
            remove: m
                .remove
                .iter()
                .enumerate()
                .map(|(i, n)| name(format!("{field}.remove[{i}]"), n))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Applies the changes: `set` replaces every value, `add` appends one, `remove` deletes.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name, value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name, value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modifier(set: &[(&str, &str)], add: &[(&str, &str)], remove: &[&str]) -> pb::HeaderModifier {
        let headers = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(n, v)| pb::Header {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect()
        };
        pb::HeaderModifier {
            set: headers(set),
            add: headers(add),
            remove: remove.iter().map(|s| (*s).into()).collect(),
        }
    }

    #[test]
    fn set_overwrites_add_appends_and_remove_deletes_case_insensitively() {
        let m = HeaderModifier::compile(
            &modifier(
                &[("X-Header-Set", "set-overwrites-values")],
                &[("X-Header-Add", "add-appends-values")],
                &["X-Header-Remove"],
            ),
            "requestHeaders",
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-header-set", HeaderValue::from_static("some-other-value"));
        headers.append("x-header-set", HeaderValue::from_static("and-another"));
        headers.insert("x-header-add", HeaderValue::from_static("something"));
        headers.insert("x-header-remove", HeaderValue::from_static("val"));
        m.apply(&mut headers);
        let all = |name: &str| -> Vec<&str> {
            headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect()
        };
        assert_eq!(all("x-header-set"), ["set-overwrites-values"]);
        assert_eq!(all("x-header-add"), ["something", "add-appends-values"]);
        assert!(all("x-header-remove").is_empty());
    }

    #[test]
    fn reserved_headers_and_look_alikes_are_refused() {
        for name in [
            "strait-client-id",
            "Strait_Client_Id",
            "strait-proxy-error",
            "host",
            "transfer-encoding",
        ] {
            let error =
                HeaderModifier::compile(&modifier(&[(name, "x")], &[], &[]), "f").unwrap_err();
            assert!(error.to_string().starts_with("f.set[0]"), "{error}");
            assert!(HeaderModifier::compile(&modifier(&[], &[], &[name]), "f").is_err());
        }
    }

    #[test]
    fn values_that_would_split_a_header_are_refused() {
        let error = HeaderModifier::compile(&modifier(&[], &[("x-a", "v\r\nx-b: 1")], &[]), "f")
            .unwrap_err();
        assert!(error.to_string().starts_with("f.add[0]"), "{error}");
    }
}
