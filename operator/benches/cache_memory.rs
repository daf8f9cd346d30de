//! What the operator's caches hold per object, measured by a counting allocator: task pods as
//! the task pod index keeps them (`state::task_pods::PodIndex`) against the same pods as stripped
//! `CachedPod`s in a reflector store (how setup pods are cached) and as full `Pod`s, and nodes
//! carrying one admission label per task. The figures say how the
//! operator's memory grows with a fleet (one pod per node and task); the fleet bench measures the
//! whole process.
//!
//! Run: `cargo bench -p hostprocess-operator --bench cache_memory`. Sizes: `CACHE_PODS` (default
//! 10,000), `CACHE_NODES` (1,000), `CACHE_TASKS` (50 admission labels per node).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark: a failed step should stop it

use hostprocess_crds::HostTask;
use hostprocess_operator::admission_label;
use hostprocess_operator::bench::{self as build, CachedPod, PodIndex};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::core::PartialObjectMeta;
use kube::runtime::{reflector, watcher};
use serde_json::json;

// dhat's allocator counts live heap bytes (in testing mode it writes no profile).
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

const REVISION: &str = "7d9c4e1f2a";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A task pod as the API server sends it: the DaemonSet's template as built for a real task,
/// the metadata the DaemonSet controller and the API server add, and a finished executor's status.
fn task_pod(i: usize) -> serde_json::Value {
    let task: HostTask = serde_json::from_value(json!({
        "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
        "metadata": {"name": "fleet-07", "namespace": "hostprocess-tasks", "uid": "6f1c0a52-3b9e-4c1a-9d55-0c2b1f8e7a10"},
        "spec": {"script": "Install-WindowsUpdate -KB 5034441\n", "runAs": {"account": "System"},
            "nodeSelector": {"matchLabels": {"bench": "fleet"}}, "rollout": {"maxConcurrent": "10%"}}}))
    .unwrap();
    let revision = REVISION;
    let key = admission_label("6f1c0a52-3b9e-4c1a-9d55-0c2b1f8e7a10");
    let inputs = build::BuildInputs {
        executor_image: "registry.example/node-executor:0.1.0",
        executor_version: "0.1.0",
        revision,
        run_as_user: "NT AUTHORITY\\SYSTEM",
        transitional: &[],
        admission_label: Some(&key),
        max_unavailable: 1,
    };
    let ds = build::daemon_set(&task, &inputs);
    let template = serde_json::to_value(ds.spec.unwrap().template).unwrap();
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"].clone(),
        "spec": template["spec"].clone()});
    let node = format!("fleet-{i:05}");
    let meta = &mut pod["metadata"];
    meta["name"] = json!(format!("hostprocess-fleet-07-{i:05x}"));
    meta["generateName"] = json!("hostprocess-fleet-07-");
    meta["namespace"] = json!("hostprocess-tasks");
    meta["uid"] = json!(format!("0b3e9a4c-51d2-4f7e-8a6b-{i:012}"));
    meta["resourceVersion"] = json!(format!("{}", 100_000 + i));
    meta["creationTimestamp"] = json!("2026-11-23T10:00:00Z");
    meta["labels"]["controller-revision-hash"] = json!("5f7d8c9b6");
    meta["labels"]["pod-template-generation"] = json!("1");
    meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "hostprocess-fleet-07",
        "uid": "1d2e3f40-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "controller": true, "blockOwnerDeletion": true}]);
    meta["managedFields"] = json!([
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-11-23T10:00:00Z",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:hostprocess.dev/task": {}}}, "f:spec": {"f:containers": {}}}},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-23T10:00:09Z",
         "fieldsType": "FieldsV1", "subresource": "status", "fieldsV1": {"f:status": {"f:conditions": {}}}}]);
    pod["spec"]["nodeName"] = json!(node);
    pod["status"] = json!({"phase": "Running", "hostIP": "10.240.0.17", "podIP": "10.240.0.17",
        "startTime": "2026-11-23T10:00:02Z", "qosClass": "BestEffort",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-11-23T10:00:03Z"},
            {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-23T10:00:02Z"},
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-23T10:00:09Z"},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-23T10:00:09Z"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-23T10:00:00Z"}],
        "containerStatuses": [{"name": "task", "image": "registry.example/node-executor:0.1.0",
            "imageID": "registry.example/node-executor@sha256:9c1f", "containerID": "containerd://4e5f6a7b",
            "ready": true, "started": true, "restartCount": 1,
            "state": {"running": {"startedAt": "2026-11-23T10:00:08Z"}},
            "lastState": {"terminated": {"exitCode": 0, "reason": "Completed", "containerID": "containerd://1a2b3c4d",
                "startedAt": "2026-11-23T10:00:03Z", "finishedAt": "2026-11-23T10:00:07Z",
                "message": "{\"state\":\"Succeeded\",\"exitCode\":0,\"attempts\":[{\"outcome\":\"Exited\",\"exitCode\":0}]}"}}}]});
    pod
}

