//! Turns parsed documents into the validated [`Model`], collecting every error at once: names,
//! ranges, durations, references between objects, duplicates and overlapping routes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use strait_identity::SpiffeId;
use strait_proto::{defaults, match_regex};

use super::duration;
use super::error::{ConfigErrors, Location};
use super::load::Loaded;
use super::model::*;
use super::raw::{self, Document, IntOrString, Object};
use super::slices::{self, SliceIndex};

/// Default inbound port of a workload's proxy.
pub const DEFAULT_PROXY_INBOUND_PORT: u16 = 4143;

/// Largest weight the Gateway API allows.
const MAX_WEIGHT: i64 = 1_000_000;

/// Annotation naming the header whose value pins a request to one side of a split.
pub const STICKY_HEADER_ANNOTATION: &str = "strait.dev/sticky-header";
/// Annotation listing gRPC status codes a route retries (names or numbers, comma-separated).
pub const RETRY_GRPC_CODES_ANNOTATION: &str = "strait.dev/retry-grpc-codes";
/// Annotation giving the retries of a route that has no `retry` field (GRPCRoute).
pub const RETRY_ATTEMPTS_ANNOTATION: &str = "strait.dev/retry-attempts";

struct Ctx {
    errors: ConfigErrors,
}

impl Ctx {
    fn err(&mut self, location: &Location, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(location, field, reason);
    }
}

/// A Kubernetes name (RFC 1123 subdomain: lower-case alphanumerics, `-`, `.`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

fn port(value: i64) -> Result<u16, String> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{value} is not a port number (1-65535)"))
}

fn parse_duration(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    text: &Option<String>,
) -> Option<Duration> {
    let text = text.as_ref()?;
    match duration::parse(text) {
        Ok(d) => Some(d),
        Err(reason) => {
            ctx.err(location, field, reason);
            None
        }
    }
}

/// The object key of a document, validating its name and namespace.
fn key_of(
    ctx: &mut Ctx,
    location: &Location,
    meta: &raw::ObjectMeta,
    namespaced: bool,
) -> Option<ObjectKey> {
    let Some(name) = &meta.name else {
        ctx.err(location, "metadata.name", "required field is missing");
        return None;
    };
    if !valid_name(name) {
        ctx.err(
            location,
            "metadata.name",
            format!("{name:?} is not a valid name (lower-case letters, digits, '-' and '.')"),
        );
        return None;
    }
    let namespace = if namespaced {
        meta.namespace.clone().unwrap_or_else(|| "default".into())
    } else {
        String::new()
    };
    if namespaced && !valid_name(&namespace) {
        ctx.err(
            location,
            "metadata.namespace",
            format!("{namespace:?} is not a valid namespace name"),
        );
        return None;
    }
    Some(ObjectKey::new(&namespace, name))
}

/// Builds the model from loaded documents. Errors in one object never hide errors in another.
pub fn build_model(loaded: &[Loaded]) -> Result<Model, ConfigErrors> {
    let mut ctx = Ctx {
        errors: ConfigErrors::default(),
    };
    let mut model = Model::default();
    let mut seen: HashMap<(&'static str, ObjectKey), Location> = HashMap::new();
    let mut keyed: Vec<(&Loaded, ObjectKey)> = Vec::new();

    for item in loaded {
        let kind = item.document.kind();
        let namespaced = !matches!(item.document, Document::MeshConfig(_));
        let Some(key) = key_of(
            &mut ctx,
            &item.location,
            item.document.metadata(),
            namespaced,
        ) else {
            continue;
        };
        if let Some(first) = seen.get(&(kind, key.clone())) {
            let first = format!(
                "{}{}",
                first.file.display(),
                first
                    .document
                    .map(|d| format!(" document {d}"))
                    .unwrap_or_default()
            );
            ctx.err(
                &item.location,
                "metadata.name",
                format!("duplicate {kind} {key}: first defined in {first}"),
            );
            continue;
        }
        seen.insert((kind, key.clone()), item.location.clone());
        keyed.push((item, key));
    }

    // Mesh settings first: the trust domain shapes every identity.
    let mesh_configs: Vec<_> = keyed
        .iter()
        .filter_map(|(item, _)| match &item.document {
            Document::MeshConfig(o) => Some((*item, o)),
            _ => None,
        })
        .collect();
    if let Some((item, object)) = mesh_configs.first() {
        model.mesh = mesh_settings(&mut ctx, &item.location, object);
    }
    for (item, _) in mesh_configs.iter().skip(1) {
        ctx.err(&item.location, "", "only one MeshConfig is allowed");
    }

    for (item, key) in &keyed {
        if let Document::Workload(object) = &item.document
            && let Some(workload) = workload(&mut ctx, item, key, object, &model.mesh.trust_domain)
        {
            model.workloads.insert(key.clone(), workload);
        }
    }
    check_workload_addresses(&mut ctx, &keyed, &model.workloads);

    let slice_documents: Vec<_> = keyed
        .iter()
        .filter_map(|(item, key)| match &item.document {
            Document::EndpointSlice(slice) => Some((&item.location, key, slice)),
            _ => None,
        })
        .collect();
    let slices = slices::index(&slice_documents, &model.workloads, &mut ctx.errors);

    let mut declared_ports = BTreeMap::new();
    for (item, key) in &keyed {
        if let Document::Service(object) = &item.document {
            declared_ports.insert(
                key.clone(),
                object.spec.ports.iter().map(|p| p.name.clone()).collect(),
            );
            if let Some(service) = service(
                &mut ctx,
                item,
                key,
                object,
                &model.workloads,
                &slices,
                &keyed,
            ) {
                model.services.insert(key.clone(), service);
            }
        }
    }
    slices.check_references(&declared_ports, &mut ctx.errors);

    let mut attached: Attached = BTreeMap::new();
    for (item, key) in &keyed {
        match &item.document {
            Document::HttpRoute(object) => {
                http_route(&mut ctx, item, key, object, &model.services, &mut attached)
            }
            Document::GrpcRoute(object) => {
                grpc_route(&mut ctx, item, key, object, &model.services, &mut attached)
            }
            _ => {}
        }
    }
    model.routes = order_routes(&mut ctx, attached);

    for (item, key) in &keyed {
        match &item.document {
            Document::BackendPolicy(object) => {
                if let Some((target, policy)) =
                    backend_policy(&mut ctx, item, key, object, &model.services)
                {
                    let described = format!(
                        "another BackendPolicy already targets Service {}{}",
                        target.0,
                        target.1.map(|p| format!(" port {p}")).unwrap_or_default()
                    );
                    match model.backend_policies.entry(target) {
                        std::collections::btree_map::Entry::Occupied(_) => {
                            ctx.err(&item.location, "spec.targetRef", described)
                        }
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            slot.insert(policy);
                        }
                    }
                }
            }
            Document::AuthorizationPolicy(object) => {
                if let Some(policy) =
                    authorization_policy(&mut ctx, item, key, object, &model.services, &model.mesh)
                {
                    model.authorization_policies.push(policy);
                }
            }
            _ => {}
        }
    }

    if ctx.errors.is_empty() {
        Ok(model)
    } else {
        Err(ctx.errors)
    }
}

