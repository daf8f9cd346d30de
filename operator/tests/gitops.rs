//! GitOps health by the real library: live HostTasks and HostGroups in each phase, judged by
//! kstatus (`sigs.k8s.io/cli-utils/pkg/kstatus/status`, what Flux's health checks run) through
//! the small Go command of `tests/kstatus`, against the objects the API server returns.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use hostprocess_crds::HostGroup;
use hostprocess_sim::wait::until;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// The kstatus command: `HOSTPROCESS_KSTATUS`, or built by `tests/kstatus/build.sh`.
fn kstatus_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HOSTPROCESS_KSTATUS") {
        return path.into();
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/kstatus/build.sh");
    let out = std::process::Command::new("bash").arg(script).output().expect("build.sh runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix("KSTATUS=")).expect("KSTATUS=").into()
}

/// kstatus's verdict on a live object (`group/version/resource/namespace/name`): status, message.
fn kstatus(fx: &Fixture, object: &str) -> (String, String) {
    let out = std::process::Command::new(kstatus_binary())
        .arg("--kubeconfig")
        .arg(&fx.sim.cluster.kubeconfig_path)
        .arg(object)
        .output()
        .expect("kstatus runs");
    assert!(out.status.success(), "kstatus {object}: {}", String::from_utf8_lossy(&out.stderr));
    let verdict: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    (verdict["status"].as_str().unwrap().to_string(), verdict["message"].as_str().unwrap().to_string())
}

fn task_object(namespace: &str, name: &str) -> String {
    format!("hostprocess.dev/v1alpha1/hosttasks/{namespace}/{name}")
}

/// Waits until kstatus says `status` of the object.
async fn judged(fx: &Fixture, object: &str, status: &str) -> String {
    let verdict = until(&format!("kstatus {status} for {object}"), Duration::from_secs(60), || async {
        let (now, message) = kstatus(fx, object);
        (now == status).then_some(message)
    })
    .await;
    match verdict {
        Ok(message) => message,
        Err(timeout) => panic!("{timeout}; kstatus says {:?}", kstatus(fx, object)),
    }
}

#[tokio::test]
async fn flux_s_kstatus_judges_live_hosttasks_and_hostgroups_as_the_design_promises() {
    let mut fx = Fixture::start(2, "privileged").await;

    // Not seen by the operator yet (it is down): InProgress, never Current — the API server
    // defaults a missing status to observedGeneration 0, behind generation 1.
    fx.operator.abort();
    fx.apply("quick", json!({"script": "exit 0\n"})).await;
    let (status, message) = kstatus(&fx, &task_object(NS, "quick"));
    assert_eq!(status, "InProgress", "{message}");
    fx.restart_operator();

    // Rolling out: InProgress (Reconciling=True) while a node runs the payload.
    fx.apply("slow", json!({"script": "sleep 20\n", "rollout": {"maxConcurrent": 1}})).await;
    judged(&fx, &task_object(NS, "slow"), "InProgress").await;

    // Complete: Current.
    fx.wait_ready("quick", "the quick task").await;
    assert_eq!(kstatus(&fx, &task_object(NS, "quick")).0, "Current");

    // Halted by failures: Failed (Stalled=True), with the operator's message.
    fx.apply("broken", json!({"script": "exit 3\n", "retries": {"limit": 0}, "rollout": {"maxFailures": 0}}))
        .await;
    let message = judged(&fx, &task_object(NS, "broken"), "Failed").await;
    assert!(!message.is_empty(), "kstatus passes the Stalled message on");

    // Refused by Pod Security (a namespace that is not privileged): Failed, saying what to fix.
    fx.namespace("baseline-tasks", "baseline").await;
    fx.apply_in("baseline-tasks", "refused", json!({"script": "exit 0\n"})).await;
    let message = judged(&fx, &task_object("baseline-tasks", "refused"), "Failed").await;
    assert!(message.contains("pod-security.kubernetes.io/enforce=privileged"), "{message}");

    // A HostGroup provisioned on every node: Current.
    let groups: Api<HostGroup> = Api::all(fx.sim.client.clone());
    let group = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostGroup",
        "metadata": {"name": "readers"}, "spec": {"groupName": "LogReaders"}});
    groups.patch("readers", &PatchParams::apply("test").force(), &Patch::Apply(&group)).await.unwrap();
    judged(&fx, "hostprocess.dev/v1alpha1/hostgroups//readers", "Current").await;
    let provisioned = groups.get("readers").await.unwrap().status.unwrap();
    assert_eq!(provisioned.nodes.provisioned, 2, "Current only once every node has the group");

    // A spec change the operator has not observed yet: InProgress at once (generation ahead of
    // observedGeneration), Current again when the new revision is done.
    fx.apply("quick", json!({"script": "echo v2\n"})).await;
    assert_eq!(kstatus(&fx, &task_object(NS, "quick")).0, "InProgress");
    fx.wait_ready("quick", "the new revision").await;
    assert_eq!(kstatus(&fx, &task_object(NS, "quick")).0, "Current");
}
