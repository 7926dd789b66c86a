//! The Kubernetes source names each meshed pod's workload (its controller, a Deployment in
//! place of its ReplicaSet) from the pod's own `ownerReferences`, and the snapshots carry it:
//! recorded pods from a real cluster (`tests/fixtures/k8s/`, see its README).

use std::path::PathBuf;

use serde_json::{Value, json};
use strait_control_plane::config::model::{ObjectKey, Owner};
use strait_control_plane::discovery::snapshot::snapshot_for;
use strait_control_plane::kubernetes::kinds::Kind;
use strait_control_plane::kubernetes::translate::{Translation, translate};
use strait_proto::discovery::v1 as pb;

/// The recorded kube-system pod list with `meshed` pods marked the way the injector marks
/// them (and, for the host-network ones, moved off the host network so they can be meshed).
fn recorded_pods(meshed: &[&str]) -> Vec<(Kind, Value)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(
        "../tests/fixtures/k8s/core/k8s-openapi-replays-v1-36/extracted/pod-list.response_body.json",
    );
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("reading the pod list"))
            .expect("the pod list is JSON");
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pod| {
            let mut pod = pod.clone();
            if meshed.contains(&pod["metadata"]["name"].as_str().unwrap()) {
                pod["metadata"]["labels"]["strait.dev/proxied"] = json!("true");
                pod["spec"]["hostNetwork"] = json!(false);
            }
            (Kind::Pod, pod)
        })
        .collect()
}

fn run(objects: &[(Kind, Value)]) -> Translation {
    let borrowed: Vec<(Kind, &Value)> = objects.iter().map(|(k, v)| (*k, v)).collect();
    translate(&borrowed).expect("errors are always some object's")
}

fn owner_of(translation: &Translation, pod: &str) -> Option<Owner> {
    translation.model.workloads[&ObjectKey::new("kube-system", pod)]
        .owner
        .clone()
}

fn owner(kind: &str, name: &str) -> Option<Owner> {
    Some(Owner {
        kind: kind.into(),
        name: name.into(),
    })
}

#[test]
fn a_replica_set_pod_belongs_to_its_deployment_and_a_daemon_set_pod_to_its_daemon_set() {
    let translation = run(&recorded_pods(&[
        "coredns-589f44dc88-4fpns",
        "coredns-589f44dc88-lxdzt",
        "kindnet-4pxt7",
    ]));
    assert!(
        translation.rejected.is_empty(),
        "{:?}",
        translation.rejected
    );
    // Owned by ReplicaSet coredns-589f44dc88, labelled pod-template-hash: 589f44dc88.
    for pod in ["coredns-589f44dc88-4fpns", "coredns-589f44dc88-lxdzt"] {
        assert_eq!(
            owner_of(&translation, pod),
            owner("Deployment", "coredns"),
            "{pod}"
        );
    }
    assert_eq!(
        owner_of(&translation, "kindnet-4pxt7"),
        owner("DaemonSet", "kindnet")
    );
}

#[test]
fn a_static_pod_has_no_workload() {
    // Its mirror pod's controller is the Node.
    let translation = run(&recorded_pods(&["kube-apiserver-v1.36-control-plane"]));
    assert!(
        translation.rejected.is_empty(),
        "{:?}",
        translation.rejected
    );
    assert_eq!(
        owner_of(&translation, "kube-apiserver-v1.36-control-plane"),
        None
    );
}

#[test]
fn snapshots_name_the_proxys_own_workload_and_the_workload_of_each_identity() {
    let translation = run(&recorded_pods(&[
        "coredns-589f44dc88-4fpns",
        "coredns-589f44dc88-lxdzt",
        "kindnet-4pxt7",
    ]));
    let model = &translation.model;
    let pod = &model.workloads[&ObjectKey::new("kube-system", "coredns-589f44dc88-4fpns")];
    let snapshot = snapshot_for(model, pod);
    let coredns = pb::WorkloadRef {
        namespace: "kube-system".into(),
        name: "coredns".into(),
        kind: "Deployment".into(),
    };
    assert_eq!(snapshot.workload, Some(coredns.clone()));
    assert_eq!(
        snapshot.identity_workloads,
        [
            pb::IdentityWorkload {
                identity: "spiffe://cluster.local/ns/kube-system/sa/coredns".into(),
                workload: Some(coredns),
            },
            pb::IdentityWorkload {
                identity: "spiffe://cluster.local/ns/kube-system/sa/kindnet".into(),
                workload: Some(pb::WorkloadRef {
                    namespace: "kube-system".into(),
                    name: "kindnet".into(),
                    kind: "DaemonSet".into(),
                }),
            },
        ]
    );
    // No pod name anywhere a label could take it from.
    let text = format!("{:?}", (&snapshot.workload, &snapshot.identity_workloads));
    assert!(!text.contains("589f44dc88"), "{text}");
}
