//! The simulated kubelets against the real API server, running the real node-executor (Linux
//! platform): exit codes, restarts, readiness probes, volumes and env, stopping on deletion,
//! node reboot and loss, and a DaemonSet rolled onto every node.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

use std::path::Path;
use std::time::Duration;

use hostprocess_sim::wait::until;
use hostprocess_sim::{SimOptions, Simulation};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

const NS: &str = "sim-test";
/// How the pods name the executor: as the Windows image would carry it.
const EXECUTOR: &str = r"C:\hostprocess\node-executor.exe";

async fn simulation(nodes: usize) -> Simulation {
    let sim = Simulation::start(SimOptions { nodes, ..SimOptions::default() }).await.expect("simulation");
    hostprocess_sim::create_namespace(&sim.client, NS, &[]).await.expect("namespace");
    sim
}

/// A pod pinned to `node` with one container running `command`; `extra` is merged into the spec.
fn pod(name: &str, node: &str, command: &[&str], extra: Value) -> Pod {
    let mut spec = json!({
        "nodeName": node,
        "containers": [{"name": "main", "image": "sim/executor:1", "command": command}],
    });
    merge(&mut spec, extra);
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": NS}, "spec": spec})).unwrap()
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (k, v) in extra {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, extra) => *base = extra,
    }
}

async fn create(sim: &Simulation, pod: Pod) {
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), NS);
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
}

async fn get(sim: &Simulation, name: &str) -> Pod {
    Api::<Pod>::namespaced(sim.client.clone(), NS).get(name).await.expect("get pod")
}

fn phase(pod: &Pod) -> String {
    pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default()
}

fn main_status(pod: &Pod) -> Option<ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first().cloned()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the pod satisfies `check`, returning it.
async fn pod_until(sim: &Simulation, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    let found = until(what, Duration::from_secs(30), || async {
        let pod = get(sim, name).await;
        check(&pod).then_some(pod)
    })
    .await;
    match found {
        Ok(pod) => pod,
        Err(timeout) => panic!("{timeout}; the pod is now: {:?}", get(sim, name).await.status),
    }
}

fn terminated(status: &ContainerStatus) -> (i32, String, String) {
    let t = status.state.as_ref().and_then(|s| s.terminated.clone()).expect("terminated state");
    (t.exit_code, t.reason.unwrap_or_default(), t.message.unwrap_or_default())
}

fn local_executor() -> String {
    hostprocess_sim::node_executor_binary().expect("executor").display().to_string()
}

#[tokio::test]
async fn containers_report_exit_codes_start_errors_and_termination_messages() {
    let sim = simulation(1).await;
    let never = json!({"restartPolicy": "Never"});
    create(&sim, pod("succeeds", "win-000", &[EXECUTOR, "payload", "exit", "0"], never.clone())).await;
    create(&sim, pod("no-such-program", "win-000", &[r"C:\tools\missing.exe"], never.clone())).await;
    // A script from a ConfigMap volume, an env value from the downward API: the executor finds
    // the script under $CONTAINER_SANDBOX_MOUNT_POINT (the containerd 1.6 layout).
    let script_body = "echo \"running on $NODE\"\nexit 7\n";
    let script_digest = hostprocess_protocol::digest::sha256_hex(script_body.as_bytes());
    let script = pod(
        "script-fails",
        "win-000",
        &[
            EXECUTOR,
            "run",
            "--task",
            "sim-test/script",
            "--task-uid",
            "u1",
            "--revision",
            "r1",
            "--script",
            r"C:\hostprocess\script\run.ps1",
            "--script-sha256",
            &script_digest,
        ],
        json!({
            "restartPolicy": "Never",
            "volumes": [{"name": "script", "configMap": {"name": "script"}}],
            "containers": [{"name": "main", "image": "sim/executor:1",
                "command": [EXECUTOR, "run", "--task", "sim-test/script", "--task-uid", "u1", "--revision", "r1",
                    "--script", r"C:\hostprocess\script\run.ps1", "--script-sha256", script_digest],
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "volumeMounts": [{"name": "script", "mountPath": r"C:\hostprocess\script"}],
                "terminationMessagePolicy": "FallbackToLogsOnError"}],
        }),
    );
    create(&sim, script).await;

    let ok = pod_until(&sim, "succeeds", "the succeeding pod to finish", |p| phase(p) == "Succeeded").await;
    assert_eq!(terminated(&main_status(&ok).unwrap()), (0, "Completed".into(), String::new()));

    let missing = pod_until(&sim, "no-such-program", "the pod to fail", |p| phase(p) == "Failed").await;
    let (code, reason, message) = terminated(&main_status(&missing).unwrap());
    assert_eq!((code, reason.as_str()), (128, "StartError"));
    assert!(message.contains("executable file not found"), "{message}");

    // The ConfigMap does not exist yet: the kubelet waits, as for a mount that is not possible.
    let waiting = pod_until(&sim, "script-fails", "the missing ConfigMap to be reported", |p| {
        main_status(p)
            .and_then(|s| s.state?.waiting?.message)
            .is_some_and(|m| m.contains("configmap \"script\" not found"))
    })
    .await;
    assert_eq!(phase(&waiting), "Pending");
    let config_maps: Api<ConfigMap> = Api::namespaced(sim.client.clone(), NS);
    let cm = serde_json::from_value(json!({"metadata": {"name": "script"},
        "data": {"run.ps1": script_body}}))
    .unwrap();
    config_maps.create(&PostParams::default(), &cm).await.unwrap();
    let failed = pod_until(&sim, "script-fails", "the script pod to fail", |p| phase(p) == "Failed").await;
    let (code, reason, message) = terminated(&main_status(&failed).unwrap());
    assert_eq!((code, reason.as_str()), (7, "Error"), "{message}");
    // FallbackToLogsOnError: the log tail, with the payload's output and the executor's result line.
    assert!(message.contains("running on win-000"), "{message}");
    let result: Value = serde_json::from_str(message.lines().last().unwrap()).expect("result line");
    assert_eq!(result["exitCode"], 7, "{result}");
}

