//! Arbitrary bytes from a client, through the proxy's own connection path: protocol
//! detection, then the HTTP server with the proxy's default limits, with a handler that
//! applies the request-smuggling checks and reads the body as forwarding would.
//!
//! Asserts: nothing panics; the exchange ends (with the clock paused, the header-read and idle
//! deadlines fire as soon as nothing else can happen); an HTTP/1 answer starts with a complete
//! status line and head; an HTTP/2 answer starts with the server's SETTINGS frame; and once a
//! request is refused as a smuggling attempt, no later request on that connection reaches the
//! handler (nothing after it could be forwarded).
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use libfuzzer_sys::fuzz_target;
use strait_proxy::detect::{self, Protocol};
use strait_proxy::errors::is_grpc;
use strait_proxy::body::{self, Body};
use strait_proxy::http::server::{ServerLimits, serve};
use strait_proxy::http::smuggling;
use strait_proxy::io::PrefixedIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// `strait-proxy run`'s defaults (proxy/src/config.rs).
fn limits() -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(300),
        max_request_line_bytes: 8192,
        h2_stream_window: 1 << 20,
        h2_connection_window: 2 << 20,
        max_header_bytes: 65536,
        max_headers: 100,
        h2_max_concurrent_streams: 256,
    }
}

#[derive(Debug, PartialEq)]
enum Seen {
    Accepted,
    Refused,
}

async fn handle(request: Request<Incoming>, seen: Arc<Mutex<Vec<Seen>>>) -> Response<Body> {
    let grpc = is_grpc(&request);
    let request = match smuggling::checked(request) {
        Ok(request) => request,
        Err(error) => {
            seen.lock().unwrap().push(Seen::Refused);
            return error.into_response(grpc);
        }
    };
    seen.lock().unwrap().push(Seen::Accepted);
    let limited = http_body_util::Limited::new(request.into_body(), 1 << 20);
    match limited.collect().await {
        Ok(collected) => Response::new(body::full(collected.to_bytes().len().to_string())),
        Err(_) => {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime builds")
    })
}

async fn exchange(data: &[u8]) -> (Option<Protocol>, Vec<u8>, Vec<Seen>) {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let write = async {
        // The server may close before reading everything; a failed write is then expected.
        let _ = client_write.write_all(data).await;
        let _ = client_write.shutdown().await;
    };
    let read = async {
        let mut answer = Vec::new();
        let _ = client_read.read_to_end(&mut answer).await;
        answer
    };
    let server_side = {
        let seen = seen.clone();
        async move {
            let (protocol, prefix) = detect::detect(&mut server, 8192, Duration::from_secs(5))
                .await
                .expect("a duplex read does not fail");
            if protocol == Protocol::Opaque {
                // Opaque bytes are relayed, never parsed: nothing to serve here.
                return None;
            }
            let io = Box::new(PrefixedIo::new(prefix, server));
            let handler = move |request| handle(request, seen.clone());
            let _ = serve(io, protocol, &limits(), CancellationToken::new(), handler).await;
            Some(protocol)
        }
    };
    let ((), answer, protocol) = tokio::join!(write, read, server_side);
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    (protocol, answer, seen)
}

fuzz_target!(|data: &[u8]| {
    let (protocol, answer, seen) = runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(3600), exchange(data))
            .await
            .expect("the connection ends once the client has sent everything")
    });
    if let Some(refused) = seen.iter().position(|s| *s == Seen::Refused) {
        assert_eq!(
            refused,
            seen.len() - 1,
            "a request after a refusal was handled"
        );
    }
    match protocol {
        Some(Protocol::Http1) if !answer.is_empty() => {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            let parsed = response.parse(&answer);
            assert!(
                matches!(parsed, Ok(httparse::Status::Complete(_))),
                "not a complete response head: {parsed:?} in {:?}",
                String::from_utf8_lossy(&answer)
            );
            assert!((100..600).contains(&response.code.unwrap()));
        }
        Some(Protocol::Http2) if !answer.is_empty() => {
            // A frame header: 24-bit length, type 4 (SETTINGS), flags, stream 0.
            assert!(answer.len() >= 9, "truncated first frame");
            assert_eq!(answer[3], 4, "the server's first frame is not SETTINGS");
        }
        Some(Protocol::Http1) => assert!(seen.is_empty(), "a handled request got no answer"),
        _ => {}
    }
});
