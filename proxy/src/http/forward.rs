//! Sends a request on to an upstream pool and prepares the response for the client: the last
//! step of both the inbound and the outbound path.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::{Body, boxed};
use crate::errors::{ProxyError, SendError};
use crate::http::HttpVersion;
use crate::http::hop_by_hop;
use crate::http::upgrade::splice_upgrades;
use crate::http::upstream::Upstream;
use crate::tcp::Revoked;

/// Whether a request takes over its connection: an HTTP/1 upgrade or a CONNECT tunnel.
pub fn takes_over_connection<B>(request: &Request<B>, version: HttpVersion) -> bool {
    head_takes_over_connection(request.method(), request.headers(), version)
}

/// [`takes_over_connection`] for a request's head.
pub fn head_takes_over_connection(
    method: &Method,
    headers: &http::HeaderMap,
    version: HttpVersion,
) -> bool {
    version == HttpVersion::Http1 && (method == Method::CONNECT || hop_by_hop::is_upgrade(headers))
}

/// What the proxy adds to a forwarded request beyond where it goes.
#[derive(Default)]
pub struct Additions {
    /// A header the proxy sets itself, after hop-by-hop stripping, so that no `Connection`
    /// header of the client's can remove it.
    pub header: Option<(HeaderName, HeaderValue)>,
    /// Completes when an upgraded connection must close (what admitted it no longer does).
    pub revoked: Option<Revoked>,
}

/// Forwards `request` (received as `version`) through `upstream` and returns the response to
/// give the client. Upgrades and CONNECT get a connection of their own, and once both sides
/// have switched, the bytes are relayed until either closes or `idle_timeout` passes.
pub async fn forward(
    upstream: &Arc<Upstream>,
    request: Request<Body>,
    version: HttpVersion,
    idle_timeout: Duration,
) -> Result<Response<Body>, SendError> {
    forward_with(
        upstream,
        request,
        version,
        idle_timeout,
        Additions::default(),
    )
    .await
}

/// [`forward`], with what the proxy itself adds to the request.
pub async fn forward_with(
    upstream: &Arc<Upstream>,
    mut request: Request<Body>,
    version: HttpVersion,
    idle_timeout: Duration,
    additions: Additions,
) -> Result<Response<Body>, SendError> {
    if takes_over_connection(&request, version) {
        return forward_upgrade(upstream, request, idle_timeout, additions)
            .await
            .map_err(SendError::Failed);
    }
    hop_by_hop::strip(request.headers_mut());
    if let Some((name, value)) = additions.header {
        request.headers_mut().insert(name, value);
    }
    if version == HttpVersion::Http1 {
        super::to_origin_form(&mut request);
    }
    let mut response = upstream.send(request).await?;
    hop_by_hop::strip(response.headers_mut());
    Ok(response.map(boxed))
}

async fn forward_upgrade(
    upstream: &Arc<Upstream>,
    mut request: Request<Body>,
    idle_timeout: Duration,
    additions: Additions,
) -> Result<Response<Body>, ProxyError> {
    let client_upgrade = hyper::upgrade::on(&mut request);
    let is_connect = request.method() == Method::CONNECT;
    hop_by_hop::strip_keeping_upgrade(request.headers_mut());
    if let Some((name, value)) = additions.header {
        request.headers_mut().insert(name, value);
    }
    if !is_connect {
        super::to_origin_form(&mut request);
    }
    let mut response = upstream.send_upgrade(request).await?;
    let switched = if is_connect {
        response.status().is_success()
    } else {
        response.status() == StatusCode::SWITCHING_PROTOCOLS
    };
    if switched {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        splice_upgrades(
            client_upgrade,
            upstream_upgrade,
            idle_timeout,
            additions.revoked,
        );
        if !is_connect {
            hop_by_hop::strip_keeping_upgrade(response.headers_mut());
        }
    } else {
        hop_by_hop::strip(response.headers_mut());
    }
    Ok(response.map(boxed))
}