fn mesh_settings(
    ctx: &mut Ctx,
    location: &Location,
    object: &Object<raw::MeshConfigSpec>,
) -> MeshSettings {
    let mut mesh = MeshSettings::default();
    let spec = &object.spec;
    if let Some(td) = &spec.trust_domain {
        if SpiffeId::new(td, "a", "b").is_err() {
            ctx.err(
                location,
                "spec.trustDomain",
                format!("{td:?} is not a valid trust domain"),
            );
        } else {
            mesh.trust_domain = td.clone();
        }
    }
    match spec.inbound_mode.as_deref() {
        None | Some("Permissive") => {}
        Some("Strict") => mesh.inbound_mode = InboundMode::Strict,
        Some(other) => ctx.err(
            location,
            "spec.inboundMode",
            format!("{other:?} is not an inbound mode (Permissive or Strict)"),
        ),
    }
    match spec.default_authorization.as_deref() {
        None | Some("AllowAll") => {}
        Some("AllAuthenticated") => {
            mesh.default_authorization = DefaultAuthorization::AllAuthenticated
        }
        Some("Deny") => mesh.default_authorization = DefaultAuthorization::Deny,
        Some(other) => ctx.err(
            location,
            "spec.defaultAuthorization",
            format!(
                "{other:?} is not a default authorization (AllowAll, AllAuthenticated or Deny)"
            ),
        ),
    }
    mesh
}

fn workload(
    ctx: &mut Ctx,
    item: &Loaded,
    key: &ObjectKey,
    object: &Object<raw::WorkloadSpec>,
    trust_domain: &str,
) -> Option<Workload> {
    let location = &item.location;
    let spec = &object.spec;
    let errors_before = ctx.errors.0.len();
    let service_account = spec
        .service_account
        .clone()
        .unwrap_or_else(|| "default".into());
    let identity = match SpiffeId::new(trust_domain, &key.namespace, &service_account) {
        Ok(identity) => Some(identity),
        Err(_) => {
            ctx.err(
                location,
                "spec.serviceAccount",
                format!("{service_account:?} is not a valid service account name"),
            );
            None
        }
    };
    let address: Option<IpAddr> = match spec.address.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            ctx.err(
                location,
                "spec.address",
                format!("{:?} is not an IP address", spec.address),
            );
            None
        }
    };
    let other_addresses = other_addresses(ctx, location, address, &spec.addresses);
    let mut ports = BTreeMap::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        match port(p.port) {
            Ok(number) => {
                if ports.insert(p.name.clone(), number).is_some() {
                    ctx.err(
                        location,
                        format!("{field}.name"),
                        format!("duplicate port name {:?}", p.name),
                    );
                }
            }
            Err(reason) => ctx.err(location, format!("{field}.port"), reason),
        }
    }
    let proxy_inbound_port = match spec.proxy.as_ref().and_then(|p| p.inbound_port) {
        None => DEFAULT_PROXY_INBOUND_PORT,
        Some(value) => port(value).unwrap_or_else(|reason| {
            ctx.err(location, "spec.proxy.inboundPort", reason);
            DEFAULT_PROXY_INBOUND_PORT
        }),
    };
    let mut optional_port = |value: Option<i64>, field: &str| {
        value.and_then(|p| match port(p) {
            Ok(p) => Some(p),
            Err(reason) => {
                ctx.err(location, field, reason);
                None
            }
        })
    };
    let proxy_admin_port = optional_port(
        spec.proxy.as_ref().and_then(|p| p.admin_port),
        "spec.proxy.adminPort",
    );
    let proxy_outbound_port = optional_port(
        spec.proxy.as_ref().and_then(|p| p.outbound_port),
        "spec.proxy.outboundPort",
    );
    let token_sha256 = spec
        .bootstrap_token
        .as_ref()
        .and_then(|token| bootstrap_token(ctx, location, &item.dir, token));
    if ctx.errors.0.len() > errors_before {
        return None;
    }
    Some(Workload {
        key: key.clone(),
        identity: identity?,
        address: address?,
        other_addresses,
        labels: object.metadata.labels.clone(),
        ports,
        proxy_inbound_port,
        proxy_admin_port,
        proxy_outbound_port,
        token_sha256,
    })
}

