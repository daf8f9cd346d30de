//! The fixture of the operator's integration tests: a simulated cluster (the real control
//! plane, simulated Windows nodes) with the CRDs, the task namespace and the operator running as
//! the ServiceAccount of `deploy/` — with exactly the permissions `deploy/rbac.yaml` grants.
//! Each test binary uses a part of it.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)] // shared by several test binaries; tests

use std::collections::BTreeSet;
use std::time::Duration;

use hostprocess_crds::HostTask;
use hostprocess_operator::Config;
use hostprocess_sim::wait::until;
use hostprocess_sim::{SimOptions, Simulation};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};

pub const NS: &str = "hostprocess-tasks";

/// A simulated cluster with `nodes` Windows nodes, the CRDs, the task namespace and the
/// operator running.
pub struct Fixture {
    pub sim: Simulation,
    pub operator: tokio::task::JoinHandle<()>,
    /// The operator's identity: its ServiceAccount's token.
    pub operator_kubeconfig: std::path::PathBuf,
    pub operator_client: kube::Client,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.operator.abort();
    }
}

impl Fixture {
    pub async fn start(nodes: usize, enforce: &str) -> Self {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("hostprocess_operator=info"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        let sim = Simulation::start(SimOptions { nodes, ..SimOptions::default() }).await.expect("simulation");
        let crds: Api<CustomResourceDefinition> = Api::all(sim.client.clone());
        for crd in hostprocess_crds::crds() {
            let name = crd.metadata.name.clone().unwrap();
            crds.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&crd)).await.unwrap();
            tokio::time::timeout(
                Duration::from_secs(20),
                await_condition(crds.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .unwrap()
            .unwrap();
        }
        hostprocess_sim::create_namespace(
            &sim.client,
            NS,
            &[("pod-security.kubernetes.io/enforce", enforce)],
        )
        .await
        .unwrap();
        // The admission policies of the install, and the task namespace enabled for everything:
        // the rollout, reboot and group tests are not about grants (tests/grants.rs is).
        for file in ["admission-policy.yaml", "roles.yaml"] {
            let text = std::fs::read_to_string(hostprocess_sim::operator::deploy_dir().join(file)).unwrap();
            hostprocess_sim::operator::apply_manifests(&sim.client, &text, "test", |_| true).await.unwrap();
        }
        grant(&sim.client, NS, everything_granted()).await;
        let operator_kubeconfig = sim.operator_kubeconfig().await.expect("the operator's ServiceAccount");
        let operator_client = hostprocess_sim::client_from_kubeconfig(&operator_kubeconfig).await.unwrap();
        let operator = spawn_operator_with(operator_client.clone(), hostprocess_operator::Runtime::default());
        Fixture { sim, operator, operator_kubeconfig, operator_client }
    }

    /// Kills the operator and starts a new one, as a crash and a restarted pod would.
    pub fn restart_operator(&mut self) {
        self.restart_operator_with(|_| {});
    }

    /// Kills the operator and starts one with its settings changed by `tune` (its flags).
    pub fn restart_operator_with(&mut self, tune: impl FnOnce(&mut Config)) {
        self.operator.abort();
        let mut config = test_config();
        tune(&mut config);
        let (client, runtime) = (self.operator_client.clone(), hostprocess_operator::Runtime::default());
        self.operator = tokio::spawn(async move {
            hostprocess_operator::run(client, config, runtime, std::future::pending()).await;
        });
    }

    pub async fn wait_ready(&self, name: &str, what: &str) -> HostTask {
        until(what, Duration::from_secs(90), || async {
            let task = self.task(name).await;
            let current =
                task.status.as_ref().and_then(|s| s.observed_generation) == task.metadata.generation;
            (current && is(&task, "Ready", "True")).then_some(task)
        })
        .await
        .unwrap()
    }

    /// Reads the task every 100 ms until it is Ready, handing each read to `observe`; fails the
    /// test after `limit`.
    pub async fn watch_until_ready(
        &self,
        name: &str,
        limit: Duration,
        mut observe: impl FnMut(&HostTask),
    ) -> HostTask {
        let started = std::time::Instant::now();
        loop {
            let task = self.task(name).await;
            observe(&task);
            if is(&task, "Ready", "True") {
                return task;
            }
            assert!(started.elapsed() < limit, "the rollout did not complete: {:?}", task.status);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn tasks(&self) -> Api<HostTask> {
        Api::namespaced(self.sim.client.clone(), NS)
    }

    pub async fn apply(&self, name: &str, spec: Value) {
        self.apply_in(NS, name, spec).await;
    }

    /// Applies a HostTask and waits until its new generation is observed and Ready.
    pub async fn watch_until_ready_after_apply(&self, name: &str, spec: Value) -> HostTask {
        self.apply(name, spec).await;
        let generation = self.task(name).await.metadata.generation;
        until("the applied generation to be ready", Duration::from_secs(90), || async {
            let task = self.task(name).await;
            let observed = task.status.as_ref()?.observed_generation;
            (observed == generation && is(&task, "Ready", "True")).then_some(task)
        })
        .await
        .expect("ready")
    }

    /// Applies a HostTask in another namespace (see `namespace`).
    pub async fn apply_in(&self, namespace: &str, name: &str, spec: Value) {
        let task = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec});
        Api::<HostTask>::namespaced(self.sim.client.clone(), namespace)
            .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&task))
            .await
            .expect("task applies");
    }

    /// Another task namespace, with this Pod Security level enforced, enabled for everything.
    pub async fn namespace(&self, name: &str, enforce: &str) {
        hostprocess_sim::create_namespace(
            &self.sim.client,
            name,
            &[("pod-security.kubernetes.io/enforce", enforce)],
        )
        .await
        .unwrap();
        grant(&self.sim.client, name, everything_granted()).await;
    }

    pub async fn task(&self, name: &str) -> HostTask {
        self.tasks().get(name).await.unwrap()
    }

    /// The nodes the task's DaemonSet admits so far: labelled for the revision it runs.
    pub async fn admitted(&self, name: &str) -> BTreeSet<String> {
        let sets: Api<DaemonSet> = Api::namespaced(self.sim.client.clone(), NS);
        let Some(ds) = sets.get_opt(&format!("hostprocess-{name}")).await.unwrap() else {
            return BTreeSet::new();
        };
        let uid = self.task(name).await.metadata.uid.unwrap();
        admitted_nodes(&self.sim.client, &uid, &ds).await
    }
}

