//! A route's status as `strait validate` prints it: one line per route and parentRef with the
//! conditions (`Accepted`, `ResolvedRefs`, `PartiallyInvalid`) the control plane writes to `status.parents[]` on Kubernetes, so a file checked
//! locally tells what the mesh would do with it.

use std::fmt::Write as _;

use super::model::{Model, ParentStatus, RouteCondition};

/// One line per route and parentRef, in the model's order.
pub fn lines(model: &Model) -> Vec<String> {
    let mut out = Vec::new();
    for ((kind, key), status) in &model.route_status {
        for parent in &status.parents {
            out.push(format!(
                "{kind} {key} → {}: {}",
                parent_name(parent),
                parent
                    .conditions
                    .iter()
                    .map(condition)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

/// The same as JSON: `[{kind, namespace, name, parents: [{parentRef, conditions}]}]`.
pub fn json(model: &Model) -> serde_json::Value {
    model
        .route_status
        .iter()
        .map(|((kind, key), status)| {
            serde_json::json!({
                "kind": kind,
                "namespace": key.namespace,
                "name": key.name,
                "parents": status.parents.iter().map(|p| serde_json::json!({
                    "parentRef": {
                        "group": p.parent.group,
                        "kind": p.parent.kind,
                        "namespace": p.parent.namespace,
                        "name": p.parent.name,
                        "port": p.parent.port,
                        "sectionName": p.parent.section_name,
                    },
                    "conditions": p.conditions.iter().map(|c| serde_json::json!({
                        "type": c.type_,
                        "status": if c.status { "True" } else { "False" },
                        "reason": c.reason,
                        "message": c.message,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

fn parent_name(parent: &ParentStatus) -> String {
    let p = &parent.parent;
    let mut name = format!("{} {}/{}", p.kind, p.namespace, p.name);
    if let Some(port) = p.port {
        let _ = write!(name, " port {port}");
    }
    if let Some(section) = &p.section_name {
        let _ = write!(name, " sectionName {section}");
    }
    name
}

/// A condition alone when it says all is well; with its reason and message when not (a
/// `False` one, or `PartiallyInvalid=True`).
fn condition(c: &RouteCondition) -> String {
    let status = if c.status { "True" } else { "False" };
    let healthy = c.status != (c.type_ == "PartiallyInvalid");
    if healthy {
        format!("{}={status}", c.type_)
    } else {
        format!("{}={status} ({}: {})", c.type_, c.reason, c.message)
    }
}
