//! A simulated kubelet for one Windows node. It runs the containers of the pods bound to its
//! node as local processes — the real node-executor (its Linux platform) when the program is
//! `node-executor.exe` — and reports what a kubelet reports: phase, container states, exit
//! codes, restart counts per `restartPolicy` with back-off, readiness from exec probes,
//! termination messages. It stops containers when their pod is deleted, and the node can be
//! rebooted or lost.
//!
//! The node's disk is a directory (`root`): `C:\X\Y` is `<root>/X/Y`. Containers get the
//! containerd 1.6 layout — volumes under `$CONTAINER_SANDBOX_MOUNT_POINT` — because a Linux
//! process cannot be given `C:\…` mount paths; the executor resolves both layouts the same way.
//! Fields the real API server would have defaulted (restartPolicy, probe periods, termination
//! message policy, grace period) are read with the same defaults here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, EnvVar, Node, Pod, PodCondition, PodStatus, Probe, Secret,
    Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::process::{ContainerProcess, kill_tree};

/// The file whose appearance under the node's test store asks the node to reboot (what the
/// node-executor's Linux platform writes where Windows would call InitiateSystemShutdownEx).
pub const REBOOT_REQUEST: &str = "reboot-requested";

/// How one simulated node behaves.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node: String,
    /// The node's disk.
    pub root: PathBuf,
    /// Programs of the simulated Windows host: the lower-case file name without `.exe` →
    /// the local executable that stands for it (`node-executor` → the Linux build).
    pub programs: BTreeMap<String, PathBuf>,
    /// What `KUBERNETES_SERVICE_HOST`/`_PORT` say inside containers.
    pub api_host: String,
    pub api_port: u16,
    pub node_ip: String,
    /// The first wait before restarting a crashed container (the real kubelet: 10s, doubled
    /// each time up to 5m).
    pub restart_backoff: Duration,
    pub restart_backoff_cap: Duration,
    /// How long a reboot keeps the node down.
    pub reboot_downtime: Duration,
}

impl KubeletConfig {
    pub fn new(node: &str, root: PathBuf) -> Self {
        KubeletConfig {
            node: node.to_string(),
            root,
            programs: BTreeMap::new(),
            api_host: "127.0.0.1".into(),
            api_port: 443,
            node_ip: "10.240.0.4".into(),
            restart_backoff: Duration::from_secs(10),
            restart_backoff_cap: Duration::from_secs(300),
            reboot_downtime: Duration::from_secs(2),
        }
    }

    /// The node's test store (accounts, ACLs, reboot requests) that the executor's Linux
    /// platform uses in place of Windows.
    pub fn test_store(&self) -> PathBuf {
        self.root.join("test-store")
    }

    /// Where the executor keeps its records on this node (`C:\ProgramData\hostprocess-operator`).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("ProgramData").join("hostprocess-operator")
    }

    /// `C:\X\Y` (or `/X/Y`) on this node's disk.
    pub fn host_path(&self, windows_path: &str) -> PathBuf {
        under(&self.root, windows_path)
    }
}

/// Whether the node is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    On,
    /// Rebooting: NotReady, every container killed; back on after the downtime.
    Rebooting,
    /// Unreachable: the node stops reporting (Ready=Unknown), its containers are gone.
    Lost,
}

/// One running simulated kubelet; dropping it stops the node and kills its containers.
#[derive(Debug)]
pub struct Kubelet {
    pub config: Arc<KubeletConfig>,
    power: Arc<watch::Sender<Power>>,
    task: JoinHandle<()>,
    boots: Arc<Mutex<u32>>,
}

impl Kubelet {
    /// Registers nothing: the Node object must exist. Reports it Ready and runs its pods.
    pub fn start(client: Client, config: KubeletConfig) -> Self {
        let config = Arc::new(config);
        let (power, receiver) = watch::channel(Power::On);
        let power = Arc::new(power);
        let boots = Arc::new(Mutex::new(0));
        let task = tokio::spawn(run_node(client, config.clone(), power.clone(), receiver, boots.clone()));
        Kubelet { config, power, task, boots }
    }

    /// Reboots the node: NotReady, containers killed, back Ready after the configured downtime
    /// with its pods' containers restarted.
    pub fn reboot(&self) {
        reboot(&self.power, self.config.reboot_downtime);
    }

    /// The node stops answering: Ready=Unknown, its containers are gone.
    pub fn lose(&self) {
        self.power.send_replace(Power::Lost);
    }

    /// A lost node comes back.
    pub fn recover(&self) {
        self.power.send_replace(Power::On);
    }

