//! EndpointSlices: the endpoints of a Service as Kubernetes publishes them (the endpointslice
//! controller's output, readiness included), or as a user writes them for a Service without a
//! selector.
//!
//! A slice names its Service with the `kubernetes.io/service-name` label and its ports by the
//! Service port's name; its port numbers are the target ports, already resolved. An endpoint
//! whose address belongs to a meshed workload carries that workload's identity and proxy port;
//! any other endpoint is reached directly, without mTLS.

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

/// Reads every slice, resolving endpoint identities from `workloads`.
pub fn index(
    slices: &[(&Location, &ObjectKey, &raw::EndpointSlice)],
    workloads: &BTreeMap<ObjectKey, Workload>,
    errors: &mut ConfigErrors,
) -> SliceIndex {
    let by_address: HashMap<IpAddr, &Workload> =
        workloads.values().map(|w| (w.address, w)).collect();
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
            let workload = by_address
                .get(&ip)
                .filter(|w| w.key.namespace == key.namespace);
            for (name, number) in &ports {
                endpoints.push(SlicedEndpoint {
                    port_name: name.clone(),
                    endpoint: Endpoint {
                        addr: SocketAddr::new(ip, *number),
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
