//! The metric handles of one inbound connection: one request stream per Service of its port,
//! each request counted under the one Service its authority names
//! ([`inbound_service_for`]), and the cache those handles come from.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::telemetry::http::{RequestLabels, RequestMetrics};
use crate::telemetry::workload::inbound_service_for;

/// How many label sets the inbound request-metrics cache holds before it starts over (a
/// start over only costs re-resolving handles; the series stay).
const MAX_CACHED_LABEL_SETS: usize = 4096;

/// Inbound request handles by label set.
#[derive(Default)]
pub(super) struct RequestMetricsCache {
    cache: Mutex<HashMap<RequestLabels, RequestMetrics>>,
}

impl RequestMetricsCache {
    /// The handles for one connection: `base`'s labels with each of `services` (sorted; none:
    /// one stream with an empty service).
    pub(super) fn port(&self, base: &RequestLabels, services: &[String]) -> PortMetrics {
        let mut cache = self.cache.lock().expect("metrics lock poisoned");
        if cache.len() >= MAX_CACHED_LABEL_SETS {
            cache.clear();
        }
        let mut get = |service: &str| {
            let labels = RequestLabels {
                service: service.to_owned(),
                ..base.clone()
            };
            cache
                .entry(labels)
                .or_insert_with_key(RequestMetrics::new)
                .clone()
        };
        let metrics = if services.is_empty() {
            vec![get("")]
        } else {
            services.iter().map(|s| get(s)).collect()
        };
        PortMetrics {
            services: services.to_vec(),
            metrics,
        }
    }
}

/// One connection's request handles, one per Service of its port.
pub(super) struct PortMetrics {
    services: Vec<String>,
    metrics: Vec<RequestMetrics>,
}

impl PortMetrics {
    /// The Service (empty when the port has none) and handles of a request for `authority`.
    pub(super) fn for_authority(&self, authority: Option<&str>) -> (&str, &RequestMetrics) {
        let index = inbound_service_for(&self.services, authority).unwrap_or(0);
        (
            self.services.get(index).map_or("", String::as_str),
            &self.metrics[index],
        )
    }
}
