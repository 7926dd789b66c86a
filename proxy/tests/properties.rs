//! Property tests of the proxy's parsers of peer input, the same entry points the cargo-fuzz
//! targets in `fuzz/` drive (docs/fuzzing.md): protocol detection, the request-smuggling
//! checks and the HTTP server behind them, the transport header, and discovery snapshots.
//! Each property runs `PROPTEST_CASES` cases (default 64 here, a few seconds), so CI runs
//! them on every change; the fuzz targets run the same code for longer.
//!
//! Longer than 500 lines: one property test per parser of peer input, over shared generators.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message;
use strait_proto::discovery::v1 as pb;
use strait_proto::transport::v1::TransportHeader;
use strait_proxy::body::{self, Body};
use strait_proxy::connect::Connector;
use strait_proxy::detect::{self, H2_PREFACE, Protocol, Verdict, classify};
use strait_proxy::errors::is_grpc;
use strait_proxy::http::server::{ServerLimits, serve};
use strait_proxy::http::smuggling::{self, SmugglingError, check};
use strait_proxy::io::PrefixedIo;
use strait_proxy::table::build::build;
use strait_proxy::table::{EndpointSettings, SetAsideKind, Table};
use strait_proxy::transport_header::{Header, MAGIC};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// `cases` unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    // Paused: the server's header-read and idle deadlines pass as soon as nothing else can
    // happen, so an exchange that would hang on a real clock ends at once, and a true hang
    // (no deadline at all) shows as the outer timeout.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Protocol detection