    /// How many times the node has booted (1 after start).
    pub fn boots(&self) -> u32 {
        *self.boots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reboot(power: &Arc<watch::Sender<Power>>, downtime: Duration) {
    if *power.borrow() != Power::On {
        return;
    }
    power.send_replace(Power::Rebooting);
    let power = power.clone();
    tokio::spawn(async move {
        tokio::time::sleep(downtime).await;
        if *power.borrow() == Power::Rebooting {
            power.send_replace(Power::On);
        }
    });
}

async fn run_node(
    client: Client,
    config: Arc<KubeletConfig>,
    sender: Arc<watch::Sender<Power>>,
    mut power: watch::Receiver<Power>,
    boots: Arc<Mutex<u32>>,
) {
    loop {
        while *power.borrow_and_update() != Power::On {
            if power.changed().await.is_err() {
                return;
            }
        }
        let boot = {
            let mut boots = boots.lock().unwrap_or_else(|e| e.into_inner());
            *boots += 1;
            *boots
        };
        report_node(&client, &config, Power::On, boot).await;
        let state = run_pods(&client, &config, &sender, &mut power).await;
        report_node(&client, &config, state, boot).await;
    }
}

/// Writes the node's Ready condition (the real node lifecycle controller marks a silent node
/// Unknown after 40s; the simulation does it at once).
async fn report_node(client: &Client, config: &KubeletConfig, power: Power, boot: u32) {
    let (status, reason, message) = match power {
        Power::On => ("True", "KubeletReady", "simulated kubelet is posting ready status"),
        Power::Rebooting => ("False", "KubeletNotReady", "the node is rebooting"),
        Power::Lost => ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
    };
    let now = Time(Timestamp::now());
    let patch = serde_json::json!({"status": {
        "conditions": [{"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": config.node_ip}, {"type": "Hostname", "address": config.node}],
        "nodeInfo": {"bootID": format!("{}-boot-{boot}", config.node)},
    }});
    let nodes: Api<Node> = Api::all(client.clone());
    for _ in 0..50 {
        if nodes.patch_status(&config.node, &PatchParams::default(), &Patch::Strategic(&patch)).await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A pod being run; dropping it kills its containers at once (power off).
struct PodWorker {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Drop for PodWorker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs the node's pods until the power changes; returns the new power state.
async fn run_pods(
    client: &Client,
    config: &Arc<KubeletConfig>,
    sender: &Arc<watch::Sender<Power>>,
    power: &mut watch::Receiver<Power>,
) -> Power {
    let api: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={}", config.node);
    let mut events = watcher(api, watcher::Config::default().fields(&selector)).default_backoff().boxed();
    let mut workers: HashMap<String, PodWorker> = HashMap::new();
    let mut stopping: Vec<JoinHandle<()>> = Vec::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let reboot_request = config.test_store().join(REBOOT_REQUEST);
    loop {
        tokio::select! {
            changed = power.changed() => {
                let now = if changed.is_err() { Power::Lost } else { *power.borrow_and_update() };
                if now != Power::On {
                    // Power off: containers die with the node, no goodbye.
                    drop(workers);
                    for task in stopping {
                        task.abort();
                    }
                    return now;
                }
            }
            _ = tick.tick() => {
                stopping.retain(|t| !t.is_finished());
                if std::fs::remove_file(&reboot_request).is_ok() {
                    reboot(sender, config.reboot_downtime);
                }
            }
            event = events.next() => match event {
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitApply(pod))) => {
                    listed.insert(pod.uid().unwrap_or_default());
                    sync_pod(client, config, &mut workers, &mut stopping, pod);
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    let gone: Vec<String> = workers.keys().filter(|uid| !listed.contains(*uid)).cloned().collect();
                    for uid in gone {
                        stop_gracefully(&mut workers, &mut stopping, &uid);
                    }
                }
                Some(Ok(watcher::Event::Apply(pod))) => sync_pod(client, config, &mut workers, &mut stopping, pod),
                Some(Ok(watcher::Event::Delete(pod))) => {
                    stop_gracefully(&mut workers, &mut stopping, &pod.uid().unwrap_or_default());
                }
                Some(Err(_)) => {}
                None => return Power::Lost,
            }
        }
    }
}

fn sync_pod(
    client: &Client,
    config: &Arc<KubeletConfig>,
    workers: &mut HashMap<String, PodWorker>,
    stopping: &mut Vec<JoinHandle<()>>,
    pod: Pod,
) {
    let uid = pod.uid().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        stop_gracefully(workers, stopping, &uid);
        return;
    }
    if workers.contains_key(&uid) {
        return;
    }
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run_pod(client.clone(), config.clone(), pod, stopped));
    workers.insert(uid, PodWorker { stop, task: Some(task) });
}

fn stop_gracefully(workers: &mut HashMap<String, PodWorker>, stopping: &mut Vec<JoinHandle<()>>, uid: &str) {
    if let Some(mut worker) = workers.remove(uid) {
        worker.stop.send_replace(true);
        if let Some(task) = worker.task.take() {
            stopping.push(task);
        }
    }
}

/// What the kubelet knows of one pod, turned into `PodStatus` on every change.
struct PodRuntime {
    restart_policy: String,
    node_ip: String,
    start_time: Time,
    init: Vec<ContainerStatus>,
    containers: Vec<ContainerStatus>,
    initialized: bool,
    /// Containers that will not run again (restart policy says no).
    finished: HashSet<String>,
    conditions: Vec<PodCondition>,
    message: Option<String>,
}

impl PodRuntime {
    fn phase(&self) -> &'static str {
        if !self.initialized {
            let failed =
                self.init.iter().any(|c| self.finished.contains(&c.name) && terminated_code(c) != Some(0));
            return if failed { "Failed" } else { "Pending" };
        }
        let all_finished = self.containers.iter().all(|c| self.finished.contains(&c.name));
        if !all_finished {
            let started = self
                .containers
                .iter()
                .any(|c| c.restart_count > 0 || state_is(c, "running") || state_is(c, "terminated"));
            return if started { "Running" } else { "Pending" };
        }
        if self.containers.iter().all(|c| terminated_code(c) == Some(0)) { "Succeeded" } else { "Failed" }
    }

