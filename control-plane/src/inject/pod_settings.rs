//! What one pod's proxy gets: the chart's proxy defaults with the pod's `strait.dev/*`
//! annotations applied, and the worker threads derived from the CPU it may use.
//!
//! Pure: annotations and configuration in, settings and warnings out. An annotation whose value
//! cannot be used never refuses the pod (as with Linkerd's and Istio's injectors): the default
//! stays in force and one warning names the annotation, the value and what was kept. The
//! warning goes back to whoever created the pod (`kubectl` prints it) and into the injector's
//! log. Values are checked here as the proxy and the API server would check them, so an
//! injected pod never fails admission or crash-loops on what its annotations said.

use std::collections::BTreeMap;
use std::num::NonZeroU16;

use super::config::{AccessLog, InjectorConfig, Resources};
use super::quantity::Quantity;
use super::{
    ACCESS_LOG, OPAQUE_PORTS, PROXY_CPU_LIMIT, PROXY_CPU_REQUEST, PROXY_LOG_LEVEL,
    PROXY_MEMORY_LIMIT, PROXY_MEMORY_REQUEST, PROXY_THREADS, SKIP_INBOUND_PORTS,
    SKIP_OUTBOUND_PORTS, TRACE_COLLECTOR, TRACE_SAMPLE_RATIO, TRACING,
};

/// Most worker threads a proxy is given, derived or annotated: a sidecar with more is almost
/// certainly a typo (`proxy-cpu-limit: "100"` for `100m`).
pub const MAX_THREADS: u32 = 64;

/// Longest annotation value quoted back in a warning (the API server truncates warnings over
/// 256 characters).
const QUOTED_VALUE_CHARS: usize = 64;

/// Where one pod's proxy exports spans.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceExport {
    /// The OTLP/gRPC collector (`STRAIT_TRACE_COLLECTOR`).
    pub collector: String,
    /// Share of requests started in the mesh that are traced (`STRAIT_TRACE_SAMPLE_RATIO`).
    pub sample_ratio: f64,
}

/// The settings of one pod's proxy.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSettings {
    /// The proxy container's (and init container's) resources.
    pub resources: Resources,
    /// Runtime worker threads (`STRAIT_THREADS`).
    pub threads: u32,
    /// Log filter (`STRAIT_LOG`).
    pub log_level: String,
    /// Ports relayed opaquely without detection (`STRAIT_OPAQUE_PORTS`).
    pub opaque_ports: Vec<NonZeroU16>,
    /// Inbound ports iptables leaves alone.
    pub skip_inbound_ports: Vec<NonZeroU16>,
    /// Outbound destination ports iptables leaves alone.
    pub skip_outbound_ports: Vec<NonZeroU16>,
    /// Trace export, when tracing is on for the pod.
    pub tracing: Option<TraceExport>,
    /// The access log (`STRAIT_ACCESS_LOG`).
    pub access_log: AccessLog,
}

