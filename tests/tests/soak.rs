//! The short soak CI runs: the benchmark's soak (`strait-bench soak`) through the real debug
//! proxy, 500 keep-alive connections under steady load for 20 seconds. Memory and descriptors
//! must stay flat after the warm-up and no request may fail.

use std::time::Duration;

use strait_tests::soak::{self, Settings};

#[tokio::test(flavor = "multi_thread")]
async fn five_hundred_connections_under_steady_load_keep_memory_and_descriptors_flat() {
    let settings = Settings {
        connections: 500,
        duration: Duration::from_secs(20),
        warmup: Duration::from_secs(6),
        rate: 500.0,
        sample_every: Duration::from_secs(1),
        threads: 1,
    };
    let report = soak::run(&settings, |_| {}).await;
    let samples: Vec<String> = report
        .samples
        .iter()
        .map(|s| {
            format!(
                "{:5.1}s rss {:6.1} MiB fds {:4} open {:3} requests {:6} errors {}",
                s.at_secs,
                s.rss_bytes as f64 / 1048576.0,
                s.fds,
                s.connections_open,
                s.requests,
                s.errors
            )
        })
        .collect();
    let summary = format!(
        "{:#?}\nfirst error: {:?}\n{}",
        report.verdict.checks,
        report.first_error,
        samples.join("\n")
    );
    assert!(report.verdict.pass(), "{summary}");
    let last = report.samples.last().expect("samples");
    assert_eq!(last.errors, 0, "{summary}");
    // 500 requests per second for 20 s, less the connections' staggered first requests.
    assert!(last.requests >= 8_000, "{summary}");
    assert!(
        last.fds >= 500,
        "the proxy holds a descriptor per client connection: {summary}"
    );
}