    fn status(&mut self) -> PodStatus {
        let all_ready =
            self.initialized && !self.containers.is_empty() && self.containers.iter().all(|c| c.ready);
        let wanted = [
            ("PodScheduled", true),
            ("Initialized", self.initialized),
            ("ContainersReady", all_ready),
            ("Ready", all_ready),
        ];
        let now = Time(Timestamp::now());
        let mut conditions = Vec::new();
        for (kind, on) in wanted {
            let status = if on { "True" } else { "False" };
            let previous = self.conditions.iter().find(|c| c.type_ == kind && c.status == status);
            conditions.push(PodCondition {
                type_: kind.into(),
                status: status.into(),
                last_transition_time: Some(
                    previous.and_then(|c| c.last_transition_time.clone()).unwrap_or(now.clone()),
                ),
                ..PodCondition::default()
            });
        }
        self.conditions = conditions.clone();
        PodStatus {
            phase: Some(self.phase().into()),
            conditions: Some(conditions),
            host_ip: Some(self.node_ip.clone()),
            pod_ip: Some(self.node_ip.clone()),
            start_time: Some(self.start_time.clone()),
            init_container_statuses: (!self.init.is_empty()).then(|| self.init.clone()),
            container_statuses: Some(self.containers.clone()),
            message: self.message.clone(),
            qos_class: Some("BestEffort".into()),
            ..PodStatus::default()
        }
    }

    fn container(&mut self, init: bool, name: &str) -> Option<&mut ContainerStatus> {
        let list = if init { &mut self.init } else { &mut self.containers };
        list.iter_mut().find(|c| c.name == name)
    }
}

fn state_is(status: &ContainerStatus, which: &str) -> bool {
    status.state.as_ref().is_some_and(|s| match which {
        "running" => s.running.is_some(),
        "terminated" => s.terminated.is_some(),
        _ => s.waiting.is_some(),
    })
}

fn terminated_code(status: &ContainerStatus) -> Option<i32> {
    status.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code)
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }),
        ..ContainerState::default()
    }
}

fn initial_status(container: &Container, previous: Option<&ContainerStatus>) -> ContainerStatus {
    let mut status = ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: format!("sim://{}", container.image.clone().unwrap_or_default()),
        state: Some(waiting("ContainerCreating", None)),
        ..ContainerStatus::default()
    };
    if let Some(previous) = previous {
        status.restart_count = previous.restart_count;
        status.last_state = previous.last_state.clone();
        if let Some(state) = &previous.state {
            if let Some(running) = &state.running {
                // The node went down under it: the runtime cannot say how it ended.
                status.last_state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 255,
                        reason: Some("Unknown".into()),
                        started_at: running.started_at.clone(),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                });
                status.restart_count += 1;
            } else if state.terminated.is_some() {
                status.last_state = Some(state.clone());
                status.restart_count += 1;
            }
        }
    }
    status
}

/// Everything a pod's tasks share.
struct PodCtx {
    client: Client,
    config: Arc<KubeletConfig>,
    pod: Pod,
    runtime: Mutex<PodRuntime>,
    changed: Notify,
    sandbox: PathBuf,
    logs: PathBuf,
}

impl PodCtx {
    fn update(&self, change: impl FnOnce(&mut PodRuntime)) {
        change(&mut self.runtime.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_one();
    }

    async fn write_status(&self) {
        let status = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).status();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.pod.namespace().unwrap_or_default());
        let patch = serde_json::json!({"status": status});
        // A pod deleted meanwhile answers 404; the worker is being stopped then.
        let _ = pods.patch_status(&self.pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
    }
}

