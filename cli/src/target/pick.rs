//! The pure decisions of target resolution: which of an object's pods to reach, whether it is
//! meshed, and which of its ports is the admin port. Plain API objects in, plain answers out.

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use strait_control_plane::inject::{ADMIN_PORT_NAME, PROXY_CONTAINER};

/// Whether a pod can be port-forwarded to, and if not why, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Running and Ready.
    Ready,
    /// Running, its Ready condition not true.
    RunningNotReady,
    /// Anything else: the phase, or `terminating`.
    NotRunning(String),
}

/// The state of `pod` as the API server reports it.
pub fn pod_state(pod: &Pod) -> PodState {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::NotRunning("terminating".to_owned());
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    if phase != "Running" {
        return PodState::NotRunning(phase.to_owned());
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if ready {
        PodState::Ready
    } else {
        PodState::RunningNotReady
    }
}

fn describe(pod: &Pod) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    match pod_state(pod) {
        PodState::Ready => format!("{name} ready"),
        PodState::RunningNotReady => format!("{name} running, not ready"),
        PodState::NotRunning(phase) => format!("{name} {phase}"),
    }
}

/// The first ready pod by name among `pods` (so repeated runs pick the same one); without
/// one, each pod's state in words (empty when there are no pods).
pub fn choose_ready(pods: &[Pod]) -> Result<&Pod, Vec<String>> {
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    sorted
        .iter()
        .find(|pod| pod_state(pod) == PodState::Ready)
        .copied()
        .ok_or_else(|| sorted.iter().map(|pod| describe(pod)).collect())
}

/// Why a pod is not what a proxy target needs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "pod {pod} is not meshed: it has no {PROXY_CONTAINER} container (containers: {containers}); annotate it strait.dev/inject: enabled and recreate it"
)]
pub struct NotMeshed {
    /// The pod.
    pub pod: String,
    /// Its containers, comma-separated.
    pub containers: String,
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .chain(spec.map(|s| s.containers.iter()).into_iter().flatten())
}

/// The proxy's admin port in `pod`: its `strait-proxy` container (a native sidecar among the
/// init containers, or a plain container) and that container's `strait-admin` port, else
/// `default`.
pub fn proxy_admin_port(pod: &Pod, default: u16) -> Result<u16, NotMeshed> {
    let proxy = all_containers(pod)
        .find(|c| c.name == PROXY_CONTAINER)
        .ok_or_else(|| NotMeshed {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            containers: all_containers(pod)
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    Ok(port_named(std::slice::from_ref(proxy), ADMIN_PORT_NAME).unwrap_or(default))
}

/// The container port called `name` in `pod`, else `default` (the control plane's `admin`).
pub fn named_port_or(pod: &Pod, name: &str, default: u16) -> u16 {
    let containers: Vec<Container> = all_containers(pod).cloned().collect();
    port_named(&containers, name).unwrap_or(default)
}

fn port_named(containers: &[Container], name: &str) -> Option<u16> {
    containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name))
        .and_then(|p| u16::try_from(p.container_port).ok())
}

/// The pods behind a Service's ready endpoints, by name, sorted and without repeats. An
/// endpoint whose `ready` condition is absent counts as ready, as the API defines it.
pub fn ready_endpoint_pods(slices: &[EndpointSlice]) -> Vec<String> {
    let mut pods: Vec<String> = slices
        .iter()
        .flat_map(|slice| slice.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .filter_map(|e| e.target_ref.as_ref())
        .filter(|r| r.kind.as_deref() == Some("Pod"))
        .filter_map(|r| r.name.clone())
        .collect();
    pods.sort();
    pods.dedup();
    pods
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::path::Path;

    fn fixture(path: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/k8s")
            .join(path);
        serde_json::from_str(&std::fs::read_to_string(&path).expect("reading a fixture"))
            .expect("a JSON fixture")
    }

    /// The recorded kube-system pods of a v1.36 kind cluster.
    fn recorded_pods() -> Vec<Pod> {
        serde_json::from_value(
            fixture("core/k8s-openapi-replays-v1-36/extracted/pod-list.response_body.json")
                ["items"]
                .clone(),
        )
        .expect("a PodList")
    }

    fn coredns() -> Vec<Pod> {
        recorded_pods()
            .into_iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("coredns")
            })
            .collect()
    }

    #[test]
    fn a_ready_pod_is_chosen_by_name_and_unready_ones_are_described() {
        let mut pods = coredns();
        assert_eq!(pods.len(), 2, "the recording has two coredns pods");
        let first = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .min()
            .unwrap();
        assert_eq!(choose_ready(&pods).unwrap().metadata.name, Some(first));

        for pod in &mut pods {
            pod.status.as_mut().unwrap().phase = Some("Pending".into());
        }
        let reasons = choose_ready(&pods).unwrap_err();
        assert_eq!(reasons.len(), 2);
        assert!(reasons[0].ends_with(" Pending"), "{reasons:?}");

        let mut unready = coredns();
        for pod in &mut unready {
            for condition in pod.status.as_mut().unwrap().conditions.iter_mut().flatten() {
                if condition.type_ == "Ready" {
                    condition.status = "False".into();
                }
            }
        }
        assert!(choose_ready(&unready).unwrap_err()[0].ends_with("running, not ready"));
        let mut terminating = coredns();
        terminating[0].metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap());
        assert_eq!(
            pod_state(&terminating[0]),
            PodState::NotRunning("terminating".into())
        );
        assert!(choose_ready(&[]).unwrap_err().is_empty());
    }

    #[test]
    fn an_unmeshed_pod_is_refused_with_its_containers_named() {
        let pod = &coredns()[0];
        let error = proxy_admin_port(pod, 4191).unwrap_err();
        assert_eq!(error.containers, "coredns");
        assert!(error.to_string().contains("has no strait-proxy container"));
    }

    #[test]
    fn the_admin_port_comes_from_the_proxy_container_native_or_plain() {
        let mut pod = coredns()[0].clone();
        let proxy: Container = serde_json::from_value(json!({
            "name": "strait-proxy",
            "restartPolicy": "Always",
            "ports": [{"name": "strait-inbound", "containerPort": 4143},
                      {"name": "strait-admin", "containerPort": 5191}],
        }))
        .unwrap();
        pod.spec.as_mut().unwrap().init_containers = Some(vec![proxy.clone()]);
        assert_eq!(proxy_admin_port(&pod, 4191), Ok(5191), "native sidecar");

        let mut plain = coredns()[0].clone();
        let mut without_port = proxy;
        without_port.ports = None;
        plain
            .spec
            .as_mut()
            .unwrap()
            .containers
            .insert(0, without_port);
        assert_eq!(proxy_admin_port(&plain, 4191), Ok(4191), "the default");
    }

    #[test]
    fn named_ports_fall_back_to_the_default() {
        let pod = &coredns()[0];
        // coredns names its ports dns, dns-tcp and metrics (9153).
        assert_eq!(named_port_or(pod, "metrics", 1), 9153);
        assert_eq!(named_port_or(pod, "admin", 9990), 9990);
    }

    #[test]
    fn ready_endpoints_name_their_pods() {
        let slice: EndpointSlice =
            serde_json::from_value(fixture("discovery/k9s/eps.json")).expect("an EndpointSlice");
        let all = ready_endpoint_pods(std::slice::from_ref(&slice));
        assert!(!all.is_empty(), "the recorded slice has ready endpoints");
        let mut unready = slice.clone();
        for endpoint in &mut unready.endpoints {
            endpoint.conditions.get_or_insert_default().ready = Some(false);
        }
        assert!(ready_endpoint_pods(&[unready]).is_empty());
    }
}
