//! The Gateway API mesh conformance world (GAMMA), in local mode: upstream's
//! `conformance/mesh/manifests.yaml` rebuilt as Strait configuration. Namespace
//! `gateway-conformance-mesh` holds the Services `echo` (every echo pod), `echo-v1` and `echo-v2`
//! (ports `http` 80 and `http-alt` 8080 to the pods' HTTP port, `grpc` 7070 to their gRPC port,
//! each with a ClusterIP, [`cluster_ip`]) and the pods `echo-v1-0` and `echo-v2-0`; namespace
//! `gateway-conformance-mesh-consumer` holds pod `echo-v1-0` and no Service. Every pod runs the
//! [`crate::echo`] backend behind its own proxy, and a test sends from a pod by talking to that
//! pod's proxy's outbound listener, as upstream's suite execs into the pod.
//!
//! [`ConformanceMesh::start_intercepted`] runs the same world inside a network namespace the
//! test makes, where `strait-proxy init` installs the real iptables rules and the proxies run
//! under their own UID: an app in that namespace dialling a ClusterIP is redirected to the
//! `echo-v1-0` proxy's outbound listener, as in a pod ([`ConformanceMesh::from_app`]).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::binaries;
use crate::control_plane::ControlPlane;
use crate::echo::{self, Echoed, Pod};
use crate::netns::NetNs;
use crate::ports::free_port;
use crate::process::Proxy;
use crate::snapshot::TempDir;

/// Upstream's mesh namespace (`suite.MeshNamespace`).
pub const MESH_NS: &str = "gateway-conformance-mesh";
/// Upstream's consumer namespace (`suite.MeshConsumerNamespace`).
pub const CONSUMER_NS: &str = "gateway-conformance-mesh-consumer";

/// The UID the proxies run under in an intercepted world (`strait-proxy init`'s default), whose
/// own connections the outbound rules leave alone.
const PROXY_UID: u32 = 2102;
/// Where the iptables rules send an app's outbound connections (`strait-proxy init`'s default).
const REDIRECTED_OUTBOUND: &str = "127.0.0.1:4140";
/// The range the ClusterIPs come from, routed out of an intercepted world's namespace through a
/// veth (a connection over loopback is never redirected).
const SERVICE_RANGE: &str = "10.96.0.0/16";
/// `echo-v2-0`'s pod IP in an intercepted world: an address of a second namespace at the
/// veth's other end, where that pod's app also listens (upstream's `MeshFrontend` dials it).
const ECHO_V2_POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 12);
/// The port upstream's `MeshFrontend` dials a pod IP on (its echo app's port).
pub const POD_APP_PORT: u16 = 8080;

/// The ClusterIP of Service `name` in the mesh namespace (`echo`, `echo-v1`, `echo-v2`).
pub fn cluster_ip(name: &str) -> IpAddr {
    let last = match name {
        "echo" => 10,
        "echo-v1" => 11,
        "echo-v2" => 12,
        other => panic!("the conformance world has no Service {other}"),
    };
    IpAddr::V4(Ipv4Addr::new(10, 96, 0, last))
}

/// One echo pod: its app ports and its proxy.
#[derive(Debug)]
pub struct EchoPod {
    /// `echo-v1-0`, `echo-v2-0`.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `v1` or `v2`.
    pub version: String,
    /// The HTTP echo's port.
    pub http_port: u16,
    /// The gRPC echo's port.
    pub grpc_port: u16,
    /// Its proxy's inbound port.
    pub proxy_port: u16,
    token: String,
}

/// The running conformance mesh.
pub struct ConformanceMesh {
    /// Scratch space.
    pub dir: TempDir,
    /// The configuration directory.
    pub config_dir: PathBuf,
    /// The control plane.
    pub control_plane: ControlPlane,
    /// The pods.
    pub pods: Vec<EchoPod>,
    /// Their proxies, in the order of `pods`.
    pub proxies: Vec<Proxy>,
    /// The network namespace of an intercepted world (dropped last, after its processes).
    pub netns: Option<NetNs>,
    /// The namespace behind the intercepted world's veth, holding `echo-v2-0`'s pod IP.
    pod_ip_netns: Option<NetNs>,
}