/// A HostTaskGrant that allows every capability.
pub fn everything_granted() -> Value {
    json!({"accounts": ["LocalService", "NetworkService", "System"], "reboot": "IfRequired",
        "maxConcurrent": "100%", "tolerations": [{"operator": "Exists"}]})
}

/// Enables `namespace` with a HostTaskGrant of this spec, as a cluster administrator does:
/// `deploy/enable-hostprocess-tasks.yaml` with the namespace's name in it (the grant, and the
/// RoleBinding that lets the operator create there).
pub async fn grant(client: &kube::Client, namespace: &str, spec: Value) {
    let template = std::fs::read_to_string(
        hostprocess_sim::operator::deploy_dir().join("enable-hostprocess-tasks.yaml"),
    )
    .unwrap();
    let enable = template.replace("hostprocess-tasks", namespace);
    let binding = |o: &kube::api::DynamicObject| o.types.as_ref().is_some_and(|t| t.kind == "RoleBinding");
    hostprocess_sim::operator::apply_manifests(client, &enable, "test", binding).await.unwrap();
    let grant = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTaskGrant",
        "metadata": {"name": namespace}, "spec": spec});
    Api::<hostprocess_crds::HostTaskGrant>::all(client.clone())
        .patch(namespace, &PatchParams::apply("test").force(), &Patch::Apply(&grant))
        .await
        .expect("the grant applies");
}

/// A client for `user` (a client certificate), bound to ClusterRole `role` in `namespace` as a
/// cluster administrator binds people: `admin`, `edit`, `view`.
pub async fn user_with_role(fx: &Fixture, namespace: &str, user: &str, role: &str) -> kube::Client {
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{user}-{role}"), "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(fx.sim.client.clone(), namespace)
        .create(&kube::api::PostParams::default(), &binding)
        .await
        .unwrap();
    let kubeconfig = fx.sim.cluster.certificate_kubeconfig(user, user, &[]).unwrap();
    hostprocess_sim::client_from_kubeconfig(&kubeconfig).await.unwrap()
}

/// The nodes that carry a task's admission label with the revision `ds` runs.
pub async fn admitted_nodes(client: &kube::Client, task_uid: &str, ds: &DaemonSet) -> BTreeSet<String> {
    use hostprocess_operator::labels;
    let key = hostprocess_operator::admission_label(task_uid);
    let template = ds.spec.as_ref().and_then(|s| s.template.metadata.as_ref());
    let revision = template.and_then(|m| m.labels.as_ref()).and_then(|l| l.get(labels::REVISION));
    let nodes =
        Api::<k8s_openapi::api::core::v1::Node>::all(client.clone()).list(&Default::default()).await.unwrap();
    nodes
        .items
        .into_iter()
        .filter(|n| n.metadata.labels.as_ref().and_then(|l| l.get(&key)) == revision)
        .filter_map(|n| n.metadata.name)
        .collect()
}

/// The operator with its own metrics (or lease), talking to the API server through `client`.
pub fn spawn_operator_with(
    client: kube::Client,
    runtime: hostprocess_operator::Runtime,
) -> tokio::task::JoinHandle<()> {
    spawn_operator_until(client, runtime, std::future::pending())
}

