//! Kubernetes objects → the validated [`Model`], through the very documents and validation the
//! YAML files go through, so both sources mean the same thing.
//!
//! Each object is first projected to the document shape Strait reads (metadata trimmed to
//! name, namespace, labels and annotations; `status` dropped; a meshed Pod becomes a
//! `Workload`), skipping what is not the mesh's business without a word: ExternalName and
//! UDP-only Services, routes attached only to Gateways, pods that are finished or terminating.
//! The model is then built; unlike a configuration directory, one bad object must not hold the
//! whole cluster back, so every object an error names is set aside (and reported) and the model
//! is built again from the rest, until it is valid.
//!
//! Services carry no selector here: in a cluster the endpointslice controller has already
//! applied it, with readiness, and the EndpointSlices are the endpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::{Map, Value, json};

use super::kinds::{Kind, PROXIED_LABEL, PROXY_INBOUND_PORT_ANNOTATION};
use super::owner::pod_owner;
use crate::config::error::{ConfigError, Location};
use crate::config::load::{self, Loaded};
use crate::config::model::ObjectKey;
use crate::config::slices::SERVICE_NAME_LABEL;
use crate::config::validate::build_model;
use crate::config::{ConfigErrors, Model};

/// Where errors about cluster objects say they are.
pub const SOURCE: &str = "kubernetes";

/// An object left out of the model, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The object, for an Event about it.
    pub reference: ObjectReference,
    /// Every error it has.
    pub errors: Vec<ConfigError>,
}

/// The model the cluster's objects make, and the objects left out.
#[derive(Debug)]
pub struct Translation {
    /// The valid model of everything not rejected.
    pub model: Model,
    /// Objects with errors, in a stable order.
    pub rejected: Vec<Rejected>,
}

/// Builds the model from objects exactly as the API server returns them. Fails only when the
/// errors are not any one object's, so none can be set aside.
pub fn translate(objects: &[(Kind, &Value)]) -> Result<Translation, ConfigErrors> {
    let services: BTreeSet<ObjectKey> = objects
        .iter()
        .filter(|(kind, _)| *kind == Kind::Service)
        .filter(|(_, object)| project(Kind::Service, object, &BTreeSet::new()).is_some())
        .map(|(_, object)| key(object))
        .collect();
    let mut rejected = Vec::new();
    let mut loaded: Vec<(ObjectReference, Loaded)> = Vec::new();
    for (kind, object) in objects {
        let Some(document) = project(*kind, object, &services) else {
            continue;
        };
        let location = Location {
            file: SOURCE.into(),
            document: None,
            object: None,
        };
        match load::document(document, location, Path::new("/")) {
            Ok(document) => loaded.push((reference(*kind, object), document)),
            Err(error) => rejected.push(Rejected {
                reference: reference(*kind, object),
                errors: vec![error],
            }),
        }
    }
    let (mut references, mut documents): (Vec<ObjectReference>, Vec<Loaded>) =
        loaded.into_iter().unzip();
    // Each round sets aside at least one object, so this ends.
    loop {
        let errors = match build_model(&documents) {
            Ok(model) => {
                rejected.sort_by_key(|r| describe(&r.reference));
                return Ok(Translation { model, rejected });
            }
            Err(errors) => errors,
        };
        let named: BTreeSet<&str> = documents
            .iter()
            .filter_map(|d| d.location.object.as_deref())
            .collect();
        if !errors.0.iter().any(|e| {
            e.location
                .object
                .as_deref()
                .is_some_and(|o| named.contains(o))
        }) {
            // Errors no object owns cannot be set aside; the caller keeps its last good model.
            return Err(errors);
        }
        let mut by_object: HashMap<String, Vec<ConfigError>> = HashMap::new();
        for error in errors.0 {
            let object = error.location.object.clone().unwrap_or_default();
            by_object.entry(object).or_default().push(error);
        }
        let mut kept_references = Vec::with_capacity(references.len());
        let mut kept_documents = Vec::with_capacity(documents.len());
        for (reference, document) in references.into_iter().zip(documents) {
            let object = document.location.object.clone().unwrap_or_default();
            match by_object.remove(&object) {
                Some(errors) => rejected.push(Rejected { reference, errors }),
                None => {
                    kept_references.push(reference);
                    kept_documents.push(document);
                }
            }
        }
        references = kept_references;
        documents = kept_documents;
    }
}

