//! Route status on Kubernetes: what the control plane writes to each HTTPRoute's and
//! GRPCRoute's `status.parents[]`, decided by pure functions from the route as the API returns
//! it and the translation of the cluster (the I/O is `status_writer.rs`).
//!
//! One entry per Service parentRef the mesh serves, the parentRef exactly as the spec gives it,
//! `controllerName` [`CONTROLLER_NAME`], and the conditions `strait validate` prints (the
//! model's `Accepted`, `ResolvedRefs`, `PartiallyInvalid`), or `Accepted=False` for a route
//! set aside for its errors; every condition carries the route's `metadata.generation` as
//! `observedGeneration`. Other controllers' entries are kept as they are (the list is atomic, so
//! a write carries them). A route whose entries already say this, `lastTransitionTime` aside,
//! needs no write; a condition whose status did not change keeps its `lastTransitionTime`.
//!
//! Bounds, so no route however hostile makes a write large: messages at most
//! [`MAX_MESSAGE_BYTES`], at most 8 conditions an entry and 32 entries in all (the CRD's
//! limits; the API's own message limit is 32768 bytes).

use serde_json::{Value, json};

use super::kinds::Kind;
use super::translate::{self, Translation};
use crate::config::ConfigErrors;
use crate::config::model::{ObjectKey, RouteCondition};

/// The `controllerName` of every `status.parents[]` entry the control plane writes.
pub const CONTROLLER_NAME: &str = "strait.dev/mesh-controller";
/// The longest condition message written, in bytes (longer ones are cut, marked with "...").
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The CRD's limit on `status.parents`.
const MAX_PARENTS: usize = 32;
/// The CRD's limit on an entry's conditions.
const MAX_CONDITIONS: usize = 8;

/// A route, as the writer addresses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteId {
    /// `HttpRoute` or `GrpcRoute`.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for RouteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.name(), self.namespace, self.name)
    }
}

/// One status write: the route, the `resourceVersion` it was decided from (the write's
/// precondition), and the route's whole new `status.parents`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusWrite {
    /// The route.
    pub route: RouteId,
    /// The version read.
    pub resource_version: String,
    /// Every entry, other controllers' first.
    pub parents: Vec<Value>,
}

impl StatusWrite {
    /// The merge patch of the `status` subresource: conditional on the version read, so a
    /// status another writer changed meanwhile is not overwritten (the API answers 409).
    pub fn patch(&self) -> Value {
        json!({
            "metadata": {"resourceVersion": self.resource_version},
            "status": {"parents": self.parents},
        })
    }
}

