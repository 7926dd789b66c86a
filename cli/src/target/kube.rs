//! Resolving a target through the API server: the client from `--kubeconfig`/`--context`
//! (else `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account), then the object,
//! the pod to reach and its admin port. Built only when a Kubernetes target is given, so
//! `HOST:PORT` targets never read a kubeconfig.

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Selector;
use kube::{Api, Client, Config};
use tokio::sync::OnceCell;

use super::pick::{self, NotMeshed, PodState};
use super::{Endpoint, Kind, Target};

/// How to reach the API server.
#[derive(Clone, Debug, Default)]
pub struct KubeOptions {
    /// `--kubeconfig`: a kubeconfig file instead of `KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: a context of the kubeconfig instead of its current one.
    pub context: Option<String>,
    /// `-n`: the namespace of proxy targets (default: the context's, else `default`).
    pub namespace: Option<String>,
    /// The namespace of control-plane targets.
    pub control_plane_namespace: String,
}

/// What the target is for, which decides its namespace, its default port and whether it
/// must be meshed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A proxy's admin endpoint: the pod must have a `strait-proxy` container.
    Proxy,
    /// The control plane's admin endpoint.
    ControlPlaneAdmin,
}

/// Why a target could not be resolved; each names the object and namespace.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No usable Kubernetes configuration.
    #[error("no Kubernetes configuration for {target} ({source_hint}): {reason}")]
    Config {
        /// The target.
        target: String,
        /// Where the configuration was looked for.
        source_hint: String,
        /// Why it failed.
        reason: String,
    },
    /// The object does not exist.
    #[error("{target}: no {kind} {name} in namespace {namespace}")]
    NotFound {
        /// The target.
        target: String,
        /// `deployment`, `pod`, `service`.
        kind: &'static str,
        /// The name.
        name: String,
        /// The namespace.
        namespace: String,
    },
    /// RBAC refused a read.
    #[error(
        "{target}: the API server refused to {verb} {resource} in namespace {namespace}: {message}"
    )]
    Forbidden {
        /// The target.
        target: String,
        /// `get`, `list`.
        verb: &'static str,
        /// `deployments`, `pods`, ...
        resource: &'static str,
        /// The namespace.
        namespace: String,
        /// The API server's message.
        message: String,
    },
    /// Any other API failure.
    #[error("{target}: reading {resource} in namespace {namespace} failed: {reason}")]
    Api {
        /// The target.
        target: String,
        /// What was read.
        resource: &'static str,
        /// The namespace.
        namespace: String,
        /// Why.
        reason: String,
    },
    /// The object has no pod that can be reached.
    #[error("{target}: {kind} {name} in namespace {namespace} has no ready pod ({detail})")]
    NoReadyPod {
        /// The target.
        target: String,
        /// `deployment` or `service`.
        kind: &'static str,
        /// The name.
        name: String,
        /// The namespace.
        namespace: String,
        /// What was found instead.
        detail: String,
    },
    /// A `pod/NAME` target that is not running.
    #[error("{target}: pod {name} in namespace {namespace} is {state}, not running")]
    NotRunning {
        /// The target.
        target: String,
        /// The pod.
        name: String,
        /// The namespace.
        namespace: String,
        /// Its phase.
        state: String,
    },
    /// The pod has no proxy.
    #[error("{target}: {source}")]
    NotMeshed {
        /// The target.
        target: String,
        /// Which pod and what it has.
        source: NotMeshed,
    },
}

/// Resolves targets, creating the Kubernetes client on first need.
pub struct Resolver {
    options: KubeOptions,
    client: OnceCell<(Client, String)>,
}

impl Resolver {
    /// A resolver with these options; nothing is read yet.
    pub fn new(options: KubeOptions) -> Self {
        Self {
            options,
            client: OnceCell::new(),
        }
    }

