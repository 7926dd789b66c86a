//! Bounded request loads for the traffic tests: `n` requests over `concurrency` keep-alive
//! connections, every answer kept so tests can count outcomes exactly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, Request};

use crate::client::{self, Collected};

/// One request template.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Method.
    pub method: Method,
    /// `Host` header.
    pub host: String,
    /// Path and query.
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body (sent with any method).
    pub body: Vec<u8>,
}

impl Spec {
    /// `GET path` to `host`.
    pub fn get(host: &str, path: &str) -> Self {
        Self {
            method: Method::GET,
            host: host.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `POST path` to `host` with `body`.
    pub fn post(host: &str, path: &str, body: &[u8]) -> Self {
        Self {
            method: Method::POST,
            body: body.to_vec(),
            ..Self::get(host, path)
        }
    }

    /// With an extra header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Sends `n` requests made by `spec(i)` over `concurrency` connections to `addr`, and returns
/// every response in request order.
pub async fn drive(
    addr: SocketAddr,
    n: usize,
    concurrency: usize,
    spec: impl Fn(usize) -> Spec + Send + Sync + 'static,
) -> Vec<Collected> {
    let next = Arc::new(AtomicUsize::new(0));
    let spec = Arc::new(spec);
    let workers = (0..concurrency.max(1)).map(|_| {
        let next = next.clone();
        let spec = spec.clone();
        tokio::spawn(async move {
            let mut sender = client::http1(addr).await;
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let spec = spec(i);
                let mut request = Request::builder()
                    .method(spec.method)
                    .uri(&spec.path)
                    .header("host", &spec.host);
                for (name, value) in &spec.headers {
                    request = request.header(name, value);
                }
                let request = request
                    .body(client::full(spec.body))
                    .expect("valid request");
                if sender.ready().await.is_err() {
                    sender = client::http1(addr).await;
                }
                let response = match sender.send_request(request).await {
                    Ok(response) => client::collect(response).await,
                    Err(error) => Collected {
                        status: http::StatusCode::from_u16(599).expect("599 is a status"),
                        headers: Default::default(),
                        body: format!("client error: {error}").into(),
                    },
                };
                answers.push((i, response));
            }
            answers
        })
    });
    let mut all: Vec<(usize, Collected)> = Vec::with_capacity(n);
    for worker in futures_util::future::join_all(workers).await {
        all.extend(worker.expect("load worker panicked"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, c)| c).collect()
}

/// How many responses have `status`.
pub fn count_status(responses: &[Collected], status: u16) -> usize {
    responses
        .iter()
        .filter(|r| r.status.as_u16() == status)
        .count()
}

/// How many responses came from `backend` (the `x-backend` header).
pub fn count_backend(responses: &[Collected], backend: &str) -> usize {
    responses
        .iter()
        .filter(|r| r.header("x-backend") == backend)
        .count()
}