async fn run_pod(client: Client, config: Arc<KubeletConfig>, pod: Pod, stop: watch::Receiver<bool>) {
    let Some(spec) = pod.spec.clone() else { return };
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return;
    }
    let previous = |list: Option<&Vec<ContainerStatus>>, name: &str| {
        list.and_then(|l| l.iter().find(|c| c.name == name).cloned())
    };
    let old = pod.status.clone().unwrap_or_default();
    let init_containers = spec.init_containers.clone().unwrap_or_default();
    let runtime = PodRuntime {
        restart_policy: spec.restart_policy.clone().unwrap_or_else(|| "Always".into()),
        node_ip: config.node_ip.clone(),
        start_time: old.start_time.clone().unwrap_or(Time(Timestamp::now())),
        // Init containers run again after a reboot, as on a real node.
        init: init_containers.iter().map(|c| initial_status(c, None)).collect(),
        containers: spec
            .containers
            .iter()
            .map(|c| initial_status(c, previous(old.container_statuses.as_ref(), &c.name).as_ref()))
            .collect(),
        initialized: init_containers.is_empty(),
        finished: HashSet::new(),
        conditions: old.conditions.clone().unwrap_or_default(),
        message: None,
    };
    let uid = pod.uid().unwrap_or_default();
    let pod_dir = config.root.join("pods").join(&uid);
    let ctx = Arc::new(PodCtx {
        client,
        sandbox: pod_dir.join("sandbox"),
        logs: pod_dir.join("logs"),
        config,
        pod,
        runtime: Mutex::new(runtime),
        changed: Notify::new(),
    });
    let writer = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                ctx.changed.notified().await;
                ctx.write_status().await;
            }
        })
    };
    ctx.changed.notify_one();
    run_containers(&ctx, &init_containers, &spec.containers, stop).await;
    writer.abort();
    ctx.write_status().await;
}

