//! Chaos under traffic, every request counted: an endpoint killed mid-traffic, a backend
//! closing idle keep-alive connections on a timer, a proxy restarted with SIGTERM while HTTP/2
//! clients keep calling. (A control-plane restart under traffic is in discovery.rs.)
//!
//! Loops are bounded in count and time; everything runs on loopback.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use strait_proto::discovery::v1 as pb;
use strait_tests::backend::HttpBackend;
use strait_tests::client;
use strait_tests::mesh::LocalMesh;
use strait_tests::process::{Proxy, ProxyBuilder};
use strait_tests::snapshot::{Endpoint, TempDir, service, snapshot};

/// A client proxy and a server proxy in front of `apps`, all endpoints of `backend.demo:80`,
/// whose route retries 502 and 503 twice.
struct ThreeEndpoints {
    client: Proxy,
    _server: Proxy,
    _dir: TempDir,
}

fn three_endpoints(apps: &[SocketAddr]) -> ThreeEndpoints {
    let dir = TempDir::new("chaos");
    let server = Proxy::builder().start();
    let endpoints: Vec<Endpoint> = apps
        .iter()
        .map(|app| Endpoint {
            app: *app,
            proxy_port: Some(server.inbound.port()),
        })
        .collect();
    let mut backend = service("backend", "demo", 80, &[], &endpoints);
    backend.routes[0].retry = Some(pb::RetryPolicy {
        max_retries: 2,
        http_statuses: vec![502, 503],
        ..Default::default()
    });
    let path = dir.write_snapshot("snapshot.json", &snapshot("1", vec![backend]));
    let client = Proxy::builder().snapshot(&path).start();
    ThreeEndpoints {
        client,
        _server: server,
        _dir: dir,
    }
}

/// What a group of clients saw: requests that succeeded, and the ids and statuses of those
/// that failed.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: Vec<(u64, String)>,
}

