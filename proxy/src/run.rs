//! Wires the proxy together: binds the listeners, loads the routing table, serves until a
//! shutdown signal, then drains.
//!
//! The binary calls [`run`]; integration tests drive the binary. The state both directions
//! share is built here but lives in [`crate::shared`], and readiness in [`crate::readiness`],
//! so nothing below this module depends on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use anyhow::Context as _;
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use strait_identity::store::CertStore;

use crate::admin::{Admin, StatusSource};
use crate::certify::Certifier;
use crate::connect::Connector;
use crate::control_plane::ControlPlane;
use crate::flags::{Listener, ProxyFlags};
use crate::head_limits::HeadLimits;
use crate::http::server::ServerLimits;
use crate::inbound::Inbound;
use crate::inbound::admission::OwnPorts;
use crate::listener::{accept_loop, bind};
use crate::memory::budget::{self, Plan};
use crate::memory::{LimitSource, MemoryGuard};
use crate::mesh_tls::MeshTls;
use crate::outbound::Outbound;
use crate::readiness::Readiness;
use crate::shared::{Settings, Shared};
use crate::table::{EndpointSettings, TableHandle};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::tcp::TcpMetrics;
use crate::telemetry::trace::{TraceSettings, Tracer};
use crate::{snapshot_file, telemetry};

/// The addresses the proxy's listeners are bound to.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// Outbound listener.
    pub outbound: SocketAddr,
    /// Inbound listener.
    pub inbound: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
}

