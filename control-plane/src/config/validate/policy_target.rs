//! `spec.targetRef` of the policy kinds (BackendPolicy, AuthorizationPolicy): a Service, or
//! one port of it.

use std::collections::BTreeMap;

use super::Ctx;
use super::scalars::port;
use crate::config::error::Location;
use crate::config::model::*;
use crate::config::raw;

pub(super) fn target(
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