/// Whether a route's parentRef is the mesh's: a Service (the Gateway API's defaults are group
/// `gateway.networking.k8s.io`, kind `Gateway`).
pub fn is_mesh_parent(parent: &Value) -> bool {
    let group = parent["group"]
        .as_str()
        .unwrap_or("gateway.networking.k8s.io");
    let kind = parent["kind"].as_str().unwrap_or("Gateway");
    (group.is_empty() || group == "core") && kind == "Service"
}

/// `namespace/name` of an object.
fn key(object: &Value) -> ObjectKey {
    ObjectKey::new(
        object["metadata"]["namespace"].as_str().unwrap_or(""),
        object["metadata"]["name"].as_str().unwrap_or(""),
    )
}

fn reference(kind: Kind, object: &Value) -> ObjectReference {
    let meta = &object["metadata"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    ObjectReference {
        api_version: Some(kind.api_version()),
        kind: Some(kind.name().to_owned()),
        name: text(&meta["name"]),
        namespace: text(&meta["namespace"]),
        uid: text(&meta["uid"]),
        resource_version: text(&meta["resourceVersion"]),
        ..Default::default()
    }
}

/// `Kind namespace/name`, for ordering and messages.
pub fn describe(reference: &ObjectReference) -> String {
    format!(
        "{} {}{}",
        reference.kind.as_deref().unwrap_or(""),
        reference
            .namespace
            .as_deref()
            .map(|ns| format!("{ns}/"))
            .unwrap_or_default(),
        reference.name.as_deref().unwrap_or("")
    )
}

/// The document Strait reads for an object, or `None` when the object is not the mesh's.
fn project(kind: Kind, object: &Value, services: &BTreeSet<ObjectKey>) -> Option<Value> {
    match kind {
        Kind::Service => service(object),
        Kind::EndpointSlice => endpoint_slice(object, services),
        Kind::Pod => pod(object),
        Kind::HttpRoute | Kind::GrpcRoute => route(kind, object),
        Kind::ReferenceGrant
        | Kind::BackendPolicy
        | Kind::AuthorizationPolicy
        | Kind::MeshConfig => Some(document(
            kind.api_version(),
            kind.name(),
            object,
            object["spec"].clone(),
        )),
    }
}

/// `{apiVersion, kind, metadata, spec}` with the metadata trimmed to what Strait reads.
fn document(api_version: String, kind: &str, object: &Value, spec: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": metadata(object),
        "spec": spec,
    })
}

fn metadata(object: &Value) -> Value {
    let mut out = Map::new();
    for field in ["name", "namespace", "labels", "annotations"] {
        if let Some(value) = object["metadata"].get(field) {
            out.insert(field.into(), value.clone());
        }
    }
    Value::Object(out)
}

/// Copies the fields named in `fields` that `from` has.
fn pick(from: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for field in fields {
        if let Some(value) = from.get(*field).filter(|v| !v.is_null()) {
            out.insert((*field).into(), value.clone());
        }
    }
    Value::Object(out)
}

fn is_tcp(port: &Value) -> bool {
    matches!(
        port.get("protocol").and_then(Value::as_str),
        None | Some("TCP")
    )
}

fn service(object: &Value) -> Option<Value> {
    let spec = &object["spec"];
    if spec["type"].as_str() == Some("ExternalName") {
        return None;
    }
    let ports: Vec<Value> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| is_tcp(p))
        .map(|p| {
            pick(
                p,
                &["name", "port", "targetPort", "protocol", "appProtocol"],
            )
        })
        .collect();
    if ports.is_empty() {
        return None;
    }
    let mut out = pick(spec, &["clusterIP", "type"]);
    out["ports"] = Value::Array(ports);
    Some(document("v1".into(), "Service", object, out))
}

