//! The operator binary against the simulated cluster at fleet scale (default 1,000 Windows nodes
//! × 50 HostTasks, each task targeting every node): how long reconciles take (p50/p99 from the
//! operator's own histogram), how many API writes it makes while nothing changes (counted by the
//! fault proxy every operator request goes through), its peak RSS (VmHWM of its process), and
//! the overhead of a 10-wave rollout beyond the payload's own run time (10 simulated nodes with
//! kubelets running the real executor, maxConcurrent 1, a 1 s payload).
//!
//! The 1,000 fleet nodes have no kubelet process each: stand-ins keep them Ready to the real
//! node-lifecycle controller (status and a Lease renewed every 10 s, as a kubelet does) and set
//! each of their task pods to what a kubelet reports once the executor finished the payload
//! (the container exited 0 and restarted, ready). Everything else is real: the operator binary
//! running as its `deploy/` ServiceAccount, and the upstream control plane, whose DaemonSet
//! controller creates the pods and whose scheduler binds them (both allowed 500 requests/s, as
//! a large cluster would tune them; upstream's 20/s and 50/s would make them the bottleneck).
//!
//! Run: `cargo bench -p hostprocess-operator --bench fleet` (with `HOSTPROCESS_NODE_EXECUTOR`
//! set as tests/run-all.sh sets it). Sizes: `FLEET_NODES`, `FLEET_TASKS`, `FLEET_QUIET_SECONDS`;
//! `FLEET_OPERATOR_WRAPPER` runs the operator under a profiler.
//!
//! `FLEET_MODE=floor` measures the least the API server must do for the same fleet rollout, with
//! no operator: each task's DaemonSet (as the operator builds it, every fleet node at once) is
//! created directly, the DaemonSet controller creates the pods, the scheduler binds them and the
//! stand-in kubelets report them finished. Both modes print the API server's own request counts
//! (every client, from its metrics), the growth of etcd's database and each control-plane
//! component's CPU time.
//!
//! `FLEET_MODE=compare` runs both, each on a fresh cluster, `FLEET_RUNS` times (3 unless set),
//! alternated (floor, operator, operator, floor, …) so that drift on the machine falls on both,
//! and prints one Markdown table: each figure's median with the lowest and highest, and the
//! operator's median over the floor's. `FLEET_RUNS` with one mode prints that mode's table.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failed step should stop it

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hostprocess_crds::HostTask;
use hostprocess_sim::faults::FaultProxy;
use hostprocess_sim::nodes::StandIns;
use hostprocess_sim::wait::until;
use hostprocess_sim::{ClusterOptions, SimOptions, Simulation};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

const NS: &str = "hostprocess-tasks";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What a kubelet reports for a task pod whose executor finished the payload.
fn finished_status() -> serde_json::Value {
    json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
        "containerStatuses": [{"name": "task", "image": "node-executor", "imageID": "", "ready": true,
            "started": true, "restartCount": 1, "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}})
}

/// Stands in for the kubelets of the fleet nodes; `finished` counts the pods reported finished.
fn spawn_fleet_kubelet(
    client: kube::Client,
    fleet: Arc<HashSet<String>>,
    finished: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, NS);
        let done = Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
        watcher(pods.clone(), watcher::Config::default().labels("hostprocess.dev/task"))
            .applied_objects()
            .for_each_concurrent(16, |pod| {
                let (pods, fleet, done, finished) =
                    (pods.clone(), fleet.clone(), done.clone(), finished.clone());
                async move {
                    let Ok(pod) = pod else { return };
                    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { return };
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    if !fleet.contains(&node) || !done.lock().unwrap().insert(name.clone()) {
                        return;
                    }
                    let patched = pods
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&finished_status()))
                        .await;
                    if patched.is_ok() {
                        finished.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .await;
    })
}

/// A quantile from a Prometheus histogram's cumulative buckets (linear within a bucket).
fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let rank = q * total;
    let mut previous = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return previous.0;
            }
            let inside = (rank - previous.1) / (count - previous.1).max(1.0);
            return previous.0 + (bound - previous.0) * inside;
        }
        previous = (bound, count);
    }
    previous.0
}

