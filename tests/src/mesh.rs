//! A two-proxy mesh on loopback without a control plane: a client-side proxy whose outbound
//! routes by static snapshot to a server-side proxy's inbound, which delivers to the backends.

use std::net::SocketAddr;

use crate::process::{Proxy, ProxyBuilder};
use crate::snapshot::{Endpoint, TempDir, service, snapshot};

/// The two proxies and the snapshot directory.
pub struct LocalMesh {
    /// The proxy the client talks to (its outbound listener).
    pub client: Proxy,
    /// The proxy in front of the backends (its inbound listener).
    pub server: Proxy,
    /// Holds the snapshot file.
    pub dir: TempDir,
}

impl LocalMesh {
    /// Starts both proxies. Each `(name, app)` becomes service `name.demo:80` (or
    /// `name.demo:<port>` when the name has one, e.g. `tcp:9000`) with `app` as its only
    /// endpoint behind the server-side proxy.
    pub fn start(services: &[(&str, SocketAddr)]) -> Self {
        Self::start_with(services, |b| b, |b| b)
    }

    /// [`LocalMesh::start`] with extra settings for each proxy.
    pub fn start_with(
        services: &[(&str, SocketAddr)],
        client: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
        server: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
    ) -> Self {
        let dir = TempDir::new("mesh");
        let server = server(Proxy::builder()).start();
        let services = services
            .iter()
            .map(|(name, app)| {
                let (name, port) = match name.split_once(':') {
                    Some((name, port)) => (name, port.parse().expect("port")),
                    None => (*name, 80),
                };
                service(
                    name,
                    "demo",
                    port,
                    &[],
                    &[Endpoint {
                        app: *app,
                        proxy_port: Some(server.inbound.port()),
                    }],
                )
            })
            .collect();
        let path = dir.write_snapshot("snapshot.json", &snapshot("1", services));
        let client = client(Proxy::builder().snapshot(&path)).start();
        Self {
            client,
            server,
            dir,
        }
    }
}
