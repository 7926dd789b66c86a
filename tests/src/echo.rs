//! The echo backend of the Gateway API conformance tests: it answers every HTTP request with
//! what it received, as JSON in the shape of upstream's echo server (the fields the
//! conformance suite's `roundtripper.CapturedRequest` reads): `path` (with the query),
//! `host`, `method`, `proto`, `headers` (name → values; names lower-case, as HTTP/2 carries
//! them), `namespace` and `pod`. Its gRPC port serves the test `Echo` service and names the
//! pod and namespace in the response metadata (`pod`, `namespace`), where upstream's
//! echo-advanced puts its hostname; for `Say` it also reports the whole call as upstream's
//! echo does (the same JSON, in binary metadata [`ECHOED_METADATA`]: path, `:authority`,
//! request metadata), so a test sees which headers a route's filters left on a gRPC call.
//!
//! Reusable by any suite that asserts what reached an app: which pod, with which path and
//! headers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tonic::codegen::{Context, Poll, Service};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::NamedService;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

use crate::grpc::{EchoReply, EchoRequest, EchoServer, echo_server};

/// What the echo backend saw, as upstream's echo server reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echoed {
    /// The request target's path and query.
    pub path: String,
    /// `Host` (HTTP/1.1) or `:authority` (HTTP/2).
    pub host: String,
    /// The method.
    pub method: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub proto: String,
    /// Every header (lower-case name) with its values in arrival order.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The namespace of the pod that answered.
    pub namespace: String,
    /// The pod that answered.
    pub pod: String,
}

