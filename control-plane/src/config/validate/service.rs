//! `v1` Service: its ports, their protocol (`appProtocol`) and their endpoints, from the
//! workloads its selector picks and from its EndpointSlices.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use super::Ctx;
use super::scalars::port;
use crate::config::load::Loaded;
use crate::config::model::*;
use crate::config::raw::{self, Document, IntOrString, Object};
use crate::config::slices::SliceIndex;

pub(super) fn protocol_of(app_protocol: Option<&str>) -> Result<Protocol, String> {
    match app_protocol {
        None => Ok(Protocol::Detect),
        Some("http" | "http/1.1" | "HTTP") => Ok(Protocol::Http1),
        Some("http2" | "h2c" | "grpc" | "kubernetes.io/h2c") => Ok(Protocol::Http2),
        Some(
            "tcp" | "opaque" | "TCP" | "https" | "tls" | "kubernetes.io/ws" | "kubernetes.io/wss",
        ) => Ok(Protocol::Opaque),
        Some(other) => Err(format!(
            "{other:?} is not an appProtocol Strait knows (http, http2, h2c, grpc, kubernetes.io/h2c, tcp, opaque, tls, https)"
        )),
    }
}

pub(super) fn service(
    ctx: &mut Ctx,
    item: &Loaded,
    key: &ObjectKey,
    object: &Object<raw::ServiceSpec>,
    workloads: &BTreeMap<ObjectKey, Workload>,
    slices: &SliceIndex,
    keyed: &[(&Loaded, ObjectKey)],
) -> Option<Service> {
    let location = &item.location;
    let spec = &object.spec;
    let errors_before = ctx.errors.0.len();
    let cluster_ip = match spec.cluster_ip.as_deref() {
        None | Some("None") | Some("") => None,
        Some(ip) => match ip.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                ctx.err(
                    location,
                    "spec.clusterIP",
                    format!("{ip:?} is not an IP address"),
                );
                None
            }
        },
    };
    if spec.ports.is_empty() {
        ctx.err(location, "spec.ports", "a Service needs at least one port");
    }
    let selected: Vec<&Workload> = if spec.selector.is_empty() {
        Vec::new()
    } else {
        workloads
            .values()
            .filter(|w| w.key.namespace == key.namespace)
            .filter(|w| {
                spec.selector
                    .iter()
                    .all(|(k, v)| w.labels.get(k) == Some(v))
            })
            .collect()
    };
    let mut ports = Vec::new();
    let mut numbers = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let number = match port(p.port) {
            Ok(n) => n,
            Err(reason) => {
                ctx.err(location, format!("{field}.port"), reason);
                continue;
            }
        };
        if !numbers.insert(number) {
            ctx.err(
                location,
                format!("{field}.port"),
                format!("duplicate port {number}"),
            );
        }
        if let Some(name) = &p.name
            && !names.insert(name.clone())
        {
            ctx.err(
                location,
                format!("{field}.name"),
                format!("duplicate port name {name:?}"),
            );
        }
        if spec.ports.len() > 1 && p.name.is_none() {
            ctx.err(
                location,
                format!("{field}.name"),
                "every port of a multi-port Service needs a name",
            );
        }
        if let Some(protocol) = &p.protocol
            && protocol != "TCP"
        {
            ctx.err(
                location,
                format!("{field}.protocol"),
                format!("{protocol:?} is not supported; the mesh carries TCP"),
            );
        }
        let protocol = match protocol_of(p.app_protocol.as_deref()) {
            Ok(protocol) => protocol,
            Err(reason) => {
                ctx.err(location, format!("{field}.appProtocol"), reason);
                Protocol::Detect
            }
        };
        let target = p.target_port.clone().unwrap_or(IntOrString::Int(p.port));
        let mut endpoints = Vec::new();
        for workload in &selected {
            let target_port = match &target {
                IntOrString::Int(n) => match port(*n) {
                    Ok(n) => n,
                    Err(reason) => {
                        ctx.err(location, format!("{field}.targetPort"), reason);
                        break;
                    }
                },
                IntOrString::String(name) => match workload.ports.get(name) {
                    Some(n) => *n,
                    None => {
                        let workload_location = keyed
                            .iter()
                            .find(|(i, k)| {
                                k == &workload.key && matches!(i.document, Document::Workload(_))
                            })
                            .map(|(i, _)| i.location.clone())
                            .unwrap_or_else(|| location.clone());
                        ctx.err(
                            &workload_location,
                            "spec.ports",
                            format!("selected by Service {key}, whose port {number} targets port name {name:?}, which this Workload does not declare"),
                        );
                        continue;
                    }
                },
            };
            endpoints.push(Endpoint {
                addr: SocketAddr::new(workload.address, target_port),
                identity: Some(workload.identity.clone()),
                proxy_port: Some(workload.proxy_inbound_port),
                workload: workload.key.name.clone(),
            });
        }
        endpoints.extend(slices.endpoints(key, p.name.as_deref()));
        endpoints.sort();
        endpoints.dedup_by(|a, b| a.addr == b.addr);
        ports.push(ServicePort {
            name: p.name.clone(),
            port: number,
            protocol,
            endpoints,
        });
    }
    if ctx.errors.0.len() > errors_before {
        return None;
    }
    Some(Service {
        key: key.clone(),
        ports,
        cluster_ip,
    })
}