/// `spawn_operator_with`, stopping gracefully when `shutdown` completes.
pub fn spawn_operator_until(
    client: kube::Client,
    runtime: hostprocess_operator::Runtime,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let config = test_config();
    tokio::spawn(async move {
        hostprocess_operator::run(client, config, runtime, shutdown).await;
    })
}

/// The operator's settings in the tests: its defaults, the simulated executor image, and no
/// fleet-wide reboot budget beyond each task's own (10% of a test's two to four nodes would be
/// one node; the budget's own test sets it).
pub fn test_config() -> Config {
    Config {
        executor_image: "sim/node-executor:test".into(),
        executor_version: "0.1.0".into(),
        namespace: None,
        group_namespace: Config::DEFAULT_GROUP_NAMESPACE.into(),
        concurrency: Config::DEFAULT_CONCURRENCY,
        max_rebooting: hostprocess_crds::units::CountOrPercent::Percent(100),
        operator_namespace: hostprocess_sim::operator::NAMESPACE.into(),
    }
}

/// An operator that stops gracefully when told to.
pub struct Stoppable {
    pub metrics: std::sync::Arc<hostprocess_operator::Metrics>,
    stop: tokio::sync::oneshot::Sender<()>,
    operator: tokio::task::JoinHandle<()>,
}

impl Stoppable {
    /// Starts the operator, talking through `client`, and waits until its caches are ready.
    pub async fn start(client: kube::Client) -> Self {
        Self::start_with(client, hostprocess_operator::Runtime::default()).await
    }

    /// `start` with this runtime (a lease to hold, say).
    pub async fn start_with(client: kube::Client, runtime: hostprocess_operator::Runtime) -> Self {
        let (health, metrics) = (runtime.health.clone(), runtime.metrics.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let operator = spawn_operator_until(client, runtime, async {
            let _ = stopped.await;
        });
        until("the operator's caches", Duration::from_secs(60), || async { health.is_ready().then_some(()) })
            .await
            .unwrap();
        Stoppable { metrics, stop, operator }
    }

    /// Tells it to stop; fails unless it has returned `within`.
    pub async fn stop(self, within: Duration) {
        let _ = self.stop.send(());
        tokio::time::timeout(within, self.operator).await.expect("the operator returns").unwrap();
    }
}

pub fn record(sim: &Simulation, node: usize, task: &HostTask) -> Value {
    let status = task.status.as_ref().unwrap();
    let (uid, revision) = (task.metadata.uid.as_deref().unwrap(), status.revision.as_deref().unwrap());
    record_of(&sim.kubelets[node], uid, revision).expect("record")
}

/// The executor's record of one revision of a task on a node, if it wrote one.
pub fn record_of(kubelet: &hostprocess_sim::kubelet::Kubelet, uid: &str, revision: &str) -> Option<Value> {
    let path = kubelet.config.state_dir().join(format!("tasks/{uid}/{revision}.json"));
    let bytes = std::fs::read(&path).ok()?;
    Some(serde_json::from_slice(&bytes).unwrap())
}

/// How many HostTask reconciles an operator ran, by its metrics.
pub fn reconciles(metrics: &hostprocess_operator::Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(r#"hostprocess_reconciles_total{resource="hosttask"} "#))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// The most payloads of `task` that ran at once on the first `nodes` nodes, by the executors' own
/// records (start and end of each attempt); fails unless each node ran exactly once.
pub fn most_at_once(sim: &Simulation, task: &HostTask, nodes: usize) -> usize {
    use k8s_openapi::jiff::Timestamp;
    let runs: Vec<(Timestamp, Timestamp)> = (0..nodes)
        .map(|node| {
            let record = record(sim, node, task);
            let attempts = record["attempts"].as_array().unwrap();
            assert_eq!(attempts.len(), 1, "node {node} ran once");
            let time = |field: &str| attempts[0][field].as_str().unwrap().parse::<Timestamp>().unwrap();
            (time("startTime"), time("endTime"))
        })
        .collect();
    runs.iter()
        .map(|(start, _)| runs.iter().filter(|(s, e)| s <= start && start < e).count())
        .max()
        .unwrap_or(0)
}

pub fn condition(task: &HostTask, kind: &str) -> Option<(String, String)> {
    task.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

pub fn is(task: &HostTask, kind: &str, status: &str) -> bool {
    condition(task, kind).is_some_and(|(s, _)| s == status)
}

/// The operator made nothing that runs in `namespace`: no script ConfigMap, no pod.
pub async fn no_scripts_or_pods(client: &kube::Client, namespace: &str) {
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), namespace);
    let scripts: Vec<String> = maps
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .filter(|n| n.starts_with("hostprocess-"))
        .collect();
    assert!(scripts.is_empty(), "no script ConfigMap: {scripts:?}");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    assert!(pods.list(&Default::default()).await.unwrap().items.is_empty(), "no pod");
}
