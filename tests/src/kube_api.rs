//! A stand-in Kubernetes API server for the control plane's Kubernetes source: real HTTPS with
//! its own CA and a bearer token (written to a kubeconfig the control plane reads), answering
//! lists, watches, TokenReviews and Events the way the API server does, so kube-rs's real
//! watchers and client run against it unchanged.
//!
//! Lists return `<Kind>List` objects whose items carry no `kind`/`apiVersion`, with a
//! `resourceVersion`; watches stream newline-delimited `{"type", "object"}` events from the
//! requested version on; a collection can be made to answer 404, as one whose CRD is not
//! installed does. Tests change objects with [`FakeApi::apply`] and [`FakeApi::delete`] and read
//! what the control plane sent with [`FakeApi::events`] and [`FakeApi::token_reviews`].
//!
//! Secrets are served by name (get, create with 409 for a name taken), for the control plane's
//! CA Secret, and MutatingWebhookConfigurations by name (get, JSON patch), for the injector
//! webhook's caBundle; [`FakeApi::lose_next_secret_create_to`] stages a lost create race. The
//! kubeconfig's context namespace is `strait-system`, as a control plane's in-cluster
//! credentials would say.
//!
//! Namespaced reads (one object, or a list by label selector) and the pods' `portforward`
//! subresource, which the CLI's `deploy/`, `pod/` and `svc/` targets use, live in
//! `kube_api/namespaced.rs` and `kube_api/portforward.rs`; the routes' `status` subresource,
//! which the control plane writes route status through, in `kube_api/route_status.rs`.
//!
//! Longer than 500 lines: a whole stand-in API server (list, watch, TokenReview, Events,
//! Secrets) kept in one place.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{CertificateParams, DistinguishedName, IsCa, Issuer, KeyPair, SanType};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::snapshot::TempDir;

mod namespaced;
mod portforward;
mod route_status;

pub use namespaced::DEPLOYMENTS;
pub use route_status::StatusPatch;

type Body = BoxBody<Bytes, Infallible>;

/// A collection the fake serves, as the kube client addresses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Collection {
    /// The cluster-wide path, e.g. `/api/v1/pods`.
    pub path: &'static str,
    /// `apiVersion` of its objects.
    pub api_version: &'static str,
    /// `kind` of its objects.
    pub kind: &'static str,
}

/// `v1` Services.
pub const SERVICES: Collection = Collection {
    path: "/api/v1/services",
    api_version: "v1",
    kind: "Service",
};
/// `v1` Pods.
pub const PODS: Collection = Collection {
    path: "/api/v1/pods",
    api_version: "v1",
    kind: "Pod",
};
/// `discovery.k8s.io/v1` EndpointSlices.
pub const ENDPOINT_SLICES: Collection = Collection {
    path: "/apis/discovery.k8s.io/v1/endpointslices",
    api_version: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
};
/// Gateway API HTTPRoutes.
pub const HTTP_ROUTES: Collection = Collection {
    path: "/apis/gateway.networking.k8s.io/v1/httproutes",
    api_version: "gateway.networking.k8s.io/v1",
    kind: "HTTPRoute",
};
/// Gateway API GRPCRoutes.
pub const GRPC_ROUTES: Collection = Collection {
    path: "/apis/gateway.networking.k8s.io/v1/grpcroutes",
    api_version: "gateway.networking.k8s.io/v1",
    kind: "GRPCRoute",
};
/// Gateway API ReferenceGrants.
pub const REFERENCE_GRANTS: Collection = Collection {
    path: "/apis/gateway.networking.k8s.io/v1/referencegrants",
    api_version: "gateway.networking.k8s.io/v1",
    kind: "ReferenceGrant",
};
/// Strait BackendPolicies.
pub const BACKEND_POLICIES: Collection = Collection {
    path: "/apis/strait.dev/v1alpha1/backendpolicies",
    api_version: "strait.dev/v1alpha1",
    kind: "BackendPolicy",
};
/// Strait AuthorizationPolicies.
pub const AUTHORIZATION_POLICIES: Collection = Collection {
    path: "/apis/strait.dev/v1alpha1/authorizationpolicies",
    api_version: "strait.dev/v1alpha1",
    kind: "AuthorizationPolicy",
};
/// Strait MeshConfigs.
pub const MESH_CONFIGS: Collection = Collection {
    path: "/apis/strait.dev/v1alpha1/meshconfigs",
    api_version: "strait.dev/v1alpha1",
    kind: "MeshConfig",
};