/// A workload's `spec.addresses`: each an IP address, none repeating `spec.address` or
/// another entry (one workload cannot claim an address twice).
fn other_addresses(
    ctx: &mut Ctx,
    location: &Location,
    primary: Option<IpAddr>,
    texts: &[String],
) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let field = format!("spec.addresses[{i}]");
        match text.parse::<IpAddr>() {
            Err(_) => ctx.err(location, field, format!("{text:?} is not an IP address")),
            Ok(ip) if Some(ip) == primary => ctx.err(
                location,
                field,
                format!("{ip} is already the workload's spec.address"),
            ),
            Ok(ip) if out.contains(&ip) => {
                ctx.err(location, field, format!("{ip} is listed twice"))
            }
            Ok(ip) => out.push(ip),
        }
    }
    out
}

fn bootstrap_token(
    ctx: &mut Ctx,
    location: &Location,
    dir: &Path,
    token: &raw::BootstrapToken,
) -> Option<[u8; 32]> {
    match (&token.file, &token.sha256) {
        (Some(file), None) => {
            let path = dir.join(file);
            match std::fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => {
                    Some(crate::tokens::sha256(text.trim().as_bytes()))
                }
                Ok(_) => {
                    ctx.err(
                        location,
                        "spec.bootstrapToken.file",
                        format!("{} is empty", path.display()),
                    );
                    None
                }
                Err(e) => {
                    ctx.err(
                        location,
                        "spec.bootstrapToken.file",
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
        (None, Some(hex)) => match crate::tokens::parse_sha256_hex(hex) {
            Some(digest) => Some(digest),
            None => {
                ctx.err(
                    location,
                    "spec.bootstrapToken.sha256",
                    "expected 64 hexadecimal characters (a SHA-256 digest)",
                );
                None
            }
        },
        _ => {
            ctx.err(
                location,
                "spec.bootstrapToken",
                "set exactly one of file or sha256",
            );
            None
        }
    }
}

/// Two workloads cannot serve on the same address and port.
fn check_workload_addresses(
    ctx: &mut Ctx,
    keyed: &[(&Loaded, ObjectKey)],
    workloads: &BTreeMap<ObjectKey, Workload>,
) {
    let mut taken: HashMap<SocketAddr, (ObjectKey, &str)> = HashMap::new();
    for (item, key) in keyed {
        let Some(workload) = workloads.get(key) else {
            continue;
        };
        if !matches!(item.document, Document::Workload(_)) {
            continue;
        }
        let mut claims: Vec<(u16, &str)> = workload
            .ports
            .values()
            .map(|p| (*p, "an application port"))
            .collect();
        claims.push((workload.proxy_inbound_port, "its proxy's inbound port"));
        // Every address of it: its other family's address is as much its own.
        for ip in workload.addresses() {
            for &(port, what) in &claims {
                let addr = SocketAddr::new(ip, port);
                match taken.get(&addr) {
                    Some((other, _)) if other != key => ctx.err(
                        &item.location,
                        "spec",
                        format!("{addr} ({what}) is already used by Workload {other}"),
                    ),
                    _ => {
                        taken.insert(addr, (key.clone(), what));
                    }
                }
            }
        }
    }
}

fn protocol_of(app_protocol: Option<&str>) -> Result<Protocol, String> {
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

fn service(
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

/// Rules attached to each parent service port, with their precedence and origin.
type Attached = BTreeMap<(ObjectKey, u16), Vec<(RankKey, RouteRule, Location)>>;

/// Precedence rank of a match: sorts most specific first (Gateway API order: exact path,
/// then regex, then longest prefix, then method, then most headers, then most query params).
type RankKey = (
    std::cmp::Reverse<(u8, usize, bool, usize, usize)>,
    String,
    usize,
    usize,
);

fn rank(m: &RouteMatch, source: &str, rule: usize, index: usize) -> RankKey {
    let (kind, len) = match &m.path {
        Some(PathMatch::Exact(p)) => (3, p.len()),
        Some(PathMatch::Regex(r)) => (2, r.len()),
        Some(PathMatch::Prefix(p)) => (1, p.trim_end_matches('/').len()),
        None => (0, 0),
    };
    (
        std::cmp::Reverse((
            kind,
            len,
            m.method.is_some(),
            m.headers.len(),
            m.query.len(),
        )),
        source.to_owned(),
        rule,
        index,
    )
}

fn value_match(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    m: &raw::ValueMatch,
    header: bool,
) -> Option<(String, ValueMatch)> {
    if header && http_header_name(&m.name).is_none() {
        ctx.err(
            location,
            format!("{field}.name"),
            format!("{:?} is not a valid header name", m.name),
        );
        return None;
    }
    let name = if header {
        m.name.to_ascii_lowercase()
    } else {
        m.name.clone()
    };
    match m.match_type.as_deref() {
        None | Some("Exact") => Some((name, ValueMatch::Exact(m.value.clone()))),
        Some("RegularExpression") => match match_regex::compile(&m.value) {
            Ok(_) => Some((name, ValueMatch::Regex(m.value.clone()))),
            Err(e) => {
                ctx.err(location, format!("{field}.value"), e.to_string());
                None
            }
        },
        Some(other) => {
            ctx.err(
                location,
                format!("{field}.type"),
                format!("{other:?} is not a match type (Exact or RegularExpression)"),
            );
            None
        }
    }
}

fn http_header_name(name: &str) -> Option<()> {
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
    .then_some(())
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn http_match(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    m: &raw::HttpRouteMatch,
) -> Option<RouteMatch> {
    let errors_before = ctx.errors.0.len();
    let path = match &m.path {
        None => Some(PathMatch::Prefix("/".into())),
        Some(path) => {
            let value = path.value.clone().unwrap_or_else(|| "/".into());
            match path.match_type.as_deref() {
                None | Some("PathPrefix") | Some("Exact") if !value.starts_with('/') => {
                    ctx.err(
                        location,
                        format!("{field}.path.value"),
                        format!("{value:?} must start with '/'"),
                    );
                    None
                }
                None | Some("PathPrefix") => Some(PathMatch::Prefix(value)),
                Some("Exact") => Some(PathMatch::Exact(value)),
                Some("RegularExpression") => match match_regex::compile(&value) {
                    Ok(_) => Some(PathMatch::Regex(value)),
                    Err(e) => {
                        ctx.err(location, format!("{field}.path.value"), e.to_string());
                        None
                    }
                },
                Some(other) => {
                    ctx.err(
                        location,
                        format!("{field}.path.type"),
                        format!("{other:?} is not a path match type (Exact, PathPrefix or RegularExpression)"),
                    );
                    None
                }
            }
        }
    };
    let method = m.method.as_ref().and_then(|method| {
        if METHODS.contains(&method.as_str()) {
            Some(method.clone())
        } else {
            ctx.err(
                location,
                format!("{field}.method"),
                format!("{method:?} is not one of {}", METHODS.join(", ")),
            );
            None
        }
    });
    let headers = matches_list(ctx, location, &format!("{field}.headers"), &m.headers, true);
    let query = matches_list(
        ctx,
        location,
        &format!("{field}.queryParams"),
        &m.query_params,
        false,
    );
    if ctx.errors.0.len() > errors_before {
        return None;
    }
    // A bare "/" prefix is the catch-all; drop it so catch-alls compare equal.
    let path = path.filter(|p| *p != PathMatch::Prefix("/".into()));
    Some(RouteMatch {
        path,
        method,
        headers,
        query,
    })
}

fn matches_list(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    list: &[raw::ValueMatch],
    header: bool,
) -> Vec<(String, ValueMatch)> {
    let mut out: Vec<(String, ValueMatch)> = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let field = format!("{field}[{i}]");
        if let Some((name, value)) = value_match(ctx, location, &field, m, header) {
            if out.iter().any(|(n, _)| *n == name) {
                ctx.err(
                    location,
                    format!("{field}.name"),
                    format!("{name:?} is matched twice in one match"),
                );
                continue;
            }
            out.push((name, value));
        }
    }
    out.sort();
    out
}

/// Parent service ports a route attaches to, with the consumer namespace for cross-namespace
/// (consumer) routes.
fn parents(
    ctx: &mut Ctx,
    location: &Location,
    route_ns: &str,
    refs: &[raw::ParentRef],
    services: &BTreeMap<ObjectKey, Service>,
) -> Vec<(ObjectKey, u16, Option<String>)> {
    if refs.is_empty() {
        ctx.err(
            location,
            "spec.parentRefs",
            "a mesh route needs a parentRef to a Service",
        );
    }
    let mut out = Vec::new();
    for (i, parent) in refs.iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        let group = parent
            .group
            .as_deref()
            .unwrap_or("gateway.networking.k8s.io");
        let kind = parent.kind.as_deref().unwrap_or("Gateway");
        if !(group.is_empty() || group == "core") || kind != "Service" {
            ctx.err(
                location,
                &field,
                format!(
                    "parent {group}/{kind} {:?} is not a Service; mesh routes attach to Services (group: \"\", kind: Service)",
                    parent.name
                ),
            );
            continue;
        }
        let namespace = parent
            .namespace
            .clone()
            .unwrap_or_else(|| route_ns.to_owned());
        let key = ObjectKey::new(&namespace, &parent.name);
        let Some(service) = services.get(&key) else {
            ctx.err(
                location,
                format!("{field}.name"),
                format!("Service {key} does not exist"),
            );
            continue;
        };
        let consumer = (namespace != route_ns).then(|| route_ns.to_owned());
        let ports: Vec<u16> = match (parent.port, &parent.section_name) {
            (Some(p), _) => match port(p) {
                Ok(p) if service.port(p).is_some() => vec![p],
                Ok(p) => {
                    ctx.err(
                        location,
                        format!("{field}.port"),
                        format!("Service {key} has no port {p}"),
                    );
                    continue;
                }
                Err(reason) => {
                    ctx.err(location, format!("{field}.port"), reason);
                    continue;
                }
            },
            (None, Some(section)) => match service
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(section))
            {
                Some(p) => vec![p.port],
                None => {
                    ctx.err(
                        location,
                        format!("{field}.sectionName"),
                        format!("Service {key} has no port named {section:?}"),
                    );
                    continue;
                }
            },
            (None, None) => service.ports.iter().map(|p| p.port).collect(),
        };
        for p in ports {
            out.push((key.clone(), p, consumer.clone()));
        }
    }
    out
}

fn backends(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    route_ns: &str,
    refs: &[raw::BackendRef],
    services: &BTreeMap<ObjectKey, Service>,
) -> Option<Vec<WeightedBackend>> {
    if refs.is_empty() {
        ctx.err(location, field, "a rule needs at least one backendRef");
        return None;
    }
    let errors_before = ctx.errors.0.len();
    let mut out = Vec::new();
    for (i, backend) in refs.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let group = backend.group.as_deref().unwrap_or("");
        let kind = backend.kind.as_deref().unwrap_or("Service");
        if !(group.is_empty() || group == "core") || kind != "Service" {
            ctx.err(
                location,
                &field,
                format!("backend {group}/{kind} is not a Service"),
            );
            continue;
        }
        if backend.filters.as_ref().is_some_and(|f| !f.is_empty()) {
            ctx.err(
                location,
                format!("{field}.filters"),
                "backend filters are not supported",
            );
            continue;
        }
        let namespace = backend
            .namespace
            .clone()
            .unwrap_or_else(|| route_ns.to_owned());
        if namespace != route_ns {
            ctx.err(
                location,
                format!("{field}.namespace"),
                "cross-namespace backends need a ReferenceGrant, which Strait does not support; route to a Service in the route's namespace",
            );
            continue;
        }
        let key = ObjectKey::new(&namespace, &backend.name);
        let Some(service) = services.get(&key) else {
            ctx.err(
                location,
                format!("{field}.name"),
                format!("Service {key} does not exist"),
            );
            continue;
        };
        let Some(p) = backend.port else {
            ctx.err(
                location,
                format!("{field}.port"),
                "required for a Service backend",
            );
            continue;
        };
        let p = match port(p) {
            Ok(p) if service.port(p).is_some() => p,
            Ok(p) => {
                ctx.err(
                    location,
                    format!("{field}.port"),
                    format!("Service {key} has no port {p}"),
                );
                continue;
            }
            Err(reason) => {
                ctx.err(location, format!("{field}.port"), reason);
                continue;
            }
        };
        let weight = backend.weight.unwrap_or(1);
        if !(0..=MAX_WEIGHT).contains(&weight) {
            ctx.err(
                location,
                format!("{field}.weight"),
                format!("{weight} is out of range (0-{MAX_WEIGHT})"),
            );
            continue;
        }
        out.push(WeightedBackend {
            service: key,
            port: p,
            weight: weight as u32,
        });
    }
    (ctx.errors.0.len() == errors_before).then_some(out)
}

fn grpc_code(name: &str) -> Option<u32> {
    const CODES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    let name = name.trim();
    name.parse::<u32>()
        .ok()
        .filter(|n| (1..=16).contains(n))
        .or_else(|| {
            CODES
                .iter()
                .position(|c| c.eq_ignore_ascii_case(name))
                .map(|i| i as u32)
                .filter(|n| *n > 0)
        })
}

/// Route-level settings written as annotations (GRPCRoute has no retry field; stickiness has
/// no Gateway API field yet).
struct RouteAnnotations {
    sticky_header: Option<String>,
    grpc_codes: Vec<u32>,
    attempts: Option<u32>,
}

fn route_annotations(
    ctx: &mut Ctx,
    location: &Location,
    meta: &raw::ObjectMeta,
) -> RouteAnnotations {
    let field = |key: &str| format!("metadata.annotations[{key:?}]");
    let sticky_header = meta
        .annotations
        .get(STICKY_HEADER_ANNOTATION)
        .and_then(|h| {
            if http_header_name(h).is_some() {
                Some(h.to_ascii_lowercase())
            } else {
                ctx.err(
                    location,
                    field(STICKY_HEADER_ANNOTATION),
                    format!("{h:?} is not a valid header name"),
                );
                None
            }
        });
    let mut grpc_codes = Vec::new();
    if let Some(list) = meta.annotations.get(RETRY_GRPC_CODES_ANNOTATION) {
        for code in list.split(',').filter(|c| !c.trim().is_empty()) {
            match grpc_code(code) {
                Some(n) => grpc_codes.push(n),
                None => ctx.err(
                    location,
                    field(RETRY_GRPC_CODES_ANNOTATION),
                    format!(
                        "{:?} is not a gRPC status code name or number (1-16)",
                        code.trim()
                    ),
                ),
            }
        }
    }
    let attempts = meta
        .annotations
        .get(RETRY_ATTEMPTS_ANNOTATION)
        .and_then(|a| match a.parse::<u32>() {
            Ok(n) if n <= 10 => Some(n),
            _ => {
                ctx.err(
                    location,
                    field(RETRY_ATTEMPTS_ANNOTATION),
                    format!("{a:?} is not a number of retries (0-10)"),
                );
                None
            }
        });
    RouteAnnotations {
        sticky_header,
        grpc_codes,
        attempts,
    }
}

fn retry(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    raw: Option<&raw::HttpRouteRetry>,
    notes: &RouteAnnotations,
) -> Option<Retry> {
    let mut retry = Retry {
        max_retries: notes.attempts.unwrap_or(0),
        http_statuses: Vec::new(),
        grpc_codes: notes.grpc_codes.clone(),
        backoff: None,
    };
    if let Some(raw) = raw {
        if let Some(attempts) = raw.attempts {
            match u32::try_from(attempts) {
                Ok(n) if n <= 10 => retry.max_retries = n,
                _ => ctx.err(
                    location,
                    format!("{field}.attempts"),
                    format!("{attempts} is out of range (0-10)"),
                ),
            }
        } else if retry.max_retries == 0 {
            // The Gateway API leaves the default to implementations; one retry is the
            // common, safe choice.
            retry.max_retries = 1;
        }
        for (i, code) in raw.codes.iter().enumerate() {
            match u16::try_from(*code) {
                Ok(c) if (400..=599).contains(&c) => retry.http_statuses.push(c),
                _ => ctx.err(
                    location,
                    format!("{field}.codes[{i}]"),
                    format!("{code} is not an HTTP error status (400-599)"),
                ),
            }
        }
        retry.backoff = parse_duration(ctx, location, &format!("{field}.backoff"), &raw.backoff);
    } else if notes.grpc_codes.is_empty() && notes.attempts.is_none() {
        return None;
    }
    Some(retry)
}

#[allow(clippy::too_many_arguments)]
fn attach_rule(
    attached: &mut Attached,
    parents: &[(ObjectKey, u16, Option<String>)],
    source: &str,
    rule_name: &str,
    rule_index: usize,
    matches: Vec<RouteMatch>,
    backends: &[WeightedBackend],
    timeouts: &Timeouts,
    retry: &Option<Retry>,
    sticky_header: &Option<String>,
    location: &Location,
) {
    for (service, port, consumer) in parents {
        for (index, matcher) in matches.iter().enumerate() {
            let rule = RouteRule {
                name: rule_name.to_owned(),
                source: source.to_owned(),
                matcher: matcher.clone(),
                backends: backends.to_vec(),
                timeouts: timeouts.clone(),
                retry: retry.clone(),
                sticky_header: sticky_header.clone(),
                consumer_namespace: consumer.clone(),
            };
            attached.entry((service.clone(), *port)).or_default().push((
                rank(matcher, source, rule_index, index),
                rule,
                location.clone(),
            ));
        }
    }
}

fn http_route(
    ctx: &mut Ctx,
    item: &Loaded,
    key: &ObjectKey,
    object: &Object<raw::HttpRouteSpec>,
    services: &BTreeMap<ObjectKey, Service>,
    attached: &mut Attached,
) {
    let location = &item.location;
    let spec = &object.spec;
    if !spec.hostnames.is_empty() {
        ctx.err(
            location,
            "spec.hostnames",
            "hostnames have no meaning for a route attached to a Service (GAMMA); remove them",
        );
    }
    let parents = parents(ctx, location, &key.namespace, &spec.parent_refs, services);
    let notes = route_annotations(ctx, location, &object.metadata);
    let source = format!("HTTPRoute {key}");
    for (r, rule) in spec.rules.iter().enumerate() {
        let field = format!("spec.rules[{r}]");
        if !rule.filters.is_empty() {
            ctx.err(
                location,
                format!("{field}.filters"),
                "filters are not supported yet; remove them",
            );
        }
        if rule.session_persistence.is_some() {
            ctx.err(
                location,
                format!("{field}.sessionPersistence"),
                format!("not supported; use the {STICKY_HEADER_ANNOTATION} annotation"),
            );
        }
        let matches: Vec<RouteMatch> = if rule.matches.is_empty() {
            vec![RouteMatch::default()]
        } else {
            rule.matches
                .iter()
                .enumerate()
                .filter_map(|(m, raw)| {
                    http_match(ctx, location, &format!("{field}.matches[{m}]"), raw)
                })
                .collect()
        };
        let backends = backends(
            ctx,
            location,
            &format!("{field}.backendRefs"),
            &key.namespace,
            &rule.backend_refs,
            services,
        );
        let mut timeouts = Timeouts::default();
        if let Some(t) = &rule.timeouts {
            // "0s" disables a timeout in the Gateway API.
            timeouts.request = parse_duration(
                ctx,
                location,
                &format!("{field}.timeouts.request"),
                &t.request,
            )
            .filter(|d| !d.is_zero());
            timeouts.backend_request = parse_duration(
                ctx,
                location,
                &format!("{field}.timeouts.backendRequest"),
                &t.backend_request,
            )
            .filter(|d| !d.is_zero());
            if let (Some(request), Some(backend)) = (timeouts.request, timeouts.backend_request)
                && backend > request
            {
                ctx.err(
                    location,
                    format!("{field}.timeouts.backendRequest"),
                    format!(
                        "{} is longer than timeouts.request ({})",
                        duration::format(backend),
                        duration::format(request)
                    ),
                );
            }
        }
        let retry = retry(
            ctx,
            location,
            &format!("{field}.retry"),
            rule.retry.as_ref(),
            &notes,
        );
        let Some(backends) = backends else { continue };
        let rule_name = format!(
            "{}/{}",
            key,
            rule.name.clone().unwrap_or_else(|| r.to_string())
        );
        attach_rule(
            attached,
            &parents,
            &source,
            &rule_name,
            r,
            matches,
            &backends,
            &timeouts,
            &retry,
            &notes.sticky_header,
            location,
        );
    }
}

fn grpc_route(
    ctx: &mut Ctx,
    item: &Loaded,
    key: &ObjectKey,
    object: &Object<raw::GrpcRouteSpec>,
    services: &BTreeMap<ObjectKey, Service>,
    attached: &mut Attached,
) {
    let location = &item.location;
    let spec = &object.spec;
    if !spec.hostnames.is_empty() {
        ctx.err(
            location,
            "spec.hostnames",
            "hostnames have no meaning for a route attached to a Service (GAMMA); remove them",
        );
    }
    let parents = parents(ctx, location, &key.namespace, &spec.parent_refs, services);
    let notes = route_annotations(ctx, location, &object.metadata);
    let source = format!("GRPCRoute {key}");
    for (r, rule) in spec.rules.iter().enumerate() {
        let field = format!("spec.rules[{r}]");
        if !rule.filters.is_empty() {
            ctx.err(
                location,
                format!("{field}.filters"),
                "filters are not supported yet; remove them",
            );
        }
        let mut matches = Vec::new();
        for (m, raw) in rule.matches.iter().enumerate() {
            let field = format!("{field}.matches[{m}]");
            let errors_before = ctx.errors.0.len();
            let path = raw
                .method
                .as_ref()
                .and_then(|method| grpc_path(ctx, location, &format!("{field}.method"), method));
            let headers = matches_list(
                ctx,
                location,
                &format!("{field}.headers"),
                &raw.headers,
                true,
            );
            if ctx.errors.0.len() == errors_before {
                matches.push(RouteMatch {
                    path,
                    method: None,
                    headers,
                    query: Vec::new(),
                });
            }
        }
        if rule.matches.is_empty() {
            matches.push(RouteMatch::default());
        }
        let backends = backends(
            ctx,
            location,
            &format!("{field}.backendRefs"),
            &key.namespace,
            &rule.backend_refs,
            services,
        );
        let retry = retry(ctx, location, &format!("{field}.retry"), None, &notes);
        let Some(backends) = backends else { continue };
        let rule_name = format!(
            "{}/{}",
            key,
            rule.name.clone().unwrap_or_else(|| r.to_string())
        );
        attach_rule(
            attached,
            &parents,
            &source,
            &rule_name,
            r,
            matches,
            &backends,
            &Timeouts::default(),
            &retry,
            &notes.sticky_header,
            location,
        );
    }
}

/// A gRPC method match as the path match it amounts to (`/service/method`).
fn grpc_path(
    ctx: &mut Ctx,
    location: &Location,
    field: &str,
    m: &raw::GrpcMethodMatch,
) -> Option<PathMatch> {
    let service = m.service.clone().unwrap_or_default();
    let method = m.method.clone().unwrap_or_default();
    match m.match_type.as_deref() {
        None | Some("Exact") => {
            let valid = |s: &str| {
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._".contains(&b))
            };
            if !valid(&service) || !valid(&method) {
                ctx.err(
                    location,
                    field,
                    "service and method must be protobuf names (letters, digits, '.', '_')",
                );
                return None;
            }
            match (service.as_str(), method.as_str()) {
                ("", "") => {
                    ctx.err(
                        location,
                        field,
                        "at least one of service and method is required",
                    );
                    None
                }
                (s, "") => Some(PathMatch::Prefix(format!("/{s}"))),
                ("", m) => Some(PathMatch::Regex(format!("/[^/]+/{}", regex::escape(m)))),
                (s, m) => Some(PathMatch::Exact(format!("/{s}/{m}"))),
            }
        }
        Some("RegularExpression") => {
            // Each part is checked on its own and spliced in as a group of its own, so neither
            // can reach into the other's place or out of the path's anchors.
            let mut part = |name: &str, pattern: String| {
                if pattern.is_empty() {
                    return Some("[^/]+".to_owned());
                }
                match match_regex::compile(&pattern) {
                    Ok(_) => Some(format!("(?:{pattern})")),
                    Err(e) => {
                        ctx.err(location, format!("{field}.{name}"), e.to_string());
                        None
                    }
                }
            };
            let (s, m) = (part("service", service), part("method", method));
            let pattern = format!("/{}/{}", s?, m?);
            match match_regex::compile(&pattern) {
                Ok(_) => Some(PathMatch::Regex(pattern)),
                Err(e) => {
                    ctx.err(location, field, e.to_string());
                    None
                }
            }
        }
        Some(other) => {
            ctx.err(
                location,
                format!("{field}.type"),
                format!("{other:?} is not a match type (Exact or RegularExpression)"),
            );
            None
        }
    }
}

/// Sorts each service port's rules by precedence and reports matches defined twice.
fn order_routes(ctx: &mut Ctx, attached: Attached) -> BTreeMap<(ObjectKey, u16), Vec<RouteRule>> {
    let mut out = BTreeMap::new();
    for (parent, mut rules) in attached {
        rules.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<RouteRule> = Vec::new();
        for (_, rule, location) in rules {
            if let Some(first) = kept.iter().find(|k| {
                k.matcher == rule.matcher && k.consumer_namespace == rule.consumer_namespace
            }) {
                ctx.err(
                    &location,
                    "spec.rules",
                    format!(
                        "overlapping route: rule {} matches exactly what rule {} of {} already matches on Service {} port {}",
                        rule.name, first.name, first.source, parent.0, parent.1
                    ),
                );
                continue;
            }
            kept.push(rule);
        }
        out.insert(parent, kept);
    }
    out
}

fn target(
    ctx: &mut Ctx,
    location: &Location,
    namespace: &str,
    target: &raw::TargetRef,
    services: &BTreeMap<ObjectKey, Service>,
) -> Option<(ObjectKey, Option<u16>)> {
    let group = target.group.as_deref().unwrap_or("");
    let kind = target.kind.as_deref().unwrap_or("Service");
    if !(group.is_empty() || group == "core") || kind != "Service" {
        ctx.err(
            location,
            "spec.targetRef",
            format!("{group}/{kind} is not a Service; policies target Services"),
        );
        return None;
    }
    let key = ObjectKey::new(namespace, &target.name);
    let Some(service) = services.get(&key) else {
        ctx.err(
            location,
            "spec.targetRef.name",
            format!("Service {key} does not exist"),
        );
        return None;
    };
    let port = match target.port {
        None => None,
        Some(p) => match port(p) {
            Ok(p) if service.port(p).is_some() => Some(p),
            Ok(p) => {
                ctx.err(
                    location,
                    "spec.targetRef.port",
                    format!("Service {key} has no port {p}"),
                );
                return None;
            }
            Err(reason) => {
                ctx.err(location, "spec.targetRef.port", reason);
                return None;
            }
        },
    };
    Some((key, port))
}

fn backend_policy(
    ctx: &mut Ctx,
    item: &Loaded,
    key: &ObjectKey,
    object: &Object<raw::BackendPolicySpec>,
    services: &BTreeMap<ObjectKey, Service>,
) -> Option<((ObjectKey, Option<u16>), BackendPolicy)> {
    let location = &item.location;
    let spec = &object.spec;
    let errors_before = ctx.errors.0.len();
    let target = target(ctx, location, &key.namespace, &spec.target_ref, services);
    let mut policy = BackendPolicy {
        connect_timeout: parse_duration(
            ctx,
            location,
            "spec.connectTimeout",
            &spec.connect_timeout,
        ),
        idle_timeout: parse_duration(ctx, location, "spec.idleTimeout", &spec.idle_timeout),
        ..Default::default()
    };
    if policy.connect_timeout.is_some_and(|d| d.is_zero()) {
        ctx.err(location, "spec.connectTimeout", "must be longer than 0s");
    }
    if let Some(cb) = &spec.circuit_breaker {
        let consecutive = cb
            .consecutive_failures
            .unwrap_or(defaults::BREAKER_CONSECUTIVE_FAILURES.into());
        if !(1..=1000).contains(&consecutive) {
            ctx.err(
                location,
                "spec.circuitBreaker.consecutiveFailures",
                format!("{consecutive} is out of range (1-1000)"),
            );
        }
        let percent = cb
            .max_ejected_percent
            .unwrap_or(defaults::BREAKER_MAX_EJECTED_PERCENT.into());
        if !(0..=100).contains(&percent) {
            ctx.err(
                location,
                "spec.circuitBreaker.maxEjectedPercent",
                format!("{percent} is out of range (0-100)"),
            );
        }
        let base = parse_duration(
            ctx,
            location,
            "spec.circuitBreaker.baseEjectionTime",
            &cb.base_ejection_time,
        )
        .unwrap_or(defaults::BREAKER_BASE_EJECTION);
        let max = parse_duration(
            ctx,
            location,
            "spec.circuitBreaker.maxEjectionTime",
            &cb.max_ejection_time,
        )
        .unwrap_or(defaults::BREAKER_MAX_EJECTION);
        if max < base {
            ctx.err(
                location,
                "spec.circuitBreaker.maxEjectionTime",
                "must not be shorter than baseEjectionTime",
            );
        }
        policy.circuit_breaker = Some(CircuitBreaker {
            consecutive_failures: consecutive.clamp(1, 1000) as u32,
            base_ejection: base,
            max_ejection: max,
            max_ejected_percent: percent.clamp(0, 100) as u32,
        });
    }
    if let Some(pending) = spec.max_pending_requests {
        match u32::try_from(pending) {
            Ok(n) if n > 0 => policy.max_pending_requests = Some(n),
            _ => ctx.err(
                location,
                "spec.maxPendingRequests",
                format!("{pending} must be a positive number"),
            ),
        }
    }
    if let Some(budget) = &spec.retry_budget {
        let percent = budget.percent.unwrap_or(20);
        if !(0..=1000).contains(&percent) {
            ctx.err(
                location,
                "spec.retryBudget.percent",
                format!("{percent} is out of range (0-1000)"),
            );
        }
        let min = budget.min_retries_per_second.unwrap_or(10);
        if !(0..=100_000).contains(&min) {
            ctx.err(
                location,
                "spec.retryBudget.minRetriesPerSecond",
                format!("{min} is out of range (0-100000)"),
            );
        }
        let interval = parse_duration(ctx, location, "spec.retryBudget.interval", &budget.interval)
            .unwrap_or(Duration::from_secs(10));
        if interval < Duration::from_secs(1) {
            ctx.err(location, "spec.retryBudget.interval", "must be at least 1s");
        }
        policy.retry_budget = Some(RetryBudget {
            ratio: percent.clamp(0, 1000) as f64 / 100.0,
            min_per_second: min.clamp(0, 100_000) as u32,
            interval,
        });
    }
    if let Some(backoff) = &spec.retry_backoff {
        policy.retry_backoff_base =
            parse_duration(ctx, location, "spec.retryBackoff.base", &backoff.base);
        policy.retry_backoff_max =
            parse_duration(ctx, location, "spec.retryBackoff.max", &backoff.max);
        if let (Some(base), Some(max)) = (policy.retry_backoff_base, policy.retry_backoff_max)
            && max < base
        {
            ctx.err(
                location,
                "spec.retryBackoff.max",
                "must not be shorter than base",
            );
        }
    }
    policy.load_balancer = match spec.load_balancer.as_deref() {
        None => None,
        Some("PeakEWMA") => Some(LoadBalancer::PeakEwma),
        Some("RoundRobin") => Some(LoadBalancer::RoundRobin),
        Some(other) => {
            ctx.err(
                location,
                "spec.loadBalancer",
                format!("{other:?} is not a load balancer (PeakEWMA or RoundRobin)"),
            );
            None
        }
    };
    if ctx.errors.0.len() > errors_before {
        return None;
    }
    Some((target?, policy))
}

fn authorization_policy(
    ctx: &mut Ctx,
    item: &Loaded,
    key: &ObjectKey,
    object: &Object<raw::AuthorizationPolicySpec>,
    services: &BTreeMap<ObjectKey, Service>,
    mesh: &MeshSettings,
) -> Option<AuthorizationPolicy> {
    let location = &item.location;
    let spec = &object.spec;
    let errors_before = ctx.errors.0.len();
    let target = target(ctx, location, &key.namespace, &spec.target_ref, services);
    let routes: Vec<RouteMatch> = spec
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, m)| http_match(ctx, location, &format!("spec.routes[{i}]"), m))
        .collect();
    if spec.from.is_empty() {
        ctx.err(location, "spec.from", "list at least one principal; to deny everyone, use MeshConfig defaultAuthorization: Deny");
    }
    let mut principals = Vec::new();
    for (i, p) in spec.from.iter().enumerate() {
        let field = format!("spec.from[{i}]");
        let set = [
            p.identity.is_some(),
            p.namespace.is_some(),
            p.trust_domain.is_some(),
            p.authenticated.is_some(),
            p.unauthenticated.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            ctx.err(
                location,
                &field,
                "set exactly one of identity, namespace, trustDomain, authenticated, unauthenticated",
            );
            continue;
        }
        if let Some(identity) = &p.identity {
            match identity.parse::<SpiffeId>() {
                Ok(id) if id.trust_domain() == mesh.trust_domain => {
                    principals.push(Principal::Identity(id))
                }
                Ok(id) => ctx.err(
                    location,
                    format!("{field}.identity"),
                    format!(
                        "{id} is outside the mesh's trust domain {}",
                        mesh.trust_domain
                    ),
                ),
                Err(e) => ctx.err(location, format!("{field}.identity"), e.to_string()),
            }
        } else if let Some(ns) = &p.namespace {
            if valid_name(ns) {
                principals.push(Principal::Namespace(ns.clone()));
            } else {
                ctx.err(
                    location,
                    format!("{field}.namespace"),
                    format!("{ns:?} is not a valid namespace name"),
                );
            }
        } else if let Some(td) = &p.trust_domain {
            if SpiffeId::new(td, "a", "b").is_ok() {
                principals.push(Principal::TrustDomain(td.clone()));
            } else {
                ctx.err(
                    location,
                    format!("{field}.trustDomain"),
                    format!("{td:?} is not a valid trust domain"),
                );
            }
        } else if p.authenticated == Some(true) {
            principals.push(Principal::Authenticated);
        } else if p.unauthenticated == Some(true) {
            principals.push(Principal::Unauthenticated);
        } else {
            ctx.err(
                location,
                &field,
                "authenticated and unauthenticated can only be set to true",
            );
        }
    }
    if ctx.errors.0.len() > errors_before {
        return None;
    }
    let (service, port) = target?;
    Some(AuthorizationPolicy {
        key: key.clone(),
        service,
        port,
        routes,
        principals,
    })
}
