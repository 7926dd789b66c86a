//! Traffic management through the real binaries, with fault-injecting backends: canary
//! splits, retries, timeouts, circuit breaking, pending limits and load balancing, and the
//! counters each leaves in `/metrics`.
//!
//! Longer than 500 lines: a whole suite (routes, splits, retries, timeouts, breakers) over shared fixtures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use strait_tests::backend::HttpBackend;
use strait_tests::load::{Spec, count_backend, count_status, drive};
use strait_tests::mesh::{Mesh, MeshBuilder};
use strait_tests::metrics::Metrics;

const ROUTE: &str = "demo/backend-route/0";

/// A `backend` service over `n` workloads `backend-0..n`, a frontend, and the given route
/// rule (attached to `backend`) and backend policy (targeting `backend`).
fn mesh(n: usize, rule: &str, policy: &str) -> MeshBuilder {
    let mut builder = MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .workload("frontend-1", "frontend", &[("app", "frontend")]);
    for i in 0..n {
        builder = builder.workload(&format!("backend-{i}"), "backend", &[("app", "backend")]);
    }
    builder = builder.yaml(
        "route.yaml",
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: backend-route, namespace: demo}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: backend, port: 80}}]\n  rules:\n  - backendRefs: [{{name: backend, port: 80}}]\n{rule}"
        ),
    );
    if !policy.is_empty() {
        builder = builder.yaml(
            "policy.yaml",
            &format!(
                "apiVersion: strait.dev/v1alpha1\nkind: BackendPolicy\nmetadata: {{name: backend, namespace: demo}}\nspec:\n  targetRef: {{group: \"\", kind: Service, name: backend}}\n{policy}"
            ),
        );
    }
    builder
}

async fn backends(mesh: &Mesh, n: usize) -> Vec<HttpBackend> {
    let mut apps = Vec::new();
    for i in 0..n {
        let name = format!("backend-{i}");
        apps.push(HttpBackend::start_on(mesh.workload(&name).app(), &name).await);
    }
    apps
}

fn outbound(mesh: &Mesh) -> std::net::SocketAddr {
    mesh.proxy("frontend-1").outbound
}

async fn frontend_metrics(mesh: &Mesh) -> Metrics {
    Metrics::fetch(mesh.proxy("frontend-1").admin).await
}

const BACKEND: (&str, &str) = ("backend", "demo/backend:80");

// ---- canary splits ----------------------------------------------------------------------

fn canary(v1: u32, v2: u32, sticky: Option<&str>) -> MeshBuilder {
    let annotations = sticky
        .map(|h| format!(", annotations: {{strait.dev/sticky-header: {h}}}"))
        .unwrap_or_default();
    MeshBuilder::new()
        .service("backend", &[("app", "backend")])
        .service("backend-v1", &[("app", "backend"), ("version", "v1")])
        .service("backend-v2", &[("app", "backend"), ("version", "v2")])
        .workload("frontend-1", "frontend", &[("app", "frontend")])
        .workload(
            "backend-v1",
            "backend",
            &[("app", "backend"), ("version", "v1")],
        )
        .workload(
            "backend-v2",
            "backend",
            &[("app", "backend"), ("version", "v2")],
        )
        .yaml("route.yaml", &canary_route(v1, v2, &annotations))
}

fn canary_route(v1: u32, v2: u32, annotations: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: canary, namespace: demo{annotations}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: backend, port: 80}}]\n  rules:\n  - backendRefs:\n    - {{name: backend-v1, port: 80, weight: {v1}}}\n    - {{name: backend-v2, port: 80, weight: {v2}}}\n"
    )
}

