//! Which workload a pod belongs to, from its own metadata: the controller in its
//! `ownerReferences`, with a ReplicaSet made by a Deployment read as that Deployment. This
//! is what the workload metric labels name, so it must never be the pod itself.
//!
//! A Deployment's ReplicaSets are named `<deployment>-<pod-template-hash>` and their pods
//! carry the `pod-template-hash` label (the Deployment controller's convention). Reading it
//! from the pod needs no ReplicaSet watch, no extra RBAC, and no memory per ReplicaSet; a
//! ReplicaSet that does not follow the convention (made by hand, or by another controller)
//! is reported as the ReplicaSet. A hand-made ReplicaSet named like a Deployment's would be
//! read as that Deployment: only its creator can do that, in its own namespace, and it
//! changes a label value, nothing else.

use serde_json::Value;

use crate::config::model::Owner;

/// The label the Deployment controller puts on its ReplicaSets' pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// A pod's owning workload: `(kind, name)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOwner {
    /// `Deployment`, `ReplicaSet`, `StatefulSet`, `DaemonSet`, `Job`, … as the API names it.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// The workload owning the pod whose `metadata` this is: its controller reference (the one
/// with `controller: true`), a Deployment in place of its ReplicaSet. `None` for a pod
/// without a controller (a bare pod) and for a static pod (its "controller" is the Node),
/// whose only name is its own; the labels then say `unknown` rather than name a pod.
pub fn pod_owner(metadata: &Value) -> Option<PodOwner> {
    let controller = metadata["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))?;
    let kind = controller["kind"].as_str()?;
    let name = controller["name"].as_str()?;
    // The Workload's validation takes exactly these; an owner outside them is left out
    // rather than have the pod refused.
    if !Owner::is_kind(kind) || name.is_empty() || name.len() > 253 || kind == "Node" {
        return None;
    }
    if kind == "ReplicaSet" {
        let hash = metadata["labels"][POD_TEMPLATE_HASH_LABEL].as_str();
        if let Some(deployment) = deployment_of_replica_set(name, hash) {
            return Some(PodOwner {
                kind: "Deployment".into(),
                name: deployment.into(),
            });
        }
    }
    Some(PodOwner {
        kind: kind.into(),
        name: name.into(),
    })
}

/// The Deployment that made ReplicaSet `replica_set` of pods labelled `pod-template-hash:
/// hash`: the name without its `-<hash>` suffix, when it has one.
fn deployment_of_replica_set<'a>(replica_set: &'a str, hash: Option<&str>) -> Option<&'a str> {
    let hash = hash.filter(|h| !h.is_empty())?;
    replica_set
        .strip_suffix(hash)?
        .strip_suffix('-')
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn owned(kind: &str, name: &str, controller: bool, hash: Option<&str>) -> Value {
        let mut meta = json!({
            "name": "pod-x",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": controller}
            ],
        });
        if let Some(hash) = hash {
            meta["labels"] = json!({ POD_TEMPLATE_HASH_LABEL: hash });
        }
        meta
    }

    fn owner(kind: &str, name: &str) -> Option<PodOwner> {
        Some(PodOwner {
            kind: kind.into(),
            name: name.into(),
        })
    }

    #[test]
    fn a_replica_set_named_by_its_pods_template_hash_is_read_as_its_deployment() {
        let meta = owned("ReplicaSet", "web-api-7d9f8b6c5", true, Some("7d9f8b6c5"));
        assert_eq!(pod_owner(&meta), owner("Deployment", "web-api"));
    }

    #[test]
    fn a_replica_set_off_the_deployment_convention_stays_a_replica_set() {
        for (name, hash) in [
            ("web", Some("7d9f8b6c5")),
            ("web-7d9f8b6c5", None),
            ("web-7d9f8b6c5", Some("")),
            ("7d9f8b6c5", Some("7d9f8b6c5")),
            ("-7d9f8b6c5", Some("7d9f8b6c5")),
            ("web7d9f8b6c5", Some("7d9f8b6c5")),
        ] {
            assert_eq!(
                pod_owner(&owned("ReplicaSet", name, true, hash)),
                owner("ReplicaSet", name),
                "{name} {hash:?}"
            );
        }
    }

    #[test]
    fn other_controllers_are_the_workload_themselves() {
        for kind in ["StatefulSet", "DaemonSet", "Job", "ReplicationController"] {
            assert_eq!(
                pod_owner(&owned(kind, "db", true, Some("abc"))),
                owner(kind, "db")
            );
        }
    }

    #[test]
    fn bare_static_and_non_controller_owned_pods_have_no_workload() {
        assert_eq!(pod_owner(&json!({"name": "debug"})), None);
        assert_eq!(pod_owner(&json!({"ownerReferences": []})), None);
        assert_eq!(
            pod_owner(&owned("Node", "node-1", true, None)),
            None,
            "a static pod's mirror"
        );
        assert_eq!(
            pod_owner(&owned("ReplicaSet", "web-abc", false, Some("abc"))),
            None
        );
        assert_eq!(pod_owner(&owned("", "web", true, None)), None);
        assert_eq!(pod_owner(&owned("Roll-out", "web", true, None)), None);
        assert_eq!(pod_owner(&json!({"ownerReferences": "nope"})), None);
    }
}