fn pods() -> Vec<EchoPod> {
    [(MESH_NS, "v1"), (MESH_NS, "v2"), (CONSUMER_NS, "v1")]
        .into_iter()
        .map(|(namespace, version)| EchoPod {
            name: format!("echo-{version}-0"),
            namespace: namespace.to_owned(),
            version: version.to_owned(),
            http_port: free_port(),
            grpc_port: free_port(),
            proxy_port: free_port(),
            token: format!("token-{namespace}-{version}-{}", fastrand::u64(..)),
        })
        .collect()
}

fn token_file(pod: &EchoPod) -> String {
    format!("tokens/{}.{}.token", pod.namespace, pod.name)
}

/// The Services and pods of upstream's manifests as Strait configuration.
fn world_yaml(pods: &[EchoPod]) -> String {
    let mut yaml = String::new();
    for (name, selector) in [
        ("echo", "{app: echo}"),
        ("echo-v1", "{app: echo, version: v1}"),
        ("echo-v2", "{app: echo, version: v2}"),
    ] {
        let _ = write!(
            yaml,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {MESH_NS}}}\nspec:\n  clusterIP: {}\n  selector: {selector}\n  ports:\n  - {{name: http, port: 80, appProtocol: http, targetPort: http}}\n  - {{name: http-alt, port: 8080, appProtocol: http, targetPort: http}}\n  - {{name: grpc, port: 7070, appProtocol: kubernetes.io/h2c, targetPort: grpc}}\n",
            cluster_ip(name)
        );
    }
    for pod in pods {
        let _ = write!(
            yaml,
            "---\napiVersion: strait.dev/v1alpha1\nkind: Workload\nmetadata: {{name: {}, namespace: {}, labels: {{app: echo, version: {}}}}}\nspec:\n  serviceAccount: echo\n  address: 127.0.0.1\n  ports: [{{name: http, port: {}}}, {{name: grpc, port: {}}}]\n  proxy: {{inboundPort: {}}}\n  bootstrapToken: {{file: {}}}\n",
            pod.name,
            pod.namespace,
            pod.version,
            pod.http_port,
            pod.grpc_port,
            pod.proxy_port,
            token_file(pod),
        );
    }
    yaml
}

impl ConformanceMesh {
    /// Starts the world with `routes` (YAML documents, upstream's route shapes) applied, and
    /// waits until every proxy holds a certificate and a snapshot.
    pub async fn start(routes: &str) -> Self {
        Self::start_world(routes, None).await
    }

