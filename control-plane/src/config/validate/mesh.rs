//! `MeshConfig`: the mesh-wide trust domain, inbound mode and default authorization.

use strait_identity::SpiffeId;

use super::Ctx;
use crate::config::error::Location;
use crate::config::model::*;
use crate::config::raw::{self, Object};

pub(super) fn mesh_settings(
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
