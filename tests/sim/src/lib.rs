//! The project's simulated cluster, for tests, the demo and benchmarks — never shipped.
//!
//! `Cluster::start` runs etcd and `hostprocess-test-apiserver` (a real API server built from
//! the upstream Kubernetes libraries by `tests/apiserver/build.sh`) on free loopback ports and
//! writes a kubeconfig. Everything the operator relies on in the API (server-side apply, watch,
//! CRD schemas with CEL, status subresources, discovery, admission policies) is the real code.

pub mod controllers;
pub mod daemonset;
pub mod faults;
pub mod gc;
pub mod kubelet;
pub mod process;
pub mod wait;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::process::{Child, Command};

/// The token the kubeconfig authenticates with (the test API server's static token file).
pub(crate) const TOKEN: &str = "hostprocess-sim-admin";

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot build the test API server (tests/apiserver/build.sh): {0}")]
    Build(String),
    #[error("cannot start {what}: {source}")]
    Spawn { what: &'static str, source: std::io::Error },
    #[error("{what} did not become ready within {seconds}s; its log: {log}")]
    NotReady { what: &'static str, seconds: u64, log: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("setting up the cluster: {0}")]
    Setup(String),
}

/// Paths of the two server binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub apiserver: PathBuf,
    pub etcd: PathBuf,
}

impl Binaries {
    /// Builds (or finds in the cache) the test API server and etcd, unless
    /// `HOSTPROCESS_TEST_APISERVER` and `HOSTPROCESS_TEST_ETCD` name them already.
    pub fn locate() -> Result<Self, SimError> {
        if let (Some(apiserver), Some(etcd)) =
            (std::env::var_os("HOSTPROCESS_TEST_APISERVER"), std::env::var_os("HOSTPROCESS_TEST_ETCD"))
        {
            return Ok(Binaries { apiserver: apiserver.into(), etcd: etcd.into() });
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../apiserver/build.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| SimError::Build(e.to_string()))?;
        if !out.status.success() {
            return Err(SimError::Build(format!("{} exited with {}", script.display(), out.status)));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let value = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(PathBuf::from);
        match (value("APISERVER="), value("ETCD=")) {
            (Some(apiserver), Some(etcd)) => Ok(Binaries { apiserver, etcd }),
            _ => Err(SimError::Build(format!("unexpected output: {text}"))),
        }
    }
}

/// A running etcd + API server; both are killed when this is dropped.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    etcd: Child,
    apiserver: Child,
    pub server_url: String,
    pub kubeconfig_path: PathBuf,
    pub startup: Duration,
}

