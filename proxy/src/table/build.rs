//! Compiles a snapshot into a [`Table`], applying the documented defaults to every policy
//! the snapshot leaves unset, and carrying over state from the previous table.
//!
//! Longer than 500 lines because its unit tests live beside the compilation they specify
//! (about 440 lines of code).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strait_identity::SpiffeId;
use strait_proto::defaults;
use strait_proto::discovery::v1 as pb;

use super::backend::{Backend, BackendSettings, BackendState, LoadBalancer};
use super::endpoint::Endpoint;
use super::{
    EndpointSettings, Mirror, Route, Service, SetAside, SetAsideKind, Table, TableError, Timeouts,
};
use crate::authz::{DefaultAuthorization, Rule};
use crate::connect::Dest;
use crate::detect::Protocol;
use crate::filters::{BackendFilters, RouteFilters};
use crate::flags::InboundMode;
use crate::resilience::breaker::BreakerPolicy;
use crate::resilience::budget::BudgetPolicy;
use crate::resilience::retry::RetryPolicy;
use crate::route::Matcher;
use crate::telemetry::http::{RequestLabels, RequestMetrics};
use crate::telemetry::workload::WorkloadLabel;

/// What makes two endpoints the same across snapshots: where they are and how they are
/// connected to. A policy change that alters the latter gets fresh pools.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    dest: Dest,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

fn service_error(service: &str, field: &str, reason: impl std::fmt::Display) -> TableError {
    TableError::Service {
        service: service.to_owned(),
        field: field.to_owned(),
        reason: reason.to_string(),
    }
}

fn duration(d: &Option<pbjson_types::Duration>) -> Option<Duration> {
    d.and_then(|d| Duration::try_from(d).ok())
}

fn inbound_mode(mode: i32) -> InboundMode {
    match pb::InboundMode::try_from(mode) {
        Ok(pb::InboundMode::Strict) => InboundMode::Strict,
        // Unknown values (a newer control plane) fall back to the first-install default.
        _ => InboundMode::Permissive,
    }
}

/// The protocol a snapshot declares: `Some(None)` for detect, `None` for a value this proxy
/// does not know.
fn declared_protocol(value: i32) -> Option<Option<Protocol>> {
    match pb::Protocol::try_from(value).ok()? {
        pb::Protocol::Detect => Some(None),
        pb::Protocol::Http1 => Some(Some(Protocol::Http1)),
        pb::Protocol::Http2 => Some(Some(Protocol::Http2)),
        pb::Protocol::Opaque => Some(Some(Protocol::Opaque)),
    }
}

/// Compiles `snapshot`, reusing the endpoints and backend state of `previous` that remain.
///
/// An entry that cannot be built is set aside ([`Table::set_aside`]) and the rest applies:
/// a route alone when only the route is wrong, else its whole service; an authorization rule
/// is replaced by one admitting nobody (see [`Rule::admitting_nobody`]), so it fails closed.
pub fn build(snapshot: pb::Snapshot, previous: &Table, settings: &EndpointSettings) -> Table {
    let mut table = Table::empty();
    table.configured = true;
    table.inbound_default_mode = snapshot
        .inbound_defaults
        .as_ref()
        .map(|d| inbound_mode(d.mode));
    table.default_authorization = snapshot
        .inbound_defaults
        .as_ref()
        .map(|d| DefaultAuthorization::from_snapshot(d.authorization))
        .unwrap_or_default();
    table.own_workload = WorkloadLabel::of(snapshot.workload.as_ref());
    table.identity_workloads = snapshot
        .identity_workloads
        .iter()
        .map(|i| (i.identity.clone(), WorkloadLabel::of(i.workload.as_ref())))
        .collect();
    for port in &snapshot.inbound_ports {
        let Ok(number) = u16::try_from(port.port) else {
            let error = TableError::Inbound {
                port: port.port,
                reason: "not a port number".into(),
            };
            table.set_aside.push(SetAside {
                kind: SetAsideKind::InboundPort,
                service: format!("inbound port {}", port.port),
                entry: String::new(),
                reason: error.to_string(),
            });
            continue;
        };
        table.inbound_modes.insert(number, inbound_mode(port.mode));
        // A protocol this proxy does not know (a newer control plane) is read as "detect":
        // detection decides, and nothing is relayed unseen.
        let protocol = declared_protocol(port.protocol).unwrap_or(None);
        table.inbound_protocols.insert(number, protocol);
        let mut rules = Vec::with_capacity(port.authorizations.len());
        for rule in &port.authorizations {
            rules.push(Rule::compile(rule).unwrap_or_else(|error| {
                table.set_aside.push(SetAside {
                    kind: SetAsideKind::Authorization,
                    service: format!("inbound port {number}"),
                    entry: rule.policy.clone(),
                    reason: error.to_string(),
                });
                Rule::admitting_nobody(&rule.policy)
            }));
        }
        if !rules.is_empty() {
            table.inbound_rules.insert(number, rules);
        }
        let mut services = port.services.clone();
        services.sort();
        services.dedup();
        table.inbound_services.insert(number, services);
    }
    for service in &snapshot.services {
        let name = service_name(service);
        let compiled = match compile_service(&mut table, &name, service, previous, settings) {
            Ok(compiled) => Arc::new(compiled),
            Err(error) => {
                table.set_aside.push(SetAside {
                    kind: SetAsideKind::Service,
                    service: name,
                    entry: String::new(),
                    reason: error.to_string(),
                });
                continue;
            }
        };
        for authority in &service.authorities {
            let key = super::normalize_authority(authority).into_owned();
            table.by_authority.insert(key, compiled.clone());
        }
        for address in &service.addresses {
            // Checked by `compile_service`.
            if let Ok(addr) = address.parse::<SocketAddr>() {
                table.by_addr.insert(addr, compiled.clone());
            }
        }
    }
    table.snapshot = Arc::new(snapshot);
    table
}