/// The HostTask reconcile histogram from the operator's /metrics.
async fn reconcile_histogram(admin: u16) -> Vec<(f64, f64)> {
    histogram_buckets(admin, "hostprocess_reconcile_duration_seconds_bucket", "hosttask").await
}

/// The buckets of histogram `name` (on lines that contain `labelled`) from the operator's /metrics.
async fn histogram_buckets(admin: u16, name: &str, labelled: &str) -> Vec<(f64, f64)> {
    let text = http_get(admin, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labelled))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((bound, count))
        })
        .collect()
}

/// A plain HTTP/1.0 GET (the admin server is tiny; no client library needed).
async fn http_get(port: u16, path: &str) -> String {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).unwrap();
        body
    })
    .await
    .unwrap()
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The CPU time the process used so far (user + system), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start at the state, field 3.
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or_default().split_whitespace().collect();
    let ticks = |field: usize| fields.get(field - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime, in clock ticks of 1/100 s (USER_HZ on Linux).
    (ticks(14) + ticks(15)) / 100.0
}

fn writes(log: &[(hyper::Method, String)]) -> Vec<String> {
    log.iter().filter(|(m, _)| m != hyper::Method::GET).map(|(m, p)| format!("{m} {p}")).collect()
}

/// The operator's writes counted by what they wrote ("nodes", "hosttasks/status", …).
fn writes_by_resource(log: &[(hyper::Method, String)]) -> String {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (_, path) in log.iter().filter(|(m, _)| m != hyper::Method::GET) {
        let path = path.split('?').next().unwrap_or_default();
        let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        // /api/v1/… or /apis/group/version/…, then namespaces/ns/ when namespaced.
        parts.drain(..if parts.first() == Some(&"api") { 2 } else { 3 }.min(parts.len()));
        if parts.first() == Some(&"namespaces") && parts.len() > 2 {
            parts.drain(..2);
        }
        let resource = match parts.as_slice() {
            [resource, _, sub, ..] => format!("{resource}/{sub}"),
            [resource, ..] => resource.to_string(),
            [] => "?".into(),
        };
        *counts.entry(resource).or_default() += 1;
    }
    counts.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ")
}

/// How long the API server took to answer the operator's writes: "n writes: p50 …, p99 …".
fn write_times(answered: &[(hyper::Method, Duration)]) -> String {
    let mut ms: Vec<f64> = answered
        .iter()
        .filter(|(m, _)| m != hyper::Method::GET)
        .map(|(_, took)| took.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms.get(((ms.len() as f64 * q) as usize).min(ms.len().saturating_sub(1))).copied();
    match (at(0.5), at(0.99)) {
        (Some(p50), Some(p99)) => format!("{} writes: p50 {p50:.1} ms, p99 {p99:.1} ms", ms.len()),
        _ => "no writes".into(),
    }
}

/// The API server's requests so far, by verb and resource, from its own metrics (every client).
async fn apiserver_requests(client: &kube::Client) -> BTreeMap<(String, String), f64> {
    let request = hyper::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.unwrap();
    let label = |line: &str, name: &str| -> String {
        line.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or_default()
            .to_string()
    };
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()) else { continue };
        let (resource, sub) = (label(line, "resource"), label(line, "subresource"));
        let resource = if sub.is_empty() { resource } else { format!("{resource}/{sub}") };
        *counts.entry((label(line, "verb"), resource)).or_default() += count;
    }
    counts
}

/// What the API server served between two readings of `apiserver_requests`: the writes in all,
/// and a line with the writes by verb and resource (largest first) and the reads in all.
fn request_delta(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
) -> (f64, String) {
    let mut writes: Vec<(f64, String)> = Vec::new();
    let mut reads = 0.0;
    for ((verb, resource), count) in after {
        let n = count - before.get(&(verb.clone(), resource.clone())).copied().unwrap_or(0.0);
        if n <= 0.0 {
            continue;
        }
        match verb.as_str() {
            "GET" | "LIST" | "WATCH" | "WATCHLIST" | "CONNECT" => reads += n,
            _ => writes.push((n, format!("{verb} {resource}"))),
        }
    }
    writes.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = writes.iter().map(|w| w.0).sum();
    let each: Vec<String> = writes.iter().map(|(n, what)| format!("{what} {n}")).collect();
    (total, format!("{total} writes ({}); {reads} reads", each.join(", ")))
}