fn free_port() -> Result<u16, SimError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Starts etcd and the API server and waits until the API server is ready.
    pub async fn start(binaries: &Binaries) -> Result<Self, SimError> {
        let started = Instant::now();
        let dir = tempfile::Builder::new().prefix("hostprocess-sim-").tempdir()?;
        let (client_port, peer_port, api_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let etcd_log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let etcd = Command::new(&binaries.etcd)
            .arg("--data-dir")
            .arg(dir.path().join("etcd"))
            .args(["--listen-client-urls", &etcd_url, "--advertise-client-urls", &etcd_url])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-cluster", &format!("default=http://127.0.0.1:{peer_port}")])
            .args(["--unsafe-no-fsync", "--quota-backend-bytes", "8589934592"])
            .stdout(Stdio::null())
            .stderr(etcd_log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SimError::Spawn { what: "etcd", source })?;

        let tokens = dir.path().join("tokens.csv");
        std::fs::write(&tokens, format!("{TOKEN},admin,admin,\"system:masters\"\n"))?;
        let certs = dir.path().join("certs");
        let api_log = std::fs::File::create(dir.path().join("apiserver.log"))?;
        let apiserver = Command::new(&binaries.apiserver)
            .args(["--etcd-servers", &etcd_url, "--secure-port", &api_port.to_string()])
            .arg("--cert-dir")
            .arg(&certs)
            .arg("--token-auth-file")
            .arg(&tokens)
            .stdout(Stdio::null())
            .stderr(api_log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SimError::Spawn { what: "the test API server", source })?;

        let server_url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig_path = dir.path().join("kubeconfig");
        let mut cluster =
            Cluster { dir, etcd, apiserver, server_url, kubeconfig_path, startup: Duration::ZERO };
        cluster.wait_ready(Duration::from_secs(60)).await?;
        cluster.write_kubeconfig()?;
        cluster.create_system_namespaces().await?;
        cluster.startup = started.elapsed();
        Ok(cluster)
    }

    /// The namespaces kube-apiserver's bootstrap controller creates (Events about cluster-scoped
    /// objects go to `default`); the test API server does not run that controller.
    async fn create_system_namespaces(&self) -> Result<(), SimError> {
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(self.client().await?);
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ns = k8s_openapi::api::core::v1::Namespace {
                metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
                ..Default::default()
            };
            match namespaces.create(&kube::api::PostParams::default(), &ns).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => return Err(SimError::Setup(format!("creating namespace {name}: {e}"))),
            }
        }
        Ok(())
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<(), SimError> {
        let until = Instant::now() + within;
        let client = insecure_ready_client(&self.server_url)?;
        loop {
            if let Ok(Some(status)) = self.apiserver.try_wait() {
                return Err(SimError::NotReady {
                    what: "the test API server",
                    seconds: 0,
                    log: self.log(&format!("exited: {status}")),
                });
            }
            if client.ready().await {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(SimError::NotReady {
                    what: "the test API server",
                    seconds: within.as_secs(),
                    log: self.log(""),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self, prefix: &str) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        format!("{prefix}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }

    fn write_kubeconfig(&self) -> Result<(), SimError> {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: admin\n    namespace: default\ncurrent-context: sim\n",
            self.server_url
        );
        std::fs::write(&self.kubeconfig_path, yaml)?;
        Ok(())
    }

    /// A kube client for this cluster.
    pub async fn client(&self) -> Result<kube::Client, SimError> {
        client_from_kubeconfig(&self.kubeconfig_path).await
    }

    /// The working directory (logs, etcd data, kubeconfig).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process ids of etcd and the API server (for memory measurements).
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (self.etcd.id(), self.apiserver.id())
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, SimError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| SimError::Kubeconfig(e.to_string()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| SimError::Kubeconfig(e.to_string()))?;
    // As the operator's binary configures it: a 429 (an eviction a PodDisruptionBudget refuses)
    // comes back at once instead of being retried inside the client for minutes.
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| SimError::Kubeconfig(e.to_string()))
}

/// Registers `count` simulated Windows nodes (`win-000`, …): labelled `kubernetes.io/os=windows`,
/// tainted `os=windows:NoSchedule` as AKS does, and Ready.
pub async fn add_windows_nodes(client: &kube::Client, count: usize) -> Result<Vec<String>, kube::Error> {
    add_windows_nodes_from(client, 0, count).await
}

/// `add_windows_nodes`, numbered from `first`.
pub async fn add_windows_nodes_from(
    client: &kube::Client,
    first: usize,
    count: usize,
) -> Result<Vec<String>, kube::Error> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, Patch, PatchParams};
    let nodes: Api<Node> = Api::all(client.clone());
    let mut names = Vec::with_capacity(count);
    for i in first..first + count {
        let name = format!("win-{i:03}");
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "kubernetes.io/os": "windows", "kubernetes.io/hostname": name,
                "node.kubernetes.io/windows-build": "10.0.20348", "pool": "win2022",
            }},
            "spec": {"taints": [{"key": "os", "value": "windows", "effect": "NoSchedule"}]},
        }))
        .map_err(kube::Error::SerdeError)?;
        let params = PatchParams::apply("hostprocess-sim").force();
        nodes.patch(&name, &params, &Patch::Apply(&node)).await?;
        let status = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "simulated kubelet is posting ready status"}],
                "nodeInfo": {"operatingSystem": "windows", "architecture": "amd64",
                    "containerRuntimeVersion": "containerd://1.7.20", "kubeletVersion": "v1.33.0",
                    "osImage": "Windows Server 2022 Datacenter", "kernelVersion": "10.0.20348.2700",
                    "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""}},
        });
        nodes.patch_status(&name, &params, &Patch::Apply(&status)).await?;
        names.push(name);
    }
    Ok(names)
}

/// A minimal readiness check that needs no credentials (`/readyz` is open to all).
struct ReadyClient {
    client: kube::Client,
}

