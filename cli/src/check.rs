//! `strait check`: is the control plane reachable and who it claims to be, are the proxies'
//! certificates valid for long enough, and are the proxies connected and in sync. Each check
//! is a line; any failure makes the command exit non-zero.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::ServerName;
use serde::Serialize;
use strait_identity::SpiffeId;
use strait_identity::bundle::TrustBundle;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::http_get::get_from;
use crate::target::Endpoint;

/// What to check.
#[derive(Clone)]
pub struct CheckOptions {
    /// The control plane's gRPC address.
    pub control_plane: Option<String>,
    /// The control plane's admin endpoint.
    pub control_plane_admin: Option<Endpoint>,
    /// Trust anchors to verify the control plane with.
    pub trust_anchors: Option<PathBuf>,
    /// The identity the control plane must prove.
    pub control_plane_identity: String,
    /// Proxies' admin endpoints.
    pub proxies: Vec<Endpoint>,
    /// Certificates expiring sooner than this fail the check.
    pub min_validity: Duration,
}

/// The outcome of one check.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    /// What was checked.
    pub check: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

fn result(check: impl Into<String>, ok: bool, detail: impl Into<String>) -> CheckResult {
    CheckResult {
        check: check.into(),
        ok,
        detail: detail.into(),
    }
}

fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        _ => format!("{}h{}m", secs / 3600, (secs % 3600) / 60),
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs every check the options ask for.
pub async fn run(options: &CheckOptions) -> Vec<CheckResult> {
    let mut results = Vec::new();
    let mut versions: Option<Vec<serde_json::Value>> = None;
    if let Some(addr) = &options.control_plane {
        results.push(control_plane_tls(addr, options).await);
    }
    if let Some(admin) = &options.control_plane_admin {
        match get_from(admin, "/proxies", Duration::from_secs(5)).await {
            Ok(body) => {
                let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap_or_default();
                results.push(result(
                    "control plane admin",
                    true,
                    format!("{admin} answers; {} proxies watching discovery", list.len()),
                ));
                versions = Some(list);
            }
            Err(error) => results.push(result("control plane admin", false, error.to_string())),
        }
    }
    for proxy in &options.proxies {
        results.extend(check_proxy(proxy, options, versions.as_deref()).await);
    }
    results
}

async fn control_plane_tls(addr: &str, options: &CheckOptions) -> CheckResult {
    let name = "control plane reachable";
    let Some(anchors) = &options.trust_anchors else {
        return result(
            name,
            false,
            "--trust-anchors is needed to verify the control plane",
        );
    };
    let attempt = async {
        let anchors =
            strait_identity::pem::read_certificates(anchors).map_err(|e| e.to_string())?;
        let identity: SpiffeId = options
            .control_plane_identity
            .parse()
            .map_err(|e: strait_identity::spiffe::SpiffeIdError| e.to_string())?;
        let bundle =
            TrustBundle::new(identity.trust_domain(), anchors).map_err(|e| e.to_string())?;
        let config = strait_identity::tls::client_config(
            None,
            bundle,
            identity.clone(),
            &[strait_identity::tls::ALPN_H2],
        );
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let ip = tcp.peer_addr().map_err(|e| e.to_string())?.ip();
        let tls = TlsConnector::from(Arc::clone(&config))
            .connect(ServerName::IpAddress(ip.into()), tcp)
            .await
            .map_err(|e| {
                format!(
                    "TLS with {addr} failed: {}",
                    strait_identity::verifier::describe(&e)
                )
            })?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first().cloned())
            .ok_or("the control plane presented no certificate")?;
        let not_after = strait_identity::leaf::not_after(&leaf).map_err(|e| e.to_string())?;
        Ok::<_, String>((identity, not_after))
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok((identity, not_after))) => {
            let left = Duration::from_secs((not_after - now_unix()).max(0) as u64);
            if left < options.min_validity {
                result(
                    name,
                    false,
                    format!(
                        "{addr} proves {identity}, but its certificate expires in {}",
                        human(left)
                    ),
                )
            } else {
                result(
                    name,
                    true,
                    format!(
                        "{addr} proves {identity}; certificate valid for {}",
                        human(left)
                    ),
                )
            }
        }
        Ok(Err(reason)) => result(name, false, reason),
        Err(_) => result(
            name,
            false,
            format!("{addr} did not complete a TLS handshake within 5s"),
        ),
    }
}