/// Runs the proxy until `shutdown` completes, then drains: listeners close at once (new
/// connections are refused), in-flight requests get `drain_timeout` to finish.
pub async fn run(
    config: ProxyFlags,
    log_level: Option<Arc<dyn crate::admin::LogLevel>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = telemetry::install()?;
    let readiness = Arc::new(Readiness::default());
    let discovery_connected = crate::discovery::Connected::default();
    let mesh = match &config.control_plane {
        Some(addr) => Some(MeshIdentity::new(&config, addr)?),
        None => None,
    };
    let tls = mesh
        .as_ref()
        .map(|m| MeshTls::new(m.store.clone(), m.bundle.clone()));
    let connector = Connector::new(config.connect_timeout, tls.clone());
    let table = TableHandle::new(EndpointSettings {
        connector: connector.clone(),
        idle_timeout: config.pool_idle_timeout,
        connect_timeout: config.connect_timeout,
        mtls: tls.is_some(),
        heads: HeadLimits {
            max_bytes: config.max_header_bytes,
            max_fields: config.max_headers,
        },
    });
    if let Some(path) = &config.snapshot {
        snapshot_file::load(path, &table)?;
        tokio::spawn(snapshot_file::watch(
            path.clone(),
            table.clone(),
            Duration::from_secs(1),
        ));
    }
    if let Some(mesh) = &mesh {
        readiness.require_identity();
        let certifier = Certifier::new(
            mesh.control_plane.clone(),
            mesh.token_file.clone(),
            mesh.store.clone(),
            mesh.bundle.clone(),
            readiness.clone(),
        );
        tokio::spawn(certifier.run());
        tokio::spawn(crate::discovery::run(
            mesh.control_plane.clone(),
            mesh.namespace.clone(),
            mesh.workload.clone(),
            table.clone(),
            mesh.store.clone(),
            discovery_connected.clone(),
            readiness.clone(),
        ));
    }

    let outbound_listener = bind_listener(&config, Listener::Outbound).await?;
    let inbound_listener = bind_listener(&config, Listener::Inbound).await?;
    let admin_listener = bind_listener(&config, Listener::Admin).await?;
    let bound = Bound {
        outbound: outbound_listener.local_addr()?,
        inbound: inbound_listener.local_addr()?,
        admin: admin_listener.local_addr()?,
    };

    let budget = memory_plan(&config);
    let memory = Arc::new(MemoryGuard::new(budget.shed_above));
    tokio::spawn(memory.clone().sample());
    let shared = Arc::new(Shared {
        settings: Settings {
            limits: ServerLimits {
                header_read_timeout: config.header_read_timeout,
                idle_timeout: config.http_idle_timeout,
                max_request_line_bytes: config.max_request_line_bytes,
                h2_stream_window: budget.h2_stream_window,
                h2_connection_window: budget.h2_connection_window,
                max_header_bytes: config.max_header_bytes,
                max_headers: config.max_headers,
                h2_max_concurrent_streams: config.h2_max_concurrent_streams,
            },
            detect_max_bytes: config.detect_max_bytes,
            opaque_ports: config.opaque_ports.clone(),
            detect_timeout: config.detect_timeout,
            tcp_idle_timeout: config.tcp_idle_timeout,
            pool_idle_timeout: config.pool_idle_timeout,
            inbound_target_ip: config.inbound_target_ip,
            default_inbound_mode: config.inbound_mode,
            trust_domain: config.trust_domain.clone(),
            retry_buffer: config.retry_buffer_bytes,
        },
        table: table.clone(),
        connector,
        tcp_metrics: TcpMetrics::new(),
        drain: CancellationToken::new(),
        tracer: Tracer::start(&TraceSettings {
            collector: config.trace_collector.clone(),
            sample_ratio: config.trace_sample_ratio,
            queue: config.trace_queue,
            resource: trace_resource(&config),
        }),
        access_log: AccessLog::start(config.access_log)
            .context("starting the access log's writer thread")?,
    });
    let stop_accepting = CancellationToken::new();
    let tracker = TaskTracker::new();

    let outbound = Outbound::new(shared.clone());
    let outbound_loop = tokio::spawn(accept_loop(
        "outbound",
        outbound_listener,
        budget.max_connections,
        memory.clone(),
        stop_accepting.clone(),
        tracker.clone(),
        move |stream, client| outbound.clone().serve(stream, client),
    ));
    let own_ports = OwnPorts {
        inbound: bound.inbound.port(),
        outbound: bound.outbound.port(),
        admin: bound.admin.port(),
    };
    let has_configuration_source = config.control_plane.is_some() || config.snapshot.is_some();
    let inbound = Inbound::new(shared.clone(), tls, own_ports, has_configuration_source);
    let inbound_loop = tokio::spawn(accept_loop(
        "inbound",
        inbound_listener,
        budget.max_connections,
        memory.clone(),
        stop_accepting.clone(),
        tracker.clone(),
        move |stream, client| inbound.clone().serve(stream, client),
    ));
    let admin = Arc::new(Admin {
        metrics,
        readiness: readiness.clone(),
        table,
        log_level,
        status: StatusSource {
            workload: mesh
                .as_ref()
                .map(|m| format!("{}/{}", m.namespace, m.workload)),
            certificate: mesh.as_ref().map(|m| m.store.clone()),
            discovery: discovery_connected,
        },
    });
    let stop_admin = CancellationToken::new();
    tokio::spawn(admin.serve(admin_listener, stop_admin.clone()));

    readiness.set_listening();
    tracing::info!(
        outbound = %bound.outbound,
        inbound = %bound.inbound,
        admin = %bound.admin,
        "strait-proxy listening"
    );

    shutdown.await;
    tracing::info!(drain_timeout = ?config.drain_timeout, "shutting down: draining connections");
    readiness.set_draining();
    stop_accepting.cancel();
    // Wait for the accept loops to drop their listeners, so the refusal of new connections
    // is in place before in-flight work is told to finish.
    let _ = tokio::join!(outbound_loop, inbound_loop);
    shared.drain.cancel();
    tracker.close();
    if tokio::time::timeout(config.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = tracker.len(),
            "drain deadline passed; closing the remaining connections"
        );
    }
    stop_admin.cancel();
    tracing::info!("strait-proxy stopped");
    Ok(())
}

/// Binds `listener`'s addresses and logs each one (the "listening" line names the first).
async fn bind_listener(
    config: &ProxyFlags,
    listener: Listener,
) -> anyhow::Result<crate::listener::Listener> {
    let bound = bind(listener.name(), &config.listen_addrs(listener)).await?;
    for addr in bound.local_addrs()? {
        tracing::info!(listener = listener.name(), %addr, "listener bound");
    }
    Ok(bound)
}

