//! `strait proxy-config`: a proxy's current snapshot (its `/config`), summarised for reading.

use strait_proto::discovery::v1 as pb;

/// A readable summary of `snapshot`: its version, then each service with its routes and
/// backends.
pub fn summary(snapshot: &pb::Snapshot) -> String {
    let mut out = format!(
        "snapshot {}\n",
        if snapshot.version.is_empty() {
            "(none)"
        } else {
            &snapshot.version
        }
    );
    for service in &snapshot.services {
        out.push_str(&format!(
            "\nservice {}/{}:{}\n",
            service.namespace, service.name, service.port
        ));
        out.push_str(&format!(
            "  answers to: {}\n",
            service.authorities.join(", ")
        ));
        if !service.addresses.is_empty() {
            out.push_str(&format!("  addresses: {}\n", service.addresses.join(", ")));
        }
        let rows: Vec<Vec<String>> = service
            .routes
            .iter()
            .map(|route| {
                let matches = if route.matches.is_empty() {
                    "*".to_owned()
                } else {
                    describe_matches(&route.matches)
                };
                let backends = route
                    .backends
                    .iter()
                    .map(|b| format!("{}={}", b.backend, b.weight))
                    .collect::<Vec<_>>()
                    .join(" ");
                let timeouts = route
                    .timeouts
                    .as_ref()
                    .map(|t| format!("{}/{}", duration(&t.request), duration(&t.backend_request)))
                    .unwrap_or_else(|| "-/-".into());
                let retry = route
                    .retry
                    .as_ref()
                    .map(|r| format!("{}x {:?}", r.max_retries, r.http_statuses))
                    .unwrap_or_else(|| "-".into());
                vec![
                    format!("  {}", route.name),
                    matches,
                    backends,
                    timeouts,
                    retry,
                ]
            })
            .collect();
        out.push_str(&crate::render::table(
            &["  ROUTE", "MATCHES", "BACKENDS", "TIMEOUTS", "RETRY"],
            &rows,
        ));
        let rows: Vec<Vec<String>> = service
            .backends
            .iter()
            .flat_map(|b| {
                b.endpoints.iter().map(|e| {
                    vec![
                        format!("  {}", b.name),
                        e.address.clone(),
                        if e.identity.is_empty() {
                            "-".into()
                        } else {
                            e.identity.clone()
                        },
                        e.workload.clone(),
                    ]
                })
            })
            .collect();
        out.push_str(&crate::render::table(
            &["  BACKEND", "ENDPOINT", "IDENTITY", "WORKLOAD"],
            &rows,
        ));
    }
    out
}

fn duration(d: &Option<pbjson_types::Duration>) -> String {
    match d {
        Some(d) if d.nanos == 0 => format!("{}s", d.seconds),
        Some(d) => format!("{}ms", d.seconds * 1000 + i64::from(d.nanos) / 1_000_000),
        None => "-".into(),
    }
}

fn describe_matches(matches: &[pb::RouteMatch]) -> String {
    matches
        .iter()
        .map(|m| {
            let mut parts = Vec::new();
            if !m.method.is_empty() {
                parts.push(m.method.clone());
            }
            match m.path.as_ref().and_then(|p| p.kind.as_ref()) {
                Some(pb::path_match::Kind::Exact(p)) => parts.push(format!("={p}")),
                Some(pb::path_match::Kind::Prefix(p)) => parts.push(format!("{p}*")),
                Some(pb::path_match::Kind::Regex(p)) => parts.push(format!("~{p}")),
                None => {}
            }
            for h in &m.headers {
                parts.push(format!("{}:…", h.name));
            }
            parts.join(" ")
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
