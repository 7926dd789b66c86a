//! Help text for every metric the proxy exports, registered at start-up so `/metrics` carries
//! `# HELP` lines. docs/metrics.md is the reference table; a test keeps the two in step.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Registers the help text of every proxy metric.
pub fn describe_all() {
    describe_counter!(
        "strait_tcp_connections_opened_total",
        "Client connections accepted, by direction and detected protocol."
    );
    describe_counter!(
        "strait_tcp_connections_closed_total",
        "Client connections closed, by direction and detected protocol."
    );
    describe_gauge!(
        "strait_tcp_open_connections",
        "Client connections open now, by direction and detected protocol."
    );
    describe_counter!(
        "strait_tcp_read_bytes_total",
        Unit::Bytes,
        "Bytes read from clients, by direction and protocol."
    );
    describe_counter!(
        "strait_tcp_write_bytes_total",
        Unit::Bytes,
        "Bytes written to clients, by direction and protocol."
    );
    describe_counter!(
        "strait_tcp_connections_refused_total",
        "Connections closed at accept because the listener's connection limit was reached."
    );
    describe_counter!(
        "strait_inbound_plaintext_refused_total",
        "Plaintext connections refused on ports in strict mode."
    );
    describe_counter!(
        "strait_inbound_refused_total",
        "Inbound connections refused before reaching the app, by reason: proxy-port, not-an-app-port, no-configuration, protocol-mismatch."
    );
    describe_counter!(
        "strait_inbound_revoked_total",
        "Opaque and upgraded inbound connections closed because a table change no longer admits them."
    );
    describe_counter!(
        "strait_inbound_denied_total",
        "Requests and opaque connections refused by authorization policy, by port, policy, reason and TLS."
    );
    describe_counter!(
        "strait_http_requests_total",
        "HTTP and gRPC requests, by direction, service, route, backend, peer identity and TLS."
    );
    describe_counter!(
        "strait_http_responses_total",
        "HTTP and gRPC responses, with status code, class, gRPC status and the proxy error behind responses the proxy made itself."
    );
    describe_histogram!(
        "strait_http_response_duration_seconds",
        Unit::Seconds,
        "Time from receiving a request to its response headers, retries included."
    );
    describe_counter!(
        "strait_http_retries_total",
        "Retries made (attempts after the first)."
    );
    describe_counter!(
        "strait_http_retries_skipped_total",
        "Retries not made, by reason (budget, not-idempotent, body-too-large, attempts-exhausted)."
    );
    describe_counter!(
        "strait_http_timeouts_total",
        "Timeouts that fired, by kind (request-timeout, backend-request-timeout, connect-timeout)."
    );
    describe_counter!(
        "strait_endpoint_ejections_total",
        "Endpoints ejected by the circuit breaker, by backend."
    );
    describe_counter!(
        "strait_upstream_keepalive_race_resends_total",
        "Requests the connection pool sent again because the upstream closed an idle keep-alive connection as the request arrived (not retries: no budget spent)."
    );
    describe_counter!(
        "strait_breaker_fast_fails_total",
        "Requests failed fast because a backend's pending-request limit was reached."
    );
    describe_counter!(
        "strait_tls_handshakes_total",
        "Mesh TLS handshakes, by direction, result and failure reason."
    );
    describe_gauge!(
        "strait_identity_cert_expiry_timestamp_seconds",
        Unit::Seconds,
        "When the proxy's certificate expires (Unix time)."
    );
    describe_counter!(
        "strait_identity_renewals_total",
        "Certificate requests to the control plane, by result."
    );
    describe_gauge!(
        "strait_identity_trust_anchors",
        "Trust anchors in the proxy's bundle."
    );
    describe_gauge!(
        "strait_discovery_connected",
        "1 while the discovery stream to the control plane is up."
    );
    describe_gauge!(
        "strait_discovery_snapshot_version",
        "The snapshot version in force, as a number (its first 12 hex digits)."
    );
    describe_gauge!(
        "strait_discovery_last_update_timestamp_seconds",
        Unit::Seconds,
        "When the last snapshot was applied (Unix time)."
    );
    describe_counter!(
        "strait_discovery_updates_total",
        "Snapshots received and applied (result=applied)."
    );
    describe_gauge!(
        "strait_snapshot_set_aside",
        "1 for each entry of the snapshot in force the proxy could not build and set aside (kind: route, service, authorization, inbound-port); 0 once it is no longer set aside."
    );
    describe_counter!(
        "strait_snapshot_file_errors_total",
        "Changes to the static snapshot file that were rejected."
    );
    describe_gauge!(
        "strait_memory_limit_bytes",
        Unit::Bytes,
        "The memory limit the proxy plans for (--memory-limit or its cgroup's); 0 when none."
    );
    describe_gauge!(
        "strait_max_connections",
        "Most client connections per listener: --max-connections, lowered to what the memory limit holds."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "The proxy's resident memory (VmRSS), sampled every 100 ms."
    );
    describe_counter!(
        "strait_trace_spans_exported_total",
        "Spans exported to the trace collector."
    );
    describe_counter!(
        "strait_trace_spans_dropped_total",
        "Spans dropped because the export queue was full."
    );
    describe_counter!(
        "strait_trace_export_failures_total",
        "Span batches the collector did not accept."
    );
    describe_counter!(
        "strait_access_log_dropped_total",
        "Access log lines dropped because stdout did not keep up (the queue of 1024 lines was full)."
    );
}