async fn run_containers(
    ctx: &Arc<PodCtx>,
    init: &[Container],
    containers: &[Container],
    stop: watch::Receiver<bool>,
) {
    // Volumes, retried like a kubelet retries a mount that is not possible yet.
    loop {
        match prepare_sandbox(ctx).await {
            Ok(()) => break,
            Err(message) => {
                ctx.update(|rt| {
                    rt.message = Some(message.clone());
                    for c in rt.init.iter_mut().chain(rt.containers.iter_mut()) {
                        c.state = Some(waiting("ContainerCreating", Some(message.clone())));
                    }
                });
                if wait_or_stop(&stop, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    }
    ctx.update(|rt| rt.message = None);
    for container in init {
        if !supervise(ctx, container, true, stop.clone()).await {
            return;
        }
    }
    ctx.update(|rt| rt.initialized = true);
    let tasks: Vec<_> = containers
        .iter()
        .map(|c| {
            let (ctx, c, stop) = (ctx.clone(), c.clone(), stop.clone());
            tokio::spawn(async move { supervise(&ctx, &c, false, stop).await })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// Sleeps, or returns true early when the pod is being stopped.
async fn wait_or_stop(stop: &watch::Receiver<bool>, duration: Duration) -> bool {
    let mut stop = stop.clone();
    if *stop.borrow_and_update() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Runs one container, restarting it as the pod's restart policy says. For an init container,
/// returns whether it succeeded (so the next one may start).
async fn supervise(
    ctx: &Arc<PodCtx>,
    container: &Container,
    init: bool,
    stop: watch::Receiver<bool>,
) -> bool {
    let name = container.name.clone();
    let policy = ctx.runtime.lock().unwrap_or_else(|e| e.into_inner()).restart_policy.clone();
    let mut backoff = ctx.config.restart_backoff;
    loop {
        if *stop.borrow() {
            return false;
        }
        let ran = Instant::now();
        let code = match run_once(ctx, container, init, &stop).await {
            Attempt::Stopped => return false,
            Attempt::Exited(code) => code,
        };
        let restart = match policy.as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            // An init container that succeeded is done, whatever the policy.
            _ => !init || code != 0,
        };
        if !restart {
            ctx.update(|rt| {
                rt.finished.insert(name.clone());
            });
            return code == 0;
        }
        // The real kubelet forgets the back-off once a container ran long enough, and restarts
        // a container the first time without waiting.
        if ran.elapsed() > ctx.config.restart_backoff_cap * 2 {
            backoff = ctx.config.restart_backoff;
        }
        let restarts = ctx
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .container(init, &name)
            .map_or(0, |c| c.restart_count);
        let delay = if restarts == 0 {
            Duration::ZERO
        } else {
            let delay = backoff;
            backoff = (backoff * 2).min(ctx.config.restart_backoff_cap);
            delay
        };
        let pod_name = ctx.pod.name_any();
        ctx.update(|rt| {
            if let Some(c) = rt.container(init, &name) {
                c.last_state = c.state.take();
                c.state = Some(if delay.is_zero() {
                    waiting("ContainerCreating", None)
                } else {
                    waiting(
                        "CrashLoopBackOff",
                        Some(format!(
                            "back-off {}s restarting failed container={name} pod={pod_name}",
                            delay.as_secs()
                        )),
                    )
                });
            }
        });
        if wait_or_stop(&stop, delay).await {
            return false;
        }
        ctx.update(|rt| {
            if let Some(c) = rt.container(init, &name) {
                c.restart_count += 1;
            }
        });
    }
}

enum Attempt {
    Exited(i32),
    Stopped,
}

async fn run_once(
    ctx: &Arc<PodCtx>,
    container: &Container,
    init: bool,
    stop: &watch::Receiver<bool>,
) -> Attempt {
    let name = container.name.clone();
    let env = loop {
        match container_env(ctx, container).await {
            Ok(env) => break env,
            Err(message) => {
                ctx.update(|rt| {
                    if let Some(c) = rt.container(init, &name) {
                        c.state = Some(waiting("CreateContainerConfigError", Some(message.clone())));
                    }
                });
                if wait_or_stop(stop, Duration::from_secs(1)).await {
                    return Attempt::Stopped;
                }
            }
        }
    };
    let restart_count = ctx
        .runtime
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .container(init, &name)
        .map(|c| c.restart_count)
        .unwrap_or(0);
    let log = ctx.logs.join(format!("{name}-{restart_count}.log"));
    let started_at = Time(Timestamp::now());
    let mut process = match start(ctx, container, &env, &log) {
        Ok(process) => process,
        Err(message) => {
            // What containerd reports when the entrypoint cannot be started.
            ctx.update(|rt| {
                if let Some(c) = rt.container(init, &name) {
                    c.state = Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 128,
                            reason: Some("StartError".into()),
                            message: Some(message.clone()),
                            started_at: Some(started_at.clone()),
                            finished_at: Some(Time(Timestamp::now())),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    });
                }
            });
            return Attempt::Exited(128);
        }
    };
    let probe = container.readiness_probe.clone().filter(|p| p.exec.is_some() && !init);
    ctx.update(|rt| {
        if let Some(c) = rt.container(init, &name) {
            c.state = Some(ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(started_at.clone()) }),
                ..ContainerState::default()
            });
            c.started = Some(true);
            c.container_id = Some(format!("sim://{}", process.pid()));
            // Without a readiness probe a running container is ready.
            c.ready = !init && container.readiness_probe.is_none();
        }
    });
    let prober = probe.map(|probe| {
        let (ctx, env, name) = (ctx.clone(), env.clone(), name.clone());
        tokio::spawn(async move { probe_loop(&ctx, &env, &probe, &name).await })
    });
    let mut stop_signal = stop.clone();
    let code = tokio::select! {
        code = process.wait() => Some(code),
        _ = stop_signal.wait_for(|s| *s) => None,
    };
    if let Some(prober) = prober {
        prober.abort();
    }
    let Some(code) = code else {
        let grace = ctx.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        process.stop(Duration::from_secs(u64::try_from(grace).unwrap_or(30))).await;
        return Attempt::Stopped;
    };
    drop(process);
    let message = termination_message(ctx, container, code, &log);
    ctx.update(|rt| {
        if let Some(c) = rt.container(init, &name) {
            c.ready = false;
            c.started = Some(false);
            c.state = Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                    message,
                    started_at: Some(started_at.clone()),
                    finished_at: Some(Time(Timestamp::now())),
                    container_id: c.container_id.clone(),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            });
        }
    });
    Attempt::Exited(code)
}

/// `terminationMessagePolicy`: the file at `terminationMessagePath` (under the sandbox), or with
/// `FallbackToLogsOnError` the tail of the log when the file is empty and the container failed.
fn termination_message(ctx: &PodCtx, container: &Container, code: i32, log: &Path) -> Option<String> {
    let path = container.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
    let from_file = std::fs::read(under(&ctx.sandbox, &path)).ok().filter(|b| !b.is_empty());
    if let Some(bytes) = from_file {
        return Some(String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned());
    }
    if container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") && code != 0 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(80).collect();
        let tail = lines.into_iter().rev().collect::<Vec<_>>().join("\n");
        let start = tail.len().saturating_sub(2048);
        let start = (start..tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(tail.len());
        return Some(tail[start..].to_string()).filter(|s| !s.is_empty());
    }
    None
}

