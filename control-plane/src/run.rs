//! Wires the control plane together: configuration, CA, the TLS gRPC server with the identity
//! and discovery services, hot reload, and the admin server.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context as _;
use kube::runtime::events::Reporter;
use strait_identity::SpiffeId;
use strait_identity::tls::{ALPN_H2, ClientAuth, server_config};
use strait_proto::identity::v1::identity_server::IdentityServer;
use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::authority::Authority;
use crate::ca::{Ca, CaFiles};
use crate::certify::{IdentityService, TokenReviewLimit};
use crate::config::Model;
use crate::discovery::service::{DiscoveryService, ModelState};
use crate::kubernetes::source::Source;
use crate::kubernetes::token_review::TokenReviewer;
use crate::reserved::ReservedIdentities;
use crate::settings::{ConfigSource, ControlPlaneConfig};
use crate::tokens::{LocalTokens, TokenVerifier};

/// Largest `Certify` request decoded: a CSR is a few hundred bytes to a few KiB and a
/// projected service-account token a few KiB; anything near this is not a proxy.
pub const MAX_CERTIFY_REQUEST_BYTES: usize = 64 * 1024;
/// Largest `Watch` request decoded: a workload name, a namespace and a version.
pub const MAX_WATCH_REQUEST_BYTES: usize = 16 * 1024;
/// How long a connection without a mesh certificate may finish its calls once asked to close.
const UNPROVEN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the control plane until `shutdown` completes.
pub async fn run(
    config: ControlPlaneConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )?
        .build_recorder();
    let metrics = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))?;
    describe_metrics();
    crate::admin::describe_process_and_build_info();

    let (model, source) = load_model(&config).await?;
    let trust_domain = model.mesh.trust_domain.clone();

    let (ca, files) = load_ca(&config, &trust_domain, &source).await?;
    let identity = SpiffeId::new(&trust_domain, &config.namespace, &config.service_account)
        .context("building the control plane's own identity")?;
    let authority = Authority::new(
        ca,
        files,
        identity.clone(),
        config.dns_names.clone(),
        config.cert_ttl,
    )?;
    tokio::spawn(authority.clone().maintain(config.reload_interval));
    let webhook_ca_bundle = Arc::new(std::sync::atomic::AtomicBool::new(true));
    if config.injector_config.is_some() && config.injector().is_none() {
        anyhow::bail!(
            "--injector-config needs --injector-cert and --injector-key, or --injector-webhook"
        );
    }
    if let Some(name) = &config.injector_webhook {
        let ModelSource::Kubernetes(source) = &source else {
            anyhow::bail!("--injector-webhook needs --config-source kubernetes");
        };
        // Before the injector serves: the API server trusts it from the first review on.
        crate::kubernetes::webhook_ca_bundle::start(
            source.client().clone(),
            name.clone(),
            authority.bundle.clone(),
            webhook_ca_bundle.clone(),
            config.reload_interval,
        )
        .await;
    }
    if let Some(injector) = config.injector() {
        let skip_events = match &source {
            ModelSource::Kubernetes(source) => Some(crate::inject::skip_events::SkipEvents::start(
                source.client().clone(),
                reporter(),
            )),
            ModelSource::Files(_) => None,
        };
        crate::inject::server::start(
            injector,
            authority.bundle.clone(),
            authority.own.clone(),
            skip_events,
        )
        .await?;
    }

    let local_tokens = LocalTokens::from_model(&model);
    let (models_tx, models_rx) = tokio::sync::watch::channel(Arc::new(ModelState {
        model: Arc::new(model),
        applied_at: Instant::now(),
    }));
    let tokens: Arc<dyn TokenVerifier> = match source {
        ModelSource::Files(dir) => {
            tokio::spawn(crate::reload::watch_dir(
                dir,
                models_tx,
                local_tokens.clone(),
                config.reload_interval,
            ));
            local_tokens
        }
        ModelSource::Kubernetes(source) => {
            let reviewer = TokenReviewer::new(
                source.client().clone(),
                &config.token_audience,
                &trust_domain,
            );
            tokio::spawn(source.publish(models_tx, reporter()));
            Arc::new(reviewer)
        }
    };

    let grpc = TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("binding the gRPC listener to {}", config.grpc_addr))?;
    let admin_listener = TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("binding the admin listener to {}", config.admin_addr))?;
    let grpc_addr = grpc.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let tls = server_config(
        authority.own.clone(),
        authority.bundle.clone(),
        ClientAuth::Optional,
        &[ALPN_H2],
    );
    let slots = crate::connection_slots::SlotTable::new(crate::connection_slots::Limits {
        total: config.max_grpc_connections as usize,
        unproven_per_source: config.max_unproven_connections_per_source as usize,
        per_identity: config.max_connections_per_identity as usize,
    });
    let incoming = crate::tls_incoming::incoming(grpc, tls, trust_domain.clone(), slots);

    let connections = crate::discovery::service::Connections::default();
    let admin = Arc::new(Admin {
        metrics,
        ready: Default::default(),
        webhook_ca_bundle,
        connections: connections.clone(),
    });
    tokio::spawn(admin.clone().serve(admin_listener));

    let routes = tonic::service::Routes::new(
        IdentityServer::new(IdentityService::new(
            authority.ca.clone(),
            tokens,
            &trust_domain,
            ReservedIdentities::new(identity.clone()),
            TokenReviewLimit::new(
                config.max_concurrent_token_reviews as usize,
                TokenReviewLimit::DEFAULT_WAIT,
            ),
        ))
        .max_decoding_message_size(MAX_CERTIFY_REQUEST_BYTES),
    )
    .add_service(crate::discovery::server::DiscoveryServer::new(
        DiscoveryService::new(models_rx, connections),
        MAX_WATCH_REQUEST_BYTES,
    ));
    let server = crate::grpc_server::serve(
        incoming,
        routes,
        crate::grpc_server::GrpcSettings {
            unproven_lifetime: config.unproven_connection_lifetime,
            unproven_grace: UNPROVEN_GRACE,
        },
        shutdown,
    );
    admin.ready.store(true, Ordering::Release);
    tracing::info!(
        grpc = %grpc_addr,
        admin = %admin_addr,
        identity = %identity,
        trust_domain = %trust_domain,
        "strait-control-plane listening"
    );
    server.await;
    tracing::info!("strait-control-plane stopped");
    Ok(())
}

