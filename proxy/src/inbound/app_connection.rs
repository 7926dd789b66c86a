//! One HTTP connection to the app: each request is checked (smuggling, path, upgrades),
//! authorized, stripped of every `strait-client-id` look-alike, given the proven identity after
//! hop-by-hop stripping, and forwarded; the app's response loses any `strait-proxy-error`.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::{Body, boxed};
use crate::errors::{ProxyError, SendError, is_grpc, kind_of};
use crate::http::forward::{Additions, forward_with, head_takes_over_connection};
use crate::http::upstream::Upstream;
use crate::http::{HttpVersion, client_body, path, smuggling};
use crate::reserved::{self, WithoutClientIdTrailers};
use crate::shared::Shared;
use crate::telemetry::trace::{FinishOnDrop, Side, Tracer};

use super::policy::{authorize, revocation};
use super::port_metrics::PortMetrics;
use super::{Peer, admission};

/// One HTTP connection to be forwarded to the app.
pub(super) struct AppConnection {
    pub(super) upstream: Arc<Upstream>,
    pub(super) metrics: PortMetrics,
    pub(super) tracer: Tracer,
    pub(super) version: HttpVersion,
    pub(super) client_id: Option<http::HeaderValue>,
    pub(super) idle_timeout: std::time::Duration,
    pub(super) shared: Arc<Shared>,
    pub(super) port: u16,
    pub(super) client: SocketAddr,
    pub(super) peer: Peer,
}

impl AppConnection {
    /// Serves one request: checks, authorization, the identity header, forwarding.
    pub(super) async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let started = tokio::time::Instant::now();
        let authority = request
            .uri()
            .authority()
            .map(http::uri::Authority::as_str)
            .or_else(|| {
                request
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            });
        let (service, metrics) = self.metrics.for_authority(authority);
        metrics.request();
        let grpc = is_grpc(&request);
        let (mut head, body) = request.into_parts();
        let upgrade = head_takes_over_connection(&head.method, &head.headers, self.version);
        // Subscribed before the check, so a change between the two is not missed.
        let changes = upgrade.then(|| self.shared.table.subscribe());
        let refused = match smuggling::check(&mut head)
            .map_err(|e| e.to_string())
            .and_then(|()| path::normalize_head(&mut head).map_err(|e| e.to_string()))
        {
            Err(error) => Some(ProxyError::BadRequest(error)),
            Ok(()) => upgrade
                .then(|| {
                    admission::takeover_refusal(
                        // `None` for a CONNECT tunnel.
                        (head.method != http::Method::CONNECT)
                            .then(|| head.headers.get(http::header::UPGRADE))
                            .flatten(),
                        self.shared.table.load().has_route_rules(self.port),
                    )
                })
                .flatten()
                .map(|reason| ProxyError::BadRequest(reason.to_owned()))
                .or_else(|| {
                    authorize(
                        &self.shared,
                        self.port,
                        self.client,
                        &self.peer,
                        Some(&head),
                    )
                    .err()
                    .map(ProxyError::Forbidden)
                }),
        };
        let revoked = changes.map(|changes| {
            revocation(
                self.shared.clone(),
                changes,
                self.port,
                self.client,
                self.peer.clone(),
                Some(head.clone()),
            )
        });
        let mut entry = self.shared.access_log.begin(&head, "inbound");
        if let Some(entry) = &mut entry {
            entry.client_addr(self.client);
            entry.identities(self.peer.identity.as_ref().map(ToString::to_string), None);
            if let crate::connect::Dest::Direct(app) = self.upstream.dest() {
                entry.upstream(*app);
            }
        }
        let (body, client_fault) = client_body::watch(body);
        let mut request = Request::from_parts(head, WithoutClientIdTrailers(body));
        if let Some(error) = refused {
            if let ProxyError::BadRequest(reason) = &error {
                tracing::info!(client = %self.client, %reason, "inbound request refused");
            }
            let response = error.into_response(grpc);
            let kind = kind_of(&response);
            return metrics.respond(response, grpc, kind, started.elapsed(), entry);
        }
        reserved::remove_lookalikes(request.headers_mut(), &reserved::CLIENT_ID);
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let mut span = self
            .tracer
            .begin(Side::Server, method.as_str(), request.headers_mut());
        if let Some(span) = &mut span {
            span.set("http.request.method", method.as_str());
            span.set("url.path", path);
            span.set("strait.direction", "inbound");
            span.set("strait.service", service);
            if let Some(client_id) = self.client_id.as_ref().and_then(|v| v.to_str().ok()) {
                span.set("strait.peer_identity", client_id);
            }
        }
        let additions = Additions {
            header: self.client_id.clone().map(|id| (reserved::CLIENT_ID, id)),
            revoked,
        };
        let forwarded = forward_with(
            &self.upstream,
            request.map(boxed),
            self.version,
            self.idle_timeout,
            additions,
        )
        .await;
        let response = forwarded.map(|mut response| {
            // Only this proxy names its failures; an app's claim would steer callers' retries.
            reserved::remove_lookalikes(response.headers_mut(), &reserved::PROXY_ERROR);
            response
        });
        let response = response.unwrap_or_else(|error| {
            // The client's own body breaking off is the client's fault, not the app's.
            let error = match client_fault.reason() {
                Some(reason) => ProxyError::ClientBody(reason.to_owned()),
                None => SendError::into_error(error),
            };
            tracing::info!(kind = error.kind(), %error, "inbound request failed");
            error.into_response(grpc)
        });
        let status = response.status().as_u16();
        let kind = kind_of(&response);
        let response = metrics.respond(response, grpc, kind, started.elapsed(), entry);
        match span {
            Some(span) => {
                response.map(|body| crate::body::with_guard(body, FinishOnDrop::new(span, status)))
            }
            None => response,
        }
    }
}