/// `namespace/name:port`, how services are named in errors, logs and metrics.
fn service_name(service: &pb::OutboundService) -> String {
    format!("{}/{}:{}", service.namespace, service.name, service.port)
}

/// Compiles a service; a route that cannot be built is set aside on its own, anything else
/// wrong fails the whole service.
fn compile_service(
    table: &mut Table,
    name: &str,
    service: &pb::OutboundService,
    previous: &Table,
    settings: &EndpointSettings,
) -> Result<Service, TableError> {
    let mut backends = HashMap::new();
    for backend in &service.backends {
        let compiled = compile_backend(table, name, backend, previous, settings)?;
        backends.insert(backend.name.clone(), Arc::new(compiled));
    }
    for address in &service.addresses {
        address
            .parse::<SocketAddr>()
            .map_err(|e| service_error(name, "addresses", format!("{address:?}: {e}")))?;
    }
    let protocol = declared_protocol(service.protocol).ok_or_else(|| {
        service_error(
            name,
            "protocol",
            format!("unknown protocol {}", service.protocol),
        )
    })?;
    let mut routes = Vec::with_capacity(service.routes.len());
    for (index, route) in service.routes.iter().enumerate() {
        let port = u16::try_from(service.port).unwrap_or_default();
        match compile_route(
            name,
            index,
            route,
            &backends,
            settings,
            port,
            &table.own_workload,
        ) {
            Ok(compiled) => routes.push(compiled),
            Err(error) => table.set_aside.push(SetAside {
                kind: SetAsideKind::Route,
                service: name.to_owned(),
                entry: route.name.clone(),
                reason: error.to_string(),
            }),
        }
    }
    Ok(Service {
        name: name.to_owned(),
        workload: WorkloadLabel::common(
            service
                .backends
                .iter()
                .flat_map(|b| &b.endpoints)
                .map(|e| e.owner.as_ref()),
        ),
        protocol,
        routes,
    })
}