/// Who the control plane's Kubernetes Events say reported them.
fn reporter() -> Reporter {
    Reporter {
        controller: "strait-control-plane".into(),
        instance: std::env::var("HOSTNAME").ok(),
    }
}

/// The CA, from `--ca-secret`, `--dev-ca` or the CA files, and the files to watch for changes.
async fn load_ca(
    config: &ControlPlaneConfig,
    trust_domain: &str,
    source: &ModelSource,
) -> anyhow::Result<(Ca, Option<CaFiles>)> {
    let files = match (
        &config.trust_anchors,
        &config.issuer_cert,
        &config.issuer_key,
    ) {
        (Some(anchors), Some(cert), Some(key)) => Some(CaFiles {
            trust_anchors: anchors.clone(),
            issuer_cert: cert.clone(),
            issuer_key: key.clone(),
        }),
        _ => None,
    };
    if let Some(name) = &config.ca_secret {
        let ModelSource::Kubernetes(source) = source else {
            anyhow::bail!("--ca-secret needs --config-source kubernetes");
        };
        let (material, origin) = crate::kubernetes::ca_secret::read_or_create(
            source.client().clone(),
            &config.namespace,
            name,
            trust_domain,
        )
        .await?;
        let ca = Ca::from_pem(&material, config.cert_ttl)?;
        tracing::info!(
            secret = %format!("{}/{name}", config.namespace),
            origin = origin.as_str(),
            anchors = ca.anchors().len(),
            "CA loaded from its Secret"
        );
        return Ok((ca, files));
    }
    if let Some(dir) = &config.dev_ca {
        let (ca, generated) = Ca::load_or_generate_dev(dir, trust_domain, config.cert_ttl)?;
        tracing::warn!(
            dir = %dir.display(),
            generated,
            trust_anchors = %CaFiles::in_dir(dir).trust_anchors.display(),
            "using a DEVELOPMENT CA: its key sits unprotected on disk; supply --trust-anchors, --issuer-cert and --issuer-key in production"
        );
        return Ok((ca, Some(CaFiles::in_dir(dir))));
    }
    let Some(files) = files else {
        anyhow::bail!(
            "no CA: give --trust-anchors, --issuer-cert and --issuer-key, --ca-secret NAME on Kubernetes, or --dev-ca DIR for development"
        );
    };
    Ok((Ca::load(&files, config.cert_ttl)?, Some(files)))
}