/// `clients` keep-alive clients each send requests made by `request(id)` until `total`
/// requests were sent or 30 s passed.
async fn drive(
    outbound: SocketAddr,
    clients: usize,
    total: u64,
    request: fn(u64) -> http::Request<strait_tests::client::Body>,
) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (tally, next) = (tally.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = client::http1(outbound).await;
            loop {
                let id = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if id >= total || Instant::now() > deadline {
                    return;
                }
                let _ = sender.ready().await;
                let outcome = match sender.send_request(request(id)).await {
                    Ok(response) => {
                        let response = client::collect(response).await;
                        if response.status == 200 {
                            Ok(())
                        } else {
                            Err(format!("{} {}", response.status, response.text()))
                        }
                    }
                    Err(error) => {
                        sender = client::http1(outbound).await;
                        Err(format!("client connection failed: {error}"))
                    }
                };
                let mut tally = tally.lock().unwrap();
                match outcome {
                    Ok(()) => tally.ok += 1,
                    Err(why) => tally.failed.push((id, why)),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(tally).ok().unwrap().into_inner().unwrap()
}

fn slow_get(id: u64) -> http::Request<client::Body> {
    http::Request::get("/slow?ms=10")
        .header("host", "backend.demo")
        .header("x-request-id", id.to_string())
        .body(client::empty())
        .unwrap()
}

fn slow_post(id: u64) -> http::Request<client::Body> {
    http::Request::post("/slow?ms=10")
        .header("host", "backend.demo")
        .header("x-request-id", id.to_string())
        .body(client::full(format!("order {id}")))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_one_of_three_endpoints_fails_no_idempotent_request() {
    let apps = [
        HttpBackend::start("a").await,
        HttpBackend::start("b").await,
        HttpBackend::start("c").await,
    ];
    let mesh = three_endpoints(&apps.iter().map(|a| a.addr).collect::<Vec<_>>());
    let outbound = mesh.client.outbound;

    let traffic = tokio::spawn(drive(outbound, 4, 600, slow_get));
    wait_for_requests(&apps[0], 30).await;
    apps[0].kill();
    let tally = traffic.await.unwrap();

    assert!(tally.failed.is_empty(), "GETs failed: {:?}", tally.failed);
    assert_eq!(tally.ok, 600);
    let survivors = apps[1].requests() + apps[2].requests();
    assert!(survivors > 300, "the others took over: {survivors}");
}

/// The app behind one endpoint dies while its proxy lives on. A POST is never sent twice:
/// the only word that it did not reach the app would be the peer's, and retries act only on
/// what the calling proxy observed itself. So the POSTs that fail are those the dying app had
/// received and those its proxy could not deliver, until the breaker ejects the endpoint
/// (7 failures in a row, then a probe after 1 s and 2 s), and none reached a live app.
#[tokio::test(flavor = "multi_thread")]
async fn killing_an_endpoints_app_fails_only_posts_sent_to_it_and_none_twice() {
    let apps = [
        HttpBackend::start("a").await,
        HttpBackend::start("b").await,
        HttpBackend::start("c").await,
    ];
    let mesh = three_endpoints(&apps.iter().map(|a| a.addr).collect::<Vec<_>>());
    let outbound = mesh.client.outbound;

    let traffic = tokio::spawn(drive(outbound, 4, 600, slow_post));
    wait_for_requests(&apps[0], 30).await;
    apps[0].kill();
    let tally = traffic.await.unwrap();

    let reached_the_dying: HashSet<u64> = apps[0].request_ids().into_iter().collect();
    let reached_the_live: Vec<u64> = apps[1..]
        .iter()
        .flat_map(HttpBackend::request_ids)
        .collect();
    let handled_once: HashSet<u64> = reached_the_live.iter().copied().collect();
    assert_eq!(
        handled_once.len(),
        reached_the_live.len(),
        "no POST was handled twice"
    );
    assert!(
        reached_the_dying.is_disjoint(&handled_once),
        "no POST the dying app received was sent again"
    );
    let dying = apps[0].addr.port().to_string();
    for (id, why) in &tally.failed {
        assert!(
            !handled_once.contains(id),
            "POST {id} failed although a live app handled it: {why}"
        );
        assert!(
            reached_the_dying.contains(id) || (why.starts_with("502") && why.contains(&dying)),
            "POST {id} failed for another reason than the dying endpoint: {why}"
        );
    }
    assert_eq!(tally.ok + tally.failed.len() as u64, 600);
    assert!(
        tally.failed.len() <= 4 + 7 + 2,
        "the POSTs in progress at the kill (4 clients) and those before the breaker ejects the endpoint: {:?}",
        tally.failed
    );
}

async fn wait_for_requests(app: &HttpBackend, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.requests() < n {
        assert!(
            Instant::now() < deadline,
            "traffic never reached {}",
            app.name
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The backend closes every connection that sat idle 20 ms; clients pause 10–30 ms between
/// requests, so the proxy keeps picking connections the backend is closing at that moment.
#[tokio::test(flavor = "multi_thread")]
async fn a_backend_closing_idle_connections_on_a_timer_causes_no_client_error() {
    let app = HttpBackend::start("app").await;
    app.faults
        .idle_close_ms
        .store(20, std::sync::atomic::Ordering::SeqCst);
    let mesh = LocalMesh::start(&[("app", app.addr)]);

    let mut sender = client::http1(mesh.client.outbound).await;
    let mut failures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    while sent < 300 && Instant::now() < deadline {
        let request = http::Request::get("/")
            .header("host", "app.demo")
            .body(client::empty())
            .unwrap();
        // A request that is never answered is a failure to report, not a hang to wait out.
        let response = tokio::time::timeout(Duration::from_secs(10), async {
            sender.ready().await.unwrap();
            client::collect(sender.send_request(request).await.unwrap()).await
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "request {sent} got no answer within 10 s ({} failed before it: {failures:?}; \
                 the backend accepted {} connections)",
                failures.len(),
                app.accepted_connections()
            )
        });
        if response.status != 200 {
            failures.push(response.text());
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(10 + fastrand::u64(..20))).await;
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(
        app.accepted_connections() > 30,
        "the backend's timer closed connections often enough to race: {}",
        app.accepted_connections()
    );
}

/// An HTTP/2 client that does what HTTP/2 clients do when a server goes away: a request the
/// server refused or never saw (GOAWAY, connection closed) is sent again on a new connection.
struct RetryingH2Client {
    addr: SocketAddr,
    sender: hyper::client::conn::http2::SendRequest<client::Body>,
}

impl RetryingH2Client {
    async fn connect(addr: SocketAddr) -> Self {
        Self {
            addr,
            sender: client::http2(addr).await,
        }
    }

    async fn get(&mut self, path: &str) -> Result<u16, String> {
        for _ in 0..50 {
            let request = http::Request::get(format!("http://backend.demo{path}"))
                .body(client::empty())
                .unwrap();
            let _ = self.sender.ready().await;
            match self.sender.send_request(request).await {
                Ok(response) => return Ok(client::collect(response).await.status.as_u16()),
                Err(error) if unprocessed(&error) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if let Ok(Ok(sender)) =
                        tokio::time::timeout(Duration::from_secs(1), try_http2(self.addr)).await
                    {
                        self.sender = sender;
                    }
                }
                Err(error) => return Err(error.to_string()),
            }
        }
        Err("no new connection within 50 tries".into())
    }
}

/// Whether the server guaranteed it did not process the request: refused stream, GOAWAY, or a
/// connection already closed when the request was to be sent.
fn unprocessed(error: &hyper::Error) -> bool {
    if error.is_canceled() || error.is_closed() {
        return true;
    }
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        cause = e.source();
    }
    false
}

async fn try_http2(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http2::SendRequest<client::Body>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_a_proxy_with_sigterm_fails_no_request_of_clients_that_retry_on_goaway() {
    let app = HttpBackend::start("app").await;
    let mut mesh = LocalMesh::start(&[("backend", app.addr)]);
    let outbound = mesh.client.outbound;
    let snapshot = mesh.dir.path().join("snapshot.json");

    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut client = RetryingH2Client::connect(outbound).await;
            let (mut ok, mut failed) = (0u32, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(30);
            for _ in 0..150 {
                if Instant::now() > deadline {
                    break;
                }
                match client.get("/slow?ms=10").await {
                    Ok(200) => ok += 1,
                    Ok(status) => failed.push(status.to_string()),
                    Err(error) => failed.push(error),
                }
            }
            (ok, failed)
        }));
    }
    wait_for_requests(&app, 100).await;
    mesh.client.process.signal(Signal::SIGTERM);
    mesh.client.process.wait_exit(Duration::from_secs(30));
    let restarted: ProxyBuilder = Proxy::builder()
        .snapshot(&snapshot)
        .flag("--outbound-addr", outbound);
    mesh.client = restarted.start();

    let (mut ok, mut failed) = (0, Vec::new());
    for task in tasks {
        let (o, f) = task.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    assert_eq!(ok, 600);
    assert!(
        mesh.client.process.count_logged("strait-proxy listening") == 1,
        "the restarted proxy served the rest"
    );
}