    /// [`ConformanceMesh::start`] inside a network namespace the test makes, with the iptables
    /// rules `strait-proxy init` installs and a route to the ClusterIPs, so an app there
    /// reaches the Services by their ClusterIPs only through `echo-v1-0`'s proxy, which the
    /// rules redirect it to. Needs root.
    pub async fn start_intercepted(routes: &str) -> Self {
        let ns = NetNs::create("gamma");
        let pod_ns = NetNs::create("gammapod");
        // A veth pair carries the ClusterIP range out of the namespace: a destination there
        // leaves through a real interface, which the outbound rules redirect. Its other end,
        // in a second namespace, holds echo-v2-0's pod IP, which is not a Service's.
        ns.exec(
            "ip",
            &[
                "link", "add", "svc0", "type", "veth", "peer", "name", "svc1",
            ],
        );
        ns.exec("ip", &["link", "set", "svc1", "netns", pod_ns.name()]);
        ns.exec("ip", &["link", "set", "svc0", "up"]);
        ns.exec("ip", &["addr", "add", "10.77.0.1/24", "dev", "svc0"]);
        ns.exec("ip", &["route", "add", SERVICE_RANGE, "dev", "svc0"]);
        ns.exec(
            "ip",
            &[
                "route",
                "add",
                &format!("{ECHO_V2_POD_IP}/32"),
                "via",
                "10.77.0.2",
            ],
        );
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "set", "svc1", "up"],
            &["addr", "add", "10.77.0.2/24", "dev", "svc1"],
            &[
                "addr",
                "add",
                &format!("{ECHO_V2_POD_IP}/32"),
                "dev",
                "svc1",
            ],
        ] {
            pod_ns.exec("ip", args);
        }
        let binary = binaries::path("strait-proxy");
        ns.exec(
            binary.to_str().expect("a UTF-8 binary path"),
            &["init", "--proxy-uid", &PROXY_UID.to_string()],
        );
        let pod_app = SocketAddr::from((ECHO_V2_POD_IP, POD_APP_PORT));
        let listener = tokio::net::TcpListener::from_std(pod_ns.bind_tcp(pod_app))
            .expect("serving echo-v2-0's pod IP");
        echo::serve_http(
            listener,
            Pod {
                name: "echo-v2-0".to_owned(),
                namespace: MESH_NS.to_owned(),
            },
        );
        let mut mesh = Self::start_world(routes, Some(ns)).await;
        mesh.pod_ip_netns = Some(pod_ns);
        mesh
    }

    /// The outbound connections the app's proxy (`echo-v1-0`'s, where the rules redirect) has
    /// accepted so far, read from its `/metrics` inside an intercepted world's namespace.
    pub fn app_proxy_outbound_connections(&self) -> f64 {
        let ns = self
            .netns
            .as_ref()
            .expect("an intercepted world from start_intercepted");
        let admin = self.proxies[self.index(MESH_NS, "echo-v1-0")].admin;
        ns.run(move || async move {
            crate::metrics::Metrics::fetch(admin).await.sum(
                "strait_tcp_connections_opened_total",
                &[("direction", "outbound")],
            )
        })
    }

    /// `echo-v2-0`'s pod IP and app port in a world from [`ConformanceMesh::start_intercepted`].
    pub fn echo_v2_pod_app(&self) -> SocketAddr {
        SocketAddr::from((ECHO_V2_POD_IP, POD_APP_PORT))
    }

    async fn start_world(routes: &str, netns: Option<NetNs>) -> Self {
        let dir = TempDir::new("gamma");
        let config_dir = dir.path().join("config");
        std::fs::create_dir_all(config_dir.join("tokens")).expect("creating the config dir");
        let pods = pods();
        for pod in &pods {
            std::fs::write(config_dir.join(token_file(pod)), &pod.token).expect("writing a token");
            let who = Pod {
                name: pod.name.clone(),
                namespace: pod.namespace.clone(),
            };
            let http = SocketAddr::from(([127, 0, 0, 1], pod.http_port));
            let grpc = SocketAddr::from(([127, 0, 0, 1], pod.grpc_port));
            match &netns {
                None => {
                    echo::start_http(http, who.clone()).await;
                    echo::start_grpc(grpc, who).await;
                }
                Some(ns) => {
                    let listen = |addr| {
                        tokio::net::TcpListener::from_std(ns.bind_tcp(addr))
                            .expect("serving a listener of the namespace")
                    };
                    echo::serve_http(listen(http), who.clone());
                    echo::serve_grpc(listen(grpc), who);
                }
            }
        }
        std::fs::write(config_dir.join("world.yaml"), world_yaml(&pods)).expect("writing config");
        std::fs::write(config_dir.join("routes.yaml"), routes).expect("writing routes");
        let ca_dir = dir.path().join("ca");
        let control_plane = ControlPlane::start_in(
            netns.as_ref().map(NetNs::name),
            &config_dir,
            &[("--dev-ca", ca_dir.display().to_string())],
        );
        // The anchors are public; copied out of the CA's directory for the proxies' UID.
        let anchors = dir.path().join("trust-anchors.pem");
        std::fs::copy(ca_dir.join("trust-anchors.pem"), &anchors).expect("copying the anchors");
        let proxies: Vec<Proxy> = pods
            .iter()
            .map(|pod| {
                let mut builder = Proxy::builder();
                if let Some(ns) = &netns {
                    builder = builder.netns(ns.name()).run_as(PROXY_UID);
                    // Upstream's client pod: the one an app's redirected connections reach.
                    if pod.namespace == MESH_NS && pod.name == "echo-v1-0" {
                        builder = builder.flag("--outbound-addr", REDIRECTED_OUTBOUND);
                    }
                }
                builder
                    .flag("--control-plane", control_plane.grpc)
                    .flag("--trust-anchors", anchors.display())
                    .flag("--namespace", &pod.namespace)
                    .flag("--service-account", "echo")
                    .flag("--workload", &pod.name)
                    .flag("--token-file", config_dir.join(token_file(pod)).display())
                    .flag("--inbound-addr", format!("127.0.0.1:{}", pod.proxy_port))
                    .start()
            })
            .collect();
        let mesh = Self {
            dir,
            config_dir,
            control_plane,
            pods,
            proxies,
            netns,
            pod_ip_netns: None,
        };
        for (pod, proxy) in mesh.pods.iter().zip(&mesh.proxies) {
            crate::mesh::wait_until_meshed(proxy, &mesh.control_plane, &pod.name);
        }
        mesh
    }

    /// The outbound listener of pod `name` in `namespace`: where that pod's calls go.
    pub fn client(&self, namespace: &str, name: &str) -> SocketAddr {
        self.proxies[self.index(namespace, name)].outbound
    }

    fn index(&self, namespace: &str, name: &str) -> usize {
        self.pods
            .iter()
            .position(|p| p.namespace == namespace && p.name == name)
            .unwrap_or_else(|| panic!("no pod {namespace}/{name}"))
    }

    /// Upstream's default client: `echo-v1` in the mesh namespace.
    pub fn echo_v1(&self) -> SocketAddr {
        self.client(MESH_NS, "echo-v1-0")
    }

    /// [`eventually`] from an app of an intercepted world: it dials `dst` itself (a ClusterIP,
    /// say) from inside the namespace, as an app in the `echo-v1-0` pod does, and the
    /// iptables rules decide where the connection goes.
    pub async fn from_app(
        &self,
        dst: SocketAddr,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        expected: impl Fn(&Answer) -> bool + Send + 'static,
    ) -> Answer {
        let ns = self
            .netns
            .as_ref()
            .expect("from_app needs a world from start_intercepted");
        let (host, path) = (host.to_owned(), path.to_owned());
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        let app = ns.spawn(move || async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            eventually(dst, &host, &path, &headers, expected).await
        });
        // Joined off this runtime, which serves the echo backends meanwhile.
        tokio::task::spawn_blocking(move || app.join())
            .await
            .expect("joining the app thread")
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// One answer through the mesh: the status and, for a 200 from an echo pod, what it saw.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The echo's report (`None` when the answer is not an echo's, e.g. the proxy's 404).
    pub echoed: Option<Echoed>,
    /// The response headers.
    pub headers: http::HeaderMap,
}

