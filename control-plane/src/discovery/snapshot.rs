//! Computes one proxy's snapshot from the model: a pure function of (model, workload).
//!
//! A proxy gets every service it may call (each service port with its authorities, cluster
//! address, routes in precedence order ending in the service's default route, and the
//! backends those routes use with their endpoints and policies), and its own inbound ports
//! with their authorization. The version is a digest of the content, so equal versions mean
//! equal snapshots and an unchanged view is never re-sent.
//!
//! Longer than 500 lines because its unit tests live beside the function they specify
//! (about 400 lines of code).

use std::collections::BTreeMap;

use prost::Message;
use strait_proto::discovery::v1 as pb;

use crate::config::model::{self, Model, ObjectKey, Workload};

/// The Kubernetes cluster DNS domain used for service authorities.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The snapshot for `workload`.
pub fn snapshot_for(model: &Model, workload: &Workload) -> pb::Snapshot {
    assemble(
        model,
        workload_ref(workload),
        identity_workloads(model),
        outbound_services(model, &workload.key.namespace),
        inbound_ports(model, workload),
    )
}

/// The snapshot made of a namespace's `services` ([`outbound_services`]), a workload's
/// `inbound_ports` ([`inbound_ports`]) and owner ([`workload_ref`]), and the model's
/// [`identity_workloads`], versioned. These are all a snapshot depends on besides the
/// mesh-wide defaults, which is what lets `discovery::shared` compute a snapshot once for
/// every workload that shares them.
pub fn assemble(
    model: &Model,
    workload: Option<pb::WorkloadRef>,
    identity_workloads: Vec<pb::IdentityWorkload>,
    services: Vec<pb::OutboundService>,
    inbound_ports: Vec<pb::InboundPort>,
) -> pb::Snapshot {
    let mut snapshot = pb::Snapshot {
        version: String::new(),
        services,
        inbound_ports,
        inbound_defaults: Some(pb::InboundDefaults {
            // The model's enumerations are the API's (config::model).
            mode: model.mesh.inbound_mode as i32,
            authorization: model.mesh.default_authorization as i32,
        }),
        workload,
        identity_workloads,
    };
    snapshot.version = version_of(&snapshot);
    snapshot
}

/// The owner of `workload` as the snapshot names it; `None` when unknown.
pub fn workload_ref(workload: &Workload) -> Option<pb::WorkloadRef> {
    workload.owner.as_ref().map(|owner| pb::WorkloadRef {
        namespace: workload.key.namespace.clone(),
        name: owner.name.clone(),
        kind: owner.kind.clone(),
    })
}

/// Every identity whose workloads all have one owner, with that owner, sorted by identity.
/// An identity with workloads of several owners (a service account shared by two
/// Deployments), or with a workload of unknown owner, is left out: its callers cannot be
/// told apart by what their certificate proves, so their series say `unknown`.
pub fn identity_workloads(model: &Model) -> Vec<pb::IdentityWorkload> {
    let mut owners: BTreeMap<String, Option<Option<pb::WorkloadRef>>> = BTreeMap::new();
    for workload in model.workloads.values() {
        let owner = workload_ref(workload);
        owners
            .entry(workload.identity.to_string())
            .and_modify(|seen| {
                if seen.as_ref() != Some(&owner) {
                    *seen = None;
                }
            })
            .or_insert(Some(owner));
    }
    owners
        .into_iter()
        .filter_map(|(identity, owner)| {
            Some(pb::IdentityWorkload {
                identity,
                workload: Some(owner??),
            })
        })
        .collect()
}

