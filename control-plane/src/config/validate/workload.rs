//! `Workload` (local mode's stand-in for a pod): its identity, addresses, ports, proxy ports
//! and bootstrap token digest; and that no two workloads claim one address and port.
//!
//! A token `file` was read when the document was loaded ([`Loaded::bootstrap_token_file`]), so
//! nothing here touches the disk.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use strait_identity::SpiffeId;
use strait_proto::defaults;

use super::Ctx;
use super::scalars::{port, valid_name};
use crate::config::error::Location;
use crate::config::load::{Loaded, TokenFile};
use crate::config::model::*;
use crate::config::raw::{self, Document, Object};

pub(super) fn workload(
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
        None => defaults::PROXY_INBOUND_PORT,
        Some(value) => port(value).unwrap_or_else(|reason| {
            ctx.err(location, "spec.proxy.inboundPort", reason);
            defaults::PROXY_INBOUND_PORT
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
    let owner = spec.owner.as_ref().and_then(|o| owner(ctx, location, o));
    let token_sha256 = spec.bootstrap_token.as_ref().and_then(|token| {
        bootstrap_token(ctx, location, token, item.bootstrap_token_file.as_ref())
    });
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
        owner,
    })
}

/// A Workload's `spec.owner`: a kind (letters and digits, at most 63) and a Kubernetes name, so every
/// workload label value is a bounded, well-formed name.
fn owner(ctx: &mut Ctx, location: &Location, raw: &raw::WorkloadOwner) -> Option<Owner> {
    let kind_ok = Owner::is_kind(&raw.kind);
    if !kind_ok {
        ctx.err(
            location,
            "spec.owner.kind",
            format!(
                "{:?} is not a kind (1-63 letters and digits, a letter first)",
                raw.kind
            ),
        );
    }
    if !valid_name(&raw.name) {
        ctx.err(
            location,
            "spec.owner.name",
            format!("{:?} is not a valid Kubernetes name", raw.name),
        );
    }
    (kind_ok && valid_name(&raw.name)).then(|| Owner {
        kind: raw.kind.clone(),
        name: raw.name.clone(),
    })
}

/// A workload's `spec.addresses`: each an IP address, none repeating `spec.address` or
/// another entry (one workload cannot claim an address twice).
pub(super) fn other_addresses(
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

/// The digest a Workload's `spec.bootstrapToken` declares: its `sha256`, or the digest of its
/// `file` as the loader read it (`file`: what the loader found there).
pub(super) fn bootstrap_token(
    ctx: &mut Ctx,
    location: &Location,
    token: &raw::BootstrapToken,
    file: Option<&TokenFile>,
) -> Option<[u8; 32]> {
    match (&token.file, &token.sha256) {
        (Some(_), None) => match file {
            Some(Ok(digest)) => Some(*digest),
            Some(Err(reason)) => {
                ctx.err(location, "spec.bootstrapToken.file", reason.clone());
                None
            }
            None => {
                ctx.err(
                    location,
                    "spec.bootstrapToken.file",
                    "the file was not read when the document was loaded",
                );
                None
            }
        },
        (None, Some(hex)) => match crate::digest::parse_sha256_hex(hex) {
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
pub(super) fn check_workload_addresses(
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
