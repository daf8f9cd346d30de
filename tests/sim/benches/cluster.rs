//! The simulated cluster's own figures, so operator benchmarks know the harness is not their
//! bottleneck: start-up of the control plane, requests per second (get, SSA, list of 5,000
//! pods), and the memory of etcd and each control-plane process, empty, with 20 simulated
//! nodes, and holding 5,000 nodes and 5,000 pods.
//! `cargo bench -p hostprocess-sim --bench cluster` (prints figures; asserts nothing).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const OBJECTS: usize = 5_000;
const CONCURRENCY: usize = 16;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Runs `op` `total` times with `CONCURRENCY` in flight; returns requests per second.
async fn rate<F, Fut>(total: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    futures::stream::iter(0..total).map(&op).buffer_unordered(CONCURRENCY).collect::<Vec<_>>().await;
    total as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let binaries = hostprocess_sim::Binaries::locate().expect("binaries");
    let options = hostprocess_sim::ClusterOptions::default();
    let mut startups = vec![];
    for _ in 0..3 {
        let cluster = hostprocess_sim::Cluster::start(&binaries, &options).await.expect("start");
        startups.push(cluster.startup);
    }
    startups.sort();
    println!(
        "start-up (API server ready, controllers leading)  median {:>6.2} s   of {:?}",
        startups[1].as_secs_f64(),
        startups
    );

    // Twenty simulated nodes, each a kubelet with its Lease and status, then idle for 30 s.
    let sim =
        hostprocess_sim::Simulation::start(hostprocess_sim::SimOptions { nodes: 20, ..Default::default() })
            .await
            .expect("simulation");
    tokio::time::sleep(Duration::from_secs(30)).await;
    println!("memory with 20 simulated nodes, idle: {}", memory(&sim.cluster));
    drop(sim);

    let cluster = hostprocess_sim::Cluster::start(&binaries, &options).await.expect("start");
    let client = cluster.client().await.expect("client");
    println!("memory, empty: {}", memory(&cluster));

    let started = Instant::now();
    let node_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let create_nodes = rate(OBJECTS, |i| {
        let api = node_api.clone();
        async move {
            let node = serde_json::from_value(json!({"metadata": {"name": format!("n{i:05}"),
                "labels": {"kubernetes.io/os": "windows"}}}))
            .unwrap();
            api.create(&PostParams::default(), &node).await.expect("node");
        }
    })
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bench"}})).unwrap(),
        )
        .await
        .expect("ns");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let create_pods = rate(OBJECTS, |i| {
        let api = pods.clone();
        async move {
            let pod = serde_json::from_value(json!({"metadata": {"name": format!("p{i:05}"),
                "labels": {"app.kubernetes.io/managed-by": "hostprocess-operator"}},
                "spec": {"nodeName": format!("n{i:05}"), "containers": [{"name": "c", "image": "executor:1"}]}})).unwrap();
            api.create(&PostParams::default(), &pod).await.expect("pod");
        }
    })
    .await;
    println!(
        "create nodes / pods                     {:>8.0} req/s   {:>8.0} req/s   ({:.1} s for both)",
        create_nodes,
        create_pods,
        started.elapsed().as_secs_f64()
    );
    println!("memory, {OBJECTS} nodes + {OBJECTS} pods: {}", memory(&cluster));

    let get = rate(2_000, |i| {
        let api = pods.clone();
        async move {
            api.get(&format!("p{:05}", i % OBJECTS)).await.expect("get");
        }
    })
    .await;
    println!("get pod                                 {get:>8.0} req/s");

    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    let ssa = rate(2_000, |i| {
        let api = maps.clone();
        async move {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm{:03}", i % 200)},
                "data": {"attempt": i.to_string()}});
            api.patch(&format!("cm{:03}", i % 200), &PatchParams::apply("bench").force(), &Patch::Apply(&cm)).await.expect("apply");
        }
    })
    .await;
    println!("server-side apply (a write each)        {ssa:>8.0} req/s");

    let mut lists = vec![];
    for _ in 0..10 {
        let started = Instant::now();
        let list = pods.list(&ListParams::default()).await.expect("list");
        assert_eq!(list.items.len(), OBJECTS);
        lists.push(started.elapsed());
    }
    lists.sort();
    let median: Duration = lists[5];
    println!(
        "list {OBJECTS} pods                          {:>8.2} req/s   (median {:.0} ms each)",
        1.0 / median.as_secs_f64(),
        median.as_secs_f64() * 1000.0
    );
    let by_node = rate(1_000, |i| {
        let api = pods.clone();
        async move {
            let found = api
                .list(&ListParams::default().fields(&format!("spec.nodeName=n{:05}", i % OBJECTS)))
                .await
                .expect("list");
            assert_eq!(found.items.len(), 1);
        }
    })
    .await;
    println!("list pods by spec.nodeName              {by_node:>8.0} req/s");
    println!("memory, at the end: {}", memory(&cluster));
}

/// Resident memory of each control-plane process.
fn memory(cluster: &hostprocess_sim::Cluster) -> String {
    let parts: Vec<String> =
        cluster.pids().into_iter().map(|(name, pid)| format!("{name} {:.0} MiB", rss_mib(pid))).collect();
    parts.join(", ")
}
