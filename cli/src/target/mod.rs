//! What the CLI talks to: an admin endpoint named as `HOST:PORT` (an IP or a DNS name) or as a
//! Kubernetes object (`deploy/NAME`, `pod/NAME`, `svc/NAME`), reached through a port-forward
//! the way `kubectl port-forward` and `linkerd viz stat deploy/x` do.
//!
//! [`Target`] is the parsed grammar (pure); `pick` holds the pure decisions (which pod, is it
//! meshed, which port); `kube` asks the API server and opens port-forwards; [`Endpoint`] is
//! what a target resolved to, and opens one connection per request.

mod endpoint;
mod kube;
pub mod pick;

use std::fmt;
use std::net::SocketAddr;

pub use endpoint::{ConnectError, Connection, Endpoint, Explanation, Stream};
pub use kube::{KubeOptions, ResolveError, Resolver, Role};

/// A Kubernetes object kind a target can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Deployment: one of its ready pods.
    Deployment,
    /// A Pod.
    Pod,
    /// A Service: one of its ready endpoints' pods.
    Service,
}

impl Kind {
    fn parse(word: &str) -> Option<Self> {
        match word {
            "deploy" | "deployment" | "deployments" => Some(Self::Deployment),
            "po" | "pod" | "pods" => Some(Self::Pod),
            "svc" | "service" | "services" => Some(Self::Service),
            _ => None,
        }
    }

    /// The short form used in messages (`deploy`, `pod`, `svc`).
    pub fn short(self) -> &'static str {
        match self {
            Self::Deployment => "deploy",
            Self::Pod => "pod",
            Self::Service => "svc",
        }
    }

    /// The word used in messages (`deployment`, `pod`, `service`).
    pub fn word(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::Pod => "pod",
            Self::Service => "service",
        }
    }
}

/// An admin endpoint as the user named it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `HOST:PORT`: an IP address or a DNS name, reached directly over TCP.
    Address {
        /// The IP or DNS name.
        host: String,
        /// The port.
        port: u16,
    },
    /// `KIND/NAME[:PORT]`: a Kubernetes object, reached through a port-forward to one of its
    /// pods; `port` is the pod's port (by default the admin port of the role).
    Kubernetes {
        /// Deployment, pod or service.
        kind: Kind,
        /// The object's name.
        name: String,
        /// A pod port given explicitly.
        port: Option<u16>,
    },
}

/// Why a target does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a target: {reason} (expected HOST:PORT, deploy/NAME, pod/NAME or svc/NAME, optionally :PORT)"
)]
pub struct TargetError {
    input: String,
    reason: String,
}

impl Target {
    /// Parses `HOST:PORT`, `[IPv6]:PORT`, or `KIND/NAME[:PORT]` (`deploy`, `pod`, `svc` and
    /// kubectl's other spellings of them).
    pub fn parse(input: &str) -> Result<Self, TargetError> {
        let error = |reason: &str| TargetError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some((kind, rest)) = input.split_once('/') {
            let kind = Kind::parse(kind)
                .ok_or_else(|| error(&format!("unknown kind `{kind}`; use deploy, pod or svc")))?;
            let (name, port) = match rest.rsplit_once(':') {
                Some((name, port)) => (name, Some(parse_port(port).map_err(|r| error(&r))?)),
                None => (rest, None),
            };
            if !is_dns_subdomain(name) {
                return Err(error(&format!(
                    "`{name}` is not a Kubernetes object name (lowercase letters, digits, `-` and `.`)"
                )));
            }
            return Ok(Self::Kubernetes {
                kind,
                name: name.to_owned(),
                port,
            });
        }
        if let Ok(addr) = input.parse::<SocketAddr>() {
            return Ok(Self::Address {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = input.rsplit_once(':').ok_or_else(|| error("no port"))?;
        let port = parse_port(port).map_err(|r| error(&r))?;
        if !is_dns_name(host) {
            return Err(error(&format!(
                "`{host}` is neither an IP address nor a DNS name"
            )));
        }
        Ok(Self::Address {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::str::FromStr for Target {
    type Err = TargetError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Self::Address { host, port } => write!(f, "{host}:{port}"),
            Self::Kubernetes { kind, name, port } => {
                write!(f, "{}/{name}", kind.short())?;
                match port {
                    Some(port) => write!(f, ":{port}"),
                    None => Ok(()),
                }
            }
        }
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{text}` is not a port (1-65535)")),
        Ok(port) => Ok(port),
    }
}

/// A DNS name as a host: labels of letters, digits and `-`, not starting or ending with `-`.
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A Kubernetes object name (RFC 1123 subdomain): lowercase DNS name.
fn is_dns_subdomain(name: &str) -> bool {
    is_dns_name(name) && !name.ends_with('.') && !name.bytes().any(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(host: &str, port: u16) -> Target {
        Target::Address {
            host: host.to_owned(),
            port,
        }
    }

    fn object(kind: Kind, name: &str, port: Option<u16>) -> Target {
        Target::Kubernetes {
            kind,
            name: name.to_owned(),
            port,
        }
    }

    #[test]
    fn addresses_take_ips_and_dns_names() {
        assert_eq!(
            Target::parse("127.0.0.1:4191"),
            Ok(address("127.0.0.1", 4191))
        );
        assert_eq!(Target::parse("[::1]:4191"), Ok(address("::1", 4191)));
        assert_eq!(
            Target::parse("strait-control-plane.strait-system:9990"),
            Ok(address("strait-control-plane.strait-system", 9990))
        );
        assert_eq!(
            Target::parse("localhost:9990"),
            Ok(address("localhost", 9990))
        );
        assert_eq!(
            Target::parse("[::1]:4191").unwrap().to_string(),
            "[::1]:4191"
        );
    }

    #[test]
    fn kubernetes_objects_take_kubectl_spellings_and_an_optional_port() {
        assert_eq!(
            Target::parse("deploy/frontend"),
            Ok(object(Kind::Deployment, "frontend", None))
        );
        assert_eq!(
            Target::parse("deployment/web-v2"),
            Ok(object(Kind::Deployment, "web-v2", None))
        );
        assert_eq!(
            Target::parse("pod/frontend-7d9c-x2x"),
            Ok(object(Kind::Pod, "frontend-7d9c-x2x", None))
        );
        assert_eq!(
            Target::parse("svc/strait-control-plane:9990"),
            Ok(object(Kind::Service, "strait-control-plane", Some(9990)))
        );
        assert_eq!(
            Target::parse("po/a.b").unwrap().to_string(),
            "pod/a.b",
            "displayed in the short form"
        );
    }

    #[test]
    fn malformed_targets_say_what_is_wrong() {
        for (input, reason) in [
            ("frontend", "no port"),
            ("127.0.0.1", "no port"),
            ("host:0", "is not a port"),
            ("host:http", "is not a port"),
            ("host_name:80", "neither an IP address nor a DNS name"),
            ("-bad:80", "neither an IP address nor a DNS name"),
            ("job/x", "unknown kind `job`"),
            ("deploy/", "is not a Kubernetes object name"),
            ("deploy/Frontend", "is not a Kubernetes object name"),
            ("deploy/a/b", "is not a Kubernetes object name"),
            ("pod/x:99999", "is not a port"),
        ] {
            let error = Target::parse(input).unwrap_err().to_string();
            assert!(error.contains(reason), "{input}: {error}");
            assert!(error.contains(&format!("`{input}`")), "{error}");
        }
    }
}
