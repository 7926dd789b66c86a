//! The proxy's metrics: the Prometheus recorder and the families the data path records into.
//!
//! Metric handles are resolved once (per process, per connection or per snapshot) and then
//! only incremented, so the hot path never formats labels or hashes metric keys. Every metric
//! is documented in `docs/metrics.md`.

pub mod access_log;
pub mod describe;
pub mod http;
pub mod outcome;
pub mod process;
pub mod tcp;
pub mod trace;
pub mod workload;

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets in seconds: sub-millisecond to 10 s, as the mesh's latencies span.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder and returns the handle `/metrics` renders
/// from. Call once, before any metric is recorded.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    process::describe_and_set_build_info();
    describe::describe_all();
    let upkeep = handle.clone();
    // Histograms accumulate samples until upkeep folds them into buckets.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
