//! The fake's `status` subresource of HTTPRoutes and GRPCRoutes, as the API server serves it to
//! a controller writing route status: `PATCH …/namespaces/NS/{httproutes|grpcroutes}/NAME/status`
//! with an RFC 7386 merge patch (`application/merge-patch+json`). Only `status` changes (the
//! subresource ignores the rest, `metadata.generation` included); a `metadata.resourceVersion`
//! in the patch is a precondition (409 `Conflict` when the object has moved on); the stored
//! object gets a new resourceVersion and watchers see it MODIFIED. Every patch is recorded as
//! sent ([`FakeApi::route_status_patches`]); [`FakeApi::fail_route_status_patches`] makes the next
//! ones answer 500, as a failing API server would.

use std::sync::Mutex;

use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{Body, Collection, FakeApi, GRPC_ROUTES, HTTP_ROUTES, State, json_response, status};

/// One status patch the fake received.
#[derive(Clone, Debug)]
pub struct StatusPatch {
    /// `HTTPRoute` or `GRPCRoute`.
    pub kind: &'static str,
    /// The route's namespace.
    pub namespace: String,
    /// The route's name.
    pub name: String,
    /// The patch as sent.
    pub body: Value,
    /// The answer's status code.
    pub code: u16,
}

/// `(collection, namespace, name)` when `path` is a route's `status` subresource.
pub(super) fn target(path: &str) -> Option<(Collection, String, String)> {
    let rest = path.strip_prefix("/apis/gateway.networking.k8s.io/v1/namespaces/")?;
    let mut parts = rest.split('/');
    let (namespace, plural, name, sub) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if sub != "status" || parts.next().is_some() || namespace.is_empty() || name.is_empty() {
        return None;
    }
    let collection = match plural {
        "httproutes" => HTTP_ROUTES,
        "grpcroutes" => GRPC_ROUTES,
        _ => return None,
    };
    Some((collection, namespace.to_owned(), name.to_owned()))
}

/// Answers a status request for a route.
pub(super) fn handle(
    state: &Mutex<State>,
    method: &Method,
    content_type: &str,
    (collection, namespace, name): (Collection, String, String),
    body: &[u8],
) -> Response<Body> {
    let mut state = state.lock().expect("state lock");
    let key = (namespace.clone(), name.clone());
    let Some(stored) = state
        .objects
        .get(&collection)
        .and_then(|objects| objects.get(&key))
        .cloned()
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!(
                "{}.gateway.networking.k8s.io \"{name}\" not found",
                plural(collection)
            ),
        );
    };
    if *method == Method::GET {
        let mut object = stored;
        object["apiVersion"] = json!(collection.api_version);
        object["kind"] = json!(collection.kind);
        return json_response(StatusCode::OK, &object);
    }
    if *method != Method::PATCH {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake serves only get and merge patch of route status",
        );
    }
    let patch: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let record = |state: &mut State, code: StatusCode| {
        state.status_patches.push(StatusPatch {
            kind: collection.kind,
            namespace: namespace.clone(),
            name: name.clone(),
            body: patch.clone(),
            code: code.as_u16(),
        });
    };
    if content_type != "application/merge-patch+json" {
        record(&mut state, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!("the fake takes only application/merge-patch+json, not {content_type}"),
        );
    }
    if state.failing_status_patches > 0 {
        state.failing_status_patches -= 1;
        record(&mut state, StatusCode::INTERNAL_SERVER_ERROR);
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "etcdserver: request timed out",
        );
    }
    if !patch.is_object() {
        record(&mut state, StatusCode::BAD_REQUEST);
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a JSON object",
        );
    }
    if let Some(precondition) = patch["metadata"]["resourceVersion"].as_str()
        && stored["metadata"]["resourceVersion"].as_str() != Some(precondition)
    {
        record(&mut state, StatusCode::CONFLICT);
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {}.gateway.networking.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                plural(collection)
            ),
        );
    }
    let mut patched = stored.clone();
    json_patch::merge(&mut patched, &patch);
    let mut object = stored;
    object["status"] = patched["status"].take();
    state.version += 1;
    object["metadata"]["resourceVersion"] = json!(state.version.to_string());
    state
        .objects
        .entry(collection)
        .or_default()
        .insert(key, object.clone());
    record(&mut state, StatusCode::OK);
    super::publish(&mut state, collection, "MODIFIED", object.clone());
    object["apiVersion"] = json!(collection.api_version);
    object["kind"] = json!(collection.kind);
    json_response(StatusCode::OK, &object)
}

fn plural(collection: Collection) -> &'static str {
    collection.path.rsplit('/').next().unwrap_or("")
}

impl FakeApi {
    /// Every status patch of a route the fake received, in order, failed ones included.
    pub fn route_status_patches(&self) -> Vec<StatusPatch> {
        self.state
            .lock()
            .expect("state lock")
            .status_patches
            .clone()
    }

    /// Makes the next `count` route status patches answer 500.
    pub fn fail_route_status_patches(&self, count: usize) {
        self.state
            .lock()
            .expect("state lock")
            .failing_status_patches = count;
    }

    /// The object `namespace/name` of `collection`, as stored.
    pub fn object(&self, collection: Collection, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .expect("state lock")
            .objects
            .get(&collection)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_route_status_paths_are_targets() {
        let (c, ns, name) =
            target("/apis/gateway.networking.k8s.io/v1/namespaces/demo/httproutes/web/status")
                .unwrap();
        assert_eq!(
            (c.kind, ns.as_str(), name.as_str()),
            ("HTTPRoute", "demo", "web")
        );
        assert!(
            target("/apis/gateway.networking.k8s.io/v1/namespaces/demo/grpcroutes/g/status")
                .is_some()
        );
        assert!(
            target("/apis/gateway.networking.k8s.io/v1/namespaces/demo/httproutes/web").is_none()
        );
        assert!(
            target("/apis/gateway.networking.k8s.io/v1/namespaces/demo/referencegrants/g/status")
                .is_none()
        );
    }
}