#[tokio::test]
async fn restart_policy_always_restarts_a_crashing_container_with_back_off() {
    let sim = simulation(1).await;
    create(&sim, pod("crashes", "win-000", &[EXECUTOR, "payload", "exit", "2"], json!({}))).await;
    let backing_off = pod_until(&sim, "crashes", "a CrashLoopBackOff after restarts", |p| {
        main_status(p).is_some_and(|s| {
            s.restart_count >= 1
                && s.state.and_then(|st| st.waiting).and_then(|w| w.reason).as_deref()
                    == Some("CrashLoopBackOff")
        })
    })
    .await;
    let status = main_status(&backing_off).unwrap();
    let last = status.last_state.and_then(|s| s.terminated).expect("last state");
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
    assert_eq!(phase(&backing_off), "Running");
    assert!(!ready(&backing_off));
    // The back-off ends and the container runs again.
    pod_until(&sim, "crashes", "the next restart", |p| main_status(p).is_some_and(|s| s.restart_count >= 2))
        .await;

    // OnFailure stops restarting once the container succeeds.
    let on_failure = json!({"restartPolicy": "OnFailure"});
    create(&sim, pod("succeeds", "win-000", &[EXECUTOR, "payload", "exit", "0"], on_failure)).await;
    let done = pod_until(&sim, "succeeds", "the OnFailure pod to succeed", |p| phase(p) == "Succeeded").await;
    assert_eq!(main_status(&done).unwrap().restart_count, 0);
}

/// A `Once` payload under the executor, which then idles; the readiness probe asks the record.
fn once_pod(name: &str, node: &str, uid: &str, payload: &[&str]) -> Pod {
    let mut command = vec![
        EXECUTOR,
        "run",
        "--task",
        "sim-test/once",
        "--task-uid",
        uid,
        "--revision",
        "r1",
        "--idle-after",
        "--",
    ];
    command.extend_from_slice(payload);
    pod(
        name,
        node,
        &command,
        json!({"containers": [{"name": "main", "image": "sim/executor:1", "command": command,
            "readinessProbe": {"exec": {"command": [EXECUTOR, "probe", "--task-uid", uid, "--revision", "r1"]},
                "periodSeconds": 1}}]}),
    )
}