async fn probe_loop(ctx: &PodCtx, env: &[(String, String)], probe: &Probe, name: &str) {
    let period = Duration::from_secs(u64::try_from(probe.period_seconds.unwrap_or(10)).unwrap_or(10).max(1));
    let timeout = Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1)).unwrap_or(1).max(1));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let command = probe.exec.as_ref().and_then(|e| e.command.clone()).unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(
        u64::try_from(probe.initial_delay_seconds.unwrap_or(0)).unwrap_or(0),
    ))
    .await;
    let (mut successes, mut failures) = (0, 0);
    loop {
        let ok = exec_probe(ctx, env, &command, timeout).await;
        if ok {
            successes += 1;
            failures = 0;
        } else {
            failures += 1;
            successes = 0;
        }
        let verdict = if successes >= success_threshold {
            Some(true)
        } else if failures >= failure_threshold {
            Some(false)
        } else {
            None
        };
        if let Some(ready) = verdict
            && is_ready(ctx, name) != ready
        {
            ctx.update(|rt| {
                if let Some(c) = rt.container(false, name) {
                    c.ready = ready;
                }
            });
        }
        tokio::time::sleep(period).await;
    }
}

fn is_ready(ctx: &PodCtx, name: &str) -> bool {
    ctx.runtime.lock().unwrap_or_else(|e| e.into_inner()).containers.iter().any(|c| c.name == name && c.ready)
}

async fn exec_probe(ctx: &PodCtx, env: &[(String, String)], command: &[String], timeout: Duration) -> bool {
    let Some((program, args)) = command.split_first() else { return false };
    let Some(program) = resolve_program(ctx, program) else { return false };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args.iter().map(|a| expand(a, env)))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&ctx.sandbox)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let Ok(mut child) = cmd.spawn() else { return false };
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            kill_tree(pid);
            false
        }
    }
}

/// `C:\X\Y` or `/X/Y` under `base` (drive and `..` dropped: nothing escapes the base).
fn under(base: &Path, windows_path: &str) -> PathBuf {
    let unified = windows_path.replace('\\', "/");
    let without_drive = match unified.as_bytes() {
        [d, b':', ..] if d.is_ascii_alphabetic() => &unified[2..],
        _ => unified.as_str(),
    };
    let inside: PathBuf =
        Path::new(without_drive).components().filter(|c| matches!(c, Component::Normal(_))).collect();
    base.join(inside)
}

/// The local executable for a container's program: a registered program by name, else a file
/// of the sandbox (the image) or of the node's disk.
fn resolve_program(ctx: &PodCtx, program: &str) -> Option<PathBuf> {
    let unified = program.replace('\\', "/");
    let file = unified.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    let stem = file.strip_suffix(".exe").unwrap_or(&file);
    if let Some(local) = ctx.config.programs.get(stem) {
        return Some(local.clone());
    }
    [under(&ctx.sandbox, program), ctx.config.host_path(program)].into_iter().find(|p| p.is_file())
}

/// Kubernetes' `$(VAR)` expansion in commands, args and env values (`$$` escapes).
fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(').and_then(|s| s.split_once(')')) {
            let (name, tail) = inner;
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The pod's `runAsUserName`: a built-in account always logs on; any other name is a local
/// group (containerd 1.7+ creates an ephemeral user in it), which must exist on the node — the
/// executor's Linux platform keeps groups in the node's test store. Without it containerd treats
/// the name as a user, and the logon fails as on Windows.
fn logon(ctx: &PodCtx) -> Result<(), String> {
    let user = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.windows_options.as_ref())
        .and_then(|w| w.run_as_user_name.clone());
    let Some(user) = user.filter(|u| !u.to_ascii_uppercase().starts_with(r"NT AUTHORITY\")) else {
        return Ok(());
    };
    let accounts: serde_json::Value = std::fs::read(ctx.config.test_store().join("accounts.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    if accounts["groups"].get(user.to_lowercase()).is_some() {
        return Ok(());
    }
    Err(format!(
        "failed to create user process token: failed to logon user: {user}: The user name or password is incorrect."
    ))
}

fn start(
    ctx: &PodCtx,
    container: &Container,
    env: &[(String, String)],
    log: &Path,
) -> Result<ContainerProcess, String> {
    let mut words: Vec<String> = container.command.clone().unwrap_or_default();
    words.extend(container.args.clone().unwrap_or_default());
    let words: Vec<String> = words.iter().map(|w| expand(w, env)).collect();
    let Some((program, args)) = words.split_first() else {
        return Err("no command specified: the simulated node has no image entrypoints".into());
    };
    let Some(local) = resolve_program(ctx, program) else {
        return Err(format!(
            "failed to create containerd task: failed to start: exec: \"{program}\": executable file not found"
        ));
    };
    logon(ctx)?;
    std::fs::create_dir_all(&ctx.logs).map_err(|e| e.to_string())?;
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(&local);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&ctx.sandbox)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    cmd.spawn().map(ContainerProcess::new).map_err(|e| format!("failed to start {}: {e}", local.display()))
}

