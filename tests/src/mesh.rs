//! Meshes for the integration tests.
//!
//! [`LocalMesh`]: two proxies without a control plane, routing by static snapshot (plaintext
//! hops). [`Mesh`]: the real thing: a control plane with a configuration directory and a
//! development CA, and one proxy per workload with its identity and mTLS.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::control_plane::ControlPlane;
use crate::ports::free_port;
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

/// A workload of a [`Mesh`]: an app port the test serves on and the proxy in front of it.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// Workload name.
    pub name: String,
    /// Service account (its identity).
    pub service_account: String,
    /// Labels services select by.
    pub labels: Vec<(String, String)>,
    /// Where the test's app for this workload must listen (127.0.0.1).
    pub app_port: u16,
    /// The workload proxy's inbound port.
    pub proxy_port: u16,
    /// The bootstrap token.
    pub token: String,
    /// The workload's owner (`kind`, `name`), as `spec.owner`; `None`: not written.
    pub owner: Option<(String, String)>,
}

impl WorkloadSpec {
    /// The app's address.
    pub fn app(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.app_port))
    }

    /// The workload's SPIFFE identity.
    pub fn identity(&self) -> String {
        format!("spiffe://cluster.local/ns/demo/sa/{}", self.service_account)
    }
}

/// Builds a [`Mesh`]: services, workloads, extra YAML, control plane and proxy flags.
pub struct MeshBuilder {
    services: Vec<(String, Vec<(String, String)>)>,
    workloads: Vec<WorkloadSpec>,
    extra: Vec<(String, String)>,
    cp_flags: Vec<(String, String)>,
    proxy_flags: Vec<(String, String)>,
    ca: CaSource,
}

enum CaSource {
    Dev,
    Files {
        anchors: PathBuf,
        issuer_cert: PathBuf,
        issuer_key: PathBuf,
    },
}

/// A running mesh.
pub struct Mesh {
    /// Scratch space: configuration, CA, tokens.
    pub dir: TempDir,
    /// The configuration directory the control plane watches.
    pub config_dir: PathBuf,
    /// The trust anchors file proxies start with.
    pub anchors: PathBuf,
    /// The development CA directory (when the mesh uses one).
    pub ca_dir: PathBuf,
    /// The control plane.
    pub control_plane: ControlPlane,
    /// Workloads by name.
    pub workloads: BTreeMap<String, WorkloadSpec>,
    /// Their proxies by workload name.
    pub proxies: BTreeMap<String, Proxy>,
    proxy_flags: Vec<(String, String)>,
}

impl Default for MeshBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MeshBuilder {
    /// An empty mesh in namespace `demo`.
    pub fn new() -> Self {
        Self {
            services: Vec::new(),
            workloads: Vec::new(),
            extra: Vec::new(),
            cp_flags: Vec::new(),
            proxy_flags: Vec::new(),
            ca: CaSource::Dev,
        }
    }

    /// A service `name` (port 80 → the workloads' `http` port) selecting `labels`.
    pub fn service(mut self, name: &str, labels: &[(&str, &str)]) -> Self {
        self.services.push((
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        ));
        self
    }

    /// A workload `name` running as `service_account` with `labels`.
    pub fn workload(mut self, name: &str, service_account: &str, labels: &[(&str, &str)]) -> Self {
        self.workloads.push(WorkloadSpec {
            name: name.to_owned(),
            service_account: service_account.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            app_port: free_port(),
            proxy_port: free_port(),
            token: format!("test-token-{name}-{}", fastrand::u64(..)),
            owner: None,
        });
        self
    }

    /// Gives the workload `workload` (added before) the owner `kind`/`name` (`spec.owner`:
    /// the Deployment or other controller its metrics are labelled with).
    pub fn owner(mut self, workload: &str, kind: &str, name: &str) -> Self {
        let w = self
            .workloads
            .iter_mut()
            .find(|w| w.name == workload)
            .expect("owner: the workload is added first");
        w.owner = Some((kind.to_owned(), name.to_owned()));
        self
    }

    /// Extra YAML written as its own file in the configuration directory.
    pub fn yaml(mut self, file: &str, text: &str) -> Self {
        self.extra.push((file.to_owned(), text.to_owned()));
        self
    }

    /// A control-plane flag.
    pub fn control_plane_flag(mut self, flag: &str, value: impl ToString) -> Self {
        self.cp_flags.push((flag.to_owned(), value.to_string()));
        self
    }

    /// A flag for every proxy.
    pub fn proxy_flag(mut self, flag: &str, value: impl ToString) -> Self {
        self.proxy_flags.push((flag.to_owned(), value.to_string()));
        self
    }

    /// Uses the CA in these files instead of a development CA.
    pub fn ca_files(mut self, anchors: PathBuf, issuer_cert: PathBuf, issuer_key: PathBuf) -> Self {
        self.ca = CaSource::Files {
            anchors,
            issuer_cert,
            issuer_key,
        };
        self
    }

