//! Inbound authorization: whether a caller may reach an application port, or a route of it.
//!
//! The decision is a pure function of the compiled rules, the mesh-wide default, the caller's
//! proven identity and (for HTTP) the request head; the inbound proxy owns the I/O around it
//! (answering 403 / `PERMISSION_DENIED`, closing a TCP connection, counting and logging).
//!
//! Semantics, as documented in docs/configuration.md: a port that any `AuthorizationPolicy`
//! covers admits only what one of its rules allows (a rule applies when it covers the whole
//! port or one of its routes matches the request, and allows when any of its principals
//! matches the caller); a port no policy covers falls back to the mesh default. Opaque TCP has
//! no routes, so only whole-port rules can admit it.

use std::sync::Arc;

use http::request::Parts;
use strait_identity::SpiffeId;
use strait_proto::discovery::v1 as pb;

use crate::route::Matcher;

/// Who a rule admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Exactly this identity.
    Identity(SpiffeId),
    /// Any identity of this namespace in the proxy's own trust domain.
    Namespace(String),
    /// Any identity of this trust domain.
    TrustDomain(String),
    /// Any caller with a proven mesh identity.
    Authenticated,
    /// Anyone, plaintext callers included.
    Unauthenticated,
}

impl Principal {
    fn admits(&self, caller: Option<&SpiffeId>, local_trust_domain: &str) -> bool {
        match (self, caller) {
            (Principal::Unauthenticated, _) => true,
            (_, None) => false,
            (Principal::Authenticated, Some(_)) => true,
            (Principal::Identity(id), Some(caller)) => id == caller,
            (Principal::Namespace(ns), Some(caller)) => {
                caller.trust_domain() == local_trust_domain && caller.namespace() == ns
            }
            (Principal::TrustDomain(td), Some(caller)) => caller.trust_domain() == td,
        }
    }
}

/// One compiled authorization rule of an inbound port.
#[derive(Debug)]
pub struct Rule {
    /// `namespace/name` of the policy the rule came from.
    pub policy: Arc<str>,
    /// Route matches the rule covers; empty: the whole port.
    pub routes: Vec<Matcher>,
    /// Any one suffices.
    pub principals: Vec<Principal>,
}

/// Why a rule could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A principal is empty or not well-formed.
    #[error("policy {policy}: principal {index}: {reason}")]
    Principal {
        /// The policy.
        policy: String,
        /// Index of the principal in the rule.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A route match does not compile.
    #[error("policy {policy}: route {index}: {source}")]
    Route {
        /// The policy.
        policy: String,
        /// Index of the route in the rule.
        index: usize,
        /// What is wrong.
        source: crate::route::MatchError,
    },
}

impl Rule {
    /// Compiles a rule from the discovery snapshot.
    pub fn compile(rule: &pb::AuthorizationRule) -> Result<Self, RuleError> {
        use pb::principal::Kind;
        let principal_error = |index, reason: &str| RuleError::Principal {
            policy: rule.policy.clone(),
            index,
            reason: reason.to_owned(),
        };
        let principals = rule
            .principals
            .iter()
            .enumerate()
            .map(|(index, p)| match &p.kind {
                Some(Kind::Identity(id)) => id.parse().map(Principal::Identity).map_err(
                    |e: strait_identity::spiffe::SpiffeIdError| {
                        principal_error(index, &e.to_string())
                    },
                ),
                Some(Kind::Namespace(ns)) if !ns.is_empty() => Ok(Principal::Namespace(ns.clone())),
                Some(Kind::TrustDomain(td)) if !td.is_empty() => {
                    Ok(Principal::TrustDomain(td.clone()))
                }
                Some(Kind::AnyAuthenticated(true)) => Ok(Principal::Authenticated),
                Some(Kind::Unauthenticated(true)) => Ok(Principal::Unauthenticated),
                _ => Err(principal_error(index, "empty principal")),
            })
            .collect::<Result<_, _>>()?;
        let routes = rule
            .routes
            .iter()
            .enumerate()
            .map(|(index, m)| {
                Matcher::compile(m).map_err(|source| RuleError::Route {
                    policy: rule.policy.clone(),
                    index,
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            policy: rule.policy.as_str().into(),
            routes,
            principals,
        })
    }

    /// What stands in for a rule of policy `policy` that could not be compiled: it covers the
    /// whole port and admits nobody. This fails CLOSED: the port stays covered by policy, so
    /// the mesh default (which may allow all) never decides in the broken rule's place, and
    /// the callers the broken rule meant to admit are refused; the port's other rules still
    /// admit their own callers, exactly as they would have with the rule intact, since a rule
    /// only ever adds callers.
    pub fn admitting_nobody(policy: &str) -> Self {
        Self {
            policy: policy.into(),
            routes: Vec::new(),
            principals: Vec::new(),
        }
    }

    fn covers(&self, head: Option<&Parts>) -> bool {
        self.routes.is_empty()
            || head.is_some_and(|head| self.routes.iter().any(|route| route.matches(head)))
    }
}

/// What applies to ports no policy covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultAuthorization {
    /// Every caller, plaintext included.
    #[default]
    AllowAll,
    /// Callers with a proven mesh identity.
    AllAuthenticated,
    /// Nobody.
    Deny,
}

impl DefaultAuthorization {
    /// The default a snapshot's enum value names; unknown values (a newer control plane)
    /// deny, since an authorization default must fail closed.
    pub fn from_snapshot(value: i32) -> Self {
        match pb::DefaultAuthorization::try_from(value) {
            Ok(pb::DefaultAuthorization::AllowAll) => Self::AllowAll,
            Ok(pb::DefaultAuthorization::AllAuthenticated) => Self::AllAuthenticated,
            Ok(pb::DefaultAuthorization::Deny) | Err(_) => Self::Deny,
        }
    }
}

/// Why a caller was refused; the names are metric labels and appear in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// The caller has no mesh identity and nothing admits plaintext callers.
    Unauthenticated,
    /// The caller's identity is not among those admitted.
    IdentityNotAllowed,
    /// The port's policies cover only routes, and none matches the request (or the
    /// connection is opaque TCP, which has no routes).
    RouteNotAllowed,
    /// No policy covers the port and the mesh default denies.
    DefaultDeny,
}