/// `v1` Secrets: served by name (get and create) only, as the control plane's CA Secret needs;
/// never listed or watched.
pub const SECRETS: Collection = Collection {
    path: "/api/v1/secrets",
    api_version: "v1",
    kind: "Secret",
};

/// `admissionregistration.k8s.io/v1` MutatingWebhookConfigurations (cluster-scoped): served by
/// name (get, and JSON patch as `application/json-patch+json`), as the control plane keeping the
/// injector webhook's caBundle needs; never listed or watched. Tests put one in with
/// [`FakeApi::apply`].
pub const MUTATING_WEBHOOKS: Collection = Collection {
    path: "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
    api_version: "admissionregistration.k8s.io/v1",
    kind: "MutatingWebhookConfiguration",
};

/// Every collection the control plane watches.
pub const ALL: [Collection; 9] = [
    SERVICES,
    PODS,
    ENDPOINT_SLICES,
    HTTP_ROUTES,
    GRPC_ROUTES,
    REFERENCE_GRANTS,
    BACKEND_POLICIES,
    AUTHORIZATION_POLICIES,
    MESH_CONFIGS,
];

/// A service-account token the fake's TokenReview knows.
#[derive(Clone, Debug)]
pub struct KnownToken {
    /// `system:serviceaccount:<namespace>:<name>`.
    pub username: String,
    /// Audiences it was issued for.
    pub audiences: Vec<String>,
}

struct Change {
    version: u64,
    collection: Collection,
    kind: &'static str,
    object: Value,
}

/// An open watch: its collection, label selector and stream.
struct Watcher {
    collection: Collection,
    selector: Option<(String, String)>,
    stream: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct State {
    version: u64,
    objects: BTreeMap<Collection, BTreeMap<(String, String), Value>>,
    history: Vec<Change>,
    missing: BTreeSet<&'static str>,
    watchers: Vec<Watcher>,
    tokens: BTreeMap<String, KnownToken>,
    token_reviews: Vec<Value>,
    events: Vec<Value>,
    requests: Vec<String>,
    /// A Secret another replica creates just before the next create arrives.
    create_race: Option<Value>,
    /// Resources (`deployments`, `pods/portforward`) RBAC refuses (`namespaced.rs`).
    forbidden: BTreeSet<String>,
    /// Where port-forwards to (namespace, pod, port) land (`portforward.rs`).
    pod_ports: BTreeMap<(String, String, u16), SocketAddr>,
    /// Route status patches received (`route_status.rs`).
    status_patches: Vec<route_status::StatusPatch>,
    /// How many route status patches are still to fail with 500.
    failing_status_patches: usize,
}

/// The running fake API server.
pub struct FakeApi {
    /// Where it listens (HTTPS).
    pub addr: SocketAddr,
    /// A kubeconfig for it (server, CA, bearer token), for `KUBECONFIG`.
    pub kubeconfig: PathBuf,
    state: Arc<Mutex<State>>,
    _dir: TempDir,
}

impl FakeApi {
    /// Starts the fake on a free loopback port. Collections in `missing` answer 404.
    pub async fn start(missing: &[Collection]) -> Self {
        let dir = TempDir::new("kube-api");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let mut name = DistinguishedName::new();
        name.push(rcgen::DnType::CommonName, "fake-kubernetes-ca");
        ca_params.distinguished_name = name;
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("IP")));
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server TLS config");
        let mut tls = tls;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("address");
        let bearer = format!("fake-admin-token-{}", fastrand::u64(..));
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\nusers:\n- name: control-plane\n  user:\n    token: {bearer}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: control-plane, namespace: strait-system}}\ncurrent-context: fake\n",
                addr.port(),
                base64::engine::general_purpose::STANDARD.encode(ca_cert.pem()),
            ),
        )
        .expect("writing the kubeconfig");

        let state = Arc::new(Mutex::new(State {
            version: 1000,
            missing: missing.iter().map(|c| c.path).collect(),
            ..Default::default()
        }));
        let served = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = served.clone();
                let bearer = bearer.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        let bearer = bearer.clone();
                        async move { Ok::<_, Infallible>(handle(&state, &bearer, request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            kubeconfig,
            state,
            _dir: dir,
        }
    }

    /// Creates or replaces an object (as a user's `kubectl apply` would), notifying watchers.
    pub fn apply(&self, collection: Collection, mut object: Value) {
        let mut state = self.state.lock().expect("state lock");
        state.version += 1;
        let version = state.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        if object["metadata"].get("uid").is_none() {
            object["metadata"]["uid"] = json!(format!("uid-{version}"));
        }
        let key = object_key(&object);
        let existed = state
            .objects
            .entry(collection)
            .or_default()
            .insert(key, object.clone())
            .is_some();
        let kind = if existed { "MODIFIED" } else { "ADDED" };
        publish(&mut state, collection, kind, object);
    }

    /// Deletes an object, notifying watchers.
    pub fn delete(&self, collection: Collection, namespace: &str, name: &str) {
        let mut state = self.state.lock().expect("state lock");
        let removed = state
            .objects
            .entry(collection)
            .or_default()
            .remove(&(namespace.to_owned(), name.to_owned()));
        if let Some(mut object) = removed {
            state.version += 1;
            object["metadata"]["resourceVersion"] = json!(state.version.to_string());
            publish(&mut state, collection, "DELETED", object);
        }
    }

    /// Teaches the TokenReview endpoint a token.
    pub fn add_token(&self, token: &str, known: KnownToken) {
        self.state
            .lock()
            .expect("state lock")
            .tokens
            .insert(token.to_owned(), known);
    }

    /// Every TokenReview the fake was sent, as sent.
    pub fn token_reviews(&self) -> Vec<Value> {
        self.state.lock().expect("state lock").token_reviews.clone()
    }

    /// Every Event created or patched, as sent.
    pub fn events(&self) -> Vec<Value> {
        self.state.lock().expect("state lock").events.clone()
    }

    /// The Secret `namespace/name`, as stored.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .expect("state lock")
            .objects
            .get(&SECRETS)?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The MutatingWebhookConfiguration `name`, as stored.
    pub fn mutating_webhook(&self, name: &str) -> Option<Value> {
        self.state
            .lock()
            .expect("state lock")
            .objects
            .get(&MUTATING_WEBHOOKS)?
            .get(&(String::new(), name.to_owned()))
            .cloned()
    }

    /// Makes the next Secret create lose a race: `winner` is stored just before it is handled,
    /// as if another replica had created it between this one's read and its create.
    pub fn lose_next_secret_create_to(&self, winner: Value) {
        self.state.lock().expect("state lock").create_race = Some(winner);
    }

    /// `METHOD path?query` of every request, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().expect("state lock").requests.clone()
    }
}