/// The pod's proxy settings: `config` with `annotations` applied, and a warning for each
/// annotation that could not be (its default kept).
pub fn pod_settings(
    annotations: &BTreeMap<String, String>,
    config: &InjectorConfig,
) -> (PodSettings, Vec<String>) {
    let mut warnings = Vec::new();
    let get = |name: &str| annotations.get(name).map(|v| v.trim());

    let resources = proxy_resources(&config.resources, &get, &mut warnings);
    let derived = worker_threads(&resources);
    let threads = match get(PROXY_THREADS) {
        None => derived,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_THREADS).contains(&n) => n,
            _ => {
                warnings.push(warning(
                    PROXY_THREADS,
                    text,
                    &format!("is not a whole number from 1 to {MAX_THREADS}"),
                    &format!("{derived}, from the proxy's CPU"),
                ));
                derived
            }
        },
    };

    let log_level = match get(PROXY_LOG_LEVEL) {
        None => config.log_level.clone(),
        Some(text) => match check_log_filter(text) {
            Ok(()) => text.to_owned(),
            Err(reason) => {
                warnings.push(warning(PROXY_LOG_LEVEL, text, &reason, &config.log_level));
                config.log_level.clone()
            }
        },
    };

    // The opaque list is replaced (so a pod can take a default port back for detection); the
    // skip lists add to the chart's.
    let opaque_ports = match get(OPAQUE_PORTS) {
        None => config.opaque_ports.clone(),
        Some(text) => parse_ports(OPAQUE_PORTS, text, &mut warnings),
    };
    let mut skip_inbound_ports = config.skip_inbound_ports.clone();
    if let Some(text) = get(SKIP_INBOUND_PORTS) {
        skip_inbound_ports.extend(parse_ports(SKIP_INBOUND_PORTS, text, &mut warnings));
    }
    let mut skip_outbound_ports = config.skip_outbound_ports.clone();
    if let Some(text) = get(SKIP_OUTBOUND_PORTS) {
        skip_outbound_ports.extend(parse_ports(SKIP_OUTBOUND_PORTS, text, &mut warnings));
    }

    let tracing = trace_export(config, &get, &mut warnings);

    let access_log = match get(ACCESS_LOG) {
        None => config.access_log,
        Some("json") => AccessLog::Json,
        Some("off") => AccessLog::Off,
        Some(text) => {
            warnings.push(warning(
                ACCESS_LOG,
                text,
                "is neither json nor off",
                config.access_log.as_str(),
            ));
            config.access_log
        }
    };

    let settings = PodSettings {
        resources,
        threads,
        log_level,
        opaque_ports,
        skip_inbound_ports,
        skip_outbound_ports,
        tracing,
        access_log,
    };
    (settings, warnings)
}

/// The proxy's worker threads for its resources, as Linkerd's injector derives the proxy's
/// cores: the CPU limit (else the request) rounded up to whole cores, at least 1 and at most
/// [`MAX_THREADS`]; 1 when neither is set. A proxy never gets one thread per node CPU, which
/// on a large node would be dozens of threads sharing a fraction of a core.
pub fn worker_threads(resources: &Resources) -> u32 {
    let cpu = resources
        .limits
        .get("cpu")
        .or_else(|| resources.requests.get("cpu"))
        .and_then(|text| Quantity::parse(text).ok());
    let cores = cpu.map_or(1, Quantity::ceil_units);
    u32::try_from(cores.clamp(1, u128::from(MAX_THREADS))).unwrap_or(MAX_THREADS)
}

/// Checks a log filter as the proxy reads `STRAIT_LOG` (it refuses to start on a bad one).
pub fn check_log_filter(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("is empty".into());
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| ())
        .map_err(|e| format!("is not a log filter ({e})"))
}

/// Checks an OTLP/gRPC collector address: an `http` or `https` URI with a host.
pub fn check_collector(text: &str) -> Result<(), String> {
    let uri: hyper::Uri = text.parse().map_err(|e| {
        format!("is not a URI ({e}); e.g. http://otel-collector.observability:4317")
    })?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err("is not an http:// or https:// address with a host, e.g. http://otel-collector.observability:4317".into()),
    }
}

/// Checks a sampling ratio: a number from 0 to 1.
pub fn check_sample_ratio(ratio: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(())
    } else {
        Err("is not a number from 0 to 1".into())
    }
}

/// One warning: the annotation, its value (shortened), what is wrong, and what was kept.
fn warning(annotation: &str, value: &str, reason: &str, kept: &str) -> String {
    let mut quoted: String = value.chars().take(QUOTED_VALUE_CHARS).collect();
    if value.chars().count() > QUOTED_VALUE_CHARS {
        quoted.push('…');
    }
    format!("strait.dev injector: annotation {annotation}: {quoted:?} {reason}; using {kept}")
}