#[tokio::test]
async fn readiness_comes_from_the_exec_probe_of_the_executor_record() {
    let sim = simulation(1).await;
    let executor = local_executor();
    create(&sim, once_pod("patch", "win-000", "u2", &[&executor, "payload", "sleep", "3"])).await;
    let running = pod_until(&sim, "patch", "the payload to run", |p| {
        main_status(p).is_some_and(|s| s.state.is_some_and(|st| st.running.is_some()))
    })
    .await;
    assert!(!ready(&running), "not ready while the payload runs");
    let done = pod_until(&sim, "patch", "the pod to turn ready", ready).await;
    assert_eq!(phase(&done), "Running");
    // The container that ran the payload exited 0 with it; the restarted one idles, ready.
    let status = main_status(&done).unwrap();
    assert_eq!(status.restart_count, 1);
    assert_eq!(status.last_state.and_then(|s| s.terminated).map(|t| t.exit_code), Some(0));
    // The record lives on the node's disk, where the next container of the pod finds it.
    let record = sim.node("win-000").unwrap().config.state_dir().join("tasks/u2/r1.json");
    let record: Value = serde_json::from_slice(&std::fs::read(&record).expect("record")).unwrap();
    assert_eq!(record["state"], "Succeeded", "{record}");
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

#[tokio::test]
async fn deleting_a_pod_stops_every_process_of_its_container() {
    let sim = simulation(1).await;
    let executor = local_executor();
    let pids = tempfile::tempdir().unwrap();
    let dir = pids.path().display().to_string();
    let command = [
        EXECUTOR,
        "run",
        "--task",
        "sim-test/agent",
        "--task-uid",
        "u3",
        "--revision",
        "r1",
        "--mode",
        "continuous",
        "--",
        &executor,
        "payload",
        "spawn-tree",
        "3",
        &dir,
    ];
    create(&sim, pod("agent", "win-000", &command, json!({"terminationGracePeriodSeconds": 5}))).await;
    let tree = until("three generations of payload processes", Duration::from_secs(30), || async {
        let pids: Vec<u32> = std::fs::read_dir(pids.path())
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        (pids.len() >= 3).then_some(pids)
    })
    .await;
    let tree: Vec<u32> = match tree {
        Ok(tree) => tree,
        Err(e) => panic!("{e}: {:?}", get(&sim, "agent").await.status),
    };
    assert!(tree.iter().all(|p| alive(*p)));
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), NS);
    pods.delete("agent", &DeleteParams::default()).await.unwrap();
    until("every payload process to be gone", Duration::from_secs(15), || async {
        tree.iter().all(|p| !alive(*p)).then_some(())
    })
    .await
    .unwrap();
}

async fn node_ready(sim: &Simulation, node: &str) -> String {
    let node: Node = Api::all(sim.client.clone()).get(node).await.unwrap();
    node.status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status)
        .unwrap_or_default()
}

/// Waits until the node's Ready condition has `status`.
async fn node_turns(sim: &Simulation, node: &str, status: &str, within: Duration) {
    let what = format!("{node} to turn Ready={status}");
    until(&what, within, || async { (node_ready(sim, node).await == status).then_some(()) }).await.unwrap();
}

#[tokio::test]
async fn a_rebooted_node_restarts_its_pods_without_running_a_finished_payload_again() {
    let sim = simulation(1).await;
    let executor = local_executor();
    let runs = tempfile::tempdir().unwrap();
    let count = runs.path().join("runs").display().to_string();
    create(&sim, once_pod("patch", "win-000", "u4", &[&executor, "payload", "count", &count])).await;
    pod_until(&sim, "patch", "the payload to finish", ready).await;
    let kubelet = sim.node("win-000").unwrap();
    kubelet.reboot();
    node_turns(&sim, "win-000", "False", Duration::from_secs(10)).await;
    node_turns(&sim, "win-000", "True", Duration::from_secs(20)).await;
    let after = pod_until(&sim, "patch", "the restarted container to be ready", |p| {
        ready(p) && main_status(p).is_some_and(|s| s.restart_count == 2)
    })
    .await;
    let last = main_status(&after).unwrap().last_state.and_then(|s| s.terminated).unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (255, Some("Unknown")));
    assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1, "the payload ran once");
    assert_eq!(kubelet.boots(), 2);

    // A payload asks for a reboot the way the executor's Linux platform does.
    let store = kubelet.config.test_store();
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join(hostprocess_sim::kubelet::REBOOT_REQUEST), b"").unwrap();
    until("the requested reboot", Duration::from_secs(20), || async { (kubelet.boots() == 3).then_some(()) })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_never_pod_running_when_its_node_reboots_is_not_started_again() {
    let sim = simulation(1).await;
    let executor = local_executor();
    let runs = tempfile::tempdir().unwrap();
    let count = runs.path().join("runs").display().to_string();
    // A pod that must not restart (as the operator's reboot pod), running when the node goes down.
    let never = json!({"restartPolicy": "Never"});
    let command = [executor.as_str(), "payload", "count", &count, "--code", "0"];
    create(&sim, pod("one-shot", "win-000", &command, never.clone())).await;
    let long = [executor.as_str(), "payload", "sleep", "3600"];
    create(&sim, pod("sleeper", "win-000", &long, never)).await;
    pod_until(&sim, "one-shot", "the one-shot pod to succeed", |p| phase(p) == "Succeeded").await;
    pod_until(&sim, "sleeper", "the sleeper to run", |p| phase(p) == "Running").await;
    let kubelet = sim.node("win-000").unwrap();
    kubelet.reboot();
    node_turns(&sim, "win-000", "False", Duration::from_secs(10)).await;
    node_turns(&sim, "win-000", "True", Duration::from_secs(20)).await;
    let sleeper =
        pod_until(&sim, "sleeper", "the sleeper to end with its node", |p| phase(p) == "Failed").await;
    let ended = main_status(&sleeper).unwrap().state.and_then(|s| s.terminated).unwrap();
    assert_eq!((ended.exit_code, ended.reason.as_deref()), (255, Some("Unknown")));
    assert_eq!(phase(&get(&sim, "one-shot").await), "Succeeded");
    assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1, "the one-shot pod ran once");
}