impl Echoed {
    /// The first value of header `name` (lower-case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// The binary response metadata in which the gRPC echo's `Say` reports the call it received
/// ([`Echoed`] as JSON).
pub const ECHOED_METADATA: &str = "echoed-bin";

/// What the gRPC echo reported in [`ECHOED_METADATA`] of a `Say` answer's `metadata`, if
/// anything readable.
pub fn echoed_of_grpc(metadata: &MetadataMap) -> Option<Echoed> {
    let bytes = metadata.get_bin(ECHOED_METADATA)?.to_bytes().ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Who an echo backend says it is.
#[derive(Clone, Debug)]
pub struct Pod {
    /// Pod name (`echo-v1-…`: upstream names backends by the name's first two parts).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// What an HTTP request amounts to in the echo's answer (pure, so it is tested alone).
pub fn echo_of(head: &http::request::Parts, pod: &Pod) -> Echoed {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &head.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let host = head
        .uri
        .authority()
        .map(ToString::to_string)
        .or_else(|| {
            head.headers
                .get(http::header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
        .unwrap_or_default();
    Echoed {
        path: head
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string),
        host,
        method: head.method.to_string(),
        proto: format!("{:?}", head.version),
        headers,
        namespace: pod.namespace.clone(),
        pod: pod.name.clone(),
    }
}

/// Serves the HTTP echo (HTTP/1.1 and HTTP/2 on one port) on `addr` until the test ends.
pub async fn start_http(addr: SocketAddr, pod: Pod) -> SocketAddr {
    let listener = TcpListener::bind(addr)
        .await
        .expect("binding the echo backend");
    serve_http(listener, pod)
}

/// Serves the HTTP echo on `listener` (bound wherever the caller chose, e.g. inside a test's
/// network namespace) until the test ends, and returns its address.
pub fn serve_http(listener: TcpListener, pod: Pod) -> SocketAddr {
    let addr = listener.local_addr().expect("echo address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let pod = pod.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let pod = pod.clone();
                    async move {
                        let (head, body) = request.into_parts();
                        // Read the body so the client's send completes; its content is not echoed.
                        let _ = body.collect().await;
                        let echoed = echo_of(&head, &pod);
                        let json = serde_json::to_vec(&echoed).expect("echo serializes");
                        let response = Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(json)))
                            .expect("a valid response");
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The gRPC echo: the test `Echo` service, naming the answering pod in response metadata.
#[derive(Clone, Debug)]
struct PodEcho {
    pod: Pod,
}

impl PodEcho {
    fn answer<T>(&self, message: T) -> GrpcResponse<T> {
        self.answer_reporting(message, None)
    }

    /// The answer, with `call` (what [`Reported`] saw of the request) in [`ECHOED_METADATA`].
    fn answer_reporting<T>(&self, message: T, call: Option<&Echoed>) -> GrpcResponse<T> {
        let mut response = GrpcResponse::new(message);
        let metadata = response.metadata_mut();
        if let Some(json) = call.and_then(|c| serde_json::to_vec(c).ok()) {
            metadata.insert_bin(ECHOED_METADATA, MetadataValue::from_bytes(&json));
        }
        if let Ok(v) = self.pod.name.parse() {
            metadata.insert("pod", v);
        }
        if let Ok(v) = self.pod.namespace.parse() {
            metadata.insert("namespace", v);
        }
        response
    }
}

#[tonic::async_trait]
impl echo_server::Echo for PodEcho {
    async fn say(
        &self,
        request: GrpcRequest<EchoRequest>,
    ) -> Result<GrpcResponse<EchoReply>, Status> {
        let call = request.extensions().get::<Echoed>().cloned();
        let message = request.into_inner().message;
        Ok(self.answer_reporting(
            EchoReply {
                message,
                client_id: String::new(),
            },
            call.as_ref(),
        ))
    }

    type ChatStream = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<EchoReply, Status>> + Send + 'static>,
    >;

    async fn chat(
        &self,
        request: GrpcRequest<Streaming<EchoRequest>>,
    ) -> Result<GrpcResponse<Self::ChatStream>, Status> {
        let replies = request.into_inner().map(|m| {
            m.map(|m| EchoReply {
                message: m.message,
                client_id: String::new(),
            })
        });
        Ok(self.answer(Box::pin(replies) as Self::ChatStream))
    }
}

/// The gRPC echo's service wrapped to record each call's head ([`echo_of`]) in the request's
/// extensions, where the handler finds it: tonic hands a handler the metadata but not the
/// path and `:authority` upstream's echo reports. (tonic re-exports tower's `Service`; the
/// tests crate has no tower middleware of its own to do this.)
#[derive(Clone)]
struct Reported<S> {
    inner: S,
    pod: Pod,
}

impl<S: NamedService> NamedService for Reported<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for Reported<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (mut head, body) = request.into_parts();
        let echoed = echo_of(&head, &self.pod);
        head.extensions.insert(echoed);
        self.inner.call(Request::from_parts(head, body))
    }
}

/// Serves the gRPC echo on `addr` until the test ends.
pub async fn start_grpc(addr: SocketAddr, pod: Pod) -> SocketAddr {
    let listener = TcpListener::bind(addr)
        .await
        .expect("binding the gRPC echo backend");
    serve_grpc(listener, pod)
}

/// Serves the gRPC echo on `listener` until the test ends, and returns its address.
pub fn serve_grpc(listener: TcpListener, pod: Pod) -> SocketAddr {
    let addr = listener.local_addr().expect("gRPC echo address");
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(Reported {
                inner: EchoServer::new(PodEcho { pod: pod.clone() }),
                pod,
            })
            .serve_with_incoming(incoming)
            .await;
    });
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_reports_path_with_query_host_method_headers_and_pod() {
        let (head, ()) = Request::get("/v2/x?animal=whale")
            .header("host", "echo")
            .header("version", "two")
            .header("version", "three")
            .body(())
            .unwrap()
            .into_parts();
        let pod = Pod {
            name: "echo-v2-0".into(),
            namespace: "gateway-conformance-mesh".into(),
        };
        let echoed = echo_of(&head, &pod);
        assert_eq!(echoed.path, "/v2/x?animal=whale");
        assert_eq!(echoed.host, "echo");
        assert_eq!(echoed.method, "GET");
        assert_eq!(echoed.proto, "HTTP/1.1");
        assert_eq!(echoed.headers["version"], ["two", "three"]);
        assert_eq!(echoed.pod, "echo-v2-0");
        assert_eq!(echoed.namespace, "gateway-conformance-mesh");
    }
}