async fn check_proxy(
    proxy: &Endpoint,
    options: &CheckOptions,
    versions: Option<&[serde_json::Value]>,
) -> Vec<CheckResult> {
    let name = |what: &str| format!("proxy {proxy} {what}");
    let status = match get_from(proxy, "/status", Duration::from_secs(5)).await {
        Ok(body) => match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(status) => status,
            Err(error) => {
                return vec![result(
                    name("status"),
                    false,
                    format!("/status is not JSON: {error}"),
                )];
            }
        },
        Err(error) => return vec![result(name("reachable"), false, error.to_string())],
    };
    let mut out = Vec::new();
    let workload = status["workload"].as_str().unwrap_or_default().to_owned();
    out.push(result(
        name("ready"),
        status["ready"].as_bool().unwrap_or(false),
        if status["ready"].as_bool().unwrap_or(false) {
            format!("{workload} ready")
        } else {
            format!("{workload} not ready (see its /ready)")
        },
    ));
    let expiry = status["certificate_expiry"].as_i64().unwrap_or(0);
    if expiry == 0 {
        out.push(result(
            name("certificate"),
            false,
            "holds no mesh certificate (no control plane, or not yet certified)",
        ));
    } else {
        let left = Duration::from_secs((expiry - now_unix()).max(0) as u64);
        let identity = status["identity"].as_str().unwrap_or_default();
        let ok = left >= options.min_validity;
        out.push(result(
            name("certificate"),
            ok,
            if ok {
                format!("{identity} valid for {}", human(left))
            } else {
                format!(
                    "{identity} expires in {}, sooner than --min-validity {}",
                    human(left),
                    human(options.min_validity)
                )
            },
        ));
    }
    let connected = status["discovery_connected"].as_bool().unwrap_or(false);
    let version = status["snapshot_version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let expected = versions.and_then(|list| {
        list.iter()
            .find(|p| p["workload"].as_str() == Some(workload.as_str()))
            .and_then(|p| p["version"].as_str())
            .map(str::to_owned)
    });
    let (ok, detail) = match (connected, versions, expected) {
        (false, _, _) => (
            false,
            "not connected to the control plane's discovery".to_owned(),
        ),
        (true, None, _) => (true, format!("connected; running snapshot {version}")),
        (true, Some(_), None) => (
            false,
            format!("the control plane does not list {workload} as watching"),
        ),
        (true, Some(_), Some(sent)) if sent == version => {
            (true, format!("in sync at snapshot {version}"))
        }
        (true, Some(_), Some(sent)) => (
            false,
            format!("runs snapshot {version} but the control plane sent {sent}"),
        ),
    };
    out.push(result(name("in sync"), ok, detail));
    out.push(set_aside_check(
        name("snapshot entries"),
        &status["set_aside"],
    ));
    out
}

/// Fails when the proxy set aside entries of its snapshot, naming each.
fn set_aside_check(check: String, set_aside: &serde_json::Value) -> CheckResult {
    let entries = set_aside.as_array().map(Vec::as_slice).unwrap_or_default();
    if entries.is_empty() {
        return result(check, true, "every entry of the snapshot in force is built");
    }
    let named = entries
        .iter()
        .map(|e| {
            let field = |key: &str| e[key].as_str().unwrap_or_default().to_owned();
            let entry = field("entry");
            format!(
                "{} {}{} set aside: {}",
                field("kind"),
                if entry.is_empty() {
                    String::new()
                } else {
                    format!("{entry} of ")
                },
                field("service"),
                field("reason")
            )
        })
        .collect::<Vec<_>>();
    result(check, false, named.join("; "))
}

/// The results as an aligned table.
pub fn table(results: &[CheckResult]) -> String {
    crate::render::table(
        &["CHECK", "STATUS", "DETAIL"],
        &results
            .iter()
            .map(|r| {
                vec![
                    r.check.clone(),
                    if r.ok { "ok".into() } else { "FAIL".into() },
                    r.detail.clone(),
                ]
            })
            .collect::<Vec<_>>(),
    )
}