async fn canary_backends(mesh: &Mesh) -> (HttpBackend, HttpBackend) {
    (
        HttpBackend::start_on(mesh.workload("backend-v1").app(), "backend-v1").await,
        HttpBackend::start_on(mesh.workload("backend-v2").app(), "backend-v2").await,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_90_10_split_lands_within_four_standard_deviations_and_is_counted_per_backend() {
    let mesh = canary(90, 10, None).start();
    let _apps = canary_backends(&mesh).await;
    let n = 10_000;
    let responses = drive(outbound(&mesh), n, 8, |_| Spec::get("backend.demo", "/")).await;
    let failures: Vec<_> = responses
        .iter()
        .filter(|r| r.status != 200)
        .map(|r| (r.status, r.text()))
        .take(5)
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    let share = count_backend(&responses, "backend-v2") as f64 / n as f64;
    let sigma = (0.1f64 * 0.9 / n as f64).sqrt();
    assert!(
        (share - 0.1).abs() < 4.0 * sigma,
        "canary share {share}, expected 0.1 ± {}",
        4.0 * sigma
    );

    let metrics = frontend_metrics(&mesh).await;
    let per_backend = |b: &str| {
        metrics.sum(
            "strait_http_requests_total",
            &[("route", "demo/canary/0"), ("backend", b)],
        )
    };
    assert_eq!(
        per_backend("demo/backend-v1:80") as usize,
        count_backend(&responses, "backend-v1")
    );
    assert_eq!(
        per_backend("demo/backend-v2:80") as usize,
        count_backend(&responses, "backend-v2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_over_by_hot_reload_moves_all_traffic_with_zero_failures() {
    let mesh = canary(90, 10, None).start();
    let _apps = canary_backends(&mesh).await;
    let addr = outbound(&mesh);
    // Traffic runs until 500 answers in a row came from v2 after the change (or 15 s pass).
    let stop = Arc::new(AtomicBool::new(false));
    let streak = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, streak) = (stop.clone(), streak.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut sent = 0;
                while !stop.load(Ordering::SeqCst) && sent < 50_000 {
                    let batch = drive(addr, 20, 1, |_| Spec::get("backend.demo", "/")).await;
                    sent += batch.len();
                    for response in batch {
                        if response.status != 200 {
                            failures.push((response.status, response.text()));
                        } else if response.header("x-backend") == "backend-v2" {
                            streak.fetch_add(1, Ordering::SeqCst);
                        } else {
                            streak.store(0, Ordering::SeqCst);
                        }
                    }
                }
                (sent, failures)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    mesh.write_config("route.yaml", &canary_route(0, 100, ""));
    let deadline = Instant::now() + Duration::from_secs(15);
    while streak.load(Ordering::SeqCst) < 500 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut sent = 0;
    for worker in workers {
        let (n, failures) = worker.await.unwrap();
        sent += n;
        assert!(
            failures.is_empty(),
            "requests failed during the cut-over: {failures:?}"
        );
    }
    assert!(
        streak.load(Ordering::SeqCst) >= 500,
        "traffic never moved entirely to v2"
    );
    assert!(sent > 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_splitting_keeps_each_user_on_one_side() {
    let mesh = canary(50, 50, Some("x-user")).start();
    let _apps = canary_backends(&mesh).await;
    let users = 40;
    let responses = drive(outbound(&mesh), users * 10, 4, move |i| {
        Spec::get("backend.demo", "/").header("x-user", &format!("user-{}", i % users))
    })
    .await;
    let mut sides: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, response) in responses.iter().enumerate() {
        sides
            .entry(i % users)
            .or_default()
            .push(response.header("x-backend").to_owned());
    }
    for (user, seen) in &sides {
        assert!(
            seen.iter().all(|b| *b == seen[0]),
            "user {user} switched sides: {seen:?}"
        );
    }
    let on_v2 = sides
        .values()
        .filter(|seen| seen[0] == "backend-v2")
        .count();
    assert!(
        on_v2 > 5 && on_v2 < users - 5,
        "users spread over both sides: {on_v2} of {users} on v2"
    );
}

// ---- retries ---------------------------------------------------------------------------

const RETRY_503: &str = "    retry: {attempts: 3, codes: [503], backoff: 5ms}\n";

#[tokio::test(flavor = "multi_thread")]
async fn gets_to_a_backend_failing_30_percent_succeed_and_the_retries_are_counted() {
    let mesh = mesh(1, RETRY_503, "").start();
    let apps = backends(&mesh, 1).await;
    apps[0].faults.fail_percent.store(30, Ordering::SeqCst);
    let n = 400;
    let responses = drive(outbound(&mesh), n, 1, |_| Spec::get("backend.demo", "/")).await;
    let ok = count_status(&responses, 200);
    assert!(ok as f64 >= 0.99 * n as f64, "{ok} of {n} succeeded");
    let attempts = apps[0].requests();
    assert!(
        attempts > n as u64,
        "the backend saw the retries: {attempts}"
    );

    let metrics = frontend_metrics(&mesh).await;
    let retries = metrics.sum("strait_http_retries_total", &[("route", ROUTE), BACKEND]);
    assert_eq!(retries as u64, attempts - n as u64, "{}", metrics.text);
    assert_eq!(
        metrics.sum("strait_http_requests_total", &[("route", ROUTE), BACKEND]) as usize,
        n
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn posts_are_not_retried_on_status_unless_they_carry_an_idempotency_key() {
    let mesh = mesh(1, RETRY_503, "").start();
    let apps = backends(&mesh, 1).await;
    apps[0].faults.fail_percent.store(30, Ordering::SeqCst);
    let n = 200;
    let responses = drive(outbound(&mesh), n, 1, |_| {
        Spec::post("backend.demo", "/echo", b"order")
    })
    .await;
    assert_eq!(
        count_status(&responses, 503),
        60,
        "exactly the raw 30 % of failures"
    );
    assert_eq!(apps[0].requests(), n as u64, "no retry reached the backend");
    let metrics = frontend_metrics(&mesh).await;
    assert_eq!(
        metrics.sum(
            "strait_http_retries_skipped_total",
            &[("route", ROUTE), ("reason", "not-idempotent")]
        ),
        60.0
    );

    let keyed = drive(outbound(&mesh), n, 1, |i| {
        Spec::post("backend.demo", "/echo", b"order")
            .header("idempotency-key", &format!("order-{i}"))
    })
    .await;
    assert_eq!(
        count_status(&keyed, 200),
        n,
        "with an Idempotency-Key, POSTs are retried"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_failing_every_request_gets_retries_only_within_the_budget() {
    let mesh = mesh(
        1,
        RETRY_503,
        "  retryBudget: {percent: 20, minRetriesPerSecond: 1, interval: 10s}\n",
    )
    .start();
    let apps = backends(&mesh, 1).await;
    apps[0].faults.fail_percent.store(100, Ordering::SeqCst);
    let n = 200;
    let responses = drive(outbound(&mesh), n, 2, |_| Spec::get("backend.demo", "/")).await;
    assert_eq!(
        count_status(&responses, 503),
        n,
        "the original failure comes back"
    );
    let retries = apps[0].requests() - n as u64;
    // 20 % of 200 requests plus 1/s over the 10 s window; without the budget, 600.
    assert!(retries <= 50, "retries capped by the budget: {retries}");
    assert!(retries >= 30, "the budget was used: {retries}");
    let metrics = frontend_metrics(&mesh).await;
    assert!(
        metrics.sum(
            "strait_http_retries_skipped_total",
            &[("route", ROUTE), ("reason", "budget")]
        ) >= 100.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_retried_on_another_endpoint_even_for_post() {
    let mut mesh = mesh(2, "", "").start();
    let apps = [HttpBackend::start_on(mesh.workload("backend-1").app(), "backend-1").await];
    // backend-0's proxy is gone: connecting to its endpoint is refused at the mesh hop.
    drop(mesh.proxies.remove("backend-0"));
    let n = 100;
    let responses = drive(outbound(&mesh), n, 1, |_| {
        Spec::post("backend.demo", "/echo", b"payment")
    })
    .await;
    assert_eq!(count_status(&responses, 200), n, "every POST got through");
    assert_eq!(
        apps[0].requests(),
        n as u64,
        "each reached the app exactly once"
    );
}

// ---- timeouts --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_endpoint_past_the_per_try_timeout_is_retried_elsewhere_within_the_request_timeout()
{
    let mesh = mesh(2, "    timeouts: {request: 3s, backendRequest: 300ms}\n    retry: {attempts: 2, codes: [504], backoff: 5ms}\n", "").start();
    let apps = backends(&mesh, 2).await;
    apps[0].faults.delay_ms.store(2000, Ordering::SeqCst);
    let started = Instant::now();
    let responses = drive(outbound(&mesh), 20, 4, |_| Spec::get("backend.demo", "/")).await;
    assert_eq!(count_status(&responses, 200), 20);
    assert_eq!(
        count_backend(&responses, "backend-1"),
        20,
        "every answer came from the fast endpoint"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no request waited for the slow endpoint"
    );
    let metrics = frontend_metrics(&mesh).await;
    assert!(
        metrics.sum(
            "strait_http_timeouts_total",
            &[("route", ROUTE), ("kind", "backend-request-timeout")]
        ) >= 1.0,
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_past_its_timeout_gets_a_504_naming_the_timeout() {
    let mesh = mesh(1, "    timeouts: {request: 500ms}\n", "").start();
    let apps = backends(&mesh, 1).await;
    apps[0].faults.delay_ms.store(3000, Ordering::SeqCst);
    let responses = drive(outbound(&mesh), 3, 3, |_| Spec::get("backend.demo", "/")).await;
    for response in &responses {
        assert_eq!(response.status, 504);
        assert_eq!(response.header("strait-proxy-error"), "request-timeout");
    }
    let metrics = frontend_metrics(&mesh).await;
    assert_eq!(
        metrics.sum(
            "strait_http_timeouts_total",
            &[("route", ROUTE), ("kind", "request-timeout")]
        ),
        3.0
    );
    assert_eq!(
        metrics.sum(
            "strait_http_responses_total",
            &[
                ("route", ROUTE),
                ("status_code", "504"),
                ("error", "request-timeout")
            ]
        ),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_pooled_connection_is_closed() {
    let mesh = mesh(1, "", "  idleTimeout: 500ms\n").start();
    let _apps = backends(&mesh, 1).await;
    let responses = drive(outbound(&mesh), 5, 1, |_| Spec::get("backend.demo", "/")).await;
    assert_eq!(count_status(&responses, 200), 5);
    let inbound = |m: &Metrics| m.sum("strait_tcp_open_connections", &[("direction", "inbound")]);
    let during = inbound(&Metrics::fetch(mesh.proxy("backend-0").admin).await);
    assert!(
        during >= 1.0,
        "the mesh connection is pooled after the requests"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = inbound(&Metrics::fetch(mesh.proxy("backend-0").admin).await);
        if now == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle connection was never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---- circuit breaking ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_endpoint_is_ejected_then_probed_back_into_rotation_once_healthy() {
    let mesh = mesh(
        3,
        RETRY_503,
        "  circuitBreaker: {consecutiveFailures: 3, baseEjectionTime: 2s, maxEjectionTime: 10s, maxEjectedPercent: 50}\n  loadBalancer: RoundRobin\n",
    )
    .start();
    let apps = backends(&mesh, 3).await;
    apps[2].faults.fail_percent.store(100, Ordering::SeqCst);

    let warm = drive(outbound(&mesh), 30, 1, |_| Spec::get("backend.demo", "/")).await;
    assert_eq!(
        count_status(&warm, 200),
        30,
        "retries hide the failing endpoint"
    );
    let metrics = frontend_metrics(&mesh).await;
    assert_eq!(
        metrics.sum("strait_endpoint_ejections_total", &[BACKEND]),
        1.0,
        "{}",
        metrics.text
    );

    // While ejected it gets nothing.
    let before = apps[2].requests();
    let during = drive(outbound(&mesh), 60, 1, |_| Spec::get("backend.demo", "/")).await;
    assert_eq!(count_status(&during, 200), 60);
    assert_eq!(
        apps[2].requests(),
        before,
        "the ejected endpoint received traffic"
    );

    // Healed, it is probed after the ejection ends and returns to rotation.
    apps[2].faults.fail_percent.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let after = drive(outbound(&mesh), 60, 1, |_| Spec::get("backend.demo", "/")).await;
    assert_eq!(count_status(&after, 200), 60);
    assert!(
        count_backend(&after, "backend-2") >= 15,
        "back in rotation: {}",
        count_backend(&after, "backend-2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_pending_limit_requests_fail_fast_with_a_breaker_open_503() {
    let mesh = mesh(1, "", "  maxPendingRequests: 5\n").start();
    let apps = backends(&mesh, 1).await;
    apps[0].faults.delay_ms.store(1500, Ordering::SeqCst);
    let started = Instant::now();
    let responses = drive(outbound(&mesh), 20, 20, |_| Spec::get("backend.demo", "/")).await;
    let fast: Vec<_> = responses.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        count_status(&responses, 200),
        5,
        "the pending limit admitted 5"
    );
    assert_eq!(fast.len(), 15);
    for response in fast {
        assert_eq!(response.header("strait-proxy-error"), "breaker-open");
        assert!(
            response.text().contains("circuit breaker open"),
            "{}",
            response.text()
        );
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    let metrics = frontend_metrics(&mesh).await;
    assert_eq!(
        metrics.sum("strait_breaker_fast_fails_total", &[BACKEND]),
        15.0
    );
}

// ---- load balancing --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_times_slower_endpoint_receives_a_clearly_smaller_share() {
    let mesh = mesh(3, "", "").start();
    let apps = backends(&mesh, 3).await;
    for (app, delay) in apps.iter().zip([5, 5, 50]) {
        app.faults.delay_ms.store(delay, Ordering::SeqCst);
    }
    let responses = drive(outbound(&mesh), 600, 6, |_| Spec::get("backend.demo", "/")).await;
    assert_eq!(count_status(&responses, 200), 600);
    let fast = count_backend(&responses, "backend-0").min(count_backend(&responses, "backend-1"));
    let slow = count_backend(&responses, "backend-2");
    assert!(
        slow * 4 < fast,
        "the slow endpoint got {slow}, each fast one at least {fast}"
    );
}
