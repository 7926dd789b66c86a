//! EndpointSlices: the endpoints of a Service as Kubernetes publishes them (the endpointslice
//! controller's output, readiness included), or as a user writes them for a Service without a
//! selector.
//!
//! A slice names its Service with the `kubernetes.io/service-name` label and its ports by the
//! Service port's name; its port numbers are the target ports, already resolved. An endpoint
//! whose address belongs to a meshed workload of the slice's namespace carries that workload's
//! identity and proxy port; an address no meshed workload owns is reached directly, without
//! mTLS. An address owned by a meshed workload of *another* namespace is refused: anyone who
//! may write EndpointSlices in one namespace must not make proxies reach another namespace's
//! pod in plaintext, past its proxy and its authorization ([`resolve`] decides).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use super::error::{ConfigErrors, Location};
use super::model::{Endpoint, ObjectKey, Workload};
use super::raw;

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One endpoint of one slice port.
#[derive(Debug, Clone)]
struct SlicedEndpoint {
    /// The Service port's name the slice port carries (`None` for an unnamed port).
    port_name: Option<String>,
    endpoint: Endpoint,
}

/// Where a slice is, and the Service it names.
#[derive(Debug)]
struct SliceSource {
    location: Location,
    service: ObjectKey,
    port_names: Vec<Option<String>>,
}

/// The endpoints every slice contributes, by Service.
#[derive(Debug, Default)]
pub struct SliceIndex {
    by_service: BTreeMap<ObjectKey, Vec<SlicedEndpoint>>,
    sources: Vec<SliceSource>,
}

impl SliceIndex {
    /// The ready endpoints the slices give the port named `port_name` of `service`.
    pub fn endpoints(&self, service: &ObjectKey, port_name: Option<&str>) -> Vec<Endpoint> {
        self.by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter(|e| e.port_name.as_deref().unwrap_or("") == port_name.unwrap_or(""))
            .map(|e| e.endpoint.clone())
            .collect()
    }

    /// Reports slices that name a Service no document declares, or a port that Service lacks.
    /// `ports` gives each declared Service's port names.
    pub fn check_references(
        &self,
        ports: &BTreeMap<ObjectKey, Vec<Option<String>>>,
        errors: &mut ConfigErrors,
    ) {
        for source in &self.sources {
            let Some(service_ports) = ports.get(&source.service) else {
                errors.push(
                    &source.location,
                    format!("metadata.labels[{SERVICE_NAME_LABEL:?}]"),
                    format!("names Service {}, which does not exist", source.service),
                );
                continue;
            };
            for (i, name) in source.port_names.iter().enumerate() {
                let known = service_ports
                    .iter()
                    .any(|p| p.as_deref().unwrap_or("") == name.as_deref().unwrap_or(""));
                if !known {
                    errors.push(
                        &source.location,
                        format!("ports[{i}].name"),
                        format!(
                            "Service {} has no port named {:?}",
                            source.service,
                            name.as_deref().unwrap_or("")
                        ),
                    );
                }
            }
        }
    }
}

/// The meshed workloads by address, to find who owns an endpoint address.
#[derive(Debug, Default)]
pub struct Owners<'a> {
    by_ip: HashMap<IpAddr, Vec<&'a Workload>>,
}

impl<'a> Owners<'a> {
    /// Indexes `workloads` by every address each has.
    pub fn new(workloads: impl IntoIterator<Item = &'a Workload>) -> Self {
        let mut by_ip: HashMap<IpAddr, Vec<&'a Workload>> = HashMap::new();
        for workload in workloads {
            // Every address: a dual-stack pod's other family is as much its own, and
            // Kubernetes lists it in that family's slice.
            for ip in workload.addresses() {
                by_ip.entry(ip).or_default().push(workload);
            }
        }
        Self { by_ip }
    }

    /// The workload that owns `addr`: the one workload at that IP (a pod's IP is its own, every
    /// port of it), or, where several workloads share an IP (local mode's 127.0.0.1), the one
    /// that declares that port as an application port or as its proxy's inbound port.
    pub fn owner(&self, addr: SocketAddr) -> Option<&'a Workload> {
        match self.by_ip.get(&addr.ip())?.as_slice() {
            [only] => Some(only),
            shared => shared.iter().copied().find(|w| {
                w.proxy_inbound_port == addr.port() || w.ports.values().any(|p| *p == addr.port())
            }),
        }
    }
}

/// What a slice endpoint becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution<'a> {
    /// A meshed workload of the slice's namespace: reached through its proxy, with its identity.
    Meshed(&'a Workload),
    /// No meshed workload owns the address: reached directly.
    Direct,
    /// A meshed workload of another namespace owns the address: the slice may not name it.
    Foreign(&'a Workload),
}

/// What the endpoint `addr` of a slice in `namespace` becomes.
pub fn resolve<'a>(namespace: &str, addr: SocketAddr, owners: &Owners<'a>) -> Resolution<'a> {
    match owners.owner(addr) {
        Some(owner) if owner.key.namespace == namespace => Resolution::Meshed(owner),
        Some(owner) => Resolution::Foreign(owner),
        None => Resolution::Direct,
    }
}