fn compile_route(
    service: &str,
    index: usize,
    route: &pb::Route,
    backends: &HashMap<String, Arc<Backend>>,
    settings: &EndpointSettings,
    service_port: u16,
    own_workload: &WorkloadLabel,
) -> Result<Route, TableError> {
    let field = format!("routes[{index}]");
    let matchers = route
        .matches
        .iter()
        .map(Matcher::compile)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| service_error(service, &format!("{field}.matches"), e))?;
    let mut route_backends = Vec::with_capacity(route.backends.len());
    // Indexed like `route_backends`: the unresolved share (an empty name) is no backend.
    let mut backend_filters = Vec::new();
    let mut unresolved_weight: u32 = 0;
    for (b, weighted) in route.backends.iter().enumerate() {
        if weighted.backend.is_empty() {
            unresolved_weight = unresolved_weight.saturating_add(weighted.weight);
            continue;
        }
        let at = format!("{field}.backends[{b}]");
        if let Some(filters) =
            BackendFilters::compile(weighted, &at).map_err(|e| service_error(service, &at, e))?
        {
            let position = route_backends.len();
            backend_filters.resize_with(position + 1, || None);
            backend_filters[position] = Some(filters);
        }
        let backend = backends.get(&weighted.backend).ok_or_else(|| {
            service_error(
                service,
                &format!("{field}.backends"),
                format!("unknown backend {:?}", weighted.backend),
            )
        })?;
        route_backends.push((backend.clone(), weighted.weight));
    }
    let sticky_header = match route.sticky_header.as_str() {
        "" => None,
        header => Some(
            http::HeaderName::from_bytes(header.as_bytes()).map_err(|e| {
                service_error(
                    service,
                    &format!("{field}.stickyHeader"),
                    format!("{header:?}: {e}"),
                )
            })?,
        ),
    };
    let timeouts = route
        .timeouts
        .as_ref()
        .map(|t| Timeouts {
            request: duration(&t.request).filter(|d| !d.is_zero()),
            backend_request: duration(&t.backend_request).filter(|d| !d.is_zero()),
        })
        .unwrap_or_default();
    let (retry, backoff_base) = match &route.retry {
        Some(r) => (
            RetryPolicy {
                max_retries: r.max_retries,
                http_statuses: r
                    .http_statuses
                    .iter()
                    .filter_map(|s| u16::try_from(*s).ok())
                    .collect(),
                grpc_codes: r.grpc_codes.clone(),
            },
            duration(&r.backoff_base),
        ),
        None => (RetryPolicy::default(), None),
    };
    let (filters, mirrors) = match &route.filters {
        None => (None, Vec::new()),
        Some(f) => {
            let at = format!("{field}.filters");
            let compiled = RouteFilters::compile(f, &at, service_port)
                .map_err(|e| service_error(service, &at, e))?;
            let mirrors = f
                .mirrors
                .iter()
                .map(|m| {
                    let backend = backends.get(&m.backend).ok_or_else(|| {
                        service_error(
                            service,
                            &at,
                            format!("unknown mirror backend {:?}", m.backend),
                        )
                    })?;
                    let denominator = if m.denominator == 0 {
                        100
                    } else {
                        m.denominator
                    };
                    Ok(Mirror {
                        backend: backend.clone(),
                        numerator: m.numerator.min(denominator),
                        denominator,
                    })
                })
                .collect::<Result<Vec<_>, TableError>>()?;
            (Some(Box::new(compiled)), mirrors)
        }
    };
    let metrics = route_backends
        .iter()
        .map(|(backend, _)| {
            RequestMetrics::new(&RequestLabels {
                direction: "outbound",
                service: service.to_owned(),
                route: route.name.clone(),
                backend: backend.name.clone(),
                peer_identity: backend.identity.clone(),
                tls: settings.mtls && !backend.identity.is_empty(),
                src_workload: own_workload.clone(),
                dst_workload: backend.workload.clone(),
            })
        })
        .collect();
    Ok(Route {
        name: route.name.clone(),
        matchers,
        weights: route_backends
            .iter()
            .map(|(_, w)| *w)
            .chain((unresolved_weight > 0).then_some(unresolved_weight))
            .collect(),
        backends: route_backends,
        opaque_only: route.opaque_only,
        metrics,
        sticky_header,
        timeouts,
        retry,
        backoff_base,
        filters,
        backend_filters,
        mirrors,
    })
}

