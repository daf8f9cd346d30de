//! The plugin as a user runs it: the built `kubectl-hostprocess` binary with a kubeconfig for
//! the simulated cluster (the real control plane, simulated Windows nodes, the operator running
//! with the permissions of `deploy/`). Tables are compared with snapshots (`tests/snapshots`),
//! times and generated names filtered out.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

#[path = "../../operator/tests/common/mod.rs"]
mod common;

use std::process::Output;
use std::time::Duration;

use common::*;
use hostprocess_sim::wait::until;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Runs the plugin with the simulated cluster's administrator kubeconfig (without blocking the
/// test's runtime: the operator runs on it).
async fn plugin(fx: &Fixture, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-hostprocess"))
        .args(args)
        .args(["-n", NS])
        .env("KUBECONFIG", &fx.sim.cluster.kubeconfig_path)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("the plugin runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn status_shows_each_node_and_wait_exits_by_how_the_rollout_ended() {
    let fx = Fixture::start(3, "privileged").await;
    // One node fails, the budget allows one: the rollout completes.
    fx.apply(
        "patch",
        json!({"script": "if [ \"$COMPUTERNAME\" = WIN-001 ]; then echo disk full >&2; exit 3; fi\necho patched\n",
            "retries": {"limit": 0}, "rollout": {"maxConcurrent": 3, "maxFailures": 1}}),
    )
    .await;
    let waited = plugin(&fx, &["wait", "patch", "--timeout", "90s"]).await;
    assert_eq!(waited.status.code(), Some(0), "{}", stdout(&waited));
    assert!(stdout(&waited).contains("HostTask hostprocess-tasks/patch complete"), "{}", stdout(&waited));

    let status = plugin(&fx, &["status", "patch"]).await;
    assert_eq!(status.status.code(), Some(0));
    insta::with_settings!({filters => vec![
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[time]"),
        (r"\b[0-9a-f]{10}\b", "[revision]"),
        (r"\b\d+s\b", "[duration]"),
    ]}, {
        insta::assert_snapshot!("status_complete_with_one_failure", stdout(&status));
    });
    let json: serde_json::Value =
        serde_json::from_slice(&plugin(&fx, &["status", "patch", "-o", "json"]).await.stdout).unwrap();
    assert_eq!(json["nodes"]["failed"], 1);
    assert_eq!(json["rows"][1]["node"], "win-001");
    assert_eq!(json["rows"][1]["exitCode"], 3);

    // A payload failing everywhere with no budget: wait says it halted, with exit code 1.
    fx.apply(
        "broken",
        json!({"script": "exit 4\n", "retries": {"limit": 0}, "rollout": {"maxConcurrent": 1}}),
    )
    .await;
    let halted = plugin(&fx, &["wait", "broken", "--timeout", "90s"]).await;
    assert_eq!(halted.status.code(), Some(1), "{}", stdout(&halted));
    assert!(stdout(&halted).contains("FailureBudgetExceeded"), "{}", stdout(&halted));

    // Paused from the start: nothing completes, wait times out with exit code 3.
    fx.apply("later", json!({"script": "echo ok\n", "rollout": {"paused": true}})).await;
    let timed_out = plugin(&fx, &["wait", "later", "--timeout", "3s"]).await;
    assert_eq!(timed_out.status.code(), Some(3), "{}", stdout(&timed_out));
    assert!(stdout(&timed_out).contains("not complete after 3s"), "{}", stdout(&timed_out));

    // A task that is not there: a clear error and exit code 4.
    let missing = plugin(&fx, &["status", "nothing"]).await;
    assert_eq!(missing.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("HostTask hostprocess-tasks/nothing not found")
    );
}

#[tokio::test]
async fn steering_commands_set_the_spec_under_their_own_field_managers() {
    let fx = Fixture::start(2, "privileged").await;
    fx.apply("patch", json!({"script": "echo ok\n", "rollout": {"maxConcurrent": 1, "paused": true}})).await;
    until("the operator to report the task paused", Duration::from_secs(30), || async {
        let task = fx.task("patch").await;
        (condition(&task, "Ready")?.1 == "Paused").then_some(())
    })
    .await
    .unwrap();
    // `resume` takes `paused` over from the manager that set it only with --force.
    let refused = plugin(&fx, &["resume", "patch"]).await;
    assert_eq!(refused.status.code(), Some(4), "{}", stdout(&refused));
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(said.contains("--force"), "{said}");
    let resumed = plugin(&fx, &["resume", "patch", "--force"]).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", String::from_utf8_lossy(&resumed.stderr));
    let waited = plugin(&fx, &["wait", "patch", "--timeout", "90s"]).await;
    let shown = stdout(&plugin(&fx, &["status", "patch", "-o", "yaml"]).await);
    let task = fx.task("patch").await;
    assert_eq!(
        waited.status.code(),
        Some(0),
        "{}\n{shown}\noperator finished: {}, generation {:?}, observed {:?}, paused {}, finalizers {:?}, admitted {:?}",
        stdout(&waited),
        fx.operator.is_finished(),
        task.metadata.generation,
        task.status.as_ref().and_then(|s| s.observed_generation),
        task.spec.rollout.paused,
        task.metadata.finalizers,
        fx.admitted("patch").await
    );

    // `rerun` and `pause` each keep their own field: one never takes back the other's.
    assert_eq!(plugin(&fx, &["rerun", "patch", "--token", "CHG-1"]).await.status.code(), Some(0));
    assert_eq!(plugin(&fx, &["pause", "patch"]).await.status.code(), Some(0));
    let task = fx.task("patch").await;
    assert_eq!(task.spec.rerun.as_deref(), Some("CHG-1"));
    assert!(task.spec.rollout.paused);
    let managers: Vec<String> =
        task.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    for manager in ["kubectl-hostprocess-rerun", "kubectl-hostprocess-pause"] {
        assert!(managers.iter().any(|m| m == manager), "{manager} in {managers:?}");
    }
    assert_eq!(
        plugin(&fx, &["retry-failed", "patch", "--token", "CHG/2"]).await.status.code(),
        Some(4),
        "a bad token is refused"
    );

    // A canary waiting for its promotion: `resume` promotes the current revision.
    let tasks: Api<hostprocess_crds::HostTask> = fx.tasks();
    let canary = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
        "metadata": {"name": "canary", "namespace": NS},
        "spec": {"script": "echo ok\n", "rollout": {"maxConcurrent": 1, "canary": {"nodes": 1}}}});
    tasks.patch("canary", &PatchParams::apply("gitops").force(), &Patch::Apply(&canary)).await.unwrap();
    until("the canary to wait for its promotion", Duration::from_secs(60), || async {
        let task = fx.task("canary").await;
        (condition(&task, "Ready")?.1 == "WaitingForPromotion").then_some(())
    })
    .await
    .unwrap();
    let why = stdout(&plugin(&fx, &["why", "canary"]).await);
    assert!(why.contains("kubectl hostprocess resume canary"), "{why}");
    assert_eq!(plugin(&fx, &["resume", "canary"]).await.status.code(), Some(0));
    assert_eq!(plugin(&fx, &["wait", "canary", "--timeout", "90s"]).await.status.code(), Some(0));
}