/// Reads every slice, resolving endpoint identities from `workloads`.
pub fn index(
    slices: &[(&Location, &ObjectKey, &raw::EndpointSlice)],
    workloads: &BTreeMap<ObjectKey, Workload>,
    errors: &mut ConfigErrors,
) -> SliceIndex {
    let owners = Owners::new(workloads.values());
    let mut index = SliceIndex::default();
    for (location, key, slice) in slices {
        let before = errors.0.len();
        let Some(service) = slice.metadata.labels.get(SERVICE_NAME_LABEL) else {
            errors.push(
                location,
                "metadata.labels",
                format!(
                    "an EndpointSlice needs the {SERVICE_NAME_LABEL:?} label naming its Service"
                ),
            );
            continue;
        };
        let service = ObjectKey::new(&key.namespace, service);
        match slice.address_type.as_str() {
            "IPv4" | "IPv6" => {}
            other => errors.push(
                location,
                "addressType",
                format!("{other:?} is not supported; the mesh routes to IPv4 and IPv6 addresses"),
            ),
        }
        let mut ports = Vec::new();
        for (i, port) in slice.ports.iter().enumerate() {
            if let Some(protocol) = &port.protocol
                && protocol != "TCP"
            {
                // A UDP or SCTP port of the Service is not the mesh's business.
                continue;
            }
            match port.port.map(u16::try_from) {
                Some(Ok(number)) if number != 0 => ports.push((port.name.clone(), number)),
                Some(_) => errors.push(
                    location,
                    format!("ports[{i}].port"),
                    format!("{} is not a port number (1-65535)", port.port.unwrap_or(0)),
                ),
                None => errors.push(
                    location,
                    format!("ports[{i}].port"),
                    "required field is missing",
                ),
            }
        }
        let mut endpoints = Vec::new();
        for (i, endpoint) in slice.endpoints.iter().enumerate() {
            if endpoint.conditions.ready == Some(false) {
                continue;
            }
            // Kubernetes: consumers use the first address; the others are the same endpoint.
            let Some(address) = endpoint.addresses.first() else {
                errors.push(
                    location,
                    format!("endpoints[{i}].addresses"),
                    "an endpoint needs an address",
                );
                continue;
            };
            let Ok(ip) = address.parse::<IpAddr>() else {
                errors.push(
                    location,
                    format!("endpoints[{i}].addresses[0]"),
                    format!("{address:?} is not an IP address"),
                );
                continue;
            };
            for (name, number) in &ports {
                let addr = SocketAddr::new(ip, *number);
                let workload = match resolve(&key.namespace, addr, &owners) {
                    Resolution::Meshed(workload) => Some(workload),
                    Resolution::Direct => None,
                    Resolution::Foreign(owner) => {
                        errors.push(
                            location,
                            format!("endpoints[{i}].addresses[0]"),
                            format!(
                                "{addr} belongs to meshed workload {} of namespace {}; an EndpointSlice in namespace {} may not name another namespace's workload: its callers would reach that workload without its identity",
                                owner.key, owner.key.namespace, key.namespace
                            ),
                        );
                        break;
                    }
                };
                endpoints.push(SlicedEndpoint {
                    port_name: name.clone(),
                    endpoint: Endpoint {
                        addr,
                        identity: workload.map(|w| w.identity.clone()),
                        proxy_port: workload.map(|w| w.proxy_inbound_port),
                        workload: match (workload, &endpoint.target_ref) {
                            (Some(w), _) => w.key.name.clone(),
                            (None, Some(target)) => {
                                target.name.clone().unwrap_or_else(|| ip.to_string())
                            }
                            (None, None) => ip.to_string(),
                        },
                    },
                });
            }
        }
        if errors.0.len() > before {
            continue;
        }
        index.sources.push(SliceSource {
            location: (*location).clone(),
            service: service.clone(),
            port_names: ports.into_iter().map(|(name, _)| name).collect(),
        });
        index
            .by_service
            .entry(service)
            .or_default()
            .extend(endpoints);
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(namespace: &str, name: &str, address: &str, ports: &[u16], proxy: u16) -> Workload {
        Workload {
            key: ObjectKey::new(namespace, name),
            identity: format!("spiffe://cluster.local/ns/{namespace}/sa/{name}")
                .parse()
                .unwrap(),
            address: address.parse().unwrap(),
            other_addresses: Vec::new(),
            labels: BTreeMap::new(),
            ports: ports
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("p{i}"), *p))
                .collect(),
            proxy_inbound_port: proxy,
            proxy_admin_port: None,
            proxy_outbound_port: None,
            token_sha256: None,
            owner: None,
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_pod_ip_belongs_to_its_pod_on_every_port() {
        let web = workload("demo", "web-1", "10.0.0.5", &[8080], 4143);
        let owners = Owners::new([&web]);
        for port in ["8080", "9090", "4143"] {
            assert_eq!(
                owners.owner(addr(&format!("10.0.0.5:{port}"))),
                Some(&web),
                "{port}"
            );
        }
        assert_eq!(owners.owner(addr("10.0.0.6:8080")), None);
    }

    #[test]
    fn a_shared_ip_belongs_to_whoever_declares_the_port() {
        let web = workload("demo", "web-1", "127.0.0.1", &[18081], 14081);
        let billing = workload("finance", "billing-1", "127.0.0.1", &[18090], 14090);
        let owners = Owners::new([&web, &billing]);
        assert_eq!(owners.owner(addr("127.0.0.1:18081")), Some(&web));
        assert_eq!(owners.owner(addr("127.0.0.1:14090")), Some(&billing));
        assert_eq!(owners.owner(addr("127.0.0.1:18090")), Some(&billing));
        assert_eq!(owners.owner(addr("127.0.0.1:5432")), None);
    }

    #[test]
    fn a_slice_reaches_its_own_namespaces_workloads_with_their_identity() {
        let web = workload("demo", "web-1", "10.0.0.5", &[8080], 4143);
        let owners = Owners::new([&web]);
        assert_eq!(
            resolve("demo", addr("10.0.0.5:8080"), &owners),
            Resolution::Meshed(&web)
        );
    }

    #[test]
    fn a_slice_may_not_name_another_namespaces_workload() {
        let web = workload("demo", "web-1", "10.0.0.5", &[8080], 4143);
        let billing = workload("finance", "billing-1", "127.0.0.1", &[18090], 14090);
        let local = workload("demo", "web-2", "127.0.0.1", &[18081], 14081);
        let owners = Owners::new([&web, &billing, &local]);
        assert_eq!(
            resolve("evil", addr("10.0.0.5:8080"), &owners),
            Resolution::Foreign(&web)
        );
        assert_eq!(
            resolve("demo", addr("127.0.0.1:18090"), &owners),
            Resolution::Foreign(&billing)
        );
    }

    fn dual_stack(namespace: &str, name: &str, v4: &str, v6: &str) -> Workload {
        Workload {
            other_addresses: vec![v6.parse().unwrap()],
            ..workload(namespace, name, v4, &[8080], 4143)
        }
    }

    #[test]
    fn a_dual_stack_pods_other_family_address_carries_its_identity() {
        let web = dual_stack("demo", "web-1", "10.0.0.5", "fd00::5");
        let owners = Owners::new([&web]);
        for endpoint in ["10.0.0.5:8080", "[fd00::5]:8080"] {
            assert_eq!(
                resolve("demo", addr(endpoint), &owners),
                Resolution::Meshed(&web),
                "{endpoint}"
            );
        }
    }

    #[test]
    fn a_slice_may_not_name_another_namespaces_pod_by_its_other_family_address() {
        let web = dual_stack("demo", "web-1", "10.0.0.5", "fd00::5");
        let owners = Owners::new([&web]);
        assert_eq!(
            resolve("evil", addr("[fd00::5]:8080"), &owners),
            Resolution::Foreign(&web)
        );
    }

    #[test]
    fn an_address_no_meshed_workload_owns_is_reached_directly() {
        let web = workload("demo", "web-1", "10.0.0.5", &[8080], 4143);
        let owners = Owners::new([&web]);
        assert_eq!(
            resolve("evil", addr("192.0.2.10:443"), &owners),
            Resolution::Direct
        );
    }

    #[test]
    fn the_refusal_names_the_slice_the_address_and_the_owner() {
        let web = workload("demo", "web-1", "10.0.0.5", &[8080], 4143);
        let workloads: BTreeMap<ObjectKey, Workload> = [(web.key.clone(), web)].into();
        let slice: raw::EndpointSlice = serde_json::from_value(serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "grab", "namespace": "evil",
                         "labels": {SERVICE_NAME_LABEL: "grab"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["192.0.2.1"]}, {"addresses": ["10.0.0.5"]}],
            "ports": [{"name": "http", "port": 8080}],
        }))
        .unwrap();
        let location = Location {
            file: "kubernetes".into(),
            document: None,
            object: Some("EndpointSlice evil/grab".into()),
        };
        let key = ObjectKey::new("evil", "grab");
        let mut errors = ConfigErrors::default();
        let index = index(&[(&location, &key, &slice)], &workloads, &mut errors);
        assert_eq!(errors.0.len(), 1, "{errors}");
        let error = &errors.0[0];
        assert_eq!(error.location, location);
        assert_eq!(error.field, "endpoints[1].addresses[0]");
        assert!(
            error
                .reason
                .contains("10.0.0.5:8080 belongs to meshed workload demo/web-1"),
            "{}",
            error.reason
        );
        // The whole slice is set aside, its harmless endpoint too.
        assert!(index.endpoints(&key, Some("http")).is_empty());
    }
}
