//! The request loop end to end in one process: a front server hands each request to
//! [`send`] as the outbound listener does, over real HTTP/1 on loopback, to apps that answer
//! from a script and record what they saw.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::body::{empty, full};
use crate::connect::{Connector, Dest};
use crate::head_limits::HeadLimits;
use crate::resilience::budget::BudgetPolicy;
use crate::resilience::retry::RetryPolicy;
use crate::table::backend::{BackendSettings, BackendState, LoadBalancer};
use crate::table::{Service, Timeouts};
use crate::telemetry::http::RequestLabels;

/// An app answering its `n`th request with `statuses[n]` (the last one from then on), and
/// recording each request's method and body.
struct App {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(Method, String)>>>,
}

impl App {
    async fn start(statuses: &'static [u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                let answer = service_fn(move |request: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let method = request.method().clone();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let mut log = log.lock().unwrap();
                        log.push((method, String::from_utf8_lossy(&body).into_owned()));
                        let status = statuses[(log.len() - 1).min(statuses.len() - 1)];
                        let mut response = Response::new(full(format!("answer {}", log.len())));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), answer),
                );
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<(Method, String)> {
        self.seen.lock().unwrap().clone()
    }
}

/// A port nothing listens on (bound, then released).
async fn dead_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A service whose one route retries 503 once per `retry` and balances round-robin over
/// `endpoints`, in that order, under `budget`.
fn service(endpoints: &[SocketAddr], retry: RetryPolicy, budget: BudgetPolicy) -> Arc<Service> {
    let name = "demo/web:80";
    let settings = BackendSettings {
        budget,
        load_balancer: LoadBalancer::RoundRobin,
        ..BackendSettings::default()
    };
    let backend = Arc::new(Backend {
        name: name.into(),
        endpoints: endpoints
            .iter()
            .map(|addr| {
                Endpoint::new(
                    Dest::Direct(*addr),
                    *addr,
                    "web".into(),
                    Connector::new(Duration::from_secs(5), None),
                    Duration::from_secs(30),
                    HeadLimits {
                        max_bytes: 16 * 1024,
                        max_fields: 100,
                    },
                )
            })
            .collect(),
        identity: String::new(),
        workload: crate::telemetry::workload::WorkloadLabel::unknown(),
        state: Arc::new(BackendState::new(name, &settings)),
        settings,
    });
    Arc::new(Service {
        name: name.into(),
        workload: crate::telemetry::workload::WorkloadLabel::unknown(),
        protocol: None,
        routes: vec![Route {
            name: "default".into(),
            matchers: Vec::new(),
            backends: vec![(backend, 1)],
            weights: vec![1],
            metrics: vec![RequestMetrics::new(&RequestLabels::default())],
            sticky_header: None,
            timeouts: Timeouts::default(),
            retry,
            backoff_base: Some(Duration::from_millis(1)),
            filters: None,
            backend_filters: Vec::new(),
            mirrors: Vec::new(),
            opaque_only: false,
        }],
    })
}

fn retry_503_once() -> RetryPolicy {
    RetryPolicy {
        max_retries: 1,
        http_statuses: vec![503],
        grpc_codes: Vec::new(),
    }
}

/// Serves HTTP/1 on a loopback port, handing every request to [`send`] for `service`.
async fn front(service: Arc<Service>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = Arc::new(RequestSettings {
        retry_buffer: 64 * 1024,
        idle_timeout: Duration::from_secs(30),
        tracer: Tracer::disabled(),
        mirror_slots: crate::outbound::mirror::MirrorSlots::default(),
        access_log: crate::telemetry::access_log::AccessLog::default(),
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (service, settings) = (service.clone(), settings.clone());
            let handle = service_fn(move |request| {
                let (service, settings) = (service.clone(), settings.clone());
                async move {
                    let response = send(&service, request, HttpVersion::Http1, &settings).await;
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), handle),
            );
        }
    });
    addr
}

/// Sends one request through `front` and returns the status and body.
async fn call(front: SocketAddr, method: Method, body: Body) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(front).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = "/orders".parse().unwrap();
    request
        .headers_mut()
        .insert(http::header::HOST, "web.demo".parse().unwrap());
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_503_then_a_200_is_retried_once_and_the_client_gets_the_200() {
    let app = App::start(&[503, 200]).await;
    let front = front(service(
        &[app.addr],
        retry_503_once(),
        BudgetPolicy::default(),
    ))
    .await;

    let (status, body) = call(front, Method::GET, empty()).await;

    assert_eq!((status, body.as_str()), (200, "answer 2"));
    assert_eq!(app.seen().len(), 2);
}

#[tokio::test]
async fn a_post_answered_503_is_returned_not_sent_again() {
    let app = App::start(&[503, 200]).await;
    let front = front(service(
        &[app.addr],
        retry_503_once(),
        BudgetPolicy::default(),
    ))
    .await;

    let (status, _) = call(front, Method::POST, full("order 1")).await;

    assert_eq!(status, 503);
    assert_eq!(app.seen(), [(Method::POST, "order 1".to_owned())]);
}

#[tokio::test]
async fn a_spent_budget_returns_the_first_failure() {
    let app = App::start(&[503, 200]).await;
    let none = BudgetPolicy {
        ratio: 0.0,
        min_per_second: 0,
        window: Duration::from_secs(10),
    };
    let front = front(service(&[app.addr], retry_503_once(), none)).await;

    let (status, _) = call(front, Method::GET, empty()).await;

    assert_eq!(status, 503);
    assert_eq!(app.seen().len(), 1);
}

#[tokio::test]
async fn a_post_that_could_not_connect_goes_to_the_next_endpoint_with_its_body() {
    let app = App::start(&[200]).await;
    let dead = dead_port().await;
    // Round robin starts at the first endpoint: the dead one.
    let service = service(
        &[dead, app.addr],
        RetryPolicy::default(),
        BudgetPolicy::default(),
    );
    let front = front(service).await;

    let (status, _) = call(front, Method::POST, full("order 2")).await;

    assert_eq!(status, 200);
    assert_eq!(app.seen(), [(Method::POST, "order 2".to_owned())]);
}

#[tokio::test]
async fn answers_outside_the_policy_pass_through_untouched() {
    let app = App::start(&[500, 200]).await;
    let front = front(service(
        &[app.addr],
        retry_503_once(),
        BudgetPolicy::default(),
    ))
    .await;

    let (status, body) = call(front, Method::GET, empty()).await;

    assert_eq!((status, body.as_str()), (500, "answer 1"));
    assert_eq!(app.seen().len(), 1);
}