impl Answer {
    /// The backend that answered, as upstream names it: the pod name without its last part.
    pub fn backend(&self) -> Option<String> {
        self.echoed
            .as_ref()
            .and_then(|e| e.pod.rsplit_once('-').map(|(b, _)| b.to_owned()))
    }
}

/// Sends `GET path` with `host` and `headers` through `client` (a pod's outbound listener) on
/// one HTTP/1.1 connection.
pub async fn request(
    client: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut sender = crate::client::http1(client).await;
    let mut builder = http::Request::get(path).header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        sender.send_request(
            builder
                .body(crate::client::empty())
                .expect("a valid request"),
        ),
    )
    .await
    .expect("the mesh answers within 10 s")
    .expect("the mesh answers");
    let collected = crate::client::collect(response).await;
    let status = collected.status.as_u16();
    let echoed = (status == 200)
        .then(|| serde_json::from_slice::<Echoed>(&collected.body).ok())
        .flatten();
    Answer {
        status,
        echoed,
        headers: collected.headers,
    }
}

/// Repeats [`request`] until it answers as `expected` says or 10 s pass (upstream's
/// `MakeRequestAndExpectEventuallyConsistentResponse`: a configuration takes a moment to reach
/// every proxy), and returns the last answer.
pub async fn eventually(
    client: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    expected: impl Fn(&Answer) -> bool,
) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = request(client, host, path, headers).await;
        if expected(&answer) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
