//! The project's simulated cluster, for tests, the demo and benchmarks — never shipped.
//!
//! Everything but the Windows nodes is real: `Cluster::start` runs etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler built from the upstream sources
//! (`tests/control-plane/build.sh`), configured as a managed cluster. The simulated part is the
//! nodes: a kubelet per node (`kubelet`) that authenticates as that node, registers it, keeps its
//! Lease, and runs its pods' containers as local processes — the real node-executor's Linux
//! build — with reboots, node loss and payload failures on demand.

pub mod cluster;
pub mod control;
pub mod error;
pub mod faults;
pub mod identity;
pub mod kubelet;
pub mod nodes;
pub mod operator;
pub mod pki;
pub mod process;
pub mod wait;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub use cluster::{Binaries, Cluster, ClusterOptions};
pub use error::SimError;
pub use identity::client_from_kubeconfig;

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
    pub cluster: ClusterOptions,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: 3,
            restart_backoff: Duration::from_secs(1),
            reboot_downtime: Duration::from_secs(2),
            cluster: ClusterOptions::default(),
        }
    }
}

impl SimOptions {
    /// How often a kubelet renews its Lease: a fifth of the grace period the node-lifecycle
    /// controller gives a silent node (upstream: every 10 s of 50 s).
    pub fn lease_renewal(&self) -> Duration {
        (self.cluster.node_monitor_grace_period / 5).clamp(Duration::from_secs(1), Duration::from_secs(10))
    }
}

/// The whole simulated cluster: the real control plane and Windows nodes with a simulated
/// kubelet each. Everything stops when it is dropped.
pub struct Simulation {
    pub kubelets: Vec<kubelet::Kubelet>,
    /// The cluster administrator's client.
    pub client: kube::Client,
    pub cluster: Cluster,
    options: SimOptions,
    executor: PathBuf,
}

impl Simulation {
    pub async fn start(options: SimOptions) -> Result<Self, SimError> {
        let binaries = Binaries::locate()?;
        let executor = node_executor_binary()?;
        let cluster = Cluster::start(&binaries, &options.cluster).await?;
        let client = cluster.client().await?;
        let count = options.nodes;
        let mut simulation = Simulation { kubelets: Vec::new(), client, cluster, options, executor };
        simulation.add_nodes(count).await?;
        Ok(simulation)
    }

    /// Starts `count` more Windows nodes, each a kubelet that registers its node with the
    /// node's own credentials; returns once every new node is Ready.
    pub async fn add_nodes(&mut self, count: usize) -> Result<(), SimError> {
        let first = self.kubelets.len();
        let url: http::Uri = self
            .cluster
            .server_url
            .parse()
            .map_err(|e: http::uri::InvalidUri| SimError::Kubeconfig(e.to_string()))?;
        let mut names = Vec::new();
        for index in first..first + count {
            let name = format!("win-{index:03}");
            let kubeconfig = self.cluster.certificate_kubeconfig(
                &format!("node-{name}"),
                &format!("system:node:{name}"),
                &["system:nodes"],
            )?;
            let client = client_from_kubeconfig(&kubeconfig).await?;
            let mut config = kubelet::KubeletConfig::new(&name, self.cluster.dir().join("nodes").join(&name));
            config.programs.insert("node-executor".into(), self.executor.clone());
            config.api_host = url.host().unwrap_or("127.0.0.1").to_string();
            config.api_port = url.port_u16().unwrap_or(443);
            config.node_ip = nodes::node_ip(index);
            config.restart_backoff = self.options.restart_backoff;
            config.restart_backoff_cap = (self.options.restart_backoff * 30).min(Duration::from_secs(300));
            config.reboot_downtime = self.options.reboot_downtime;
            config.lease_renewal = self.options.lease_renewal();
            self.kubelets.push(kubelet::Kubelet::start(client, config));
            names.push(name);
        }
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(self.client.clone());
        for name in names {
            wait::until(&format!("node {name} Ready"), Duration::from_secs(60), || async {
                let node = nodes.get_opt(&name).await.ok().flatten()?;
                let ready =
                    node.status?.conditions?.into_iter().any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(())
            })
            .await
            .map_err(|e| SimError::Setup(e.to_string()))?;
        }
        Ok(())
    }

    /// The kubelet of a node by name.
    pub fn node(&self, name: &str) -> Option<&kubelet::Kubelet> {
        self.kubelets.iter().find(|k| k.config.node == name)
    }

    /// How the simulation was started.
    pub fn options(&self) -> &SimOptions {
        &self.options
    }

    /// Installs the operator's ServiceAccount and RBAC from `deploy/` and returns a kubeconfig
    /// that authenticates as it: the only identity the operator under test gets.
    pub async fn operator_kubeconfig(&self) -> Result<PathBuf, SimError> {
        operator::install_operator_identity(&self.cluster).await
    }

    /// A client as the operator's ServiceAccount (`operator_kubeconfig`).
    pub async fn operator_client(&self) -> Result<kube::Client, SimError> {
        client_from_kubeconfig(&self.operator_kubeconfig().await?).await
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

/// Creates a namespace with these labels and waits until its `default` ServiceAccount exists
/// (until then the ServiceAccount admission plugin refuses pods there).
pub async fn create_namespace(
    client: &kube::Client,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<(), SimError> {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    let namespace = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        ..Default::default()
    };
    namespaces
        .create(&kube::api::PostParams::default(), &namespace)
        .await
        .map_err(|e| SimError::Setup(format!("creating namespace {name}: {e}")))?;
    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), name);
    wait::until(&format!("the default ServiceAccount of {name}"), Duration::from_secs(30), || async {
        accounts.get_opt("default").await.ok().flatten().map(|_| ())
    })
    .await
    .map_err(|e| SimError::Setup(e.to_string()))
}
