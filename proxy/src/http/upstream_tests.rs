//! The pool against a real HTTP/1 upstream on loopback that loses the keep-alive race on
//! command: it answers the first request of its first connection, then closes that connection
//! as the next request arrives, without a byte of answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;
use http_body_util::BodyExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::body::{empty, full};

/// Reads one request head (and drops whatever body follows it in the same read); `false` at
/// the end of the connection.
async fn read_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        assert!(head.len() < 64 * 1024, "a test request head stays small");
    }
    true
}

async fn answer(stream: &mut TcpStream, body: &str) {
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await.unwrap();
}

/// The racing upstream; returns its address and the number of connections it accepted.
async fn racing_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if n == 0 {
                    if read_head(&mut stream).await {
                        answer(&mut stream, "first").await;
                    }
                    // The next request arrives as the upstream closes the idle connection.
                    read_head(&mut stream).await;
                    return;
                }
                while read_head(&mut stream).await {
                    answer(&mut stream, "again").await;
                }
            });
        }
    });
    (addr, accepted)
}

/// An HTTP/1 pool for `addr` whose metrics go to the returned handle.
fn pool(addr: SocketAddr) -> (Arc<Upstream>, PrometheusHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let upstream = metrics::with_local_recorder(&recorder, || {
        Upstream::new(
            Dest::Direct(addr),
            HttpVersion::Http1,
            Connector::new(Duration::from_secs(5), None),
            Duration::from_secs(30),
            HeadLimits {
                max_bytes: 16 * 1024,
                max_fields: 100,
            },
        )
    });
    (upstream, handle)
}

fn request(method: Method, body: Body) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = "/orders".parse().unwrap();
    request
        .headers_mut()
        .insert(http::header::HOST, "upstream.test".parse().unwrap());
    request
}

async fn body_of(response: Response<Incoming>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Sends the first request and lets its connection sit idle in the pool past
/// [`MAY_HAVE_BEEN_CLOSED_AFTER`], on a paused clock rather than a sleep.
async fn first_request_then_idle(upstream: &Arc<Upstream>) {
    let first = upstream.send(request(Method::GET, empty())).await.unwrap();
    assert_eq!(body_of(first).await, "first");
    // Let the connection task see the response end, so the connection is ready for reuse.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(upstream.pooled_connections(), 1);
    tokio::time::pause();
    tokio::time::advance(MAY_HAVE_BEEN_CLOSED_AFTER * 2).await;
    tokio::time::resume();
}

fn resends(handle: &PrometheusHandle) -> u64 {
    handle
        .render()
        .lines()
        .find_map(|line| line.strip_prefix("strait_upstream_keepalive_race_resends_total "))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn a_get_written_as_the_upstream_closed_the_idle_connection_is_resent_and_counted() {
    let (addr, accepted) = racing_upstream().await;
    let (upstream, metrics) = pool(addr);
    first_request_then_idle(&upstream).await;

    let second = upstream.send(request(Method::GET, empty())).await;

    let second = second.expect("the pool re-sends the GET on a new connection");
    assert_eq!(body_of(second).await, "again");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(resends(&metrics), 1);
}

#[tokio::test]
async fn a_written_post_is_not_resent_after_the_keepalive_race() {
    let (addr, accepted) = racing_upstream().await;
    let (upstream, metrics) = pool(addr);
    first_request_then_idle(&upstream).await;

    let post = upstream.send(request(Method::POST, full("order"))).await;

    match post {
        Err(SendError::Failed(ProxyError::Upstream { .. })) => {}
        other => panic!("a written POST must fail, not be re-sent: {other:?}"),
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "no second connection");
    assert_eq!(resends(&metrics), 0);
}

#[tokio::test]
async fn a_request_the_upstream_cannot_take_is_handed_back_unsent() {
    // Bound and dropped: nothing listens there any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (upstream, metrics) = pool(addr);
    match upstream.send(request(Method::POST, full("order"))).await {
        Err(SendError::NotSent(request, ProxyError::Connect { .. })) => {
            assert_eq!(request.method(), Method::POST);
        }
        other => panic!("expected the POST back unsent: {other:?}"),
    }
    assert_eq!(resends(&metrics), 0);
}