/// The environment of a container: what the simulated Windows host provides, then the pod's.
async fn container_env(ctx: &PodCtx, container: &Container) -> Result<Vec<(String, String)>, String> {
    let config = &ctx.config;
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())),
        ("COMPUTERNAME".into(), config.node.to_ascii_uppercase()),
        ("SystemRoot".into(), config.host_path("Windows").display().to_string()),
        ("ProgramData".into(), config.host_path("ProgramData").display().to_string()),
        ("HOSTPROCESS_STATE_DIR".into(), config.state_dir().display().to_string()),
        ("HOSTPROCESS_TEST_STORE".into(), config.test_store().display().to_string()),
        ("CONTAINER_SANDBOX_MOUNT_POINT".into(), ctx.sandbox.display().to_string()),
        ("KUBERNETES_SERVICE_HOST".into(), config.api_host.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), config.api_port.to_string()),
    ];
    let namespace = ctx.pod.namespace().unwrap_or_default();
    for source in container.env_from.clone().unwrap_or_default() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &source.config_map_ref {
            config_map_data(ctx, &namespace, &r.name, r.optional.unwrap_or(false)).await?
        } else if let Some(r) = &source.secret_ref {
            secret_data(ctx, &namespace, &r.name, r.optional.unwrap_or(false)).await?
        } else {
            BTreeMap::new()
        };
        env.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
    }
    for var in container.env.clone().unwrap_or_default() {
        let value = env_value(ctx, &namespace, &var, &env).await?;
        if let Some(value) = value {
            env.push((var.name.clone(), value));
        }
    }
    Ok(env)
}

async fn env_value(
    ctx: &PodCtx,
    namespace: &str,
    var: &EnvVar,
    env: &[(String, String)],
) -> Result<Option<String>, String> {
    if let Some(value) = &var.value {
        return Ok(Some(expand(value, env)));
    }
    let Some(from) = &var.value_from else { return Ok(Some(String::new())) };
    if let Some(field) = &from.field_ref {
        let meta = &ctx.pod.metadata;
        let path = field.field_path.as_str();
        let value = match path {
            "metadata.name" => meta.name.clone(),
            "metadata.namespace" => meta.namespace.clone(),
            "metadata.uid" => meta.uid.clone(),
            "spec.nodeName" => Some(ctx.config.node.clone()),
            "spec.serviceAccountName" => ctx.pod.spec.as_ref().and_then(|s| s.service_account_name.clone()),
            "status.hostIP" | "status.podIP" => Some(ctx.config.node_ip.clone()),
            _ => {
                let key = |prefix: &str| {
                    path.strip_prefix(prefix).and_then(|s| s.strip_suffix("']")).map(str::to_string)
                };
                if let Some(k) = key("metadata.labels['") {
                    meta.labels.as_ref().and_then(|l| l.get(&k).cloned())
                } else if let Some(k) = key("metadata.annotations['") {
                    meta.annotations.as_ref().and_then(|a| a.get(&k).cloned())
                } else {
                    return Err(format!("unsupported fieldRef {path} in env {}", var.name));
                }
            }
        };
        return Ok(Some(value.unwrap_or_default()));
    }
    let (kind, data, name, key, optional) = if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional.unwrap_or(false);
        ("ConfigMap", config_map_data(ctx, namespace, &r.name, optional).await?, &r.name, &r.key, optional)
    } else if let Some(r) = &from.secret_key_ref {
        let optional = r.optional.unwrap_or(false);
        ("Secret", secret_data(ctx, namespace, &r.name, optional).await?, &r.name, &r.key, optional)
    } else {
        return Err(format!("unsupported valueFrom in env {}", var.name));
    };
    match data.get(key) {
        Some(v) => Ok(Some(v.clone())),
        None if optional => Ok(None),
        None => Err(format!("couldn't find key {key} in {kind} {namespace}/{name}")),
    }
}

async fn config_map_data(
    ctx: &PodCtx,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, String>, String> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(cm)) => Ok(cm.data.unwrap_or_default()),
        Ok(None) if optional => Ok(BTreeMap::new()),
        Ok(None) => Err(format!("configmap \"{name}\" not found")),
        Err(e) => Err(format!("cannot read configmap \"{name}\": {e}")),
    }
}

async fn secret_data(
    ctx: &PodCtx,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, String>, String> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(secret)) => {
            let mut data: BTreeMap<String, String> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            data.extend(secret.string_data.unwrap_or_default());
            Ok(data)
        }
        Ok(None) if optional => Ok(BTreeMap::new()),
        Ok(None) => Err(format!("secret \"{name}\" not found")),
        Err(e) => Err(format!("cannot read secret \"{name}\": {e}")),
    }
}