fn object_key(object: &Value) -> (String, String) {
    (
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        object["metadata"]["name"].as_str().unwrap_or("").to_owned(),
    )
}

fn publish(state: &mut State, collection: Collection, kind: &'static str, object: Value) {
    let version = state.version;
    let line = event_line(collection, kind, &object);
    state.watchers.retain(|watcher| {
        if watcher.collection != collection || !selected(&object, watcher.selector.as_ref()) {
            return !watcher.stream.is_closed();
        }
        watcher.stream.send(line.clone()).is_ok()
    });
    state.history.push(Change {
        version,
        collection,
        kind,
        object,
    });
}

fn event_line(collection: Collection, kind: &str, object: &Value) -> Bytes {
    let mut object = object.clone();
    object["apiVersion"] = json!(collection.api_version);
    object["kind"] = json!(collection.kind);
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON");
    line.push(b'\n');
    Bytes::from(line)
}

fn selected(object: &Value, selector: Option<&(String, String)>) -> bool {
    selector.is_none_or(|(key, value)| object["metadata"]["labels"][key].as_str() == Some(value))
}

fn query(request: &Request<Incoming>) -> BTreeMap<String, String> {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

/// Decodes `%XX` escapes; labels selectors and versions are ASCII.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response =
        Response::new(Full::new(Bytes::from(serde_json::to_vec(body).expect("JSON"))).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "details": {}, "code": code.as_u16(),
        }),
    )
}