/// The resources from the configuration with the four resource annotations applied. A request
/// above its limit would make the API server refuse the pod, so when one side comes from an
/// annotation the other follows it (with a warning); when both do, both are ignored.
fn proxy_resources<'a>(
    defaults: &Resources,
    get: &impl Fn(&str) -> Option<&'a str>,
    warnings: &mut Vec<String>,
) -> Resources {
    let mut resources = defaults.clone();
    for resource in ["cpu", "memory"] {
        let (request_annotation, limit_annotation) = match resource {
            "cpu" => (PROXY_CPU_REQUEST, PROXY_CPU_LIMIT),
            _ => (PROXY_MEMORY_REQUEST, PROXY_MEMORY_LIMIT),
        };
        let mut annotated = |annotation: &str, map: &BTreeMap<String, String>| {
            let text = get(annotation)?;
            match Quantity::parse(text) {
                Ok(quantity) => Some((text.to_owned(), quantity)),
                Err(e) => {
                    let kept = map.get(resource).map_or("none", String::as_str);
                    warnings.push(warning(annotation, text, &format!("is {e}"), kept));
                    None
                }
            }
        };
        let request = annotated(request_annotation, &defaults.requests);
        let limit = annotated(limit_annotation, &defaults.limits);
        let default = |map: &BTreeMap<String, String>| {
            map.get(resource)
                .and_then(|t| Quantity::parse(t).ok().map(|q| (t.clone(), q)))
        };
        let final_request = request.clone().or_else(|| default(&defaults.requests));
        let final_limit = limit.clone().or_else(|| default(&defaults.limits));
        let (mut request_text, mut limit_text) = (
            final_request.as_ref().map(|(t, _)| t.clone()),
            final_limit.as_ref().map(|(t, _)| t.clone()),
        );
        if let (Some((req_text, req)), Some((lim_text, lim))) = (&final_request, &final_limit)
            && req > lim
        {
            match (&request, &limit) {
                (Some(_), Some(_)) => {
                    warnings.push(warning(
                        request_annotation,
                        req_text,
                        &format!("is above {limit_annotation} {lim_text:?}, which the API server refuses; both ignored"),
                        &format!(
                            "the defaults {}/{}",
                            defaults.requests.get(resource).map_or("none", String::as_str),
                            defaults.limits.get(resource).map_or("none", String::as_str)
                        ),
                    ));
                    request_text = defaults.requests.get(resource).cloned();
                    limit_text = defaults.limits.get(resource).cloned();
                }
                (Some(_), None) => {
                    warnings.push(warning(
                        request_annotation,
                        req_text,
                        &format!("is above the default {resource} limit {lim_text}"),
                        &format!("{req_text} as the limit too"),
                    ));
                    limit_text = Some(req_text.clone());
                }
                _ => {
                    warnings.push(warning(
                        limit_annotation,
                        lim_text,
                        &format!("is below the default {resource} request {req_text}"),
                        &format!("{lim_text} as the request too"),
                    ));
                    request_text = Some(lim_text.clone());
                }
            }
        }
        for (map, text) in [
            (&mut resources.requests, request_text),
            (&mut resources.limits, limit_text),
        ] {
            match text {
                Some(text) => map.insert(resource.to_owned(), text),
                None => map.remove(resource),
            };
        }
    }
    resources
}