/// The backend policy with defaults for everything unset.
pub fn backend_settings(policy: Option<&pb::BackendPolicy>) -> BackendSettings {
    let mut settings = BackendSettings::default();
    let Some(policy) = policy else {
        return settings;
    };
    if let Some(cb) = &policy.circuit_breaker {
        let defaults = BreakerPolicy::default();
        settings.breaker = BreakerPolicy {
            consecutive_failures: if cb.consecutive_failures == 0 {
                defaults.consecutive_failures
            } else {
                cb.consecutive_failures
            },
            base_ejection: duration(&cb.base_ejection).unwrap_or(defaults.base_ejection),
            max_ejection: duration(&cb.max_ejection).unwrap_or(defaults.max_ejection),
            max_ejected_percent: cb.max_ejected_percent.min(100),
        };
    }
    if policy.max_pending_requests > 0 {
        settings.max_pending = policy.max_pending_requests;
    }
    if let Some(budget) = &policy.retry_budget {
        settings.budget = BudgetPolicy {
            ratio: budget.ratio.clamp(0.0, 10.0),
            min_per_second: budget.min_retries_per_second,
            window: duration(&budget.ttl)
                .filter(|d| !d.is_zero())
                .unwrap_or(defaults::RETRY_BUDGET_INTERVAL),
        };
    }
    settings.load_balancer = match pb::LoadBalancer::try_from(policy.load_balancer) {
        Ok(pb::LoadBalancer::RoundRobin) => LoadBalancer::RoundRobin,
        _ => LoadBalancer::PeakEwma,
    };
    if let Some(base) = duration(&policy.retry_backoff_base) {
        settings.backoff_base = base;
    }
    if let Some(max) = duration(&policy.retry_backoff_max) {
        settings.backoff_max = max;
    }
    settings
}