async fn handle(
    state: &Arc<Mutex<State>>,
    bearer: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    state.lock().expect("state lock").requests.push(format!(
        "{} {}",
        request.method(),
        request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("")
    ));
    let authorized = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {bearer}"));
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let request = match namespaced::handle(state, request) {
        Ok(response) => return response,
        Err(request) => *request,
    };
    let method = request.method().clone();
    if let Some(target) = route_status::target(&path) {
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest", "unreadable body"),
        };
        return route_status::handle(state, &method, &content_type, target, &body);
    }
    if let Some((namespace, name)) = secret_path(&path) {
        let body = if method == Method::POST {
            match request.into_body().collect().await {
                Ok(body) => serde_json::from_slice::<Value>(&body.to_bytes()).ok(),
                Err(_) => None,
            }
        } else {
            None
        };
        return secrets(state, &method, &namespace, name.as_deref(), body);
    }
    if let Some(name) = path
        .strip_prefix(MUTATING_WEBHOOKS.path)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .map(str::to_owned)
    {
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest", "unreadable body"),
        };
        return mutating_webhook(state, &method, &name, &content_type, &body);
    }
    if let Some(collection) = ALL.iter().find(|c| c.path == path) {
        if method != Method::GET {
            return status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the fake serves only list and watch",
            );
        }
        if state
            .lock()
            .expect("state lock")
            .missing
            .contains(collection.path)
        {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
            );
        }
        let query = query(&request);
        let selector = query
            .get("labelSelector")
            .and_then(|s| s.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        return if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
            let since: u64 = query
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            watch(state, *collection, selector, since)
        } else {
            list(state, *collection, selector.as_ref())
        };
    }
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest", "unreadable body"),
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not JSON",
        );
    };
    if method == Method::POST && path == "/apis/authentication.k8s.io/v1/tokenreviews" {
        return token_review(state, body);
    }
    if path.starts_with("/apis/events.k8s.io/v1/namespaces/")
        && (method == Method::POST || method == Method::PATCH)
    {
        state.lock().expect("state lock").events.push(body.clone());
        let code = if method == Method::POST {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        return json_response(code, &body);
    }
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn list(
    state: &Mutex<State>,
    collection: Collection,
    selector: Option<&(String, String)>,
) -> Response<Body> {
    let state = state.lock().expect("state lock");
    let items: Vec<Value> = state
        .objects
        .get(&collection)
        .into_iter()
        .flat_map(|objects| objects.values())
        .filter(|object| selected(object, selector))
        .cloned()
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", collection.kind),
            "apiVersion": collection.api_version,
            "metadata": {"resourceVersion": state.version.to_string()},
            "items": items,
        }),
    )
}

fn watch(
    state: &Mutex<State>,
    collection: Collection,
    selector: Option<(String, String)>,
    since: u64,
) -> Response<Body> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut state = state.lock().expect("state lock");
    for change in state
        .history
        .iter()
        .filter(|c| c.version > since && c.collection == collection)
    {
        if selected(&change.object, selector.as_ref()) {
            let _ = tx.send(event_line(collection, change.kind, &change.object));
        }
    }
    state.watchers.push(Watcher {
        collection,
        selector,
        stream: tx,
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let line = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// `/api/v1/namespaces/{namespace}/secrets[/{name}]` as (namespace, name).
fn secret_path(path: &str) -> Option<(String, Option<String>)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (namespace, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("secrets")?;
    if rest.is_empty() {
        return Some((namespace.to_owned(), None));
    }
    let name = rest
        .strip_prefix('/')
        .filter(|n| !n.is_empty() && !n.contains('/'))?;
    Some((namespace.to_owned(), Some(name.to_owned())))
}

/// Get and create of Secrets with the API server's answers: 404 `NotFound`, 409
/// `AlreadyExists` for a name taken, 201 with the stored object.
fn secrets(
    state: &Mutex<State>,
    method: &Method,
    namespace: &str,
    name: Option<&str>,
    body: Option<Value>,
) -> Response<Body> {
    let mut state = state.lock().expect("state lock");
    let stored = |state: &State, name: &str| {
        state
            .objects
            .get(&SECRETS)
            .and_then(|objects| objects.get(&(namespace.to_owned(), name.to_owned())))
            .cloned()
            .map(|mut object| {
                object["apiVersion"] = json!("v1");
                object["kind"] = json!("Secret");
                object
            })
    };
    match (method, name) {
        (&Method::GET, Some(name)) => match stored(&state, name) {
            Some(object) => json_response(StatusCode::OK, &object),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("secrets \"{name}\" not found"),
            ),
        },
        (&Method::POST, None) => {
            let Some(mut object) = body else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the body is not JSON",
                );
            };
            let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "name: Required value",
                );
            };
            if let Some(mut winner) = state.create_race.take() {
                winner["metadata"]["namespace"] = json!(namespace);
                winner["metadata"]["resourceVersion"] = json!("1");
                state
                    .objects
                    .entry(SECRETS)
                    .or_default()
                    .insert((namespace.to_owned(), name.clone()), winner);
            }
            if stored(&state, &name).is_some() {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("secrets \"{name}\" already exists"),
                );
            }
            state.version += 1;
            object["metadata"]["namespace"] = json!(namespace);
            object["metadata"]["resourceVersion"] = json!(state.version.to_string());
            object["metadata"]["uid"] = json!(format!("uid-{}", state.version));
            state
                .objects
                .entry(SECRETS)
                .or_default()
                .insert((namespace.to_owned(), name.clone()), object);
            json_response(
                StatusCode::CREATED,
                &stored(&state, &name).expect("just stored"),
            )
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake serves only get and create of secrets",
        ),
    }
}

