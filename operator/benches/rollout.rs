//! The operator's decisions at fleet scale: planning a rollout wave and building the DaemonSet
//! for 5,000 nodes, and the size of what is written. Run: `cargo bench -p hostprocess-operator`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use hostprocess_crds::HostTask;
use hostprocess_operator::bench::{self as build, BuildInputs, Limits, NodeResult};

fn per_call(label: &str, runs: u32, mut f: impl FnMut()) {
    f();
    let started = Instant::now();
    for _ in 0..runs {
        f();
    }
    let each = started.elapsed() / runs;
    println!("{label:<58} {:>10.3} ms", each.as_secs_f64() * 1000.0);
}

fn main() {
    for fleet in [500usize, 5_000] {
        let nodes: Vec<String> = (0..fleet).map(|i| format!("aks-win22-{i:05}")).collect();
        // Mid-rollout: half admitted, 10% of those still running, the rest succeeded.
        let admitted: Vec<String> = nodes[..fleet / 2].to_vec();
        let results: BTreeMap<String, NodeResult> = admitted
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let result = if i % 10 == 0 {
                    NodeResult::Running
                } else {
                    NodeResult::Succeeded { reboot_required: false }
                };
                (n.clone(), result)
            })
            .collect();
        let limits = Limits::new(u32::try_from(fleet / 10).unwrap_or(u32::MAX), 5);
        per_call(&format!("plan a wave, {fleet} nodes"), 200, || {
            black_box(build::plan_once(black_box(&nodes), black_box(&admitted), black_box(&results), limits));
        });
        let task: HostTask = serde_json::from_value(serde_json::json!({
            "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
            "metadata": {"name": "patch", "namespace": "hostprocess-tasks", "uid": "0000-1111"},
            "spec": {"script": "exit 0", "runAs": {"account": "System"}},
        }))
        .unwrap_or_else(|e| panic!("task: {e}"));
        let inputs = BuildInputs {
            executor_image: "registry.example/node-executor:0.1.0",
            executor_version: "0.1.0",
            revision: "abcdef0123",
            run_as_user: r"NT AUTHORITY\SYSTEM",
            transitional: &[],
            admission_label: Some("admitted.hostprocess.dev/0000-1111"),
            max_unavailable: 1,
        };
        per_call(&format!("build the DaemonSet of a {fleet}-node rollout"), 200, || {
            black_box(build::daemon_set(black_box(&task), black_box(&inputs)));
        });
        let ds = build::daemon_set(&task, &inputs);
        let bytes = serde_json::to_vec(&ds).map(|v| v.len()).unwrap_or(0);
        println!("{:<58} {:>10.1} KiB", "DaemonSet JSON (any fleet size)", bytes as f64 / 1024.0);
    }
}