/// The size of etcd's database file, in MiB.
fn etcd_db_mib(sim: &Simulation) -> f64 {
    let db = sim.cluster.dir().join("etcd/member/snap/db");
    std::fs::metadata(db).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

/// The floor: the fleet tasks' DaemonSets created directly (as the operator builds them, every
/// fleet node at once, no owner), until every pod was reported finished.
async fn floor(client: &kube::Client, fleet_tasks: usize, pods: usize, finished: &AtomicUsize) -> Duration {
    let daemon_sets: Api<DaemonSet> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    for i in 0..fleet_tasks {
        let name = format!("fleet-{i:02}");
        let mut task = HostTask::new(&name, serde_json::from_value(fleet_task_spec(i)).unwrap());
        task.metadata.namespace = Some(NS.into());
        let inputs = hostprocess_operator::bench::BuildInputs {
            executor_image: "registry.example/node-executor:bench",
            executor_version: "bench",
            revision: "floor",
            run_as_user: "NT AUTHORITY\\SYSTEM",
            admission_label: None,
            transitional: &[],
            max_unavailable: u32::MAX,
        };
        let mut ds = hostprocess_operator::bench::daemon_set(&task, &inputs);
        ds.metadata.owner_references = None;
        daemon_sets.create(&PostParams::default(), &ds).await.unwrap();
    }
    until("every floor pod is reported finished", Duration::from_secs(3600), || async {
        (finished.load(Ordering::Relaxed) >= pods).then_some(())
    })
    .await
    .unwrap();
    started.elapsed()
}

/// The spec of fleet task `i`: a quick script on every fleet node, all at once.
fn fleet_task_spec(i: usize) -> serde_json::Value {
    json!({"script": format!("echo task {i}\n"), "runAs": {"account": "System"},
        "nodeSelector": {"matchLabels": {"bench": "fleet"}},
        "rollout": {"maxConcurrent": "100%"}})
}

/// How many tasks named `prefix…` are Ready (none while the API server cannot list them yet).
async fn ready_count(tasks: &Api<HostTask>, prefix: &str) -> usize {
    let Ok(listed) = tasks.list(&ListParams::default()).await else { return 0 };
    listed
        .items
        .iter()
        .filter(|t| t.metadata.name.as_deref().unwrap_or_default().starts_with(prefix))
        .filter(|t| {
            t.status.as_ref().is_some_and(|s| {
                s.observed_generation == t.metadata.generation
                    && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count()
}

/// Which rollout a run measures.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// The fleet tasks' DaemonSets created directly, no operator.
    Floor,
    /// The fleet tasks as HostTasks, rolled out by the operator binary.
    Operator,
}

/// The figures of one run, by name, in the order they were measured.
#[derive(Debug, Default)]
struct Figures(Vec<(&'static str, f64)>);

impl Figures {
    fn put(&mut self, name: &'static str, value: f64) {
        self.0.push((name, value));
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// The rows of the table `FLEET_MODE=compare` prints: figure name, what it is.
const ROWS: &[(&str, &str)] = &[
    ("rollout_s", "rollout wall time, s"),
    ("api_writes", "API writes, every client"),
    ("api_writes_per_pair", "API writes per node-task pair, every client"),
    ("operator_writes", "the operator's writes"),
    ("operator_writes_per_pair", "the operator's writes per node-task pair"),
    ("cpu_controllers", "CPU s of the controllers (controller-manager + scheduler + operator)"),
    ("cpu_operator", "CPU s of the operator"),
    ("cpu_kube-controller-manager", "CPU s of kube-controller-manager"),
    ("cpu_kube-scheduler", "CPU s of kube-scheduler"),
    ("cpu_kube-apiserver", "CPU s of kube-apiserver"),
    ("cpu_etcd", "CPU s of etcd"),
    ("rss_operator", "peak RSS of the operator, MiB"),
    ("rss_kube-controller-manager", "peak RSS of kube-controller-manager, MiB"),
    ("etcd_growth_mib", "etcd database growth, MiB"),
    ("reconcile_p50_ms", "reconcile p50 during the rollout, ms"),
    ("reconcile_p99_ms", "reconcile p99 during the rollout, ms"),
    ("drained_s", "the operator's queued writes drained after Ready, s"),
    ("quiet_writes", "the operator's API writes in the quiet period"),
    ("wave_overhead_s", "overhead per wave beyond the payload, s"),
];

#[tokio::main]
async fn main() {
    let sizes = Sizes {
        fleet_nodes: env_number("FLEET_NODES", 1000),
        fleet_tasks: env_number("FLEET_TASKS", 50),
        quiet: Duration::from_secs(env_number("FLEET_QUIET_SECONDS", 300) as u64),
    };
    let mode = std::env::var("FLEET_MODE").unwrap_or_default();
    let (modes, default_runs): (&[Mode], usize) = match mode.as_str() {
        "" | "operator" => (&[Mode::Operator], 1),
        "floor" => (&[Mode::Floor], 1),
        "compare" => (&[Mode::Floor, Mode::Operator], 3),
        other => panic!("FLEET_MODE={other:?}: use operator (the default), floor or compare"),
    };
    let runs = env_number("FLEET_RUNS", default_runs).max(1);
    let mut measured: Vec<(Mode, Figures)> = Vec::new();
    for round in 0..runs {
        // Alternated (A B, B A, A B, …) so that drift on the machine falls on both.
        let mut order = modes.to_vec();
        if round % 2 == 1 {
            order.reverse();
        }
        for mode in order {
            println!("\n== run {} of {runs}: {mode:?} ==", round + 1);
            measured.push((mode, run(mode, &sizes).await));
        }
    }
    if runs > 1 || modes.len() > 1 {
        print_table(&sizes, modes, &measured);
    }
}

/// The fleet's size and how long the quiet period lasts.
struct Sizes {
    fleet_nodes: usize,
    fleet_tasks: usize,
    quiet: Duration,
}

/// Prints each figure's median over the runs of each mode, with the lowest and highest, and the
/// operator's median as a ratio of the floor's (a Markdown table).
fn print_table(sizes: &Sizes, modes: &[Mode], measured: &[(Mode, Figures)]) {
    let runs = measured.iter().filter(|(m, _)| *m == modes[0]).count();
    println!(
        "\n{} nodes × {} tasks, median of {runs} (lowest–highest):\n",
        sizes.fleet_nodes, sizes.fleet_tasks
    );
    let mut header = String::from("| |");
    let mut rule = String::from("|---|");
    for mode in modes {
        header.push_str(&format!(" {mode:?} |"));
        rule.push_str("---|");
    }
    if modes.len() > 1 {
        header.push_str(" operator ÷ floor |");
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    for (name, what) in ROWS {
        // Each mode's values of this figure, lowest first.
        let values: Vec<Vec<f64>> = modes
            .iter()
            .map(|mode| {
                let mut values: Vec<f64> =
                    measured.iter().filter(|(m, _)| m == mode).filter_map(|(_, f)| f.get(name)).collect();
                values.sort_by(f64::total_cmp);
                values
            })
            .collect();
        if values.iter().all(Vec::is_empty) {
            continue;
        }
        let median = |values: &[f64]| values.get(values.len() / 2).copied();
        let mut line = format!("| {what} |");
        for values in &values {
            match values.as_slice() {
                [] => line.push_str(" — |"),
                [only] => line.push_str(&format!(" {} |", shown(*only))),
                [lowest, .., highest] => line.push_str(&format!(
                    " {} ({}–{}) |",
                    shown(median(values).unwrap_or_default()),
                    shown(*lowest),
                    shown(*highest)
                )),
            }
        }
        if let [floor, operator] = values.as_slice() {
            match (median(floor), median(operator)) {
                (Some(floor), Some(operator)) if floor > 0.0 => {
                    line.push_str(&format!(" {:.2} |", operator / floor))
                }
                _ => line.push_str(" — |"),
            }
        }
        println!("{line}");
    }
}

/// A figure as the table shows it: whole numbers without decimals, small ones with two.
fn shown(value: f64) -> String {
    if value.fract() == 0.0 || value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// The CPU seconds each control-plane component used so far.
fn component_cpu(sim: &Simulation) -> BTreeMap<&'static str, f64> {
    sim.cluster.pids().into_iter().map(|(name, pid)| (name, cpu_seconds(pid))).collect()
}

/// The control plane's counters when the rollout starts.
struct ControlPlaneBefore {
    requests: BTreeMap<(String, String), f64>,
    etcd_mib: f64,
    cpu: BTreeMap<&'static str, f64>,
}

impl ControlPlaneBefore {
    async fn read(sim: &Simulation) -> Self {
        Self {
            requests: apiserver_requests(&sim.client).await,
            etcd_mib: etcd_db_mib(sim),
            cpu: component_cpu(sim),
        }
    }
}

/// Puts what the control plane did since `before` into `figures`: every client's API writes
/// (printed by verb and resource), etcd's growth, each component's CPU time and the
/// controller-manager's peak RSS.
async fn control_plane_figures(
    sim: &Simulation,
    sizes: &Sizes,
    before: &ControlPlaneBefore,
    figures: &mut Figures,
) {
    let ControlPlaneBefore { requests: requests_before, etcd_mib: etcd_before, cpu: cpu_before } = before;
    let (writes, by_verb) = request_delta(requests_before, &apiserver_requests(&sim.client).await);
    println!("the API server during the rollout (every client): {by_verb}");
    figures.put("api_writes", writes);
    figures.put("api_writes_per_pair", writes / (sizes.fleet_nodes * sizes.fleet_tasks) as f64);
    let etcd_after = etcd_db_mib(sim);
    println!("etcd database: {etcd_before:.1} MiB before, {etcd_after:.1} MiB after the rollout");
    figures.put("etcd_growth_mib", etcd_after - etcd_before);
    let cpu_after = component_cpu(sim);
    let mut controllers = 0.0;
    for (name, after) in &cpu_after {
        let used = after - cpu_before.get(name).copied().unwrap_or(0.0);
        println!("CPU time of {name} during the rollout: {used:.1} s");
        if matches!(*name, "kube-controller-manager" | "kube-scheduler") {
            controllers += used;
        }
        figures.put(
            match *name {
                "etcd" => "cpu_etcd",
                "kube-apiserver" => "cpu_kube-apiserver",
                "kube-controller-manager" => "cpu_kube-controller-manager",
                "kube-scheduler" => "cpu_kube-scheduler",
                _ => continue,
            },
            used,
        );
    }
    figures.put("cpu_controllers", controllers + figures.get("cpu_operator").unwrap_or(0.0));
    if let Some((_, pid)) = sim.cluster.pids().into_iter().find(|(n, _)| *n == "kube-controller-manager") {
        figures.put("rss_kube-controller-manager", peak_rss_mib(pid));
    }
}

/// One run: a fresh cluster, the fleet, and the rollout `mode` measures.
async fn run(mode: Mode, sizes: &Sizes) -> Figures {
    let Sizes { fleet_nodes, fleet_tasks, quiet } = *sizes;
    const WAVE_NODES: usize = 10;
    let mut figures = Figures::default();

    let started = Instant::now();
    // Upstream's node timing (50 s grace, Leases renewed every 10 s).
    let cluster =
        ClusterOptions { node_monitor_grace_period: Duration::from_secs(50), client_qps: Some(500) };
    let sim =
        Simulation::start(SimOptions { nodes: WAVE_NODES, cluster, ..SimOptions::default() }).await.unwrap();
    let client = sim.client.clone();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in hostprocess_crds::crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&crd)).await.unwrap();
    }
    hostprocess_sim::create_namespace(&client, NS, &[("pod-security.kubernetes.io/enforce", "privileged")])
        .await
        .unwrap();
    // Enabled as the install does, the grant widened to what the bench's tasks ask: System, every
    // node at once.
    let enable = std::fs::read_to_string(
        hostprocess_sim::operator::deploy_dir().join("enable-hostprocess-tasks.yaml"),
    )
    .unwrap();
    hostprocess_sim::operator::apply_manifests(&client, &enable, "bench", |_| true).await.unwrap();
    let grant = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTaskGrant", "metadata": {"name": NS},
        "spec": {"accounts": ["LocalService", "NetworkService", "System"], "maxConcurrent": "100%"}});
    Api::<hostprocess_crds::HostTaskGrant>::all(client.clone())
        .patch(NS, &PatchParams::apply("bench").force(), &Patch::Apply(&grant))
        .await
        .unwrap();
    let stand_ins =
        StandIns::start(&client, WAVE_NODES, fleet_nodes, sim.options().lease_renewal()).await.unwrap();
    let names = stand_ins.names.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    futures::stream::iter(names.iter().cloned())
        .for_each_concurrent(16, |name| {
            let nodes = nodes.clone();
            async move {
                let patch = json!({"metadata": {"labels": {"bench": "fleet"}}});
                nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
            }
        })
        .await;
    let fleet = Arc::new(names.into_iter().collect::<HashSet<String>>());
    let finished = Arc::new(AtomicUsize::new(0));
    let kubelets = spawn_fleet_kubelet(client.clone(), fleet.clone(), finished.clone());
    let _stop_kubelets = AbortOnDrop(kubelets);
    println!(
        "cluster: {WAVE_NODES} nodes with kubelets + {fleet_nodes} fleet nodes, ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let before = ControlPlaneBefore::read(&sim).await;
    if mode == Mode::Floor {
        let took = floor(&client, fleet_tasks, fleet_tasks * fleet_nodes, &finished).await;
        println!(
            "floor: {fleet_tasks} DaemonSets × {fleet_nodes} nodes ({} pods) created, bound and reported finished in {:.1}s",
            fleet_tasks * fleet_nodes,
            took.as_secs_f64()
        );
        figures.put("rollout_s", took.as_secs_f64());
        control_plane_figures(&sim, sizes, &before, &mut figures).await;
        return figures;
    }

    // The operator binary, every request through the counting proxy.
    let proxy = FaultProxy::start(&sim.cluster, &sim.operator_kubeconfig().await.unwrap()).await.unwrap();
    let admin = free_port();
    // `FLEET_OPERATOR_WRAPPER` (e.g. `perf record -g -o FILE`) runs the operator under a
    // profiler; CPU and RSS are the operator's (the wrapper's child), and the wrapper is stopped
    // with SIGTERM so that it writes what it recorded.
    let wrapper: Vec<String> = std::env::var("FLEET_OPERATOR_WRAPPER")
        .map(|w| w.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let binary = env!("CARGO_BIN_EXE_hostprocess-operator");
    let (program, wrapped) = match wrapper.split_first() {
        Some((program, args)) => (program.as_str(), [args, &[binary.to_string()]].concat()),
        None => (binary, Vec::new()),
    };
    let mut operator = tokio::process::Command::new(program)
        .args(wrapped)
        .args(["--admin-address", &format!("127.0.0.1:{admin}"), "--log-format", "json"])
        .args(["--executor-image", "registry.example/node-executor@sha256:0000000000000000000000000000000000000000000000000000000000000000"])
        .env("KUBECONFIG", &proxy.kubeconfig_path)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started_pid = operator.id().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(exited) = operator.try_wait().unwrap() {
        panic!("the operator exited at start ({exited}); its stderr says why");
    }
    let pid = if wrapper.is_empty() { started_pid } else { child_of(started_pid) };

    // 1. The fleet: every task on every fleet node, all at once.
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), NS);
    let cpu_before = cpu_seconds(pid);
    let applied = Instant::now();
    let mut slowest_create = Duration::ZERO;
    for i in 0..fleet_tasks {
        let name = format!("fleet-{i:02}");
        let task = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
            "metadata": {"name": name, "namespace": NS}, "spec": fleet_task_spec(i)});
        let started = Instant::now();
        tasks.patch(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&task)).await.unwrap();
        slowest_create = slowest_create.max(started.elapsed());
    }
    // The tasks are created one after another: a task created late starts late.
    println!(
        "{fleet_tasks} tasks created in {:.1}s (slowest create {:.2}s)",
        applied.elapsed().as_secs_f64(),
        slowest_create.as_secs_f64()
    );
    until("every fleet task is Ready", Duration::from_secs(3600), || async {
        (ready_count(&tasks, "fleet-").await == fleet_tasks).then_some(())
    })
    .await
    .unwrap();
    let rollout = applied.elapsed();
    figures.put("rollout_s", rollout.as_secs_f64());
    let histogram = reconcile_histogram(admin).await;
    let reconciles = histogram.last().map_or(0.0, |b| b.1);
    println!(
        "fleet rollout: {fleet_tasks} tasks × {fleet_nodes} nodes ({} pods) done in {:.1}s",
        fleet_tasks * fleet_nodes,
        rollout.as_secs_f64()
    );
    let (p50, p99) = (quantile(&histogram, 0.50) * 1000.0, quantile(&histogram, 0.99) * 1000.0);
    println!(
        "reconcile latency over {reconciles} HostTask reconciles: p50 {p50:.1} ms, p99 {p99:.1} ms (target p99 < 50 ms)"
    );
    figures.put("reconcile_p50_ms", p50);
    figures.put("reconcile_p99_ms", p99);
    let operator_cpu = cpu_seconds(pid) - cpu_before;
    println!("operator CPU time during the rollout: {operator_cpu:.1} s in {:.1} s", rollout.as_secs_f64());
    figures.put("cpu_operator", operator_cpu);
    // A reconcile hands the status over; how far behind the decisions the status in the API was.
    let lag = histogram_buckets(admin, "hostprocess_status_write_lag_seconds_bucket", "").await;
    println!(
        "status written after the decision over {} status writes: p50 {:.1} ms, p99 {:.1} ms",
        lag.last().map_or(0.0, |b| b.1),
        quantile(&lag, 0.50) * 1000.0,
        quantile(&lag, 0.99) * 1000.0
    );
    // What the reconciles waited for: the API server's answers to the operator's writes.
    println!(
        "the API server answered the operator's writes during the rollout: {}",
        write_times(&proxy.faults.response_times())
    );

    let before_quiet = proxy.faults.log();
    let operator_writes = writes(&before_quiet).len() as f64;
    println!("the operator's writes during the rollout: {}", writes_by_resource(&before_quiet));
    figures.put("operator_writes", operator_writes);
    figures.put("operator_writes_per_pair", operator_writes / (fleet_nodes * fleet_tasks) as f64);
    control_plane_figures(&sim, sizes, &before, &mut figures).await;

    // 2. A quiet period: nothing changes; the operator should write nothing. It starts once the
    // writes the rollout queued (the last statuses and Events) are out: those are the rollout's.
    let ready_at = Instant::now();
    until("the operator's queued writes are out", Duration::from_secs(600), || async {
        (pending_writes(admin).await == 0.0).then_some(())
    })
    .await
    .unwrap();
    println!("the operator's queued writes were out {:.1}s after Ready", ready_at.elapsed().as_secs_f64());
    figures.put("drained_s", ready_at.elapsed().as_secs_f64());
    let before = proxy.faults.log().len();
    tokio::time::sleep(quiet).await;
    let log = proxy.faults.log();
    let quiet_writes = writes(&log[before..]);
    let quiet_requests = log.len() - before;
    println!(
        "quiet {}s: {} API writes (target 0), {} requests in all{}",
        quiet.as_secs(),
        quiet_writes.len(),
        quiet_requests,
        if quiet_writes.is_empty() {
            String::new()
        } else {
            format!(": {:?}", &quiet_writes[..quiet_writes.len().min(5)])
        }
    );
    figures.put("quiet_writes", quiet_writes.len() as f64);

    // 3. Ten waves on the nodes with kubelets: the payload takes 1 s on each.
    let payload = Duration::from_secs(1);
    let wave_task = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
        "metadata": {"name": "waves", "namespace": NS},
        "spec": {"script": "sleep 1\n", "runAs": {"account": "System"},
            "nodeSelector": {"matchExpressions": [{"key": "bench", "operator": "DoesNotExist"}]},
            "rollout": {"maxConcurrent": 1}}});
    // What one write costs on this API server now: a reconcile that writes status (and labels)
    // cannot take less.
    let probe_api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let probe = json!({"metadata": {"name": "latency-probe"}, "data": {"n": "0"}});
    probe_api.create(&PostParams::default(), &serde_json::from_value(probe).unwrap()).await.unwrap();
    let mut took = Vec::new();
    for n in 1..=20 {
        let started = Instant::now();
        let patch = json!({"data": {"n": n.to_string()}});
        probe_api.patch("latency-probe", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    println!("one PATCH on the API server now: median {:.1} ms, slowest of 20 {:.1} ms", took[10], took[19]);
    let before_waves = reconcile_histogram(admin).await;
    let answered_before_waves = proxy.faults.response_times().len();
    let waves_started = Instant::now();
    tasks.patch("waves", &PatchParams::apply("bench").force(), &Patch::Apply(&wave_task)).await.unwrap();
    until("the 10-wave rollout completes", Duration::from_secs(600), || async {
        (ready_count(&tasks, "waves").await == 1).then_some(())
    })
    .await
    .unwrap();
    let waves = waves_started.elapsed();
    let overhead = waves.saturating_sub(payload * WAVE_NODES as u32) / WAVE_NODES as u32;
    println!(
        "10 waves of a 1 s payload: {:.1}s, {:.2}s per wave beyond the payload (target < 1 s; includes the simulated kubelet starting the executor)",
        waves.as_secs_f64(),
        overhead.as_secs_f64()
    );
    figures.put("wave_overhead_s", overhead.as_secs_f64());
    // The same latency with the API server no longer flooded by the fleet's rollout: the
    // operator's own share, with every fleet pod in its cache.
    let during_waves: Vec<(f64, f64)> =
        reconcile_histogram(admin).await.iter().zip(&before_waves).map(|(a, b)| (a.0, a.1 - b.1)).collect();
    println!(
        "reconcile latency while the waves roll ({} reconciles, {} pods cached): p50 {:.1} ms, p99 {:.1} ms",
        during_waves.last().map_or(0.0, |b| b.1),
        fleet_tasks * fleet_nodes + WAVE_NODES,
        quantile(&during_waves, 0.50) * 1000.0,
        quantile(&during_waves, 0.99) * 1000.0
    );
    println!(
        "the API server answered the operator's writes while the waves roll: {}",
        write_times(&proxy.faults.response_times()[answered_before_waves..])
    );

    let rss = peak_rss_mib(pid);
    println!("operator peak RSS: {rss:.1} MiB (target < 64 MiB)");
    figures.put("rss_operator", rss);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(started_pid).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    if tokio::time::timeout(Duration::from_secs(60), operator.wait()).await.is_err() {
        let _ = operator.start_kill();
        let _ = operator.wait().await;
    }
    figures
}

/// The process a wrapper started (its first child).
fn child_of(pid: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("FLEET_OPERATOR_WRAPPER: process {pid} started no operator"))
}

/// Aborts a spawned task when dropped (the fleet's stand-in kubelet outlives no run).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The operator's writes queued or in flight (`hostprocess_writes_pending`, every kind).
async fn pending_writes(admin: u16) -> f64 {
    let text = http_get(admin, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("hostprocess_writes_pending{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
