//! SPIFFE identities of mesh workloads: `spiffe://<trust-domain>/ns/<namespace>/sa/<account>`,
//! the form Linkerd and Istio use, so a Kubernetes service account is the unit of identity.

use std::fmt;
use std::str::FromStr;

/// The default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// A workload identity.
///
/// ```
/// use strait_identity::SpiffeId;
/// let id: SpiffeId = "spiffe://cluster.local/ns/demo/sa/web".parse().unwrap();
/// assert_eq!(id.namespace(), "demo");
/// assert_eq!(id.to_string(), "spiffe://cluster.local/ns/demo/sa/web");
/// assert!("spiffe://cluster.local/ns/demo".parse::<SpiffeId>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    namespace: String,
    service_account: String,
}

/// Why a string is not a mesh identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a mesh identity (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>): {reason}"
)]
pub struct SpiffeIdError {
    input: String,
    reason: &'static str,
}

impl SpiffeId {
    /// Builds an identity from its parts, validating each.
    pub fn new(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}").parse()
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Kubernetes service account.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// Trust domains are DNS-like names: lower-case letters, digits, `.`, `-`, `_`.
fn valid_trust_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Namespaces and service accounts are Kubernetes names: lower-case letters, digits, `-`,
/// `.`, at most 253 characters.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| SpiffeIdError {
            input: input.to_owned(),
            reason,
        };
        let rest = input
            .strip_prefix("spiffe://")
            .ok_or(err("it does not start with spiffe://"))?;
        let (trust_domain, path) = rest.split_once('/').ok_or(err("it has no path"))?;
        if !valid_trust_domain(trust_domain) {
            return Err(err("the trust domain is not a lower-case DNS-like name"));
        }
        let mut segments = path.split('/');
        let (Some("ns"), Some(namespace), Some("sa"), Some(service_account), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(err("the path is not /ns/<namespace>/sa/<service-account>"));
        };
        if !valid_name(namespace) {
            return Err(err("the namespace is not a Kubernetes name"));
        }
        if !valid_name(service_account) {
            return Err(err("the service account is not a Kubernetes name"));
        }
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_identities_parse_and_print_back() {
        let id = SpiffeId::new("example.org", "prod-1", "api.v2").unwrap();
        assert_eq!(id.to_string(), "spiffe://example.org/ns/prod-1/sa/api.v2");
        assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id);
    }

    #[test]
    fn malformed_identities_say_what_is_wrong() {
        for (input, reason) in [
            ("https://cluster.local/ns/a/sa/b", "spiffe://"),
            ("spiffe://cluster.local", "no path"),
            ("spiffe://Cluster.Local/ns/a/sa/b", "trust domain"),
            ("spiffe://cluster.local/ns/a", "/ns/<namespace>"),
            ("spiffe://cluster.local/ns/a/sa/b/c", "/ns/<namespace>"),
            ("spiffe://cluster.local/sa/b/ns/a", "/ns/<namespace>"),
            ("spiffe://cluster.local/ns//sa/b", "namespace"),
            ("spiffe://cluster.local/ns/A/sa/b", "namespace"),
            ("spiffe://cluster.local/ns/a/sa/b_c", "service account"),
        ] {
            let err = input.parse::<SpiffeId>().unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
            assert!(err.contains(input), "{input}: {err}");
        }
    }
}