/// What a proxy with a control plane knows about its own identity.
struct MeshIdentity {
    control_plane: ControlPlane,
    store: Arc<CertStore>,
    bundle: Arc<TrustBundle>,
    token_file: std::path::PathBuf,
    namespace: String,
    workload: String,
}

impl MeshIdentity {
    fn new(config: &ProxyFlags, addr: &str) -> anyhow::Result<Self> {
        // clap's `requires_all` guarantees these accompany --control-plane.
        fn required<T: Clone>(value: &Option<T>, flag: &str) -> anyhow::Result<T> {
            value
                .clone()
                .with_context(|| format!("--control-plane needs {flag}"))
        }
        let namespace: String = required(&config.namespace, "--namespace")?;
        let workload: String = required(&config.workload, "--workload")?;
        let token_file: std::path::PathBuf = required(&config.token_file, "--token-file")?;
        let identity = SpiffeId::new(&config.trust_domain, &namespace, &config.service_account)
            .context("building this workload's identity from --trust-domain, --namespace and --service-account")?;
        let control_plane_identity: SpiffeId = match &config.control_plane_identity {
            Some(id) => id.parse().context("parsing --control-plane-identity")?,
            None => SpiffeId::new(
                &config.trust_domain,
                "strait-system",
                "strait-control-plane",
            )?,
        };
        let (anchors, source) = match (&config.trust_anchors_pem, &config.trust_anchors) {
            (Some(pem), _) => (
                strait_identity::pem::certificates(pem, "STRAIT_TRUST_ANCHORS_PEM")?,
                "--trust-anchors-pem".to_owned(),
            ),
            (None, Some(file)) => (
                strait_identity::pem::read_certificates(file)?,
                file.display().to_string(),
            ),
            (None, None) => {
                anyhow::bail!("--control-plane needs --trust-anchors or --trust-anchors-pem")
            }
        };
        let bundle = TrustBundle::new(&config.trust_domain, anchors)
            .with_context(|| format!("loading trust anchors from {source}"))?;
        let store = CertStore::new(identity);
        let control_plane = ControlPlane::new(
            addr.to_owned(),
            control_plane_identity,
            bundle.clone(),
            store.clone(),
        );
        Ok(Self {
            control_plane,
            store,
            bundle,
            token_file,
            namespace,
            workload,
        })
    }
}

/// Resource attributes of this proxy's spans.
fn trace_resource(config: &ProxyFlags) -> Vec<(String, String)> {
    let mut resource = vec![("service.name".to_owned(), "strait-proxy".to_owned())];
    if let Some(namespace) = &config.namespace {
        resource.push(("k8s.namespace.name".into(), namespace.clone()));
    }
    if let Some(workload) = &config.workload {
        resource.push(("k8s.pod.name".into(), workload.clone()));
    }
    resource
}

/// The caps the memory limit in force (flag or container) allows, logged and exported as
/// gauges so an operator can see what the proxy planned for.
fn memory_plan(config: &ProxyFlags) -> Plan {
    let limit = crate::memory::limit_in_force(config.memory_limit);
    let plan = budget::plan(
        limit.as_ref().map(|(bytes, _)| *bytes),
        budget::Requested {
            max_connections: config.max_connections,
            h2_connection_window: config.h2_connection_window,
            h2_stream_window: config.h2_stream_window,
        },
    );
    let source = match &limit {
        None => "none".to_string(),
        Some((_, LimitSource::Flag)) => "--memory-limit".to_string(),
        Some((_, LimitSource::Cgroup(dir))) => format!("cgroup {}", dir.display()),
    };
    tracing::info!(
        limit = ?plan.limit,
        source,
        max_connections = plan.max_connections,
        h2_connection_window = plan.h2_connection_window,
        h2_stream_window = plan.h2_stream_window,
        shed_above = ?plan.shed_above,
        "memory budget"
    );
    metrics::gauge!("strait_memory_limit_bytes").set(plan.limit.unwrap_or(0) as f64);
    metrics::gauge!("strait_max_connections").set(plan.max_connections as f64);
    plan
}