/// First bytes of a connection: noise, request-line starts, and pieces of the HTTP/2 preface.
fn first_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..48),
        ("[A-Za-z!#~]{1,30}[ \t/]?", vec(any::<u8>(), 0..16)).prop_map(|(method, rest)| [
            method.into_bytes(),
            rest
        ]
        .concat()),
        (0..=H2_PREFACE.len(), vec(any::<u8>(), 0..8)).prop_map(|(n, rest)| [
            &H2_PREFACE[..n],
            &rest[..]
        ]
        .concat()),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Detection decides within 24 bytes and never changes its mind as more bytes arrive, so
    /// the bytes it buffered before deciding are all the decision rests on.
    #[test]
    fn detection_decides_early_and_never_changes_its_mind(bytes in first_bytes()) {
        let mut decided = None;
        for end in 0..=bytes.len() {
            match classify(&bytes[..end]) {
                Verdict::NeedMore => {
                    prop_assert!(decided.is_none(), "undecided again at {}", end);
                    prop_assert!(end <= 24, "undecided after {} bytes", end);
                }
                Verdict::Known(protocol) => {
                    prop_assert_eq!(*decided.get_or_insert(protocol), protocol);
                }
            }
        }
    }

    /// However the bytes are split into reads, `detect` reaches the verdict the whole prefix
    /// gives and hands back exactly the bytes it read, for replay.
    #[test]
    fn detection_is_independent_of_how_bytes_arrive(
        bytes in first_bytes(),
        chunk in 1usize..8,
    ) {
        let rt = runtime();
        let (protocol, read) = rt.block_on(async {
            let (mut client, mut server) = tokio::io::duplex(64);
            let writer = async {
                for piece in bytes.chunks(chunk) {
                    client.write_all(piece).await.unwrap();
                    tokio::task::yield_now().await;
                }
                client.shutdown().await.unwrap();
            };
            let (_, detected) = tokio::join!(
                writer,
                detect::detect(&mut server, 8192, Duration::from_secs(5))
            );
            detected.unwrap()
        });
        prop_assert!(bytes.starts_with(&read), "replayed bytes are not what was read");
        match classify(&bytes) {
            Verdict::Known(expected) => {
                prop_assert_eq!(protocol, expected);
                prop_assert_eq!(classify(&read), Verdict::Known(expected));
            }
            // The client closed before a verdict: opaque, with every byte kept.
            Verdict::NeedMore => {
                prop_assert_eq!(protocol, Protocol::Opaque);
                prop_assert_eq!(read.len(), bytes.len());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Request smuggling checks

/// Header lines a smuggler would send: lengths, encodings and hosts in several spellings,
/// among ordinary headers.
fn smuggler_headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let line = prop_oneof![
        (
            Just("content-length".to_owned()),
            prop_oneof![Just("5".into()), Just("6".into()), "[0-9]{1,3}"]
        ),
        (
            Just("Content-Length".to_owned()),
            prop_oneof![Just("5".into()), Just(" 5".into()), Just("5, 5".into())]
        ),
        (
            Just("transfer-encoding".to_owned()),
            prop_oneof![
                Just("chunked".into()),
                Just("Chunked".into()),
                Just("gzip, chunked".into()),
                Just("identity".into())
            ]
        ),
        (
            prop_oneof![Just("host".to_owned()), Just("HOST".to_owned())],
            prop_oneof![
                Just("web.demo".into()),
                Just("admin.demo".into()),
                Just("web.demo:80".into())
            ]
        ),
        ("x-[a-z]{1,6}", "[ -~]{0,8}"),
    ];
    vec(line, 0..6)
}

fn head_with(target: &str, version: Version, headers: &[(String, String)]) -> http::request::Parts {
    let mut builder = Request::post(target).version(version);
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder.body(()).unwrap().into_parts().0
}

fn count(headers: &HeaderMap, name: HeaderName) -> usize {
    headers.get_all(name).iter().count()
}

proptest! {
    #![proptest_config(config(512))]

    /// A head that passes has one way to frame its body and one authority; a refusal names
    /// what the head really holds; no other header is touched.
    #[test]
    fn smuggling_checks_leave_one_framing_and_one_authority(
        headers in smuggler_headers(),
        target in prop_oneof![
            Just("/x"),
            Just("http://web.demo/x"),
            Just("http://other.demo:8080/x")
        ],
        version in prop_oneof![Just(Version::HTTP_10), Just(Version::HTTP_11), Just(Version::HTTP_2)],
    ) {
        let mut head = head_with(target, version, &headers);
        let before = head.headers.clone();
        match check(&mut head) {
            Ok(()) => {
                let after = &head.headers;
                prop_assert!(count(after, CONTENT_LENGTH) <= 1);
                prop_assert!(!(after.contains_key(CONTENT_LENGTH) && after.contains_key(TRANSFER_ENCODING)));
                prop_assert!(count(after, HOST) <= 1);
                if version < Version::HTTP_2
                    && before.contains_key(HOST)
                    && let Some(authority) = head.uri.authority()
                {
                    prop_assert_eq!(after[HOST].as_bytes(), authority.as_str().as_bytes());
                }
                for name in before.keys().filter(|n| **n != CONTENT_LENGTH && **n != HOST) {
                    prop_assert_eq!(
                        before.get_all(name).iter().collect::<Vec<_>>(),
                        after.get_all(name).iter().collect::<Vec<_>>()
                    );
                }
            }
            Err(SmugglingError::LengthAndEncoding) => {
                prop_assert!(before.contains_key(CONTENT_LENGTH) && before.contains_key(TRANSFER_ENCODING));
            }
            Err(SmugglingError::DisagreeingLengths) => {
                let lengths: Vec<_> = before.get_all(CONTENT_LENGTH).iter().collect();
                prop_assert!(lengths.iter().any(|l| *l != lengths[0]));
            }
            Err(SmugglingError::SeveralHosts(n)) => {
                prop_assert!(n > 1);
                prop_assert_eq!(n, count(&before, HOST));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The HTTP server at the proxy's boundary

/// `strait-proxy run`'s defaults (proxy/src/config.rs).
fn default_limits() -> ServerLimits {
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

/// What the handler saw of each request, in order.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// Passed the smuggling checks: the path, which would have been forwarded.
    Accepted(String),
    /// Refused by the smuggling checks.
    Refused,
}

/// The proxy's first step for every request (outbound and inbound): the smuggling checks,
/// then the body read as forwarding reads it.
async fn handle(request: Request<Incoming>, seen: Arc<Mutex<Vec<Seen>>>) -> Response<Body> {
    let grpc = is_grpc(&request);
    let request = match smuggling::checked(request) {
        Ok(request) => request,
        Err(error) => {
            seen.lock().unwrap().push(Seen::Refused);
            return error.into_response(grpc);
        }
    };
    seen.lock()
        .unwrap()
        .push(Seen::Accepted(request.uri().path().to_owned()));
    match http_body_util::Limited::new(request.into_body(), 1 << 20)
        .collect()
        .await
    {
        Ok(collected) => Response::new(body::full(collected.to_bytes().len().to_string())),
        Err(_) => {
            let mut response = Response::new(body::empty());
            *response.status_mut() = StatusCode::BAD_REQUEST;
            response
        }
    }
}

/// Sends `bytes` to the proxy's connection path (detection, then the HTTP server with the
/// default limits) and returns the detected protocol, everything the server wrote back until
/// it closed, and what the handler saw.
fn exchange(bytes: &[u8]) -> (Protocol, Vec<u8>, Vec<Seen>) {
    runtime().block_on(async {
        let (client, mut server) = tokio::io::duplex(64 * 1024);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let write = async {
            // The server may close before reading everything; the write then fails.
            let _ = client_write.write_all(bytes).await;
            // Half-closing at once would make hyper drop pipelined requests it has not
            // started; a second of the paused clock passes only once the server is idle.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = client_write.shutdown().await;
        };
        let read = async {
            let mut answer = Vec::new();
            let _ = client_read.read_to_end(&mut answer).await;
            answer
        };
        let handler_seen = seen.clone();
        let server_side = async move {
            let (protocol, prefix) = detect::detect(&mut server, 8192, Duration::from_secs(5))
                .await
                .unwrap();
            if protocol != Protocol::Opaque {
                let io = Box::new(PrefixedIo::new(prefix, server));
                let handler = move |request| handle(request, handler_seen.clone());
                let _ = serve(
                    io,
                    protocol,
                    &default_limits(),
                    CancellationToken::new(),
                    handler,
                )
                .await;
            }
            protocol
        };
        let exchanged = async { tokio::join!(write, read, server_side) };
        let ((), answer, protocol) = tokio::time::timeout(Duration::from_secs(3600), exchanged)
            .await
            .expect("the connection ends once the client has sent everything");
        let seen = seen.lock().unwrap().clone();
        (protocol, answer, seen)
    })
}

/// The status of the first response in `answer`, which must be a complete HTTP/1 head.
fn first_status(answer: &[u8]) -> Result<u16, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(answer) {
        Ok(httparse::Status::Complete(_)) => Ok(response.code.unwrap()),
        other => Err(format!(
            "not a complete response head ({other:?}): {:?}",
            String::from_utf8_lossy(answer)
        )),
    }
}

/// The second request every attack carries in its body; it must never be handled.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: web.demo\r\n\r\n";

/// A request head that two parsers could frame differently, with a smuggled request after.
/// (`Content-Length` with `Transfer-Encoding` is the exception hyper resolves itself; see
/// `length_and_encoding_together_are_framed_by_the_encoding_and_close`.)
fn ambiguous_request() -> impl Strategy<Value = String> {
    let framing = prop_oneof![
        // Two lengths that disagree.
        (0u32..100, 100u32..200)
            .prop_map(|(a, b)| format!("Content-Length: {a}\r\nContent-Length: {b}\r\n")),
        // A length that is a list.
        Just("Content-Length: 4, 5\r\n".to_owned()),
        // obs-fold continuing a header onto the next line.
        Just("Content-Length: 4\r\nX-Folded: a\r\n b\r\n".to_owned()),
        Just("Content-Length: 4\r\nX-Folded: a\r\n\tTransfer-Encoding: chunked\r\n".to_owned()),
        // Control characters in a name or a value.
        (
            prop_oneof![
                Just('\0'),
                Just('\x01'),
                Just('\x0b'),
                Just('\x7f'),
                Just('\r')
            ],
            any::<bool>()
        )
            .prop_map(|(c, in_name)| if in_name {
                format!("Content-Length: 4\r\nX-Ba{c}d: v\r\n")
            } else {
                format!("Content-Length: 4\r\nX-Bad: a{c}b\r\n")
            }),
        // Whitespace before the colon.
        Just("Content-Length : 4\r\n".to_owned()),
        Just("Transfer-Encoding : chunked\r\nContent-Length: 4\r\n".to_owned()),
        // A chunked encoding that is not last.
        Just("Transfer-Encoding: chunked, identity\r\n".to_owned()),
        // Two hosts.
        Just("Host: admin.demo\r\nContent-Length: 4\r\n".to_owned()),
    ];
    (framing, prop_oneof![Just("POST"), Just("PUT"), Just("GET")]).prop_map(|(framing, method)| {
        format!("{method} /first HTTP/1.1\r\nHost: web.demo\r\n{framing}\r\n0\r\n\r\n{SMUGGLED}")
    })
}

proptest! {
    #![proptest_config(config(64))]

    /// Any bytes at all: the server answers with a well-formed response or closes, never
    /// hangs or panics, and handles nothing after a request it refused.
    #[test]
    fn arbitrary_bytes_get_a_well_formed_answer_or_a_close(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..512),
            ("(GET|POST|PRI|CONNECT) ", vec(any::<u8>(), 0..512))
                .prop_map(|(m, rest)| [m.into_bytes(), rest].concat()),
            (vec(any::<u8>(), 0..256)).prop_map(|rest| [H2_PREFACE, &rest[..]].concat()),
        ]
    ) {
        let (protocol, answer, seen) = exchange(&bytes);
        if let Some(refused) = seen.iter().position(|s| *s == Seen::Refused) {
            prop_assert_eq!(refused, seen.len() - 1, "a request after a refusal was handled");
        }
        match protocol {
            Protocol::Http1 if !answer.is_empty() => {
                let status = first_status(&answer).map_err(TestCaseError::fail)?;
                prop_assert!((100..600).contains(&status));
            }
            Protocol::Http1 => prop_assert!(seen.is_empty(), "a handled request got no answer"),
            Protocol::Http2 if !answer.is_empty() => {
                prop_assert!(answer.len() >= 9 && answer[3] == 4, "the first frame is not SETTINGS");
            }
            _ => {}
        }
    }

    /// Every head that two parsers could frame differently is refused with 400 before
    /// anything is forwarded, and the request smuggled behind it is never handled.
    #[test]
    fn ambiguous_requests_get_400_and_smuggle_nothing(request in ambiguous_request()) {
        let (protocol, answer, seen) = exchange(request.as_bytes());
        prop_assert_eq!(protocol, Protocol::Http1);
        prop_assert_eq!(first_status(&answer).map_err(TestCaseError::fail)?, 400);
        prop_assert!(
            !seen.iter().any(|s| matches!(s, Seen::Accepted(_))),
            "forwarded: {:?}", seen
        );
        let answer = String::from_utf8_lossy(&answer);
        prop_assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "more than one answer: {}", answer);
    }

    /// `Content-Length` with `Transfer-Encoding`, in either order and several spellings:
    /// hyper frames the body by the encoding alone and drops the length (RFC 9112 §6.3), and
    /// closes the connection after answering (§6.1). So the request is handled once with the
    /// chunked body, and nothing after it on the connection is read as a request, whichever
    /// framing a smuggler meant the next hop to use.
    #[test]
    fn length_and_encoding_together_are_framed_by_the_encoding_and_close(
        length_name in prop_oneof![Just("Content-Length"), Just("content-length")],
        encoding in prop_oneof![Just("chunked"), Just("Chunked"), Just("gzip, chunked")],
        length_first in any::<bool>(),
        smuggle_in_body in any::<bool>(),
        length in 0usize..200,
    ) {
        let (a, b) = (format!("{length_name}: {length}\r\n"), format!("Transfer-Encoding: {encoding}\r\n"));
        let framing = if length_first { a + &b } else { b + &a };
        // Either the chunked body carries the smuggled request (for a next hop that trusts
        // the length), or it follows the body's last chunk (for one that trusts the encoding).
        let (body, chunk) = if smuggle_in_body {
            (format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len()), SMUGGLED.len())
        } else {
            (format!("0\r\n\r\n{SMUGGLED}"), 0)
        };
        let request = format!("POST /first HTTP/1.1\r\nHost: web.demo\r\n{framing}\r\n{body}");
        let (_, answer, seen) = exchange(request.as_bytes());
        prop_assert_eq!(seen, vec![Seen::Accepted("/first".into())]);
        let answer = String::from_utf8_lossy(&answer);
        prop_assert!(answer.starts_with("HTTP/1.1 200"), "{}", answer);
        prop_assert!(answer.ends_with(&format!("\r\n\r\n{chunk}")), "the body was not the chunked one: {}", answer);
        prop_assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{}", answer);
    }

    /// A well-framed request is handled once with its body, and a pipelined one after it is
    /// handled too: the refusals above are about ambiguity, not about bodies or pipelining.
    #[test]
    fn well_framed_requests_are_handled_in_order(
        body in "[a-z]{0,40}",
        chunked in any::<bool>(),
        duplicate_length in any::<bool>(),
    ) {
        let framing = if chunked && body.is_empty() {
            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_owned()
        } else if chunked {
            format!("Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
        } else if duplicate_length {
            format!("Content-Length: {0}\r\nContent-Length: {0}\r\n\r\n{body}", body.len())
        } else {
            format!("Content-Length: {}\r\n\r\n{body}", body.len())
        };
        let request = format!("POST /first HTTP/1.1\r\nHost: web.demo\r\n{framing}GET /second HTTP/1.1\r\nHost: web.demo\r\n\r\n");
        let (_, answer, seen) = exchange(request.as_bytes());
        prop_assert_eq!(seen, vec![Seen::Accepted("/first".into()), Seen::Accepted("/second".into())]);
        let answer = String::from_utf8_lossy(&answer);
        prop_assert!(answer.starts_with("HTTP/1.1 200"), "{}", answer);
        let first_body = format!("\r\n\r\n{}", body.len());
        prop_assert!(answer.contains(&first_body), "{}", answer);
        prop_assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{}", answer);
    }
}

// ---------------------------------------------------------------------------------------
// The transport header

proptest! {
    #![proptest_config(config(512))]

    /// Every header a proxy can send reads back as itself, consuming nothing after it.
    #[test]
    fn transport_headers_round_trip(
        port in 1u16..,
        protocol in prop_oneof![Just(Protocol::Http1), Just(Protocol::Http2), Just(Protocol::Opaque)],
        payload in vec(any::<u8>(), 0..32),
    ) {
        let header = Header { port, protocol };
        let bytes = [&header.encode()[..], &payload[..]].concat();
        let mut rest = &bytes[..];
        let read = runtime().block_on(Header::read(&mut rest)).unwrap();
        prop_assert_eq!(read, header);
        prop_assert_eq!(rest, &payload[..]);
    }

    /// Arbitrary bytes after the magic: a header is accepted only with a port in 1..=65535 and
    /// a protocol a mesh connection can carry, and the reader never consumes past the length
    /// it read.
    #[test]
    fn transport_header_reader_accepts_only_valid_headers(
        body in prop_oneof![
            vec(any::<u8>(), 0..80),
            (any::<u32>(), any::<i32>(), vec(any::<u8>(), 0..4)).prop_map(|(port, protocol, extra)| {
                let mut body = TransportHeader { port, protocol }.encode_to_vec();
                body.extend(extra);
                body
            }),
        ],
    ) {
        let len = u8::try_from(body.len()).unwrap();
        let bytes = [&MAGIC[..], &[len], &body, b"app bytes"].concat();
        let mut rest = &bytes[..];
        let read = runtime().block_on(Header::read(&mut rest));
        let decoded = TransportHeader::decode(&body[..]);
        match read {
            Ok(header) => {
                prop_assert_eq!(rest, &b"app bytes"[..]);
                let message = decoded.unwrap();
                prop_assert_eq!(u32::from(header.port), message.port);
                prop_assert_ne!(header.port, 0);
                prop_assert!((1..=3).contains(&message.protocol));
            }
            Err(error) => prop_assert!(!error.to_string().is_empty()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Discovery snapshots

fn endpoint_settings() -> EndpointSettings {
    EndpointSettings {
        connector: Connector::new(Duration::from_secs(1), None),
        idle_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(1),
        mtls: true,
        heads: strait_proxy::head_limits::HeadLimits {
            max_bytes: 65_536,
            max_fields: 100,
        },
    }
}

/// A snapshot like the control plane sends: every kind of match, a split, policies, and
/// inbound ports with authorization rules.
fn realistic_snapshot() -> pb::Snapshot {
    let duration = |seconds| Some(pbjson_types::Duration { seconds, nanos: 0 });
    let endpoint = |address: &str, workload: &str| pb::Endpoint {
        address: address.into(),
        proxy_port: 4143,
        identity: "spiffe://cluster.local/ns/demo/sa/web".into(),
        workload: workload.into(),
        owner: None,
    };
    let backend = |name: &str, endpoints| pb::Backend {
        name: name.into(),
        endpoints,
        policy: Some(pb::BackendPolicy {
            connect_timeout: duration(1),
            max_pending_requests: 100,
            circuit_breaker: Some(pb::CircuitBreaker {
                consecutive_failures: 5,
                base_ejection: duration(30),
                max_ejection: duration(300),
                max_ejected_percent: 50,
            }),
            retry_budget: Some(pb::RetryBudget {
                ratio: 0.2,
                min_retries_per_second: 10,
                ttl: duration(10),
            }),
            ..Default::default()
        }),
    };
    let route_match = pb::RouteMatch {
        path: Some(pb::PathMatch {
            kind: Some(pb::path_match::Kind::Regex("/api/v[0-9]+.*".into())),
        }),
        method: "GET".into(),
        headers: vec![pb::HeaderMatch {
            name: "x-user".into(),
            value: Some(pb::header_match::Value::Exact("fuzz".into())),
        }],
        ..Default::default()
    };
    pb::Snapshot {
        version: "1".into(),
        services: vec![pb::OutboundService {
            name: "web".into(),
            namespace: "demo".into(),
            port: 80,
            authorities: vec!["web.demo:80".into(), "web.demo.svc.cluster.local:80".into()],
            addresses: vec!["10.0.0.1:80".into()],
            protocol: pb::Protocol::Detect as i32,
            routes: vec![
                pb::Route {
                    name: "demo/canary/0".into(),
                    matches: vec![route_match.clone()],
                    backends: vec![
                        pb::WeightedBackend {
                            backend: "demo/web-v1:80".into(),
                            weight: 90,
                            ..Default::default()
                        },
                        pb::WeightedBackend {
                            backend: "demo/web-v2:80".into(),
                            weight: 10,
                            ..Default::default()
                        },
                    ],
                    sticky_header: "x-user".into(),
                    retry: Some(pb::RetryPolicy {
                        max_retries: 2,
                        http_statuses: vec![503],
                        grpc_codes: vec![14],
                        backoff_base: duration(0),
                    }),
                    ..Default::default()
                },
                pb::Route {
                    name: "default".into(),
                    backends: vec![pb::WeightedBackend {
                        backend: "demo/web-v1:80".into(),
                        weight: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
            backends: vec![
                backend(
                    "demo/web-v1:80",
                    vec![
                        endpoint("10.1.0.1:8080", "web-1"),
                        endpoint("10.1.0.2:8080", "web-2"),
                    ],
                ),
                backend("demo/web-v2:80", vec![endpoint("10.1.0.3:8080", "web-3")]),
            ],
        }],
        inbound_ports: vec![pb::InboundPort {
            port: 8080,
            mode: pb::InboundMode::Strict as i32,
            services: vec!["demo/web".into()],
            authorizations: vec![pb::AuthorizationRule {
                policy: "demo/allow-frontend".into(),
                routes: vec![route_match],
                principals: vec![
                    pb::Principal {
                        kind: Some(pb::principal::Kind::Identity(
                            "spiffe://cluster.local/ns/demo/sa/frontend".into(),
                        )),
                    },
                    pb::Principal {
                        kind: Some(pb::principal::Kind::Namespace("demo".into())),
                    },
                ],
            }],
            ..Default::default()
        }],
        inbound_defaults: Some(pb::InboundDefaults {
            mode: pb::InboundMode::Permissive as i32,
            authorization: pb::DefaultAuthorization::AllAuthenticated as i32,
        }),
        workload: Some(pb::WorkloadRef {
            namespace: "demo".into(),
            name: "web".into(),
            kind: "Deployment".into(),
        }),
        identity_workloads: vec![pb::IdentityWorkload {
            identity: "spiffe://cluster.local/ns/demo/sa/web".into(),
            workload: Some(pb::WorkloadRef {
                namespace: "demo".into(),
                name: "web".into(),
                kind: "Deployment".into(),
            }),
        }],
    }
}

/// Uses a compiled table the way requests do, so a table that compiled cannot panic later.
fn exercise(table: &Table, snapshot: &pb::Snapshot) {
    let head = Request::get("/api/v1?x=1")
        .header("x-user", "fuzz")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    for service in &snapshot.services {
        for authority in &service.authorities {
            let Some(compiled) = table.service_for_authority(authority) else {
                continue;
            };
            let _ = compiled.default_route();
            if let Some(route) = compiled.route(&head)
                && let Some(strait_proxy::table::Pick::Backend(index)) =
                    route.pick_backend(&head.headers)
            {
                let _ = route.backends[index].0.pick(&[]);
            }
        }
    }
    let caller = "spiffe://cluster.local/ns/demo/sa/web".parse().unwrap();
    for port in snapshot
        .inbound_ports
        .iter()
        .filter_map(|p| u16::try_from(p.port).ok())
    {
        for caller in [None, Some(&caller)] {
            let _ = table.authorize(port, "cluster.local", caller, Some(&head));
            let _ = table.authorize(port, "cluster.local", caller, None);
        }
    }
}

/// A string for a field the proxy parses: usually valid, sometimes not.
fn field(valid: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(valid.to_owned()),
        1 => "\\PC{0,12}",
        1 => Just(String::new()),
    ]
}

/// Snapshots whose every parsed field may be broken: endpoint addresses and identities,
/// service addresses, header names, regexes, methods, principals, ports and enum values.
fn structured_snapshot() -> impl Strategy<Value = pb::Snapshot> {
    (
        field("10.1.0.1:8080"),
        field("spiffe://cluster.local/ns/demo/sa/web"),
        field("10.0.0.1:80"),
        field("x-user"),
        field("/api/v[0-9]+.*"),
        field("GET"),
        field("spiffe://cluster.local/ns/demo/sa/frontend"),
        (any::<u32>(), any::<i32>(), any::<i32>(), any::<u32>()),
        (any::<i64>(), any::<i32>()),
    )
        .prop_map(
            |(
                address,
                identity,
                service_address,
                header,
                regex,
                method,
                principal,
                numbers,
                timeout,
            )| {
                let (inbound_port, protocol, default_authorization, weight) = numbers;
                let mut snapshot = realistic_snapshot();
                let service = &mut snapshot.services[0];
                service.addresses = vec![service_address];
                service.protocol = protocol % 5;
                let backend = &mut service.backends[0];
                backend.endpoints[0].address = address;
                backend.endpoints[0].identity = identity;
                if let Some(policy) = &mut backend.policy {
                    policy.idle_timeout = Some(pbjson_types::Duration {
                        seconds: timeout.0,
                        nanos: timeout.1,
                    });
                }
                let route = &mut service.routes[0];
                route.sticky_header = header.clone();
                route.backends[1].weight = weight;
                let matches = &mut route.matches[0];
                matches.path = Some(pb::PathMatch {
                    kind: Some(pb::path_match::Kind::Regex(regex)),
                });
                matches.method = method;
                matches.headers[0].name = header;
                let inbound = &mut snapshot.inbound_ports[0];
                inbound.port = inbound_port % 70_000;
                inbound.authorizations[0].principals[0].kind =
                    Some(pb::principal::Kind::Identity(principal));
                snapshot.inbound_defaults.as_mut().unwrap().authorization = default_authorization;
                snapshot
            },
        )
}

proptest! {
    #![proptest_config(config(128))]

    /// Arbitrary bytes off the discovery stream: decoding fails cleanly or the snapshot
    /// compiles or is refused with a typed error; nothing panics.
    #[test]
    fn arbitrary_snapshot_bytes_never_panic(bytes in vec(any::<u8>(), 0..1024)) {
        let previous = build(realistic_snapshot(), &Table::empty(), &endpoint_settings());
        if let Ok(snapshot) = pb::Snapshot::decode(&bytes[..]) {
            let table = build(snapshot.clone(), &previous, &endpoint_settings());
            for entry in table.set_aside() {
                prop_assert!(!entry.reason.is_empty());
            }
            exercise(&table, &snapshot);
        }
    }

    /// A real snapshot with bytes flipped: the same.
    #[test]
    fn mutated_snapshots_never_panic(edits in vec((any::<usize>(), 1u8..), 1..8)) {
        let mut bytes = realistic_snapshot().encode_to_vec();
        for (at, xor) in edits {
            let len = bytes.len();
            bytes[at % len] ^= xor;
        }
        if let Ok(snapshot) = pb::Snapshot::decode(&bytes[..]) {
            let table = build(snapshot.clone(), &Table::empty(), &endpoint_settings());
            for entry in table.set_aside() {
                prop_assert!(!entry.reason.is_empty());
            }
            exercise(&table, &snapshot);
        }
    }

    /// Snapshots with broken fields: a bad endpoint address always sets its service aside
    /// with the service and the field named, and whatever was built answers requests.
    #[test]
    fn broken_snapshot_fields_are_set_aside_by_name(snapshot in structured_snapshot()) {
        let address = snapshot.services[0].backends[0].endpoints[0].address.clone();
        let table = build(snapshot.clone(), &Table::empty(), &endpoint_settings());
        let service_set_aside = table
            .set_aside()
            .iter()
            .find(|e| e.kind == SetAsideKind::Service);
        for entry in table.set_aside() {
            prop_assert!(
                entry.reason.starts_with("service demo/web:80: ") || entry.reason.starts_with("inbound port ") || entry.reason.starts_with("policy "),
                "{:?}", entry
            );
        }
        if address.parse::<std::net::SocketAddr>().is_err() {
            let entry = service_set_aside.expect("a bad address sets the service aside");
            // Endpoints are the first thing of a service's backends that is parsed.
            prop_assert!(entry.reason.contains("address"), "{:?}", entry);
            prop_assert!(table.service_for_authority("web.demo").is_none());
        }
        exercise(&table, &snapshot);
    }
}

#[test]
fn the_realistic_snapshot_compiles_and_routes() {
    let snapshot = realistic_snapshot();
    let table = build(snapshot.clone(), &Table::empty(), &endpoint_settings());
    assert!(table.set_aside().is_empty(), "{:?}", table.set_aside());
    let service = table.service_for_authority("web.demo").unwrap();
    let head = Request::get("/api/v1")
        .header("x-user", "fuzz")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    assert_eq!(service.route(&head).unwrap().name, "demo/canary/0");
    exercise(&table, &snapshot);
}