fn compile_backend(
    table: &mut Table,
    service: &str,
    backend: &pb::Backend,
    previous: &Table,
    settings: &EndpointSettings,
) -> Result<Backend, TableError> {
    let backend_settings = backend_settings(backend.policy.as_ref());
    let connect_timeout = backend
        .policy
        .as_ref()
        .and_then(|p| duration(&p.connect_timeout))
        .filter(|d| !d.is_zero())
        .unwrap_or(settings.connect_timeout);
    let idle_timeout = backend
        .policy
        .as_ref()
        .and_then(|p| duration(&p.idle_timeout))
        .filter(|d| !d.is_zero())
        .unwrap_or(settings.idle_timeout);
    let mut endpoints = Vec::with_capacity(backend.endpoints.len());
    let mut identities = Vec::new();
    for (index, endpoint) in backend.endpoints.iter().enumerate() {
        let field = format!("backends[{:?}].endpoints[{index}]", backend.name);
        let addr: SocketAddr = endpoint.address.parse().map_err(|e| {
            service_error(
                service,
                &format!("{field}.address"),
                format!("{:?}: {e}", endpoint.address),
            )
        })?;
        let identity = match endpoint.identity.as_str() {
            "" => None,
            id => Some(
                id.parse::<SpiffeId>()
                    .map_err(|e| service_error(service, &format!("{field}.identity"), e))?,
            ),
        };
        identities.push(endpoint.identity.clone());
        let dest = if endpoint.proxy_port == 0 {
            Dest::Direct(addr)
        } else {
            let proxy_port = u16::try_from(endpoint.proxy_port).map_err(|_| {
                service_error(
                    service,
                    &format!("{field}.proxyPort"),
                    format!("{} is not a port", endpoint.proxy_port),
                )
            })?;
            Dest::Mesh {
                proxy: SocketAddr::new(addr.ip(), proxy_port),
                port: addr.port(),
                identity,
            }
        };
        let key = EndpointKey {
            dest: dest.clone(),
            connect_timeout,
            idle_timeout,
        };
        let shared = table
            .endpoints
            .get(&key)
            .or_else(|| previous.endpoints.get(&key))
            .cloned()
            .unwrap_or_else(|| {
                Endpoint::new(
                    dest,
                    addr,
                    endpoint.workload.clone(),
                    settings.connector.with_connect_timeout(connect_timeout),
                    idle_timeout,
                    settings.heads,
                )
            });
        table.endpoints.insert(key, shared.clone());
        endpoints.push(shared);
    }
    identities.dedup();
    let identity = match identities.as_slice() {
        [one] => one.clone(),
        _ => String::new(),
    };
    let state = match table
        .backend_states
        .get(&backend.name)
        .or_else(|| previous.backend_states.get(&backend.name))
    {
        Some((kept, state)) if *kept == backend_settings => state.clone(),
        _ => Arc::new(BackendState::new(&backend.name, &backend_settings)),
    };
    table.backend_states.insert(
        backend.name.clone(),
        (backend_settings.clone(), state.clone()),
    );
    Ok(Backend {
        name: backend.name.clone(),
        endpoints,
        settings: backend_settings,
        identity,
        workload: WorkloadLabel::common(backend.endpoints.iter().map(|e| e.owner.as_ref())),
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::Connector;
    use crate::table::Pick;

    fn settings() -> EndpointSettings {
        EndpointSettings {
            connector: Connector::new(Duration::from_secs(1), None),
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(1),
            mtls: false,
            heads: crate::head_limits::HeadLimits {
                max_bytes: 65_536,
                max_fields: 100,
            },
        }
    }

    fn snapshot(endpoints: &[&str]) -> pb::Snapshot {
        pb::Snapshot {
            version: "1".into(),
            services: vec![pb::OutboundService {
                name: "web".into(),
                namespace: "demo".into(),
                port: 80,
                authorities: vec!["web.demo.svc.cluster.local:80".into(), "Web.Demo".into()],
                addresses: vec!["10.0.0.1:80".into()],
                routes: vec![pb::Route {
                    name: "default".into(),
                    backends: vec![pb::WeightedBackend {
                        backend: "demo/web:80".into(),
                        weight: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                backends: vec![pb::Backend {
                    name: "demo/web:80".into(),
                    endpoints: endpoints
                        .iter()
                        .map(|a| pb::Endpoint {
                            address: (*a).into(),
                            proxy_port: 4143,
                            identity: "spiffe://cluster.local/ns/demo/sa/web".into(),
                            workload: "web-1".into(),
                            owner: None,
                        })
                        .collect(),
                    policy: None,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn endpoint(table: &Table, addr: &str) -> Option<Arc<Endpoint>> {
        let service = table.service_for_authority("web.demo").unwrap().clone();
        let backend = service.routes[0].backends[0].0.clone();
        backend
            .endpoints
            .iter()
            .find(|e| e.addr.to_string() == addr)
            .cloned()
    }

    #[tokio::test]
    async fn services_are_found_by_any_authority_form_and_by_address() {
        let table = build(snapshot(&["10.1.0.1:8080"]), &Table::empty(), &settings());
        for authority in ["web.demo.svc.cluster.local", "web.demo:80", "WEB.DEMO."] {
            assert!(
                table.service_for_authority(authority).is_some(),
                "{authority}"
            );
        }
        assert!(table.service_for_authority("web.demo:8080").is_none());
        assert!(
            table
                .service_for_addr("10.0.0.1:80".parse().unwrap())
                .is_some()
        );
    }

    #[tokio::test]
    async fn endpoints_and_backend_state_that_remain_are_carried_over() {
        let first = build(
            snapshot(&["10.1.0.1:8080", "10.1.0.2:8080"]),
            &Table::empty(),
            &settings(),
        );
        let second = build(
            snapshot(&["10.1.0.2:8080", "10.1.0.3:8080"]),
            &first,
            &settings(),
        );
        let before = endpoint(&first, "10.1.0.2:8080").unwrap();
        let after = endpoint(&second, "10.1.0.2:8080").unwrap();
        assert!(Arc::ptr_eq(&before, &after));
        assert!(endpoint(&second, "10.1.0.1:8080").is_none());
        let state = |t: &Table| {
            t.service_for_authority("web.demo").unwrap().routes[0].backends[0]
                .0
                .state
                .clone()
        };
        assert!(
            Arc::ptr_eq(&state(&first), &state(&second)),
            "the retry budget survives"
        );
    }

    /// A second service, `demo/api:80`, whose only route carries `path`'s regex.
    fn with_api_route(mut snapshot: pb::Snapshot, regex: &str) -> pb::Snapshot {
        let mut api = snapshot.services[0].clone();
        api.name = "api".into();
        api.authorities = vec!["api.demo:80".into()];
        api.addresses = vec!["10.0.0.2:80".into()];
        let mut regex_route = api.routes[0].clone();
        regex_route.name = "demo/api/0".into();
        regex_route.matches = vec![pb::RouteMatch {
            path: Some(pb::PathMatch {
                kind: Some(pb::path_match::Kind::Regex(regex.into())),
            }),
            ..Default::default()
        }];
        api.routes.insert(0, regex_route);
        snapshot.services.push(api);
        snapshot
    }

    fn get(path: &str) -> http::request::Parts {
        http::Request::get(path).body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn an_opaque_only_default_route_takes_connections_but_no_request() {
        let mut snapshot = with_api_route(snapshot(&["10.1.0.1:8080"]), "/a");
        snapshot.services[1].routes[1].opaque_only = true;
        let table = build(snapshot, &Table::empty(), &settings());
        let api = table.service_for_authority("api.demo").unwrap();
        assert_eq!(api.route(&get("/a")).unwrap().name, "demo/api/0");
        assert!(api.route(&get("/b")).is_none(), "no route: 404");
        assert_eq!(api.default_route().unwrap().name, "default");
    }

    #[tokio::test]
    async fn an_unresolved_reference_takes_its_weight_as_a_share_of_picks() {
        let table = |weights: [u32; 2]| {
            let mut snapshot = snapshot(&["10.1.0.1:8080"]);
            let route = &mut snapshot.services[0].routes[0];
            route.sticky_header = "x-user".into();
            route.backends[0].weight = weights[0];
            route.backends.push(pb::WeightedBackend {
                backend: String::new(),
                weight: weights[1],
                ..Default::default()
            });
            build(snapshot, &Table::empty(), &settings())
        };
        let sticky = |value: String| {
            let mut headers = http::HeaderMap::new();
            headers.insert("x-user", http::HeaderValue::from_str(&value).unwrap());
            headers
        };
        let half = table([1, 1]);
        assert!(half.set_aside().is_empty(), "{:?}", half.set_aside());
        let route = &half.service_for_authority("web.demo").unwrap().routes[0];
        assert_eq!(route.weights, [1, 1]);
        let picks: std::collections::BTreeSet<String> = (0..64)
            .map(|i| format!("{:?}", route.pick_backend(&sticky(format!("user-{i}")))))
            .collect();
        assert_eq!(
            picks.into_iter().collect::<Vec<_>>(),
            ["Some(Backend(0))", "Some(Unresolved)"]
        );
        let all = table([0, 1]);
        let route = &all.service_for_authority("web.demo").unwrap().routes[0];
        assert_eq!(
            route.pick_backend(&sticky("x".into())),
            Some(Pick::Unresolved)
        );
    }

    #[tokio::test]
    async fn a_route_that_cannot_be_built_is_set_aside_and_the_rest_applies() {
        let handle = super::super::TableHandle::new(settings());
        let set_aside = handle.apply(with_api_route(snapshot(&["10.1.0.1:8080"]), "(?x)/a#"));
        assert_eq!(set_aside.len(), 1, "{set_aside:?}");
        assert_eq!(set_aside[0].kind, SetAsideKind::Route);
        assert_eq!(set_aside[0].service, "demo/api:80");
        assert_eq!(set_aside[0].entry, "demo/api/0");
        assert!(
            set_aside[0].reason.contains("routes[0].matches")
                && set_aside[0].reason.contains("(?x)/a#"),
            "{}",
            set_aside[0].reason
        );
        let table = handle.load();
        assert!(table.service_for_authority("web.demo").is_some());
        let api = table.service_for_authority("api.demo").unwrap();
        assert_eq!(api.routes.len(), 1, "the default route remains");
        assert_eq!(api.route(&get("/a")).unwrap().name, "default");

        let fixed = handle.apply(with_api_route(snapshot(&["10.1.0.1:8080"]), "/a.*"));
        assert!(fixed.is_empty(), "{fixed:?}");
        let table = handle.load();
        let api = table.service_for_authority("api.demo").unwrap();
        assert_eq!(api.route(&get("/abc")).unwrap().name, "demo/api/0");
    }

    #[tokio::test]
    async fn a_service_that_cannot_be_built_is_set_aside_and_the_others_apply() {
        let handle = super::super::TableHandle::new(settings());
        let mut broken = with_api_route(snapshot(&["10.1.0.1:8080"]), "/a");
        broken.services[0].backends[0].endpoints[0].address = "not-an-address".into();
        let set_aside = handle.apply(broken);
        assert_eq!(set_aside.len(), 1, "{set_aside:?}");
        assert_eq!(set_aside[0].kind, SetAsideKind::Service);
        assert_eq!(set_aside[0].service, "demo/web:80");
        let reason = &set_aside[0].reason;
        assert!(
            reason.contains("endpoints[0].address") && reason.contains("not-an-address"),
            "{reason}"
        );
        let table = handle.load();
        assert!(table.service_for_authority("web.demo").is_none());
        assert!(
            table
                .service_for_addr("10.0.0.1:80".parse().unwrap())
                .is_none()
        );
        assert!(table.service_for_authority("api.demo").is_some());
    }

    /// A rule the proxy cannot compile must never let the mesh default (here: allow all)
    /// decide in its place; the port's other rules still admit their callers.
    #[tokio::test]
    async fn an_authorization_rule_that_cannot_be_built_admits_nobody() {
        use crate::authz::DenyReason;
        let rule = |policy: &str, regex: &str, principal| pb::AuthorizationRule {
            policy: policy.into(),
            routes: vec![pb::RouteMatch {
                path: Some(pb::PathMatch {
                    kind: Some(pb::path_match::Kind::Regex(regex.into())),
                }),
                ..Default::default()
            }],
            principals: vec![pb::Principal {
                kind: Some(principal),
            }],
        };
        let mut broken = snapshot(&["10.1.0.1:8080"]);
        broken.inbound_ports = vec![pb::InboundPort {
            port: 8080,
            authorizations: vec![rule(
                "demo/broken",
                "(?x)/public#",
                pb::principal::Kind::Unauthenticated(true),
            )],
            ..Default::default()
        }];
        let handle = super::super::TableHandle::new(settings());
        let set_aside = handle.apply(broken.clone());
        assert_eq!(set_aside.len(), 1, "{set_aside:?}");
        assert_eq!(set_aside[0].kind, SetAsideKind::Authorization);
        assert_eq!(set_aside[0].entry, "demo/broken");
        let table = handle.load();
        for path in ["/public", "/", "/other"] {
            let denial = table
                .authorize(8080, "cluster.local", None, Some(&get(path)))
                .unwrap_err();
            assert_eq!(denial.reason, DenyReason::Unauthenticated, "{path}");
        }
        assert!(table.authorize(8080, "cluster.local", None, None).is_err());

        broken.inbound_ports[0].authorizations.push(rule(
            "demo/health",
            "/health",
            pb::principal::Kind::Unauthenticated(true),
        ));
        handle.apply(broken);
        let table = handle.load();
        assert!(
            table
                .authorize(8080, "cluster.local", None, Some(&get("/health")))
                .is_ok()
        );
        assert!(
            table
                .authorize(8080, "cluster.local", None, Some(&get("/public")))
                .is_err()
        );
    }

    #[test]
    fn unset_policy_fields_take_the_documented_defaults() {
        assert_eq!(backend_settings(None), BackendSettings::default());
        let partial = pb::BackendPolicy {
            max_pending_requests: 5,
            circuit_breaker: Some(pb::CircuitBreaker {
                consecutive_failures: 0,
                max_ejected_percent: 30,
                ..Default::default()
            }),
            ..Default::default()
        };
        let settings = backend_settings(Some(&partial));
        assert_eq!(settings.max_pending, 5);
        assert_eq!(settings.breaker.consecutive_failures, 7);
        assert_eq!(settings.breaker.max_ejected_percent, 30);
        assert_eq!(settings.budget, BudgetPolicy::default());
    }

    #[test]
    fn a_backend_without_policy_takes_the_api_defaults() {
        let settings = backend_settings(None);
        assert_eq!(settings.max_pending, defaults::MAX_PENDING_REQUESTS);
        assert_eq!(settings.backoff_base, defaults::RETRY_BACKOFF_BASE);
        assert_eq!(settings.backoff_max, defaults::RETRY_BACKOFF_MAX);
        assert_eq!(settings.budget.window, defaults::RETRY_BUDGET_INTERVAL);
        assert_eq!(settings.budget.min_per_second, 10);
        assert_eq!(settings.budget.ratio, 0.2);
        // The resilience module's own default must not drift from the API's either.
        assert_eq!(BudgetPolicy::default(), settings.budget);
        assert_eq!(BreakerPolicy::default(), settings.breaker);
        assert_eq!(settings.load_balancer, LoadBalancer::PeakEwma);
    }

    #[test]
    fn a_budget_without_a_window_takes_the_api_default_window() {
        let policy = pb::BackendPolicy {
            retry_budget: Some(pb::RetryBudget {
                ratio: 0.5,
                min_retries_per_second: 3,
                ttl: None,
            }),
            ..Default::default()
        };
        let settings = backend_settings(Some(&policy));
        assert_eq!(settings.budget.window, defaults::RETRY_BUDGET_INTERVAL);
        assert_eq!(settings.budget.min_per_second, 3);
    }
}