fn endpoint_slice(object: &Value, services: &BTreeSet<ObjectKey>) -> Option<Value> {
    if !matches!(object["addressType"].as_str(), Some("IPv4" | "IPv6")) {
        return None;
    }
    let service = object["metadata"]["labels"][SERVICE_NAME_LABEL].as_str()?;
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
    if !services.contains(&ObjectKey::new(namespace, service)) {
        return None;
    }
    let endpoints: Vec<Value> = object["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut out = pick(e, &["addresses"]);
            out["conditions"] = pick(&e["conditions"], &["ready", "serving", "terminating"]);
            if e.get("targetRef").is_some() {
                out["targetRef"] = pick(&e["targetRef"], &["kind", "name", "namespace"]);
            }
            out
        })
        .collect();
    let ports: Vec<Value> = object["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| pick(p, &["name", "port", "protocol", "appProtocol"]))
        .collect();
    Some(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": metadata(object),
        "addressType": object["addressType"],
        "endpoints": endpoints,
        "ports": ports,
    }))
}

fn pod(object: &Value) -> Option<Value> {
    let meta = &object["metadata"];
    let spec = &object["spec"];
    let status = &object["status"];
    let meshed = meta["labels"][PROXIED_LABEL].as_str() == Some("true");
    let finished = matches!(status["phase"].as_str(), Some("Succeeded" | "Failed"));
    // A terminating pod's proxy keeps its last snapshot while it drains; its address may
    // soon belong to another pod.
    let terminating = meta.get("deletionTimestamp").is_some_and(|t| !t.is_null());
    let host_network = spec["hostNetwork"].as_bool() == Some(true);
    if !meshed || finished || terminating || host_network {
        return None;
    }
    let (address, other_addresses) = pod_addresses(status)?;
    let mut ports = BTreeMap::new();
    for list in ["initContainers", "containers"] {
        for container in spec[list].as_array().into_iter().flatten() {
            for port in container["ports"].as_array().into_iter().flatten() {
                if let (Some(name), true) = (port["name"].as_str(), is_tcp(port)) {
                    ports
                        .entry(name.to_owned())
                        .or_insert_with(|| port["containerPort"].clone());
                }
            }
        }
    }
    let ports: Vec<Value> = ports
        .into_iter()
        .map(|(name, port)| json!({"name": name, "port": port}))
        .collect();
    let mut proxy = Map::new();
    if let Some(port) = meta["annotations"][PROXY_INBOUND_PORT_ANNOTATION].as_str() {
        // A non-number stays a string, so validation reports it with its field path.
        proxy.insert(
            "inboundPort".into(),
            port.parse::<i64>()
                .map_or_else(|_| json!(port), |p| json!(p)),
        );
    }
    let mut metadata = Map::new();
    for field in ["name", "namespace", "labels"] {
        if let Some(value) = meta.get(field) {
            metadata.insert(field.into(), value.clone());
        }
    }
    let mut workload = json!({
        "apiVersion": "strait.dev/v1alpha1",
        "kind": "Workload",
        "metadata": metadata,
        "spec": {
            "serviceAccount": spec["serviceAccountName"].as_str().unwrap_or("default"),
            "address": address,
            "addresses": other_addresses,
            "ports": ports,
            "proxy": proxy,
        },
    });
    if let Some(owner) = pod_owner(meta) {
        workload["spec"]["owner"] = json!({"kind": owner.kind, "name": owner.name});
    }
    Some(workload)
}

/// A pod's addresses from its status: `podIP` first (the primary), then the other entries of
/// `podIPs` (a dual-stack pod's other family); `podIPs` alone when `podIP` is missing. `None`
/// before the pod has an address.
fn pod_addresses(status: &Value) -> Option<(String, Vec<String>)> {
    let listed: Vec<&str> = status["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["ip"].as_str())
        .collect();
    let primary = status["podIP"].as_str().or(listed.first().copied())?;
    let mut others: Vec<String> = Vec::new();
    for ip in listed {
        if ip != primary && !others.iter().any(|o| o == ip) {
            others.push(ip.to_owned());
        }
    }
    Some((primary.to_owned(), others))
}

/// A route with its Service parents only; `None` when it has none (it belongs to a Gateway).
fn route(kind: Kind, object: &Value) -> Option<Value> {
    let mut spec = object["spec"].clone();
    let parents: Vec<Value> = spec["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| is_mesh_parent(p))
        .cloned()
        .collect();
    if parents.is_empty() {
        return None;
    }
    spec["parentRefs"] = Value::Array(parents);
    Some(document(kind.api_version(), kind.name(), object, spec))
}