/// A node as the node cache keeps it, with one admission label per task.
fn node(i: usize, tasks: usize) -> serde_json::Value {
    let mut labels = json!({"kubernetes.io/os": "windows", "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": format!("fleet-{i:05}"), "node.kubernetes.io/windows-build": "10.0.20348",
        "topology.kubernetes.io/zone": "westeurope-1", "agentpool": "win22", "bench": "fleet"});
    for t in 0..tasks {
        labels[admission_label(&format!("6f1c0a52-3b9e-4c1a-9d55-{t:012}"))] = json!("7d9c4e1f2a");
    }
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": format!("fleet-{i:05}"), "resourceVersion": "42", "labels": labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}}})
}

/// Live bytes added by `fill`, which keeps what it builds.
fn measure<T>(fill: impl FnOnce() -> T) -> (T, isize) {
    let live = || dhat::HeapStats::get().curr_bytes as isize;
    let before = live();
    let kept = fill();
    (kept, live() - before)
}

/// The objects decoded from `wire`, stripped as the operator's watch strips them, in a reflector
/// store (returned with its writer, which owns the data).
fn fill_store<K>(wire: &[String], strip: fn(&mut K)) -> (reflector::Store<K>, reflector::store::Writer<K>)
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned + Clone + 'static,
{
    let (store, mut writer) = reflector::store::<K>();
    for text in wire {
        let mut object: K = serde_json::from_str(text).unwrap();
        strip(&mut object);
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    (store, writer)
}

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let pods = env_number("CACHE_PODS", 10_000);
    let nodes = env_number("CACHE_NODES", 1_000);
    let tasks = env_number("CACHE_TASKS", 50);
    let _profiler = dhat::Profiler::builder().testing().trim_backtraces(Some(1)).build();

    let wire: Vec<String> = (0..pods).map(|i| task_pod(i).to_string()).collect();
    println!("a task pod on the wire: {} bytes of JSON", wire[0].len());

    let (index, indexed) = measure(|| {
        let index = PodIndex::default();
        let listed =
            wire.iter().map(|text| Ok(watcher::Event::InitApply(serde_json::from_str(text).unwrap())));
        let events = std::iter::once(Ok(watcher::Event::Init))
            .chain(listed)
            .chain(std::iter::once(Ok(watcher::Event::InitDone)));
        futures::executor::block_on(index.follow(futures::stream::iter(events), |_| {}));
        index
    });
    let task: HostTask = serde_json::from_value(json!({
        "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
        "metadata": {"name": "fleet-07", "namespace": "hostprocess-tasks"}, "spec": {"script": "exit 0"}}))
    .unwrap();
    assert_eq!(
        build::read_task_pods(&index, &task, REVISION, k8s_openapi::jiff::Timestamp::now()).results.len(),
        pods
    );
    println!(
        "task pod index: {pods} task pods: {:.1} MiB, {} bytes per pod",
        mib(indexed),
        indexed / pods as isize
    );
    drop(index);

    let (store, cached) = measure(|| fill_store::<CachedPod>(&wire, build::strip_pod));
    assert_eq!(store.0.state().len(), pods);
    println!(
        "for comparison, the same pods as stripped CachedPods in a reflector store: {:.1} MiB, {} bytes per pod",
        mib(cached),
        cached / pods as isize
    );
    drop(store);

    let (full, full_bytes) =
        measure(|| wire.iter().map(|t| serde_json::from_str::<Pod>(t).unwrap()).collect::<Vec<_>>());
    println!(
        "for comparison, the same pods as full Pods in a Vec: {:.1} MiB, {} bytes per pod",
        mib(full_bytes),
        full_bytes / pods as isize
    );
    drop(full);

    let wire: Vec<String> = (0..nodes).map(|i| node(i, tasks).to_string()).collect();
    let (store, node_bytes) =
        measure(|| fill_store::<PartialObjectMeta<Node>>(&wire, build::names_and_labels::<Node>));
    assert_eq!(store.0.state().len(), nodes);
    println!(
        "node cache: {nodes} nodes with {tasks} admission labels each: {:.1} MiB, {} bytes per node",
        mib(node_bytes),
        node_bytes / nodes as isize
    );
}