/// Where the model comes from after the first load.
enum ModelSource {
    /// A directory of YAML files, polled.
    Files(PathBuf),
    /// The Kubernetes API, watched.
    Kubernetes(Source),
}

/// The first model, from the configured source; the source keeps it current afterwards.
async fn load_model(config: &ControlPlaneConfig) -> anyhow::Result<(Model, ModelSource)> {
    match config.config_source {
        ConfigSource::Files => {
            let dir = config
                .config
                .clone()
                .context("--config-source files needs --config DIR")?;
            let model = crate::config::load(&dir).map_err(|errors| {
                anyhow::anyhow!(
                    "the configuration in {} is invalid:\n{errors}",
                    dir.display()
                )
            })?;
            Ok((model, ModelSource::Files(dir)))
        }
        ConfigSource::Kubernetes => {
            let client = kube::Client::try_default().await.context(
                "connecting to the Kubernetes API (in-cluster service account, or KUBECONFIG)",
            )?;
            let source = Source::start(client);
            tracing::info!(
                "waiting for the first list of every watched kind from the Kubernetes API"
            );
            source.synced().await;
            let translation = source.translate().map_err(|errors| {
                anyhow::anyhow!("the cluster's configuration is invalid:\n{errors}")
            })?;
            Ok((translation.model, ModelSource::Kubernetes(source)))
        }
    }
}

/// Help text for every control-plane metric (docs/metrics.md is the reference).
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "strait_identity_certificates_issued_total",
        "Workload certificates signed."
    );
    describe_counter!(
        "strait_identity_certificates_refused_total",
        "Refused certificate requests, by reason."
    );
    describe_gauge!(
        "strait_discovery_connected_proxies",
        "Proxies watching discovery now."
    );
    describe_counter!(
        "strait_discovery_snapshots_sent_total",
        "Snapshots sent to proxies."
    );
    describe_counter!(
        "strait_discovery_snapshots_computed_total",
        "Snapshots computed and encoded: once per class of workloads and model, however many proxies watch them."
    );
    describe_histogram!(
        "strait_discovery_push_seconds",
        Unit::Seconds,
        "Time from a configuration change taking effect to a proxy's snapshot being sent."
    );
    describe_counter!(
        "strait_config_reloads_total",
        "Configuration reloads, by result."
    );
    describe_gauge!(
        "strait_config_last_reload_success_timestamp_seconds",
        Unit::Seconds,
        "When the configuration last reloaded successfully (Unix time)."
    );
    describe_gauge!(
        "strait_config_rejected_objects",
        "Kubernetes objects left out of the configuration because they do not validate."
    );
    describe_counter!(
        "strait_route_status_writes_total",
        "Route status writes to the Kubernetes API, by result."
    );
    describe_counter!(
        "strait_ca_reloads_total",
        "Reloads of the CA files, by result."
    );
    describe_counter!(
        "strait_grpc_connections_refused_total",
        "gRPC connections closed at accept or after the handshake for want of a slot, by reason."
    );
    for reason in ["max-connections", "unproven-per-source", "per-identity"] {
        metrics::counter!("strait_grpc_connections_refused_total", "reason" => reason).absolute(0);
    }
    describe_counter!(
        "strait_tls_handshakes_total",
        "TLS handshakes on the gRPC port, by result and reason."
    );
    // Present from the start, so dashboards and alerts see zeros rather than no data.
    metrics::gauge!("strait_discovery_connected_proxies").set(0.0);
    metrics::counter!("strait_identity_certificates_issued_total").absolute(0);
}