#[tokio::test]
async fn a_lost_node_turns_unknown_and_comes_back() {
    let sim = simulation(1).await;
    let executor = local_executor();
    create(&sim, once_pod("patch", "win-000", "u5", &[&executor, "payload", "exit", "0"])).await;
    pod_until(&sim, "patch", "the pod to be ready", ready).await;
    let kubelet = sim.node("win-000").unwrap();
    kubelet.lose();
    // The real node-lifecycle controller: the Lease runs out (10 s grace in the tests), the node
    // turns Unknown and is tainted unreachable, its pods are marked not ready.
    node_turns(&sim, "win-000", "Unknown", Duration::from_secs(30)).await;
    // (With its only node down the cluster is in "full disruption": the controller withholds
    // the NoExecute taint that would evict pods, and keeps the NoSchedule one.)
    until("the unreachable taint", Duration::from_secs(20), || async {
        let node: Node = Api::all(sim.client.clone()).get("win-000").await.ok()?;
        let taints = node.spec?.taints?;
        taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoSchedule")
            .then_some(())
    })
    .await
    .unwrap();
    pod_until(&sim, "patch", "the pod marked not ready", |p| !ready(p)).await;
    kubelet.recover();
    pod_until(&sim, "patch", "the container to run again", |p| {
        ready(p) && main_status(p).is_some_and(|s| s.restart_count == 2)
    })
    .await;
    assert_eq!(node_ready(&sim, "win-000").await, "True");
}

#[tokio::test]
async fn a_daemonset_runs_on_every_windows_node_and_counts_ready_pods() {
    let sim = simulation(3).await;
    let executor = local_executor();
    let once = once_pod("unused", "", "u6", &[&executor, "payload", "exit", "0"]);
    let template_spec = json!({
        "nodeSelector": {"kubernetes.io/os": "windows"},
        "tolerations": [{"key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"}],
        "containers": serde_json::to_value(once.spec.unwrap().containers).unwrap(),
    });
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "patch", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "patch"}},
            "updateStrategy": {"type": "OnDelete"},
            "template": {"metadata": {"labels": {"app": "patch"}}, "spec": template_spec}},
    }))
    .unwrap();
    let sets: Api<DaemonSet> = Api::namespaced(sim.client.clone(), NS);
    sets.create(&PostParams::default(), &ds).await.unwrap();
    let status = until("three ready daemon pods", Duration::from_secs(30), || async {
        let status = sets.get("patch").await.ok()?.status?;
        (status.number_ready == 3).then_some(status)
    })
    .await
    .unwrap();
    assert_eq!((status.desired_number_scheduled, status.current_number_scheduled), (3, 3));
}

#[tokio::test]
async fn a_rolling_update_replaces_daemon_pods_within_max_unavailable() {
    let sim = simulation(3).await;
    let executor = local_executor();
    let agent = |version: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                    "tolerations": [{"key": "os", "operator": "Exists"}],
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{"name": "main", "image": format!("sim/agent:{version}"),
                        "command": [EXECUTOR, "run", "--task", "sim-test/agent", "--task-uid", "u7", "--revision",
                            version, "--mode", "continuous", "--", &executor, "payload", "sleep", "3600"]}]}}},
        })
    };
    let sets: Api<DaemonSet> = Api::namespaced(sim.client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), NS);
    sets.create(&PostParams::default(), &serde_json::from_value(agent("v1")).unwrap()).await.unwrap();
    until("three ready agents", Duration::from_secs(30), || async {
        (sets.get("agent").await.ok()?.status?.number_ready == 3).then_some(())
    })
    .await
    .unwrap();

    let apply = kube::api::PatchParams::apply("test").force();
    sets.patch("agent", &apply, &kube::api::Patch::Apply(agent("v2"))).await.unwrap();
    let mut fewest_ready = 3;
    let started = std::time::Instant::now();
    loop {
        let list = pods.list(&Default::default()).await.unwrap().items;
        let ready_now = list.iter().filter(|p| ready(p)).count();
        fewest_ready = fewest_ready.min(ready_now);
        let on_v2 = list
            .iter()
            .filter(|p| {
                ready(p) && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("sim/agent:v2")
            })
            .count();
        if on_v2 == 3 && list.len() == 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the update did not finish: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fewest_ready >= 2, "at most one node was without a ready agent, saw {fewest_ready} ready");
}