/// What the mesh says of one route: each parentRef it serves, as the spec gives it, with its
/// conditions. Empty for a route that is not the mesh's (attached to Gateways only).
pub fn verdict(
    kind: Kind,
    object: &Value,
    translation: &Translation,
) -> Vec<(Value, Vec<RouteCondition>)> {
    let served: Vec<&Value> = object["spec"]["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| translate::is_mesh_parent(p))
        .collect();
    if served.is_empty() {
        return Vec::new();
    }
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    let key = ObjectKey::new(namespace, name);
    if let Some(status) = translation
        .model
        .route_status
        .get(&(kind.name().to_owned(), key))
    {
        // The model's parents are the served parentRefs, in the same order.
        return served
            .into_iter()
            .zip(&status.parents)
            .map(|(parent, status)| (parent.clone(), status.conditions.clone()))
            .collect();
    }
    let Some(rejected) = translation.rejected.iter().find(|r| {
        r.reference.kind.as_deref() == Some(kind.name())
            && r.reference.namespace.as_deref() == Some(namespace)
            && r.reference.name.as_deref() == Some(name)
    }) else {
        return Vec::new();
    };
    let set_aside = RouteCondition {
        type_: "Accepted".into(),
        status: false,
        reason: "UnsupportedValue".into(),
        message: format!(
            "the route is set aside (not in force) for its errors:\n{}",
            ConfigErrors(rejected.errors.clone())
        ),
    };
    served
        .into_iter()
        .map(|parent| (parent.clone(), vec![set_aside.clone()]))
        .collect()
}

/// The route's whole new `status.parents`, or `None` when its entries already say what
/// `verdict` says (`lastTransitionTime` aside). `now` is an RFC 3339 time for conditions that
/// are new or changed status.
pub fn desired_parents(
    object: &Value,
    verdict: &[(Value, Vec<RouteCondition>)],
    now: &str,
) -> Option<Vec<Value>> {
    let existing: &[Value] = object["status"]["parents"]
        .as_array()
        .map_or(&[], Vec::as_slice);
    let (ours, others): (Vec<&Value>, Vec<&Value>) = existing
        .iter()
        .partition(|entry| entry["controllerName"] == CONTROLLER_NAME);
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
    let room = MAX_PARENTS.saturating_sub(others.len());
    let wanted: Vec<Value> = verdict
        .iter()
        .take(room)
        .map(|(parent, conditions)| {
            let previous = ours.iter().find(|entry| entry["parentRef"] == *parent);
            json!({
                "parentRef": parent,
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions
                    .iter()
                    .take(MAX_CONDITIONS)
                    .map(|c| condition(c, generation, previous.copied(), now))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let current: Vec<Value> = ours.iter().map(|entry| without_times(entry)).collect();
    let next: Vec<Value> = wanted.iter().map(without_times).collect();
    if current == next {
        return None;
    }
    Some(others.into_iter().cloned().chain(wanted).collect())
}

/// Every write the routes need, in the routes' order.
pub fn plan(routes: &[(Kind, Value)], translation: &Translation, now: &str) -> Vec<StatusWrite> {
    routes
        .iter()
        .filter_map(|(kind, object)| {
            let verdict = verdict(*kind, object, translation);
            let parents = desired_parents(object, &verdict, now)?;
            let text = |field: &str| object["metadata"][field].as_str().unwrap_or("").to_owned();
            Some(StatusWrite {
                route: RouteId {
                    kind: *kind,
                    namespace: text("namespace"),
                    name: text("name"),
                },
                resource_version: text("resourceVersion"),
                parents,
            })
        })
        .collect()
}

/// Now, as `metav1.Time` writes it (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    use k8s_openapi::jiff::Timestamp;
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// A condition as `metav1.Condition`, keeping the previous `lastTransitionTime` when its
/// status did not change.
fn condition(c: &RouteCondition, generation: i64, previous: Option<&Value>, now: &str) -> Value {
    let status = if c.status { "True" } else { "False" };
    let since = previous
        .and_then(|entry| entry["conditions"].as_array())
        .into_iter()
        .flatten()
        .find(|p| p["type"] == c.type_.as_str() && p["status"] == status)
        .and_then(|p| p["lastTransitionTime"].as_str())
        .unwrap_or(now);
    json!({
        "type": c.type_,
        "status": status,
        "reason": c.reason,
        "message": bounded(&c.message, MAX_MESSAGE_BYTES),
        "observedGeneration": generation,
        "lastTransitionTime": since,
    })
}

fn without_times(entry: &Value) -> Value {
    let mut entry = entry.clone();
    if let Some(conditions) = entry["conditions"].as_array_mut() {
        for c in conditions {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastTransitionTime");
            }
        }
    }
    entry
}

/// `text` cut to at most `max` bytes on a character boundary, marked with "..." when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::error::Location;
    use crate::config::model::{ParentRefKey, ParentStatus, RouteStatus};
    use crate::config::{ConfigError, Model};
    use k8s_openapi::api::core::v1::ObjectReference;
    use translate::Rejected;

    const NOW: &str = "2026-12-07T18:00:00Z";
    const LATER: &str = "2026-12-07T19:00:00Z";

    fn service_parent() -> Value {
        json!({"group": "", "kind": "Service", "name": "web", "port": 80})
    }

    fn gateway_parent() -> Value {
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"})
    }

    fn route(parents: &[Value], status: &Value) -> Value {
        json!({
            "metadata": {"name": "r", "namespace": "demo", "generation": 4, "resourceVersion": "77"},
            "spec": {"parentRefs": parents, "rules": []},
            "status": status,
        })
    }

    fn cond(type_: &str, status: bool, reason: &str) -> RouteCondition {
        RouteCondition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: format!("{type_} says {reason}"),
        }
    }

    fn accepted() -> Vec<RouteCondition> {
        vec![
            cond("Accepted", true, "Accepted"),
            cond("ResolvedRefs", true, "ResolvedRefs"),
        ]
    }

    fn translation(conditions: Vec<RouteCondition>) -> Translation {
        let mut model = Model::default();
        model.route_status.insert(
            ("HTTPRoute".into(), ObjectKey::new("demo", "r")),
            RouteStatus {
                parents: vec![ParentStatus {
                    parent: ParentRefKey {
                        group: String::new(),
                        kind: "Service".into(),
                        namespace: "demo".into(),
                        name: "web".into(),
                        port: Some(80),
                        section_name: None,
                    },
                    conditions,
                }],
            },
        );
        Translation {
            model,
            rejected: Vec::new(),
        }
    }

    fn other_entry() -> Value {
        json!({
            "parentRef": gateway_parent(),
            "controllerName": "example.net/gateway-controller",
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": 1, "lastTransitionTime": NOW}],
        })
    }

    #[test]
    fn a_new_route_gets_one_entry_per_service_parent_with_its_generation() {
        let object = route(&[gateway_parent(), service_parent()], &json!({}));
        let writes = plan(&[(Kind::HttpRoute, object)], &translation(accepted()), NOW);
        assert_eq!(writes.len(), 1);
        let write = &writes[0];
        assert_eq!(write.resource_version, "77");
        assert_eq!(write.route.to_string(), "HTTPRoute demo/r");
        assert_eq!(write.parents.len(), 1);
        let entry = &write.parents[0];
        assert_eq!(entry["parentRef"], service_parent());
        assert_eq!(entry["controllerName"], CONTROLLER_NAME);
        assert_eq!(
            entry["conditions"][0],
            json!({"type": "Accepted", "status": "True", "reason": "Accepted", "message": "Accepted says Accepted", "observedGeneration": 4, "lastTransitionTime": NOW})
        );
        assert_eq!(entry["conditions"][1]["type"], "ResolvedRefs");
        assert_eq!(
            write.patch(),
            json!({"metadata": {"resourceVersion": "77"}, "status": {"parents": write.parents}})
        );
    }

    #[test]
    fn other_controllers_entries_are_kept_and_stale_own_entries_replaced() {
        let stale = json!({"parentRef": {"group": "", "kind": "Service", "name": "old"}, "controllerName": CONTROLLER_NAME, "conditions": []});
        let object = route(
            &[gateway_parent(), service_parent()],
            &json!({"parents": [stale, other_entry()]}),
        );
        let verdict = verdict(Kind::HttpRoute, &object, &translation(accepted()));
        let parents = desired_parents(&object, &verdict, NOW).unwrap();
        assert_eq!(parents.len(), 2);
        assert_eq!(parents[0], other_entry());
        assert_eq!(parents[1]["parentRef"], service_parent());
    }

    #[test]
    fn a_status_that_already_says_it_needs_no_write_whatever_the_time() {
        let object = route(&[service_parent()], &json!({}));
        let verdict = verdict(Kind::HttpRoute, &object, &translation(accepted()));
        let parents = desired_parents(&object, &verdict, NOW).unwrap();
        let written = route(&[service_parent()], &json!({"parents": parents}));
        assert_eq!(desired_parents(&written, &verdict, LATER), None);
    }

    #[test]
    fn a_new_generation_is_written_and_unchanged_conditions_keep_their_times() {
        let object = route(&[service_parent()], &json!({}));
        let before = verdict(Kind::HttpRoute, &object, &translation(accepted()));
        let parents = desired_parents(&object, &before, NOW).unwrap();
        let mut written = route(&[service_parent()], &json!({"parents": parents}));
        written["metadata"]["generation"] = json!(5);
        let after = vec![
            cond("Accepted", true, "Accepted"),
            cond("ResolvedRefs", false, "BackendNotFound"),
        ];
        let parents = desired_parents(&written, &[(service_parent(), after)], LATER).unwrap();
        let conditions = &parents[0]["conditions"];
        assert_eq!(conditions[0]["lastTransitionTime"], NOW);
        assert_eq!(conditions[0]["observedGeneration"], 5);
        assert_eq!(conditions[1]["lastTransitionTime"], LATER);
        assert_eq!(conditions[1]["reason"], "BackendNotFound");
    }

    #[test]
    fn a_route_the_mesh_does_not_serve_loses_only_its_own_entries() {
        let object = route(&[gateway_parent()], &json!({"parents": [other_entry()]}));
        let t = translation(accepted());
        assert!(verdict(Kind::HttpRoute, &object, &t).is_empty());
        assert!(plan(&[(Kind::HttpRoute, object)], &t, NOW).is_empty());
        let ours = json!({"parentRef": service_parent(), "controllerName": CONTROLLER_NAME, "conditions": []});
        let object = route(
            &[gateway_parent()],
            &json!({"parents": [other_entry(), ours]}),
        );
        assert_eq!(
            desired_parents(&object, &[], NOW),
            Some(vec![other_entry()])
        );
    }

    #[test]
    fn a_route_set_aside_is_not_accepted_and_says_why() {
        let object = route(&[service_parent()], &json!({}));
        let translation = Translation {
            model: Model::default(),
            rejected: vec![Rejected {
                reference: ObjectReference {
                    kind: Some("HTTPRoute".into()),
                    namespace: Some("demo".into()),
                    name: Some("r".into()),
                    ..Default::default()
                },
                errors: vec![ConfigError {
                    location: Location {
                        file: "kubernetes".into(),
                        document: None,
                        object: Some("HTTPRoute demo/r".into()),
                    },
                    field: "spec.hostnames".into(),
                    reason: "hostnames have no meaning".into(),
                }],
            }],
        };
        let verdict = verdict(Kind::HttpRoute, &object, &translation);
        assert_eq!(verdict.len(), 1);
        let accepted = &verdict[0].1[0];
        assert_eq!(
            (
                accepted.type_.as_str(),
                accepted.status,
                accepted.reason.as_str()
            ),
            ("Accepted", false, "UnsupportedValue")
        );
        assert!(
            accepted.message.contains("spec.hostnames"),
            "{}",
            accepted.message
        );
    }

    #[test]
    fn hostile_sizes_are_bounded() {
        let mut huge = cond("Accepted", false, "UnsupportedValue");
        huge.message = "é".repeat(100_000);
        let conditions: Vec<RouteCondition> = (0..50).map(|_| huge.clone()).collect();
        let parents: Vec<Value> = (0..100)
            .map(|i| json!({"group": "", "kind": "Service", "name": format!("web-{i}")}))
            .collect();
        let others: Vec<Value> = (0..5).map(|_| other_entry()).collect();
        let object = route(&parents, &json!({"parents": others}));
        let verdict: Vec<(Value, Vec<RouteCondition>)> = parents
            .iter()
            .map(|p| (p.clone(), conditions.clone()))
            .collect();
        let written = desired_parents(&object, &verdict, NOW).unwrap();
        assert_eq!(written.len(), MAX_PARENTS);
        for entry in &written[5..] {
            let conditions = entry["conditions"].as_array().unwrap();
            assert_eq!(conditions.len(), MAX_CONDITIONS);
            for c in conditions {
                let message = c["message"].as_str().unwrap();
                assert!(message.len() <= MAX_MESSAGE_BYTES);
                assert!(message.ends_with("..."));
            }
        }
    }
}