fn insecure_ready_client(url: &str) -> Result<ReadyClient, SimError> {
    let mut config = kube::Config::new(
        url.parse().map_err(|e: http::uri::InvalidUri| SimError::Kubeconfig(e.to_string()))?,
    );
    config.accept_invalid_certs = true;
    config.auth_info.token = Some(TOKEN.to_string().into());
    let client = kube::Client::try_from(config).map_err(|e| SimError::Kubeconfig(e.to_string()))?;
    Ok(ReadyClient { client })
}

impl ReadyClient {
    async fn ready(&self) -> bool {
        let request = http::Request::get("/readyz").body(Vec::new());
        match request {
            Ok(request) => self.client.request_text(request).await.is_ok_and(|body| body.trim() == "ok"),
            Err(_) => false,
        }
    }
}

/// The Linux build of the node-executor that simulated nodes run: `HOSTPROCESS_NODE_EXECUTOR`,
/// or built now with cargo (debug profile) when that is not set.
pub fn node_executor_binary() -> Result<PathBuf, SimError> {
    if let Some(path) = std::env::var_os("HOSTPROCESS_NODE_EXECUTOR") {
        return Ok(path.into());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", "node-executor", "--bin", "node-executor"])
        .current_dir(&workspace)
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| SimError::Build(format!("cargo build -p node-executor: {e}")))?;
    if !status.success() {
        return Err(SimError::Build(format!("cargo build -p node-executor exited with {status}")));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
    Ok(target.join("debug").join("node-executor"))
}

/// How to start a `Simulation`.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub nodes: usize,
    /// The first restart back-off of crashed containers (the real kubelet: 10s).
    pub restart_backoff: Duration,
    pub reboot_downtime: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: 3,
            restart_backoff: Duration::from_secs(1),
            reboot_downtime: Duration::from_secs(2),
        }
    }
}

/// The whole simulated cluster: API server and etcd, Windows nodes with a kubelet each, the
/// DaemonSet controller and the garbage collector. Everything stops when it is dropped.
pub struct Simulation {
    pub kubelets: Vec<kubelet::Kubelet>,
    pub client: kube::Client,
    controllers: Vec<tokio::task::JoinHandle<()>>,
    pub cluster: Cluster,
}

impl Simulation {
    pub async fn start(options: SimOptions) -> Result<Self, SimError> {
        let binaries = Binaries::locate()?;
        let executor = node_executor_binary()?;
        let cluster = Cluster::start(&binaries).await?;
        let client = cluster.client().await?;
        let controllers = vec![
            controllers::spawn_daemonset_controller(client.clone()),
            gc::spawn_garbage_collector(client.clone()),
        ];
        let mut simulation = Simulation { kubelets: Vec::new(), client, controllers, cluster };
        simulation.add_nodes(options.nodes, &options, &executor).await?;
        Ok(simulation)
    }

    /// Registers `count` more Windows nodes and starts their kubelets.
    pub async fn add_nodes(
        &mut self,
        count: usize,
        options: &SimOptions,
        executor: &Path,
    ) -> Result<(), SimError> {
        let first = self.kubelets.len();
        let names = add_windows_nodes_from(&self.client, first, count)
            .await
            .map_err(|e| SimError::Kubeconfig(format!("registering nodes: {e}")))?;
        let url: http::Uri = self
            .cluster
            .server_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| SimError::Kubeconfig(e.to_string()))?;
        for (i, name) in names.iter().enumerate() {
            let index = first + i;
            let mut config = kubelet::KubeletConfig::new(name, self.cluster.dir().join("nodes").join(name));
            config.programs.insert("node-executor".into(), executor.to_path_buf());
            config.api_host = url.host().unwrap_or("127.0.0.1").to_string();
            config.api_port = url.port_u16().unwrap_or(443);
            config.node_ip = format!("10.240.{}.{}", index / 250, index % 250 + 4);
            config.restart_backoff = options.restart_backoff;
            config.restart_backoff_cap = (options.restart_backoff * 30).min(Duration::from_secs(300));
            config.reboot_downtime = options.reboot_downtime;
            self.kubelets.push(kubelet::Kubelet::start(self.client.clone(), config));
        }
        Ok(())
    }

    /// The kubelet of a node by name.
    pub fn node(&self, name: &str) -> Option<&kubelet::Kubelet> {
        self.kubelets.iter().find(|k| k.config.node == name)
    }
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("cluster", &self.cluster)
            .field("nodes", &self.kubelets.len())
            .finish()
    }
}

impl Drop for Simulation {
    fn drop(&mut self) {
        for task in &self.controllers {
            task.abort();
        }
    }
}
