//! The workload and service label values: which workload (Deployment, StatefulSet…) is on
//! each side of a hop, and which one Service an inbound request belongs to.
//!
//! Every value comes from the snapshot, never from the peer: a workload is what the control
//! plane names as an endpoint's or an identity's owner, and a request's authority only picks
//! among the Services the snapshot lists for the port. So the values are bounded by the
//! workloads and Services that exist, and each is capped at [`MAX_LABEL_VALUE_LEN`] bytes.

use strait_proto::discovery::v1 as pb;

/// The longest workload label value kept (a Kubernetes name's limit); longer values from a
/// hand-written snapshot are cut (at a character boundary).
pub const MAX_LABEL_VALUE_LEN: usize = 253;

/// The value of a workload label when the workload is not known.
pub const UNKNOWN_WORKLOAD: &str = "unknown";

/// One side's workload labels: its name and namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadLabel {
    /// The workload's name, or [`UNKNOWN_WORKLOAD`].
    pub name: String,
    /// The workload's namespace, or [`UNKNOWN_WORKLOAD`].
    pub namespace: String,
}

impl Default for WorkloadLabel {
    fn default() -> Self {
        Self::unknown()
    }
}

impl WorkloadLabel {
    /// The labels of a workload that is not known.
    pub fn unknown() -> Self {
        Self {
            name: UNKNOWN_WORKLOAD.into(),
            namespace: UNKNOWN_WORKLOAD.into(),
        }
    }

    /// The labels of `workload` as the snapshot names it; unknown when unset or empty.
    pub fn of(workload: Option<&pb::WorkloadRef>) -> Self {
        match workload {
            Some(w) if !w.name.is_empty() && !w.namespace.is_empty() => Self {
                name: capped(&w.name).to_owned(),
                namespace: capped(&w.namespace).to_owned(),
            },
            _ => Self::unknown(),
        }
    }

    /// The one workload every one of `owners` names; unknown when there are none, when they
    /// differ, or when any is unknown. A backend or service whose endpoints all belong to
    /// one Deployment is labelled with it; a mix is not attributed to either.
    pub fn common<'a>(owners: impl IntoIterator<Item = Option<&'a pb::WorkloadRef>>) -> Self {
        let mut common: Option<Self> = None;
        for owner in owners {
            let label = Self::of(owner);
            if label.name == UNKNOWN_WORKLOAD {
                return Self::unknown();
            }
            match &common {
                Some(seen) if *seen != label => return Self::unknown(),
                Some(_) => {}
                None => common = Some(label),
            }
        }
        common.unwrap_or_else(Self::unknown)
    }
}

fn capped(value: &str) -> &str {
    if value.len() <= MAX_LABEL_VALUE_LEN {
        return value;
    }
    let mut end = MAX_LABEL_VALUE_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Which of the `services` (`namespace/name`, sorted by name) serving an inbound port a
/// request for `authority` belongs to: the one the authority's host names (`name`,
/// `name.namespace`, `name.namespace.svc…`), else the first. `None` when the port has no
/// service. The authority can only choose among the port's own services, so a caller cannot
/// add label values.
pub fn inbound_service_for(services: &[String], authority: Option<&str>) -> Option<usize> {
    if services.is_empty() {
        return None;
    }
    let named = authority.and_then(|authority| {
        let host = host_of(authority);
        let mut parts = host.split('.');
        let name = parts.next().unwrap_or("");
        let namespace = parts.next();
        services.iter().position(|service| {
            let (service_namespace, service_name) =
                service.split_once('/').unwrap_or(("", service.as_str()));
            service_name.eq_ignore_ascii_case(name)
                && namespace.is_none_or(|ns| ns.eq_ignore_ascii_case(service_namespace))
        })
    });
    Some(named.unwrap_or(0))
}

/// The host of an authority: without the port, without IPv6 brackets' port.
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .split_once(']')
            .map_or(authority, |(host, _)| host);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(namespace: &str, name: &str) -> pb::WorkloadRef {
        pb::WorkloadRef {
            namespace: namespace.into(),
            name: name.into(),
            kind: "Deployment".into(),
        }
    }

    fn label(namespace: &str, name: &str) -> WorkloadLabel {
        WorkloadLabel {
            name: name.into(),
            namespace: namespace.into(),
        }
    }

    #[test]
    fn a_workload_label_is_the_named_owner_or_unknown() {
        assert_eq!(
            WorkloadLabel::of(Some(&owner("shop", "web"))),
            label("shop", "web")
        );
        assert_eq!(WorkloadLabel::of(None), WorkloadLabel::unknown());
        assert_eq!(
            WorkloadLabel::of(Some(&owner("shop", ""))),
            WorkloadLabel::unknown()
        );
        assert_eq!(
            WorkloadLabel::of(Some(&owner("", "web"))),
            WorkloadLabel::unknown()
        );
    }

    #[test]
    fn workload_label_values_are_capped_at_a_character_boundary() {
        let long = "é".repeat(200);
        let got = WorkloadLabel::of(Some(&owner("shop", &long)));
        assert!(got.name.len() <= MAX_LABEL_VALUE_LEN);
        assert_eq!(got.name.len(), 252, "126 two-byte characters");
        assert!(long.starts_with(&got.name));
    }

    #[test]
    fn endpoints_of_one_workload_are_labelled_with_it_and_a_mix_is_unknown() {
        let web = owner("shop", "web");
        let api = owner("shop", "api");
        assert_eq!(
            WorkloadLabel::common([Some(&web), Some(&web)]),
            label("shop", "web")
        );
        assert_eq!(
            WorkloadLabel::common([Some(&web), Some(&api)]),
            WorkloadLabel::unknown()
        );
        assert_eq!(
            WorkloadLabel::common([Some(&web), None]),
            WorkloadLabel::unknown()
        );
        assert_eq!(WorkloadLabel::common([]), WorkloadLabel::unknown());
    }

    #[test]
    fn an_inbound_request_belongs_to_the_service_its_authority_names_else_the_first() {
        let services = vec!["shop/api".to_owned(), "shop/web".to_owned()];
        for (authority, expected) in [
            (Some("web"), 1),
            (Some("web:8080"), 1),
            (Some("web.shop"), 1),
            (Some("WEB.shop.svc.cluster.local:80"), 1),
            (Some("api.shop.svc:80"), 0),
            (Some("web.other:80"), 0),
            (Some("10.0.0.7:8080"), 0),
            (Some("[fd00::7]:8080"), 0),
            (Some("unknown.shop"), 0),
            (Some(""), 0),
            (None, 0),
        ] {
            assert_eq!(
                inbound_service_for(&services, authority),
                Some(expected),
                "{authority:?}"
            );
        }
        assert_eq!(inbound_service_for(&[], Some("web")), None);
    }
}
