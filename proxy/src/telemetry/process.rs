//! `strait_build_info` and the `process_*` metrics (CPU seconds, resident and virtual memory,
//! open and maximum descriptors, threads, start time).
//!
//! The process metrics come from the `metrics-process` crate, which reads `/proc/self` when
//! asked; the admin server asks at each `/metrics` scrape, so they cost nothing between
//! scrapes. (The memory guard also sets `process_resident_memory_bytes` every 100 ms: the
//! same gauge, read from the same place.)

use metrics_exporter_prometheus::PrometheusHandle;

/// The version every Strait binary is built as.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Registers the process metrics' help texts and sets `strait_build_info`. Call once, after
/// the recorder is installed.
pub fn describe_and_set_build_info() {
    metrics_process::Collector::default().describe();
    metrics::describe_gauge!(
        "strait_build_info",
        "Always 1; the binary's version in the `version` label."
    );
    metrics::gauge!("strait_build_info", "version" => VERSION).set(1.0);
}

/// Renders `/metrics`, the process metrics read just before.
pub fn render(handle: &PrometheusHandle) -> String {
    metrics_process::Collector::default().collect();
    handle.render()
}