/// Whether and where the pod's proxy exports spans.
fn trace_export<'a>(
    config: &InjectorConfig,
    get: &impl Fn(&str) -> Option<&'a str>,
    warnings: &mut Vec<String>,
) -> Option<TraceExport> {
    let defaults = &config.tracing;
    let on_off = |enabled: bool| if enabled { "enabled" } else { "disabled" };
    let enabled = match get(TRACING) {
        None => defaults.enabled,
        Some("enabled") => true,
        Some("disabled") => false,
        Some(text) => {
            warnings.push(warning(
                TRACING,
                text,
                "is neither enabled nor disabled",
                on_off(defaults.enabled),
            ));
            defaults.enabled
        }
    };
    let collector = match get(TRACE_COLLECTOR) {
        None => defaults.collector.clone(),
        Some(text) => match check_collector(text) {
            Ok(()) => text.to_owned(),
            Err(reason) => {
                let kept = if defaults.collector.is_empty() {
                    "no collector"
                } else {
                    &defaults.collector
                };
                warnings.push(warning(TRACE_COLLECTOR, text, &reason, kept));
                defaults.collector.clone()
            }
        },
    };
    let sample_ratio = match get(TRACE_SAMPLE_RATIO) {
        None => defaults.sample_ratio,
        Some(text) => match text
            .parse::<f64>()
            .map_err(|_| "is not a number from 0 to 1".to_owned())
            .and_then(|ratio| check_sample_ratio(ratio).map(|()| ratio))
        {
            Ok(ratio) => ratio,
            Err(reason) => {
                warnings.push(warning(
                    TRACE_SAMPLE_RATIO,
                    text,
                    &reason,
                    &defaults.sample_ratio.to_string(),
                ));
                defaults.sample_ratio
            }
        },
    };
    if !enabled {
        return None;
    }
    if collector.is_empty() {
        warnings.push(warning(
            TRACING,
            "enabled",
            &format!(
                "needs a collector: set {TRACE_COLLECTOR} or the chart's proxy.tracing.collector"
            ),
            "no tracing",
        ));
        return None;
    }
    Some(TraceExport {
        collector,
        sample_ratio,
    })
}