impl DenyReason {
    /// The stable name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Unauthenticated => "unauthenticated",
            DenyReason::IdentityNotAllowed => "identity-not-allowed",
            DenyReason::RouteNotAllowed => "route-not-allowed",
            DenyReason::DefaultDeny => "default-deny",
        }
    }

    /// What the caller is told; names no policy, so it reveals nothing about the
    /// configuration beyond the refusal itself.
    pub fn explanation(self) -> &'static str {
        match self {
            DenyReason::Unauthenticated => "the caller has no mesh identity",
            DenyReason::IdentityNotAllowed => "the caller's identity is not authorized",
            DenyReason::RouteNotAllowed => "no authorization covers this route",
            DenyReason::DefaultDeny => "the port admits no callers",
        }
    }
}

/// The name metrics and logs use for denials by the mesh default rather than a policy.
pub const DEFAULT_POLICY: &str = "default";

/// A refusal: which policy (or [`DEFAULT_POLICY`]) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// `namespace/name` of the deciding policy, or [`DEFAULT_POLICY`].
    pub policy: Arc<str>,
    /// Why.
    pub reason: DenyReason,
}

/// Decides whether `caller` may make a request with `head` (or, with `None`, open an opaque
/// TCP connection) to a port with `rules`, where no rules means `default` applies.
pub fn authorize(
    rules: &[Rule],
    default: DefaultAuthorization,
    local_trust_domain: &str,
    caller: Option<&SpiffeId>,
    head: Option<&Parts>,
) -> Result<(), Denial> {
    let unauthenticated_or = |otherwise| match caller {
        None => DenyReason::Unauthenticated,
        Some(_) => otherwise,
    };
    if rules.is_empty() {
        let reason = match default {
            DefaultAuthorization::AllowAll => return Ok(()),
            DefaultAuthorization::AllAuthenticated if caller.is_some() => return Ok(()),
            DefaultAuthorization::AllAuthenticated => DenyReason::Unauthenticated,
            DefaultAuthorization::Deny => DenyReason::DefaultDeny,
        };
        return Err(Denial {
            policy: DEFAULT_POLICY.into(),
            reason,
        });
    }
    let mut applicable = rules.iter().filter(|rule| rule.covers(head)).peekable();
    let Some(first) = applicable.peek() else {
        return Err(Denial {
            policy: rules[0].policy.clone(),
            reason: DenyReason::RouteNotAllowed,
        });
    };
    let policy = first.policy.clone();
    let admitted = applicable.any(|rule| {
        rule.principals
            .iter()
            .any(|p| p.admits(caller, local_trust_domain))
    });
    if admitted {
        Ok(())
    } else {
        Err(Denial {
            policy,
            reason: unauthenticated_or(DenyReason::IdentityNotAllowed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    fn rule(policy: &str, paths: &[&str], principals: Vec<Principal>) -> Rule {
        Rule {
            policy: policy.into(),
            routes: paths
                .iter()
                .map(|p| {
                    Matcher::compile(&pb::RouteMatch {
                        path: Some(pb::PathMatch {
                            kind: Some(pb::path_match::Kind::Prefix((*p).into())),
                        }),
                        ..Default::default()
                    })
                    .unwrap()
                })
                .collect(),
            principals,
        }
    }

    fn head(path: &str) -> Parts {
        http::Request::get(path).body(()).unwrap().into_parts().0
    }

    const TD: &str = "cluster.local";

    #[test]
    fn without_rules_the_default_decides() {
        let web = id("spiffe://cluster.local/ns/demo/sa/web");
        let allow = DefaultAuthorization::AllowAll;
        let authn = DefaultAuthorization::AllAuthenticated;
        let deny = DefaultAuthorization::Deny;
        assert_eq!(authorize(&[], allow, TD, None, None), Ok(()));
        assert_eq!(authorize(&[], authn, TD, Some(&web), None), Ok(()));
        let refused = authorize(&[], authn, TD, None, None).unwrap_err();
        assert_eq!(refused.reason, DenyReason::Unauthenticated);
        assert_eq!(&*refused.policy, DEFAULT_POLICY);
        let refused = authorize(&[], deny, TD, Some(&web), None).unwrap_err();
        assert_eq!(refused.reason, DenyReason::DefaultDeny);
    }

    #[test]
    fn rules_replace_the_default_even_when_it_allows_all() {
        let rules = [rule(
            "demo/only-web",
            &[],
            vec![Principal::Identity(id(
                "spiffe://cluster.local/ns/demo/sa/web",
            ))],
        )];
        let other = id("spiffe://cluster.local/ns/demo/sa/other");
        let allow = DefaultAuthorization::AllowAll;
        let refused = authorize(&rules, allow, TD, Some(&other), None).unwrap_err();
        assert_eq!(refused.reason, DenyReason::IdentityNotAllowed);
        assert_eq!(&*refused.policy, "demo/only-web");
        let refused = authorize(&rules, allow, TD, None, None).unwrap_err();
        assert_eq!(refused.reason, DenyReason::Unauthenticated);
    }

    #[test]
    fn each_principal_kind_admits_exactly_its_callers() {
        let web = id("spiffe://cluster.local/ns/demo/sa/web");
        let other_ns = id("spiffe://cluster.local/ns/prod/sa/web");
        let foreign = id("spiffe://example.org/ns/demo/sa/web");
        let cases: [(Principal, [bool; 4]); 5] = [
            (
                Principal::Identity(web.clone()),
                [true, false, false, false],
            ),
            (
                Principal::Namespace("demo".into()),
                [true, false, false, false],
            ),
            (
                Principal::TrustDomain("example.org".into()),
                [false, false, true, false],
            ),
            (Principal::Authenticated, [true, true, true, false]),
            (Principal::Unauthenticated, [true, true, true, true]),
        ];
        for (principal, expected) in cases {
            let callers = [Some(&web), Some(&other_ns), Some(&foreign), None];
            for (caller, expected) in callers.into_iter().zip(expected) {
                assert_eq!(
                    principal.admits(caller, TD),
                    expected,
                    "{principal:?} admitting {caller:?}"
                );
            }
        }
    }

    #[test]
    fn route_rules_cover_only_their_routes_and_never_opaque_tcp() {
        let rules = [rule(
            "demo/public-health",
            &["/health"],
            vec![Principal::Unauthenticated],
        )];
        let allow = DefaultAuthorization::AllowAll;
        assert_eq!(
            authorize(&rules, allow, TD, None, Some(&head("/health/live"))),
            Ok(())
        );
        let refused = authorize(&rules, allow, TD, None, Some(&head("/admin"))).unwrap_err();
        assert_eq!(refused.reason, DenyReason::RouteNotAllowed);
        let refused = authorize(&rules, allow, TD, None, None).unwrap_err();
        assert_eq!(refused.reason, DenyReason::RouteNotAllowed);
    }

    #[test]
    fn any_applicable_rule_may_admit() {
        let web = id("spiffe://cluster.local/ns/demo/sa/web");
        let rules = [
            rule(
                "demo/admins",
                &["/admin"],
                vec![Principal::Namespace("ops".into())],
            ),
            rule("demo/everyone-meshed", &[], vec![Principal::Authenticated]),
        ];
        let allow = DefaultAuthorization::Deny;
        assert_eq!(
            authorize(&rules, allow, TD, Some(&web), Some(&head("/admin"))),
            Ok(())
        );
        let refused = authorize(&rules, allow, TD, None, Some(&head("/admin"))).unwrap_err();
        assert_eq!(refused.reason, DenyReason::Unauthenticated);
        assert_eq!(&*refused.policy, "demo/admins");
    }

    #[test]
    fn malformed_principals_are_refused_at_compile_time_with_the_policy_named() {
        let bad = pb::AuthorizationRule {
            policy: "demo/bad".into(),
            routes: vec![],
            principals: vec![pb::Principal {
                kind: Some(pb::principal::Kind::Identity("spiffe://x/y".into())),
            }],
        };
        let error = Rule::compile(&bad).unwrap_err().to_string();
        assert!(
            error.contains("demo/bad") && error.contains("principal 0"),
            "{error}"
        );
        let empty = pb::AuthorizationRule {
            policy: "demo/empty".into(),
            routes: vec![],
            principals: vec![pb::Principal { kind: None }],
        };
        assert!(
            Rule::compile(&empty)
                .unwrap_err()
                .to_string()
                .contains("empty principal")
        );
    }

    #[test]
    fn unknown_snapshot_defaults_fail_closed() {
        assert_eq!(
            DefaultAuthorization::from_snapshot(99),
            DefaultAuthorization::Deny
        );
        assert_eq!(
            DefaultAuthorization::from_snapshot(0),
            DefaultAuthorization::AllowAll
        );
    }
}