    /// Resolves `target` for `role`: an address as it is, a Kubernetes object to a pod and port.
    pub async fn resolve(&self, target: &Target, role: Role) -> Result<Endpoint, ResolveError> {
        let (kind, name, port) = match target {
            Target::Address { host, port } => {
                return Ok(Endpoint::Tcp {
                    host: host.clone(),
                    port: *port,
                });
            }
            Target::Kubernetes { kind, name, port } => (*kind, name.as_str(), *port),
        };
        let shown = target.to_string();
        let (client, default_namespace) = self.client(&shown).await?;
        let namespace = match role {
            Role::Proxy => self
                .options
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.clone()),
            Role::ControlPlaneAdmin => self.options.control_plane_namespace.clone(),
        };
        let lookup = Lookup {
            client: client.clone(),
            target: shown.clone(),
            namespace: namespace.clone(),
        };
        let pod = match kind {
            Kind::Pod => {
                let pod = lookup.get::<Pod>("pods", Kind::Pod, name).await?;
                if let PodState::NotRunning(state) = pick::pod_state(&pod) {
                    return Err(ResolveError::NotRunning {
                        target: shown,
                        name: name.to_owned(),
                        namespace,
                        state,
                    });
                }
                pod
            }
            Kind::Deployment => lookup.deployment_pod(name).await?,
            Kind::Service => lookup.service_pod(name).await?,
        };
        let port = match (port, role) {
            (Some(port), Role::Proxy) => {
                pick::proxy_admin_port(&pod, port).map_err(|source| ResolveError::NotMeshed {
                    target: shown.clone(),
                    source,
                })?;
                port
            }
            (None, Role::Proxy) => {
                pick::proxy_admin_port(&pod, strait_proto::defaults::PROXY_ADMIN_PORT).map_err(
                    |source| ResolveError::NotMeshed {
                        target: shown.clone(),
                        source,
                    },
                )?
            }
            (Some(port), Role::ControlPlaneAdmin) => port,
            (None, Role::ControlPlaneAdmin) => pick::named_port_or(
                &pod,
                "admin",
                strait_proto::defaults::CONTROL_PLANE_ADMIN_PORT,
            ),
        };
        Ok(Endpoint::PortForward {
            pods: Box::new(Api::namespaced(client, &namespace)),
            via: shown,
            namespace,
            pod: pod.metadata.name.unwrap_or_default(),
            port,
        })
    }

    async fn client(&self, target: &str) -> Result<(Client, String), ResolveError> {
        self.client
            .get_or_try_init(|| async {
                let config = self.config().await.map_err(|reason| ResolveError::Config {
                    target: target.to_owned(),
                    source_hint: self.source_hint(),
                    reason,
                })?;
                let namespace = config.default_namespace.clone();
                let client = Client::try_from(config).map_err(|e| ResolveError::Config {
                    target: target.to_owned(),
                    source_hint: self.source_hint(),
                    reason: e.to_string(),
                })?;
                Ok((client, namespace))
            })
            .await
            .cloned()
    }

    async fn config(&self) -> Result<Config, String> {
        let options = KubeConfigOptions {
            context: self.options.context.clone(),
            ..KubeConfigOptions::default()
        };
        match (&self.options.kubeconfig, &self.options.context) {
            (Some(path), _) => {
                let file = Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
                Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| e.to_string())
            }
            (None, Some(_)) => Config::from_kubeconfig(&options)
                .await
                .map_err(|e| e.to_string()),
            (None, None) => Config::infer().await.map_err(|e| e.to_string()),
        }
    }

    fn source_hint(&self) -> String {
        match (&self.options.kubeconfig, &self.options.context) {
            (Some(path), None) => format!("--kubeconfig {}", path.display()),
            (Some(path), Some(context)) => {
                format!("--kubeconfig {} --context {context}", path.display())
            }
            (None, Some(context)) => format!("KUBECONFIG or ~/.kube/config, --context {context}"),
            (None, None) => "KUBECONFIG, ~/.kube/config, or the in-cluster service account".into(),
        }
    }
}

/// Reads in one namespace for one target, turning API errors into [`ResolveError`]s.
struct Lookup {
    client: Client,
    target: String,
    namespace: String,
}

impl Lookup {
    fn api_error(
        &self,
        error: kube::Error,
        verb: &'static str,
        resource: &'static str,
    ) -> ResolveError {
        match error {
            kube::Error::Api(status) if status.code == 403 => ResolveError::Forbidden {
                target: self.target.clone(),
                verb,
                resource,
                namespace: self.namespace.clone(),
                message: status.message.clone(),
            },
            other => ResolveError::Api {
                target: self.target.clone(),
                resource,
                namespace: self.namespace.clone(),
                reason: other.to_string(),
            },
        }
    }

    async fn get<K>(
        &self,
        resource: &'static str,
        kind: Kind,
        name: &str,
    ) -> Result<K, ResolveError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.get_opt(name).await {
            Ok(Some(object)) => Ok(object),
            Ok(None) => Err(ResolveError::NotFound {
                target: self.target.clone(),
                kind: kind.word(),
                name: name.to_owned(),
                namespace: self.namespace.clone(),
            }),
            Err(error) => Err(self.api_error(error, "get", resource)),
        }
    }

    async fn deployment_pod(&self, name: &str) -> Result<Pod, ResolveError> {
        let deployment: Deployment = self.get("deployments", Kind::Deployment, name).await?;
        let selector = deployment
            .spec
            .map(|s| s.selector)
            .and_then(|s| Selector::try_from(s).ok())
            .filter(|s| !s.selects_all())
            .ok_or_else(|| ResolveError::NoReadyPod {
                target: self.target.clone(),
                kind: "deployment",
                name: name.to_owned(),
                namespace: self.namespace.clone(),
                detail: "its selector cannot be read".into(),
            })?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = pods
            .list(&ListParams::default().labels_from(&selector))
            .await
            .map_err(|e| self.api_error(e, "list", "pods"))?;
        pick::choose_ready(&list.items)
            .cloned()
            .map_err(|states| ResolveError::NoReadyPod {
                target: self.target.clone(),
                kind: "deployment",
                name: name.to_owned(),
                namespace: self.namespace.clone(),
                detail: if states.is_empty() {
                    format!("its selector {selector} matches no pod")
                } else {
                    format!("its selector {selector} matches: {}", states.join(", "))
                },
            })
    }

    async fn service_pod(&self, name: &str) -> Result<Pod, ResolveError> {
        let _: Service = self.get("services", Kind::Service, name).await?;
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = slices
            .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
            .await
            .map_err(|e| self.api_error(e, "list", "endpointslices"))?;
        let candidates = pick::ready_endpoint_pods(&list.items);
        let no_ready = |detail: String| ResolveError::NoReadyPod {
            target: self.target.clone(),
            kind: "service",
            name: name.to_owned(),
            namespace: self.namespace.clone(),
            detail,
        };
        if candidates.is_empty() {
            return Err(no_ready(
                "its EndpointSlices list no ready endpoint with a pod".into(),
            ));
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut states = Vec::new();
        // Bounded by the service's ready endpoints; the first running one wins.
        for candidate in &candidates {
            match pods.get_opt(candidate).await {
                Ok(Some(pod)) if pick::pod_state(&pod) == PodState::Ready => return Ok(pod),
                Ok(Some(pod)) => {
                    states.extend(pick::choose_ready(&[pod]).err().into_iter().flatten())
                }
                Ok(None) => states.push(format!("{candidate} gone")),
                Err(error) => return Err(self.api_error(error, "get", "pods")),
            }
        }
        Err(no_ready(format!(
            "its ready endpoints' pods: {}",
            states.join(", ")
        )))
    }
}