/// Materialises the pod's volumes under the sandbox at each container's mount paths.
async fn prepare_sandbox(ctx: &PodCtx) -> Result<(), String> {
    let spec = ctx.pod.spec.clone().unwrap_or_default();
    let namespace = ctx.pod.namespace().unwrap_or_default();
    let pod_dir = ctx.sandbox.parent().unwrap_or(&ctx.sandbox).to_path_buf();
    let volumes_dir = pod_dir.join("volumes");
    let io = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(ctx.sandbox.join("dev")).map_err(io)?;
    let termination_log = ctx.sandbox.join("dev").join("termination-log");
    if !termination_log.exists() {
        std::fs::write(&termination_log, b"").map_err(io)?;
    }
    let mut sources: HashMap<String, PathBuf> = HashMap::new();
    for volume in spec.volumes.clone().unwrap_or_default() {
        let dir = volume_source(ctx, &namespace, &volume, &volumes_dir).await?;
        sources.insert(volume.name.clone(), dir);
    }
    let all = spec.init_containers.iter().flatten().chain(spec.containers.iter());
    for container in all {
        for mount in container.volume_mounts.clone().unwrap_or_default() {
            let Some(source) = sources.get(&mount.name) else {
                return Err(format!("volume mount {} names no volume of the pod", mount.name));
            };
            let source = match &mount.sub_path {
                Some(sub) if !sub.is_empty() => under(source, sub),
                _ => source.clone(),
            };
            let target = under(&ctx.sandbox, &mount.mount_path);
            if target.symlink_metadata().is_ok() {
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::os::unix::fs::symlink(&source, &target).map_err(io)?;
        }
    }
    Ok(())
}

async fn volume_source(
    ctx: &PodCtx,
    namespace: &str,
    volume: &Volume,
    volumes_dir: &Path,
) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| e.to_string();
    let dir = volumes_dir.join(&volume.name);
    let write_files =
        |data: &BTreeMap<String, String>, items: Option<Vec<(String, String)>>| -> Result<(), String> {
            std::fs::create_dir_all(&dir).map_err(io)?;
            let pairs: Vec<(String, String)> = match items {
                Some(items) => items,
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in pairs {
                let Some(value) = data.get(&key) else {
                    return Err(format!("key {key} not found in volume {}", volume.name));
                };
                let file = under(&dir, &path);
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::write(file, value).map_err(io)?;
            }
            Ok(())
        };
    if let Some(cm) = &volume.config_map {
        let data = config_map_data(ctx, namespace, &cm.name, cm.optional.unwrap_or(false)).await?;
        let items = cm.items.as_ref().map(|i| i.iter().map(|k| (k.key.clone(), k.path.clone())).collect());
        write_files(&data, items)?;
        return Ok(dir);
    }
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let data = secret_data(ctx, namespace, &name, secret.optional.unwrap_or(false)).await?;
        let items =
            secret.items.as_ref().map(|i| i.iter().map(|k| (k.key.clone(), k.path.clone())).collect());
        write_files(&data, items)?;
        return Ok(dir);
    }
    if volume.empty_dir.is_some() {
        std::fs::create_dir_all(&dir).map_err(io)?;
        return Ok(dir);
    }
    if let Some(host) = &volume.host_path {
        let path = ctx.config.host_path(&host.path);
        match host.type_.as_deref() {
            Some("Directory") if !path.is_dir() => {
                return Err(format!("hostPath type check failed: {} is not a directory", host.path));
            }
            Some("File") if !path.is_file() => {
                return Err(format!("hostPath type check failed: {} is not a file", host.path));
            }
            Some("DirectoryOrCreate") | None | Some("") => std::fs::create_dir_all(&path).map_err(io)?,
            _ => {}
        }
        return Ok(path);
    }
    Err(format!(
        "volume {}: the simulated kubelet supports configMap, secret, emptyDir and hostPath volumes",
        volume.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_land_under_the_node_disk_and_cannot_escape_it() {
        let root = Path::new("/sim/win-000");
        assert_eq!(
            under(root, r"C:\ProgramData\hostprocess"),
            Path::new("/sim/win-000/ProgramData/hostprocess")
        );
        assert_eq!(under(root, "/etc/script/run.ps1"), Path::new("/sim/win-000/etc/script/run.ps1"));
        assert_eq!(under(root, r"C:\..\..\etc\passwd"), Path::new("/sim/win-000/etc/passwd"));
    }

    #[test]
    fn dollar_references_expand_like_kubernetes() {
        let env = vec![("NODE".to_string(), "win-001".to_string()), ("X".to_string(), "1".to_string())];
        assert_eq!(expand("--node=$(NODE)", &env), "--node=win-001");
        assert_eq!(expand("$(MISSING) stays", &env), "$(MISSING) stays");
        assert_eq!(expand("$$(NODE) is escaped", &env), "$(NODE) is escaped");
        assert_eq!(expand("cost $5", &env), "cost $5");
    }
}
