//! What the Kubernetes Event about a hostNetwork pod the injector skipped says, and which object
//! it regards: pure, from the pod as the review carries it.
//!
//! A mutating webhook sees a pod before the API server has stored it: it has no uid, often no
//! name (only a `generateName`), and may still be refused by a later admission step. So the
//! Event regards the pod's controller when it is an `apps` or `batch` workload (DaemonSet,
//! ReplicaSet, StatefulSet, Job — namespaced kinds, with a uid, shown by `kubectl describe` of
//! that workload and aggregated per workload); otherwise the pod by its name (without a uid:
//! `kubectl get events` lists it, `kubectl describe pod` does not); otherwise, for a pod with
//! only a generateName, the pod by that prefix, which names no pod. Its namespace is always the
//! review's (the API server's, from the request path), never one the pod's body claims.
//!
//! Nothing in the pod has been validated yet (mutating admission runs before validation), so
//! a name is used only if it is a valid object name and a uid only if it is short; the note
//! stays under the Events API's 1 kB.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};

/// The Event's reason.
pub const REASON: &str = "InjectionSkipped";
/// The Event's action.
pub const ACTION: &str = "Inject";
/// Owners of these API groups are regarded (namespaced workload controllers).
const WORKLOAD_GROUPS: [&str; 2] = ["apps/", "batch/"];
/// Longest object name Kubernetes accepts (a DNS subdomain).
const MAX_NAME: usize = 253;
/// Longest uid passed on (Kubernetes makes 36-character UUIDs).
const MAX_UID: usize = 64;

/// The facts about a skipped pod an Event is made from.
#[derive(Clone, Debug, PartialEq)]
pub struct SkippedPod {
    /// What the Event regards.
    pub regarding: ObjectReference,
    /// What it says.
    pub note: String,
}

impl SkippedPod {
    /// The Event for `pod`, created in `namespace` (the review's), or `None` when the pod
    /// offers nothing an Event can name.
    pub fn from_pod(namespace: &str, pod: &Pod) -> Option<Self> {
        if !is_object_name(namespace) {
            return None;
        }
        let meta = &pod.metadata;
        let own_name = meta.name.as_deref().filter(|n| is_object_name(n));
        let prefix = meta
            .generate_name
            .as_deref()
            .map(|g| g.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
            .filter(|g| is_object_name(g));
        let described = match (own_name, &meta.generate_name) {
            (Some(name), _) => format!("pod {name}"),
            (None, Some(_)) if prefix.is_some() => format!(
                "a pod generated from {}",
                meta.generate_name.as_deref().unwrap_or_default()
            ),
            _ => "a pod".to_owned(),
        };
        let owner = meta.owner_references.iter().flatten().find(|o| {
            o.controller == Some(true)
                && WORKLOAD_GROUPS.iter().any(|g| o.api_version.starts_with(g))
                && o.api_version.len() <= MAX_NAME
                && is_kind(&o.kind)
                && is_object_name(&o.name)
        });
        let regarding = match (owner, own_name.or(prefix)) {
            (Some(owner), _) => ObjectReference {
                api_version: Some(owner.api_version.clone()),
                kind: Some(owner.kind.clone()),
                name: Some(owner.name.clone()),
                namespace: Some(namespace.to_owned()),
                uid: Some(owner.uid.clone()).filter(|u| !u.is_empty() && u.len() <= MAX_UID),
                ..ObjectReference::default()
            },
            (None, Some(name)) => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectReference::default()
            },
            (None, None) => return None,
        };
        let note = format!(
            "{described} asked for the mesh but uses hostNetwork, so the Strait proxy was not injected: its init container would rewrite the node's own iptables rules. Run the workload without hostNetwork to mesh it, or annotate it strait.dev/inject: disabled."
        );
        Some(Self { regarding, note })
    }

    /// A key naming the regarded object, for [`super::event_throttle::EventThrottle`].
    pub fn object_key(&self) -> String {
        let r = &self.regarding;
        format!(
            "{}/{}/{}/{}",
            r.namespace.as_deref().unwrap_or_default(),
            r.api_version.as_deref().unwrap_or_default(),
            r.kind.as_deref().unwrap_or_default(),
            r.name.as_deref().unwrap_or_default()
        )
    }
}