    fn config_yaml(&self) -> String {
        let mut yaml = String::new();
        for (name, labels) in &self.services {
            let selector: String = labels.iter().map(|(k, v)| format!("{k}: {v}, ")).collect();
            let _ = write!(
                yaml,
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  selector: {{{}}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n",
                selector.trim_end_matches(", ")
            );
        }
        for w in &self.workloads {
            let labels: String = w
                .labels
                .iter()
                .map(|(k, v)| format!("{k}: {v}, "))
                .collect();
            let _ = write!(
                yaml,
                "---\napiVersion: strait.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {}, namespace: demo, labels: {{{}}}}}\nspec:\n  serviceAccount: {}\n  address: 127.0.0.1\n  ports: [{{name: http, port: {}}}]\n  proxy: {{inboundPort: {}}}\n  bootstrapToken: {{file: tokens/{}.token}}\n",
                w.name,
                labels.trim_end_matches(", "),
                w.service_account,
                w.app_port,
                w.proxy_port,
                w.name
            );
            if let Some((kind, name)) = &w.owner {
                let _ = writeln!(yaml, "  owner: {{kind: {kind}, name: {name}}}");
            }
        }
        yaml
    }

    /// Writes the configuration, starts the control plane and every proxy, and waits until
    /// each proxy holds a certificate and a snapshot.
    pub fn start(self) -> Mesh {
        let dir = TempDir::new("cp-mesh");
        let config_dir = dir.path().join("config");
        std::fs::create_dir_all(config_dir.join("tokens")).expect("creating the config dir");
        for w in &self.workloads {
            std::fs::write(
                config_dir.join(format!("tokens/{}.token", w.name)),
                &w.token,
            )
            .expect("writing a token");
        }
        std::fs::write(config_dir.join("mesh.yaml"), self.config_yaml())
            .expect("writing the config");
        for (file, text) in &self.extra {
            std::fs::write(config_dir.join(file), text).expect("writing extra config");
        }
        let ca_dir = dir.path().join("ca");
        let mut flags: Vec<(&str, String)> = Vec::new();
        let anchors = match &self.ca {
            CaSource::Dev => {
                flags.push(("--dev-ca", ca_dir.display().to_string()));
                ca_dir.join("trust-anchors.pem")
            }
            CaSource::Files {
                anchors,
                issuer_cert,
                issuer_key,
            } => {
                flags.push(("--trust-anchors", anchors.display().to_string()));
                flags.push(("--issuer-cert", issuer_cert.display().to_string()));
                flags.push(("--issuer-key", issuer_key.display().to_string()));
                // Proxies start from their own copy, as from a ConfigMap written at install.
                let copy = dir.path().join("proxy-anchors.pem");
                std::fs::copy(anchors, &copy).expect("copying the anchors");
                copy
            }
        };
        for (flag, value) in &self.cp_flags {
            flags.push((flag.as_str(), value.clone()));
        }
        let control_plane = ControlPlane::start(&config_dir, &flags);
        let mut mesh = Mesh {
            dir,
            config_dir,
            anchors,
            ca_dir,
            control_plane,
            workloads: BTreeMap::new(),
            proxies: BTreeMap::new(),
            proxy_flags: self.proxy_flags,
        };
        for w in self.workloads {
            let proxy = mesh.proxy_builder(&w).start();
            mesh.proxies.insert(w.name.clone(), proxy);
            mesh.workloads.insert(w.name.clone(), w);
        }
        for name in mesh.workloads.keys() {
            mesh.wait_meshed(name);
        }
        mesh
    }
}

impl Mesh {
    /// The builder for `workload`'s proxy: its identity, token, ports and the mesh's flags.
    pub fn proxy_builder(&self, w: &WorkloadSpec) -> ProxyBuilder {
        let mut builder = Proxy::builder()
            .flag("--control-plane", self.control_plane.grpc)
            .flag("--trust-anchors", self.anchors.display())
            .flag("--namespace", "demo")
            .flag("--service-account", &w.service_account)
            .flag("--workload", &w.name)
            .flag(
                "--token-file",
                self.config_dir
                    .join(format!("tokens/{}.token", w.name))
                    .display(),
            )
            .flag("--inbound-addr", format!("127.0.0.1:{}", w.proxy_port));
        for (flag, value) in &self.proxy_flags {
            builder = builder.flag(flag, value);
        }
        builder
    }

    /// The proxy of `workload`.
    pub fn proxy(&self, workload: &str) -> &Proxy {
        &self.proxies[workload]
    }

    /// The workload `name`.
    pub fn workload(&self, name: &str) -> &WorkloadSpec {
        &self.workloads[name]
    }

    /// Waits until `workload`'s proxy holds a certificate and has applied a snapshot.
    pub fn wait_meshed(&self, workload: &str) {
        wait_until_meshed(&self.proxies[workload], &self.control_plane, workload);
    }

    /// Rewrites a configuration file (atomically: write, then rename).
    pub fn write_config(&self, file: &str, text: &str) {
        let tmp = self.config_dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).expect("writing config");
        std::fs::rename(&tmp, self.config_dir.join(file)).expect("renaming config into place");
    }
}

/// Waits until `proxy` (of workload `who`) holds a certificate and has applied a snapshot
/// from `control_plane`; fails with both processes' output after 20 s.
pub fn wait_until_meshed(proxy: &Proxy, control_plane: &ControlPlane, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if proxy.process.logged("snapshot applied") && proxy.process.logged("certificate installed")
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "proxy of {who} did not get a certificate and a snapshot; its output:\n{}\ncontrol plane:\n{}",
        proxy.process.logs().join("\n"),
        control_plane.process.logs().join("\n")
    );
}
