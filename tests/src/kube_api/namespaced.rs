//! The fake's namespaced reads, as `kubectl get -n NS` and the CLI's target resolution make
//! them: `GET …/namespaces/NS/RESOURCE` (a list, with a label selector of `k=v` terms) and
//! `GET …/namespaces/NS/RESOURCE/NAME` (one object, with its `kind` and `apiVersion`, or the
//! API server's 404 Status), and the pods' `portforward` subresource (`portforward.rs`).
//! Reads of a resource made forbidden answer 403 with the API server's RBAC message.

use std::sync::Mutex;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{ALL, Body, Collection, FakeApi, State, json_response, query, status};

/// `apps/v1` Deployments: read by the CLI, not watched by the control plane.
pub const DEPLOYMENTS: Collection = Collection {
    path: "/apis/apps/v1/deployments",
    api_version: "apps/v1",
    kind: "Deployment",
};

/// What a namespaced request asks for.
struct Namespaced<'a> {
    collection: Collection,
    /// The resource's plural, as RBAC names it (`pods`).
    resource: &'a str,
    namespace: &'a str,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

/// `/api/v1/namespaces/NS/RES[/NAME[/SUB]]` or `/apis/G/V/namespaces/NS/RES[/NAME[/SUB]]`,
/// for a collection the fake knows.
fn parse(path: &str) -> Option<Namespaced<'_>> {
    let (prefix, rest) = if let Some(rest) = path.strip_prefix("/api/v1/namespaces/") {
        ("/api/v1".to_owned(), rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let mut parts = rest.splitn(3, '/');
        let (group, version, rest) = (parts.next()?, parts.next()?, parts.next()?);
        let rest = rest.strip_prefix("namespaces/")?;
        (format!("/apis/{group}/{version}"), rest)
    };
    let mut parts = rest.split('/');
    let namespace = parts.next().filter(|n| !n.is_empty())?;
    let resource = parts.next()?;
    let name = parts.next();
    let subresource = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let cluster_path = format!("{prefix}/{resource}");
    let collection = ALL
        .iter()
        .chain([&DEPLOYMENTS])
        .find(|c| c.path == cluster_path)
        .copied()?;
    Some(Namespaced {
        collection,
        resource,
        namespace,
        name,
        subresource,
    })
}

/// Every `k=v` term of a label selector holds on `object` (the forms the CLI sends).
fn matches(object: &Value, selector: Option<&String>) -> bool {
    selector.is_none_or(|selector| {
        selector
            .split(',')
            .filter(|term| !term.is_empty())
            .all(|term| match term.split_once('=') {
                Some((key, value)) => {
                    let value = value.strip_prefix('=').unwrap_or(value);
                    object["metadata"]["labels"][key].as_str() == Some(value)
                }
                None => false,
            })
    })
}

/// The API server's 403 for a request RBAC denies.
fn forbidden(namespaced: &Namespaced<'_>, verb: &str, resource: &str) -> Response<Body> {
    let group = namespaced
        .collection
        .api_version
        .rsplit_once('/')
        .map_or("", |(group, _)| group);
    let name = namespaced.name.unwrap_or("");
    let plural = namespaced.resource;
    let subject = if group.is_empty() {
        format!("{plural} \"{name}\"")
    } else {
        format!("{plural}.{group} \"{name}\"")
    };
    status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &format!(
            "{subject} is forbidden: User \"system:serviceaccount:ci:viewer\" cannot {verb} resource \"{resource}\" in API group \"{group}\" in the namespace \"{}\"",
            namespaced.namespace
        ),
    )
}