/// Parses a comma-separated port list from annotation `name`; entries that are not ports are
/// left out, with one warning for the annotation.
pub fn parse_ports(name: &str, value: &str, warnings: &mut Vec<String>) -> Vec<NonZeroU16> {
    let mut ports = Vec::new();
    let mut bad = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.parse::<NonZeroU16>() {
            Ok(port) => ports.push(port),
            Err(_) => bad.push(entry),
        }
    }
    if !bad.is_empty() {
        warnings.push(warning(
            name,
            &bad.join(","),
            "are not port numbers (1-65535)",
            "the other entries",
        ));
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(pairs: &[(&str, &str)]) -> (PodSettings, Vec<String>) {
        settings_with(pairs, &InjectorConfig::default())
    }

    fn settings_with(
        pairs: &[(&str, &str)],
        config: &InjectorConfig,
    ) -> (PodSettings, Vec<String>) {
        let annotations = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        pod_settings(&annotations, config)
    }

    fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Resources {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Resources {
            requests: map(requests),
            limits: map(limits),
        }
    }

    #[test]
    fn the_access_log_annotation_overrides_the_chart_and_a_bad_one_keeps_it() {
        let (settings, warnings) = annotated(&[]);
        assert_eq!((settings.access_log, warnings.len()), (AccessLog::Off, 0));
        let (settings, _) = annotated(&[(ACCESS_LOG, "json")]);
        assert_eq!(settings.access_log, AccessLog::Json);
        let on = InjectorConfig {
            access_log: AccessLog::Json,
            ..InjectorConfig::default()
        };
        let (settings, _) = settings_with(&[(ACCESS_LOG, " off ")], &on);
        assert_eq!(settings.access_log, AccessLog::Off);
        let (settings, warnings) = settings_with(&[(ACCESS_LOG, "JSON")], &on);
        assert_eq!(settings.access_log, AccessLog::Json);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains(ACCESS_LOG) && warnings[0].ends_with("using json"),
            "{warnings:?}"
        );
    }

    #[test]
    fn threads_come_from_the_cpu_limit_rounded_up_else_the_request_else_one() {
        assert_eq!(
            worker_threads(&resources(&[("cpu", "100m")], &[("cpu", "1500m")])),
            2
        );
        assert_eq!(
            worker_threads(&resources(&[("cpu", "100m")], &[("cpu", "2")])),
            2
        );
        assert_eq!(worker_threads(&resources(&[("cpu", "100m")], &[])), 1);
        assert_eq!(worker_threads(&resources(&[("cpu", "2500m")], &[])), 3);
        assert_eq!(worker_threads(&resources(&[], &[])), 1);
        assert_eq!(
            worker_threads(&resources(&[], &[("cpu", "0")])),
            1,
            "at least one"
        );
        assert_eq!(
            worker_threads(&resources(&[], &[("cpu", "1000")])),
            MAX_THREADS,
            "capped"
        );
    }

    #[test]
    fn the_chart_defaults_give_one_thread() {
        let (settings, warnings) = annotated(&[]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(settings.threads, 1);
        assert_eq!(settings.resources, InjectorConfig::default().resources);
        assert_eq!(
            settings.opaque_ports,
            InjectorConfig::default().opaque_ports
        );
        assert_eq!(settings.tracing, None);
    }

    #[test]
    fn a_cpu_limit_annotation_sets_the_limit_and_the_threads() {
        let (settings, warnings) = annotated(&[(PROXY_CPU_LIMIT, "1500m")]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(settings.resources.limits["cpu"], "1500m");
        assert_eq!(settings.threads, 2);
        let (settings, _) = settings_with(&[(PROXY_CPU_REQUEST, "3")], &InjectorConfig::default());
        assert_eq!(settings.threads, 3, "no limit: the request decides");
    }

    #[test]
    fn the_threads_annotation_overrides_the_derived_count() {
        let (settings, warnings) = annotated(&[(PROXY_CPU_LIMIT, "4"), (PROXY_THREADS, "2")]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(settings.threads, 2);
    }

    #[test]
    fn a_bad_threads_annotation_keeps_the_derived_count_with_a_warning() {
        for bad in ["0", "-1", "two", "65", "1.5"] {
            let (settings, warnings) = annotated(&[(PROXY_CPU_LIMIT, "2"), (PROXY_THREADS, bad)]);
            assert_eq!(settings.threads, 2, "{bad}");
            assert_eq!(warnings.len(), 1, "{bad}: {warnings:?}");
            assert!(
                warnings[0].contains(PROXY_THREADS)
                    && warnings[0].contains(&format!("{bad:?}"))
                    && warnings[0].contains("using 2"),
                "{warnings:?}"
            );
        }
    }

    #[test]
    fn resource_annotations_replace_the_defaults() {
        let (settings, warnings) = annotated(&[
            (PROXY_CPU_REQUEST, "200m"),
            (PROXY_MEMORY_REQUEST, "64Mi"),
            (PROXY_MEMORY_LIMIT, " 256Mi "),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            settings.resources,
            resources(
                &[("cpu", "200m"), ("memory", "64Mi")],
                &[("memory", "256Mi")]
            )
        );
    }

    #[test]
    fn a_bad_quantity_keeps_the_default_and_names_annotation_and_value() {
        let (settings, warnings) =
            annotated(&[(PROXY_MEMORY_LIMIT, "lots"), (PROXY_CPU_LIMIT, "-1")]);
        assert_eq!(settings.resources, InjectorConfig::default().resources);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings.iter().any(|w| w.contains(PROXY_MEMORY_LIMIT)
                && w.contains("\"lots\"")
                && w.contains("using 128Mi")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains(PROXY_CPU_LIMIT)
                && w.contains("negative")
                && w.contains("using none")),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_request_above_the_default_limit_raises_the_limit_and_says_so() {
        let (settings, warnings) = annotated(&[(PROXY_MEMORY_REQUEST, "256Mi")]);
        assert_eq!(settings.resources.requests["memory"], "256Mi");
        assert_eq!(settings.resources.limits["memory"], "256Mi");
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("above the default memory limit 128Mi"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_limit_below_the_default_request_lowers_the_request() {
        let (settings, warnings) = annotated(&[(PROXY_CPU_LIMIT, "50m")]);
        assert_eq!(settings.resources.requests["cpu"], "50m");
        assert_eq!(settings.resources.limits["cpu"], "50m");
        assert_eq!(settings.threads, 1);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn an_annotated_request_above_an_annotated_limit_falls_back_to_both_defaults() {
        let (settings, warnings) = annotated(&[
            (PROXY_MEMORY_REQUEST, "512Mi"),
            (PROXY_MEMORY_LIMIT, "256Mi"),
        ]);
        assert_eq!(settings.resources, InjectorConfig::default().resources);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("both ignored"), "{warnings:?}");
    }

    #[test]
    fn the_log_level_annotation_is_checked_like_the_proxy_checks_it() {
        let (settings, warnings) = annotated(&[(PROXY_LOG_LEVEL, "strait_proxy=debug,info")]);
        assert!(warnings.is_empty());
        assert_eq!(settings.log_level, "strait_proxy=debug,info");
        let (settings, warnings) = annotated(&[(PROXY_LOG_LEVEL, "strait=loud")]);
        assert_eq!(settings.log_level, "info");
        assert!(
            warnings[0].contains(PROXY_LOG_LEVEL) && warnings[0].contains("using info"),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_opaque_ports_annotation_replaces_the_default_list() {
        let (settings, warnings) = annotated(&[(OPAQUE_PORTS, "5432, 7000")]);
        assert!(warnings.is_empty());
        let ports: Vec<u16> = settings.opaque_ports.iter().map(|p| p.get()).collect();
        assert_eq!(ports, [5432, 7000]);
        let (settings, _) = settings_with(&[(OPAQUE_PORTS, "")], &InjectorConfig::default());
        assert!(
            settings.opaque_ports.is_empty(),
            "an empty list takes every port back"
        );
    }

    #[test]
    fn bad_port_entries_are_left_out_with_one_warning_per_annotation() {
        let many_bad = vec!["x"; 500].join(",");
        let (settings, warnings) = annotated(&[
            (SKIP_INBOUND_PORTS, "8080, http,70000"),
            (OPAQUE_PORTS, &many_bad),
        ]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().all(|w| w.len() < 256), "{warnings:?}");
        assert_eq!(
            settings
                .skip_inbound_ports
                .iter()
                .map(|p| p.get())
                .collect::<Vec<_>>(),
            [8080]
        );
        assert!(settings.opaque_ports.is_empty());
    }

    #[test]
    fn tracing_needs_a_collector_and_annotations_turn_it_on_or_off() {
        let (settings, warnings) = annotated(&[
            (TRACING, "enabled"),
            (TRACE_COLLECTOR, "http://otel.observability:4317"),
            (TRACE_SAMPLE_RATIO, "0.5"),
        ]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            settings.tracing,
            Some(TraceExport {
                collector: "http://otel.observability:4317".into(),
                sample_ratio: 0.5
            })
        );
        let (settings, warnings) =
            settings_with(&[(TRACING, "enabled")], &InjectorConfig::default());
        assert_eq!(settings.tracing, None);
        assert!(warnings[0].contains("needs a collector"), "{warnings:?}");

        let mut config = InjectorConfig::default();
        config.tracing.enabled = true;
        config.tracing.collector = "http://otel:4317".into();
        let (settings, _) = settings_with(&[], &config);
        assert_eq!(
            settings.tracing.unwrap().sample_ratio,
            config.tracing.sample_ratio
        );
        let (settings, warnings) = settings_with(&[(TRACING, "disabled")], &config);
        assert_eq!(settings.tracing, None);
        assert!(warnings.is_empty());
    }

    #[test]
    fn bad_tracing_annotations_keep_the_defaults_with_warnings() {
        let mut config = InjectorConfig::default();
        config.tracing.enabled = true;
        config.tracing.collector = "http://otel:4317".into();
        let (settings, warnings) = settings_with(
            &[
                (TRACING, "yes"),
                (TRACE_COLLECTOR, "otel:4317"),
                (TRACE_SAMPLE_RATIO, "2"),
            ],
            &config,
        );
        assert_eq!(
            settings.tracing,
            Some(TraceExport {
                collector: "http://otel:4317".into(),
                sample_ratio: config.tracing.sample_ratio
            })
        );
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        for name in [TRACING, TRACE_COLLECTOR, TRACE_SAMPLE_RATIO] {
            assert!(
                warnings.iter().any(|w| w.contains(name)),
                "{name}: {warnings:?}"
            );
        }
    }
}