/// A digest of the snapshot's content (its version field excluded).
pub fn version_of(snapshot: &pb::Snapshot) -> String {
    let mut content = snapshot.clone();
    content.version.clear();
    let digest = crate::digest::sha256(&content.encode_to_vec());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn backend_name(service: &ObjectKey, port: u16) -> String {
    format!("{service}:{port}")
}

/// Every service port as seen by a proxy in `namespace`.
pub fn outbound_services(model: &Model, namespace: &str) -> Vec<pb::OutboundService> {
    let mut out = Vec::new();
    for service in model.services.values() {
        for port in &service.ports {
            let key = &service.key;
            let mut authorities = vec![
                format!(
                    "{}.{}.svc.{CLUSTER_DOMAIN}:{}",
                    key.name, key.namespace, port.port
                ),
                format!("{}.{}.svc:{}", key.name, key.namespace, port.port),
                format!("{}.{}:{}", key.name, key.namespace, port.port),
            ];
            if key.namespace == namespace {
                authorities.push(format!("{}:{}", key.name, port.port));
            }
            let rules = model.routes.get(&(key.clone(), port.port));
            let consumer_rules: Vec<&model::RouteRule> = rules
                .into_iter()
                .flatten()
                .filter(|r| r.consumer_namespace.as_deref() == Some(namespace))
                .collect();
            // Consumer routes (GAMMA) replace the producer's for clients in their namespace.
            let rules: Vec<&model::RouteRule> = if consumer_rules.is_empty() {
                rules
                    .into_iter()
                    .flatten()
                    .filter(|r| r.consumer_namespace.is_none())
                    .collect()
            } else {
                consumer_rules
            };
            let mut backends: BTreeMap<String, pb::Backend> = BTreeMap::new();
            let mut routes = Vec::with_capacity(rules.len() + 1);
            for rule in rules {
                for weighted in &rule.backends {
                    add_backend(model, &mut backends, &weighted.service, weighted.port);
                }
                for mirror in &rule.filters.mirrors {
                    add_backend(model, &mut backends, &mirror.service, mirror.port);
                }
                routes.push(route(rule));
            }
            add_backend(model, &mut backends, key, port.port);
            // With routes attached, a request none of them matches gets 404 (GAMMA); the
            // service itself still takes opaque connections.
            let opaque_only = !routes.is_empty();
            routes.push(pb::Route {
                name: "default".into(),
                matches: Vec::new(),
                backends: vec![pb::WeightedBackend {
                    backend: backend_name(key, port.port),
                    weight: 1,
                    ..Default::default()
                }],
                opaque_only,
                ..Default::default()
            });
            out.push(pb::OutboundService {
                name: key.name.clone(),
                namespace: key.namespace.clone(),
                port: port.port.into(),
                authorities,
                addresses: service
                    .cluster_ip
                    .map(|ip| std::net::SocketAddr::new(ip, port.port).to_string())
                    .into_iter()
                    .collect(),
                protocol: port.protocol as i32,
                routes,
                backends: backends.into_values().collect(),
            });
        }
    }
    let direct = direct_endpoints(model, &out);
    out.extend(direct);
    out
}

/// One entry per endpoint address no service claims, so a connection to a pod's own address
/// (a headless service, a StatefulSet member, a client that resolved the pod) is still mTLS to
/// that pod's proxy with its identity verified. Such a call goes to that endpoint only: the
/// service's routes and splits are for calls to the service. Where several services list the
/// same address, an endpoint with an identity wins over one without, whatever the services'
/// names: a meshed pod's address is never a plaintext destination. A meshed endpoint's
/// workload gets an entry on each of its addresses, so a call to a dual-stack pod's other
/// family is mTLS with its identity too, whichever family its Services list.
fn direct_endpoints(model: &Model, services: &[pb::OutboundService]) -> Vec<pb::OutboundService> {
    let mut claimed: std::collections::BTreeSet<String> = services
        .iter()
        .flat_map(|s| s.addresses.iter().cloned())
        .collect();
    let mut out = Vec::new();
    for meshed in [true, false] {
        for service in model.services.values() {
            for port in &service.ports {
                for endpoint in &port.endpoints {
                    if endpoint.identity.is_some() != meshed {
                        continue;
                    }
                    for at in workload_addresses(model, service, endpoint) {
                        if let Some(entry) = direct_entry(model, service, port, &at, &mut claimed) {
                            out.push(entry);
                        }
                    }
                }
            }
        }
    }
    out
}

/// `endpoint`, then the same endpoint on each other address of the meshed workload it is.
fn workload_addresses(
    model: &Model,
    service: &model::Service,
    endpoint: &model::Endpoint,
) -> Vec<model::Endpoint> {
    let workload = endpoint
        .identity
        .as_ref()
        .and_then(|_| {
            model
                .workloads
                .get(&ObjectKey::new(&service.key.namespace, &endpoint.workload))
        })
        .filter(|w| w.has_address(endpoint.addr.ip()));
    let mut out = vec![endpoint.clone()];
    for ip in workload.into_iter().flat_map(Workload::addresses) {
        if ip != endpoint.addr.ip() {
            out.push(model::Endpoint {
                addr: std::net::SocketAddr::new(ip, endpoint.addr.port()),
                ..endpoint.clone()
            });
        }
    }
    out
}

/// The entry of `endpoint`'s address, unless another entry already claims it.
fn direct_entry(
    model: &Model,
    service: &model::Service,
    port: &model::ServicePort,
    endpoint: &model::Endpoint,
    claimed: &mut std::collections::BTreeSet<String>,
) -> Option<pb::OutboundService> {
    let address = endpoint.addr.to_string();
    if !claimed.insert(address.clone()) {
        return None;
    }
    let key = &service.key;
    let name = format!("{}/{}", backend_name(key, port.port), endpoint.workload);
    Some(pb::OutboundService {
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        port: port.port.into(),
        authorities: Vec::new(),
        addresses: vec![address],
        protocol: port.protocol as i32,
        routes: vec![pb::Route {
            name: "direct".into(),
            backends: vec![pb::WeightedBackend {
                backend: name.clone(),
                weight: 1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        backends: vec![pb::Backend {
            name,
            endpoints: vec![endpoint_message(model, &key.namespace, endpoint)],
            policy: model.backend_policy(key, port.port).map(backend_policy),
        }],
    })
}

/// The endpoint `e` of a service in `namespace`, with its owner when it is a meshed workload
/// of the model that has one.
fn endpoint_message(model: &Model, namespace: &str, e: &model::Endpoint) -> pb::Endpoint {
    let owner = e.identity.as_ref().and_then(|_| {
        model
            .workloads
            .get(&ObjectKey::new(namespace, &e.workload))
            .and_then(workload_ref)
    });
    pb::Endpoint {
        address: e.addr.to_string(),
        identity: e
            .identity
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        proxy_port: e.proxy_port.map(u32::from).unwrap_or(0),
        workload: e.workload.clone(),
        owner,
    }
}

fn add_backend(
    model: &Model,
    backends: &mut BTreeMap<String, pb::Backend>,
    service: &ObjectKey,
    port: u16,
) {
    let name = backend_name(service, port);
    if backends.contains_key(&name) {
        return;
    }
    let endpoints = model
        .services
        .get(service)
        .and_then(|s| s.port(port))
        .map(|p| {
            p.endpoints
                .iter()
                .map(|e| endpoint_message(model, &service.namespace, e))
                .collect()
        })
        .unwrap_or_default();
    let policy = model.backend_policy(service, port).map(backend_policy);
    backends.insert(
        name.clone(),
        pb::Backend {
            name,
            endpoints,
            policy,
        },
    );
}

fn backend_policy(policy: &model::BackendPolicy) -> pb::BackendPolicy {
    pb::BackendPolicy {
        connect_timeout: policy.connect_timeout.map(Into::into),
        idle_timeout: policy.idle_timeout.map(Into::into),
        circuit_breaker: policy
            .circuit_breaker
            .as_ref()
            .map(|cb| pb::CircuitBreaker {
                consecutive_failures: cb.consecutive_failures,
                base_ejection: Some(cb.base_ejection.into()),
                max_ejection: Some(cb.max_ejection.into()),
                max_ejected_percent: cb.max_ejected_percent,
            }),
        max_pending_requests: policy.max_pending_requests.unwrap_or(0),
        retry_budget: policy.retry_budget.as_ref().map(|b| pb::RetryBudget {
            ratio: b.ratio,
            min_retries_per_second: b.min_per_second,
            ttl: Some(b.interval.into()),
        }),
        load_balancer: policy.load_balancer.unwrap_or_default() as i32,
        retry_backoff_base: policy.retry_backoff_base.map(Into::into),
        retry_backoff_max: policy.retry_backoff_max.map(Into::into),
    }
}

fn route(rule: &model::RouteRule) -> pb::Route {
    pb::Route {
        name: rule.name.clone(),
        matches: vec![route_match(&rule.matcher)],
        backends: rule
            .backends
            .iter()
            .map(|b| pb::WeightedBackend {
                backend: backend_name(&b.service, b.port),
                weight: b.weight,
                request_headers: b
                    .filters
                    .request_headers
                    .as_ref()
                    .map(super::filters::header_modifier),
                response_headers: b
                    .filters
                    .response_headers
                    .as_ref()
                    .map(super::filters::header_modifier),
            })
            .chain(
                (rule.unresolved_weight > 0 || rule.backends.is_empty()).then(|| {
                    // A rule none of whose references resolve answers 500 whatever their weights.
                    // (A redirect or refused rule answers before any pick: this share is
                    // never reached for those.)
                    pb::WeightedBackend {
                        backend: String::new(),
                        weight: rule
                            .unresolved_weight
                            .max(u32::from(rule.backends.is_empty())),
                        request_headers: None,
                        response_headers: None,
                    }
                }),
            )
            .collect(),
        timeouts: Some(pb::Timeouts {
            request: rule.timeouts.request.map(Into::into),
            backend_request: rule.timeouts.backend_request.map(Into::into),
        }),
        retry: rule.retry.as_ref().map(|r| pb::RetryPolicy {
            max_retries: r.max_retries,
            http_statuses: r.http_statuses.iter().map(|s| u32::from(*s)).collect(),
            grpc_codes: r.grpc_codes.clone(),
            backoff_base: r.backoff.map(Into::into),
        }),
        sticky_header: rule.sticky_header.clone().unwrap_or_default(),
        filters: super::filters::route_filters(&rule.filters, backend_name),
        opaque_only: false,
    }
}

/// A model match as the snapshot's match.
pub fn route_match(m: &model::RouteMatch) -> pb::RouteMatch {
    let value = |v: &model::ValueMatch| match v {
        model::ValueMatch::Exact(e) => pb::header_match::Value::Exact(e.clone()),
        model::ValueMatch::Regex(r) => pb::header_match::Value::Regex(r.clone()),
    };
    pb::RouteMatch {
        path: m.path.as_ref().map(|p| pb::PathMatch {
            kind: Some(match p {
                model::PathMatch::Exact(e) => pb::path_match::Kind::Exact(e.clone()),
                model::PathMatch::Prefix(e) => pb::path_match::Kind::Prefix(e.clone()),
                model::PathMatch::Regex(e) => pb::path_match::Kind::Regex(e.clone()),
            }),
        }),
        method: m.method.clone().unwrap_or_default(),
        headers: m
            .headers
            .iter()
            .map(|(name, v)| pb::HeaderMatch {
                name: name.clone(),
                value: Some(value(v)),
            })
            .collect(),
        grpc: None,
        query_params: m
            .query
            .iter()
            .map(|(name, v)| pb::QueryParamMatch {
                name: name.clone(),
                value: Some(match v {
                    model::ValueMatch::Exact(e) => pb::query_param_match::Value::Exact(e.clone()),
                    model::ValueMatch::Regex(r) => pb::query_param_match::Value::Regex(r.clone()),
                }),
            })
            .collect(),
    }
}

/// The workload's own ports, with who may call them.
/// `workload`'s own inbound ports with their authorization.
pub fn inbound_ports(model: &Model, workload: &Workload) -> Vec<pb::InboundPort> {
    let mut ports: BTreeMap<u16, pb::InboundPort> = BTreeMap::new();
    for service in model.services.values() {
        if service.key.namespace != workload.key.namespace {
            continue;
        }
        for port in &service.ports {
            let Some(endpoint) = port
                .endpoints
                .iter()
                .find(|e| e.workload == workload.key.name && workload.has_address(e.addr.ip()))
            else {
                continue;
            };
            let target = endpoint.addr.port();
            let entry = ports.entry(target).or_insert_with(|| pb::InboundPort {
                port: target.into(),
                protocol: port.protocol as i32,
                mode: model.mesh.inbound_mode as i32,
                authorizations: Vec::new(),
                services: Vec::new(),
            });
            entry.services.push(service.key.to_string());
            for policy in &model.authorization_policies {
                if policy.service == service.key && policy.port.is_none_or(|p| p == port.port) {
                    entry.authorizations.push(pb::AuthorizationRule {
                        policy: policy.key.to_string(),
                        routes: policy.routes.iter().map(route_match).collect(),
                        principals: policy.principals.iter().map(principal).collect(),
                    });
                }
            }
        }
    }
    ports.into_values().collect()
}

fn principal(p: &model::Principal) -> pb::Principal {
    use pb::principal::Kind;
    pb::Principal {
        kind: Some(match p {
            model::Principal::Identity(id) => Kind::Identity(id.to_string()),
            model::Principal::Namespace(ns) => Kind::Namespace(ns.clone()),
            model::Principal::TrustDomain(td) => Kind::TrustDomain(td.clone()),
            model::Principal::Authenticated => Kind::AnyAuthenticated(true),
            model::Principal::Unauthenticated => Kind::Unauthenticated(true),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(namespace: &str, name: &str, endpoint: model::Endpoint) -> model::Service {
        model::Service {
            key: ObjectKey::new(namespace, name),
            ports: vec![model::ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: model::Protocol::Detect,
                endpoints: vec![endpoint],
            }],
            cluster_ip: None,
        }
    }

    #[test]
    fn a_pods_address_is_reached_with_its_identity_whichever_service_sorts_first() {
        let meshed = model::Endpoint {
            addr: "10.0.0.5:8080".parse().unwrap(),
            identity: Some("spiffe://cluster.local/ns/demo/sa/web".parse().unwrap()),
            proxy_port: Some(4143),
            workload: "web-1".into(),
        };
        let plain = model::Endpoint {
            identity: None,
            proxy_port: None,
            workload: "10.0.0.5".into(),
            ..meshed.clone()
        };
        let mut model = Model::default();
        // `aaa` sorts before `demo`: without the preference its plaintext entry would win.
        for service in [
            service("aaa", "grab", plain),
            service("demo", "web", meshed),
        ] {
            model.services.insert(service.key.clone(), service);
        }
        let services = outbound_services(&model, "demo");
        let direct: Vec<&pb::OutboundService> = services
            .iter()
            .filter(|s| s.addresses == ["10.0.0.5:8080"])
            .collect();
        assert_eq!(direct.len(), 1);
        let endpoint = &direct[0].backends[0].endpoints[0];
        assert_eq!(endpoint.identity, "spiffe://cluster.local/ns/demo/sa/web");
        assert_eq!(endpoint.proxy_port, 4143);
    }

    /// `web-1`, primary IPv4 and other address IPv6, behind Service `demo/web` whose only
    /// endpoint is on `endpoint_ip` (as an IPv6-only Service of a dual-stack pod has).
    fn dual_stack_model(endpoint_ip: &str) -> Model {
        let web = Workload {
            key: ObjectKey::new("demo", "web-1"),
            identity: "spiffe://cluster.local/ns/demo/sa/web".parse().unwrap(),
            address: "10.0.0.5".parse().unwrap(),
            other_addresses: vec!["fd00::5".parse().unwrap()],
            labels: BTreeMap::new(),
            ports: BTreeMap::new(),
            proxy_inbound_port: 4143,
            proxy_admin_port: None,
            proxy_outbound_port: None,
            token_sha256: None,
            owner: None,
        };
        let endpoint = model::Endpoint {
            addr: std::net::SocketAddr::new(endpoint_ip.parse().unwrap(), 8080),
            identity: Some(web.identity.clone()),
            proxy_port: Some(4143),
            workload: "web-1".into(),
        };
        let mut model = Model::default();
        let service = service("demo", "web", endpoint);
        model.services.insert(service.key.clone(), service);
        model.workloads.insert(web.key.clone(), web);
        model
    }

    #[test]
    fn every_address_of_a_meshed_workload_is_reached_with_its_identity() {
        for listed in ["10.0.0.5", "fd00::5"] {
            let model = dual_stack_model(listed);
            let services = outbound_services(&model, "demo");
            for address in ["10.0.0.5:8080", "[fd00::5]:8080"] {
                let direct: Vec<&pb::OutboundService> = services
                    .iter()
                    .filter(|s| s.addresses == [address])
                    .collect();
                assert_eq!(direct.len(), 1, "{address} when {listed} is listed");
                let endpoint = &direct[0].backends[0].endpoints[0];
                assert_eq!(endpoint.address, address);
                assert_eq!(endpoint.identity, "spiffe://cluster.local/ns/demo/sa/web");
                assert_eq!(endpoint.proxy_port, 4143);
            }
        }
    }

    #[test]
    fn a_workload_serves_the_ports_its_services_list_on_any_of_its_addresses() {
        for listed in ["10.0.0.5", "fd00::5"] {
            let model = dual_stack_model(listed);
            let web = &model.workloads[&ObjectKey::new("demo", "web-1")];
            let ports: Vec<u32> = inbound_ports(&model, web).iter().map(|p| p.port).collect();
            assert_eq!(ports, [8080], "{listed}");
        }
    }

    #[test]
    fn a_plaintext_endpoint_gets_no_entries_beyond_its_own_address() {
        let mut model = dual_stack_model("10.0.0.5");
        let service = model.services.values_mut().next().unwrap();
        let endpoint = &mut service.ports[0].endpoints[0];
        endpoint.identity = None;
        endpoint.proxy_port = None;
        let services = outbound_services(&model, "demo");
        assert!(services.iter().any(|s| s.addresses == ["10.0.0.5:8080"]));
        assert!(!services.iter().any(|s| s.addresses == ["[fd00::5]:8080"]));
    }

    fn owned(name: &str, account: &str, owner: Option<&str>) -> Workload {
        let mut model = dual_stack_model("10.0.0.5");
        let mut w = model.workloads.pop_first().unwrap().1;
        w.key = ObjectKey::new("demo", name);
        w.identity = format!("spiffe://cluster.local/ns/demo/sa/{account}")
            .parse()
            .unwrap();
        w.owner = owner.map(|o| model::Owner {
            kind: "Deployment".into(),
            name: o.into(),
        });
        w
    }

    #[test]
    fn an_identity_names_a_workload_only_when_all_its_workloads_share_one_owner() {
        let mut model = Model::default();
        for w in [
            owned("web-a", "web", Some("web")),
            owned("web-b", "web", Some("web")),
            owned("api-a", "shared", Some("api")),
            owned("jobs-a", "shared", Some("jobs")),
            owned("bare", "bare", None),
            owned("half-a", "half", Some("half")),
            owned("half-b", "half", None),
        ] {
            model.workloads.insert(w.key.clone(), w);
        }
        let listed: Vec<(String, String)> = identity_workloads(&model)
            .into_iter()
            .map(|i| (i.identity, i.workload.unwrap().name))
            .collect();
        assert_eq!(
            listed,
            [(
                "spiffe://cluster.local/ns/demo/sa/web".to_owned(),
                "web".to_owned()
            )]
        );
    }

    #[test]
    fn an_endpoint_carries_its_meshed_workloads_owner() {
        let mut model = dual_stack_model("10.0.0.5");
        model.workloads.values_mut().next().unwrap().owner = Some(model::Owner {
            kind: "StatefulSet".into(),
            name: "web".into(),
        });
        let services = outbound_services(&model, "demo");
        let web = services.iter().find(|s| s.name == "web").unwrap();
        let owner = web.backends[0].endpoints[0].owner.clone().unwrap();
        assert_eq!(
            (
                owner.namespace.as_str(),
                owner.name.as_str(),
                owner.kind.as_str()
            ),
            ("demo", "web", "StatefulSet")
        );
    }
}