/// Get and RFC 6902 JSON patch of a MutatingWebhookConfiguration, with the API server's
/// answers: 404 `NotFound`, 415 for another patch type, 422 `Invalid` for a patch that does not
/// apply (a failed `test` included), 200 with the stored object.
fn mutating_webhook(
    state: &Mutex<State>,
    method: &Method,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> Response<Body> {
    let mut state = state.lock().expect("state lock");
    let key = (String::new(), name.to_owned());
    let Some(mut object) = state
        .objects
        .get(&MUTATING_WEBHOOKS)
        .and_then(|objects| objects.get(&key))
        .cloned()
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!(
                "mutatingwebhookconfigurations.admissionregistration.k8s.io \"{name}\" not found"
            ),
        );
    };
    object["apiVersion"] = json!(MUTATING_WEBHOOKS.api_version);
    object["kind"] = json!(MUTATING_WEBHOOKS.kind);
    match *method {
        Method::GET => json_response(StatusCode::OK, &object),
        Method::PATCH if content_type == "application/json-patch+json" => {
            let Ok(patch) = serde_json::from_slice::<json_patch::Patch>(body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "not a JSON patch");
            };
            if let Err(error) = json_patch::patch(&mut object, &patch) {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &format!("the patch does not apply: {error}"),
                );
            }
            state.version += 1;
            object["metadata"]["resourceVersion"] = json!(state.version.to_string());
            state
                .objects
                .entry(MUTATING_WEBHOOKS)
                .or_default()
                .insert(key, object.clone());
            json_response(StatusCode::OK, &object)
        }
        Method::PATCH => status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!("the fake takes only application/json-patch+json, not {content_type}"),
        ),
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake serves only get and patch of mutatingwebhookconfigurations",
        ),
    }
}

fn token_review(state: &Mutex<State>, review: Value) -> Response<Body> {
    let mut state = state.lock().expect("state lock");
    state.token_reviews.push(review.clone());
    let token = review["spec"]["token"].as_str().unwrap_or("");
    let asked: Vec<String> = review["spec"]["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    // The API server's own answers: an unknown token, or one for other audiences, is
    // unauthenticated with an error; a good one names the user and the audiences it is for.
    let status_field = match state.tokens.get(token) {
        None => json!({
            "user": {},
            "error": "[invalid bearer token, square/go-jose: error in cryptographic primitive]",
        }),
        Some(known) => {
            let granted: Vec<&String> = asked
                .iter()
                .filter(|a| known.audiences.contains(a))
                .collect();
            if granted.is_empty() && !asked.is_empty() {
                json!({
                    "user": {},
                    "error": format!(
                        "[invalid bearer token, token audiences {:?} is invalid for the target audiences {:?}]",
                        known.audiences, asked
                    ),
                })
            } else {
                let namespace = known.username.split(':').nth(2).unwrap_or("");
                json!({
                    "authenticated": true,
                    "user": {
                        "username": known.username,
                        "uid": format!("uid-{}", known.username),
                        "groups": [
                            "system:serviceaccounts",
                            format!("system:serviceaccounts:{namespace}"),
                            "system:authenticated",
                        ],
                    },
                    "audiences": granted,
                })
            }
        }
    };
    json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": review["spec"],
            "status": status_field,
        }),
    )
}