/// Whether `name` is a valid object name (RFC 1123 subdomain): what an Event's name, made from
/// it, must be.
fn is_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `kind` looks like a Kubernetes kind (a short alphanumeric identifier).
fn is_kind(kind: &str) -> bool {
    !kind.is_empty() && kind.len() <= 63 && kind.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(metadata: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": metadata, "spec": {"containers": []}})).unwrap()
    }

    fn daemon_set_owner(name: &str) -> serde_json::Value {
        json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "uid": "u-1", "controller": true}])
    }

    #[test]
    fn a_controlled_pod_is_reported_on_its_workload_in_the_reviews_namespace() {
        let pod = pod(json!({
            "generateName": "node-agent-",
            "namespace": "kube-system",
            "ownerReferences": daemon_set_owner("node-agent"),
        }));
        let skipped = SkippedPod::from_pod("monitoring", &pod).unwrap();
        let r = &skipped.regarding;
        assert_eq!(r.kind.as_deref(), Some("DaemonSet"));
        assert_eq!(r.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(r.name.as_deref(), Some("node-agent"));
        assert_eq!(
            r.namespace.as_deref(),
            Some("monitoring"),
            "never the body's"
        );
        assert_eq!(r.uid.as_deref(), Some("u-1"));
        assert!(skipped.note.contains("generated from node-agent-"));
        assert!(skipped.note.contains("hostNetwork"));
        assert_eq!(
            skipped.object_key(),
            "monitoring/apps/v1/DaemonSet/node-agent"
        );
    }

    #[test]
    fn a_pod_without_a_workload_owner_is_reported_on_itself() {
        let named = pod(json!({"name": "debug-shell"}));
        let skipped = SkippedPod::from_pod("ops", &named).unwrap();
        assert_eq!(skipped.regarding.kind.as_deref(), Some("Pod"));
        assert_eq!(skipped.regarding.name.as_deref(), Some("debug-shell"));
        assert_eq!(skipped.regarding.uid, None);
        // A Node owns mirror pods: cluster-scoped, not regarded.
        let mirror = pod(json!({
            "name": "etcd-node-1",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": "n", "controller": true}],
        }));
        let skipped = SkippedPod::from_pod("kube-system", &mirror).unwrap();
        assert_eq!(skipped.regarding.kind.as_deref(), Some("Pod"));
        // Only a generateName: its prefix, made a valid name.
        let generated = pod(json!({"generateName": "worker-"}));
        let skipped = SkippedPod::from_pod("ops", &generated).unwrap();
        assert_eq!(skipped.regarding.name.as_deref(), Some("worker"));
    }

    #[test]
    fn names_that_are_not_object_names_are_never_used() {
        let long = "a".repeat(300);
        for metadata in [
            json!({"name": "Bad_Name", "ownerReferences": daemon_set_owner("Not Valid")}),
            json!({"name": long}),
            json!({"generateName": "---"}),
            json!({}),
        ] {
            assert_eq!(
                SkippedPod::from_pod("ops", &pod(metadata.clone())),
                None,
                "{metadata}"
            );
        }
        let forged_uid = pod(json!({
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "x".repeat(1000), "controller": true}],
        }));
        let skipped = SkippedPod::from_pod("ops", &forged_uid).unwrap();
        assert_eq!(skipped.regarding.uid, None);
        assert!(skipped.note.len() < 1024);
        let not_controller = pod(json!({
            "name": "p",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u"}],
        }));
        let skipped = SkippedPod::from_pod("ops", &not_controller).unwrap();
        assert_eq!(skipped.regarding.kind.as_deref(), Some("Pod"));
    }

    #[test]
    fn the_note_fits_the_events_api_for_the_longest_names() {
        let name = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        let skipped = SkippedPod::from_pod("ops", &pod(json!({"name": name}))).unwrap();
        assert!(skipped.note.len() < 1024, "{}", skipped.note.len());
    }
}