/// Answers a namespaced request, or gives it back (boxed: a request is large) when it is not
/// one the fake serves here.
pub(super) fn handle(
    state: &std::sync::Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Box<Request<Incoming>>> {
    let path = request.uri().path().to_owned();
    let Some(namespaced) = parse(&path) else {
        return Err(Box::new(request));
    };
    if request.method() != Method::GET {
        return Err(Box::new(request));
    }
    let object = namespaced.name.and_then(|name| {
        state
            .lock()
            .expect("state lock")
            .objects
            .get(&namespaced.collection)
            .and_then(|objects| {
                objects
                    .get(&(namespaced.namespace.to_owned(), name.to_owned()))
                    .cloned()
            })
    });
    match (namespaced.name, namespaced.subresource) {
        (None, None) => {
            if is_forbidden(state, namespaced.resource) {
                return Ok(forbidden(&namespaced, "list", namespaced.resource));
            }
            let selector = query(&request).get("labelSelector").cloned();
            Ok(list(state, &namespaced, selector.as_ref()))
        }
        (Some(name), None) => {
            if is_forbidden(state, namespaced.resource) {
                return Ok(forbidden(&namespaced, "get", namespaced.resource));
            }
            Ok(match object {
                Some(mut object) => {
                    object["apiVersion"] = json!(namespaced.collection.api_version);
                    object["kind"] = json!(namespaced.collection.kind);
                    json_response(StatusCode::OK, &object)
                }
                None => not_found(&namespaced, name),
            })
        }
        (Some(name), Some("portforward")) if namespaced.collection.kind == "Pod" => {
            let resource = "pods/portforward";
            if is_forbidden(state, resource) {
                return Ok(forbidden(&namespaced, "create", resource));
            }
            let Some(pod) = object else {
                return Ok(not_found(&namespaced, name));
            };
            Ok(super::portforward::upgrade(state, &pod, request))
        }
        _ => Err(Box::new(request)),
    }
}

fn is_forbidden(state: &Mutex<State>, resource: &str) -> bool {
    state
        .lock()
        .expect("state lock")
        .forbidden
        .contains(resource)
}

fn not_found(namespaced: &Namespaced<'_>, name: &str) -> Response<Body> {
    let group = namespaced
        .collection
        .api_version
        .rsplit_once('/')
        .map_or("", |(group, _)| group);
    let plural = namespaced.resource;
    let subject = if group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{group}")
    };
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{subject} \"{name}\" not found"),
    )
}

fn list(
    state: &Mutex<State>,
    namespaced: &Namespaced<'_>,
    selector: Option<&String>,
) -> Response<Body> {
    let state = state.lock().expect("state lock");
    let items: Vec<Value> = state
        .objects
        .get(&namespaced.collection)
        .into_iter()
        .flat_map(|objects| objects.iter())
        .filter(|((namespace, _), object)| {
            namespace == namespaced.namespace && matches(object, selector)
        })
        .map(|(_, object)| object.clone())
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", namespaced.collection.kind),
            "apiVersion": namespaced.collection.api_version,
            "metadata": {"resourceVersion": state.version.to_string()},
            "items": items,
        }),
    )
}

impl FakeApi {
    /// Makes every request for `resource` (a plural such as `deployments`, or
    /// `pods/portforward`) answer 403 as RBAC would.
    pub fn forbid(&self, resource: &str) {
        self.state
            .lock()
            .expect("state lock")
            .forbidden
            .insert(resource.to_owned());
    }

    /// Where a port-forward to `namespace/pod:port` lands: the fake's stand-in for the pod's
    /// network namespace (a listener on loopback).
    pub fn serve_pod_port(&self, namespace: &str, pod: &str, port: u16, at: std::net::SocketAddr) {
        self.state
            .lock()
            .expect("state lock")
            .pod_ports
            .insert((namespace.to_owned(), pod.to_owned(), port), at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_paths_name_collection_object_and_subresource() {
        let p = parse("/api/v1/namespaces/demo/pods/web-1/portforward").unwrap();
        assert_eq!(p.collection.kind, "Pod");
        assert_eq!(
            (p.namespace, p.name, p.subresource),
            ("demo", Some("web-1"), Some("portforward"))
        );
        let d = parse("/apis/apps/v1/namespaces/kube-system/deployments/coredns").unwrap();
        assert_eq!(d.collection.kind, "Deployment");
        let s = parse("/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices").unwrap();
        assert_eq!((s.collection.kind, s.name), ("EndpointSlice", None));
        assert!(parse("/api/v1/pods").is_none());
        assert!(parse("/apis/events.k8s.io/v1/namespaces/demo/events").is_none());
    }

    #[test]
    fn selectors_need_every_term() {
        let object = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        assert!(matches(&object, Some(&"app=web,tier=front".to_owned())));
        assert!(matches(&object, Some(&"app==web".to_owned())));
        assert!(!matches(&object, Some(&"app=web,tier=back".to_owned())));
        assert!(matches(&object, None));
    }
}
