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

/// Runs the plugin with the kubeconfig at `kubeconfig`.
async fn plugin_as(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-hostprocess"))
        .args(args)
        .args(["-n", NS])
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("the plugin runs")
}

const PLANNED: &str = r#"apiVersion: hostprocess.dev/v1alpha1
kind: HostTask
metadata:
  name: planned
spec:
  script: "echo ok"
  rollout:
    maxConcurrent: 2
    canary:
      nodes: 1
      soak: 1h
---
apiVersion: hostprocess.dev/v1alpha1
kind: HostGroup
metadata:
  name: log-readers
spec:
  groupName: AppLogReaders
  members: ["CONTOSO\\app-log-readers"]
  grants:
    - path: 'C:\logs'
      rights: Read
  namespaces: [hostprocess-tasks]
"#;

#[tokio::test]
async fn plan_shows_the_nodes_and_waves_and_applies_nothing() {
    let fx = Fixture::start(3, "privileged").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("planned.yaml");
    std::fs::write(&file, PLANNED).unwrap();
    let file = file.to_str().unwrap();
    let admin = &fx.sim.cluster.kubeconfig_path;

    let planned =
        plugin_as(admin, &["plan", "-f", file, "--executor-image", "registry.example/executor:1"]).await;
    assert_eq!(
        planned.status.code(),
        Some(0),
        "{}{}",
        stdout(&planned),
        String::from_utf8_lossy(&planned.stderr)
    );
    insta::with_settings!({filters => vec![(r"\b[0-9a-f]{10}\b", "[revision]")]}, {
        insta::assert_snapshot!("plan_task_and_group", stdout(&planned));
    });
    let json: serde_json::Value =
        serde_json::from_slice(&plugin_as(admin, &["plan", "-f", file, "-o", "json"]).await.stdout).unwrap();
    assert_eq!(json[0]["kind"], "HostTask");
    assert_eq!(json[0]["steps"][1], json!({"step": "soak", "duration": "1h"}));
    assert_eq!(json[0]["creates"][1]["kind"], "DaemonSet");
    assert_eq!(json[1]["kind"], "HostGroup");

    // Nothing was applied: no task, no group, nothing made for them.
    assert!(fx.tasks().get_opt("planned").await.unwrap().is_none());
    let groups: Api<hostprocess_crds::HostGroup> = Api::all(fx.sim.client.clone());
    assert!(groups.get_opt("log-readers").await.unwrap().is_none());
    let daemon_sets: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(fx.sim.client.clone(), NS);
    assert!(daemon_sets.list(&Default::default()).await.unwrap().items.is_empty());
    no_scripts_or_pods(&fx.sim.client, NS).await;

    // What the API server refuses is shown with its message, and the plan fails.
    std::fs::write(
        dir.path().join("bad.yaml"),
        PLANNED.replace("maxConcurrent: 2", "maxConcurrent: \"150%\""),
    )
    .unwrap();
    let bad = plugin_as(admin, &["plan", "-f", dir.path().join("bad.yaml").to_str().unwrap()]).await;
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    assert!(
        stdout(&bad).contains("HostTask hostprocess-tasks/planned: the API server refuses it"),
        "{}",
        stdout(&bad)
    );

    // A file that is not a HostTask or HostGroup: a usage error naming the document.
    std::fs::write(dir.path().join("map.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
        .unwrap();
    let map = plugin_as(admin, &["plan", "-f", dir.path().join("map.yaml").to_str().unwrap()]).await;
    assert_eq!(map.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&map.stderr).contains("document 1 is a \"ConfigMap\""));

    // A task author in the namespace may plan; what it may not read is said, not guessed.
    user_with_role(&fx, NS, "alice", "hostprocess-task-author").await;
    let alice = fx.sim.cluster.certificate_kubeconfig("alice", "alice", &[]).unwrap();
    let as_alice = plugin_as(&alice, &["plan", "-f", file]).await;
    assert_eq!(
        as_alice.status.code(),
        Some(1),
        "she may not write HostGroups: {}{}",
        stdout(&as_alice),
        String::from_utf8_lossy(&as_alice.stderr)
    );
    let said = stdout(&as_alice);
    assert!(said.contains("cannot list nodes (forbidden to you)"), "{said}");
    assert!(said.contains("DaemonSet hostprocess-tasks/hostprocess-planned"), "{said}");
    assert!(
        said.contains("HostGroup log-readers: the API server refuses it"),
        "a task author may not write HostGroups: {said}"
    );

    // With hostprocess-planner bound to her, she sees the nodes and the waves.
    let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "alice-planner"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "hostprocess-planner"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(fx.sim.client.clone())
        .create(&Default::default(), &binding)
        .await
        .unwrap();
    let planner = until("the planner role to be in force", Duration::from_secs(30), || async {
        let said = stdout(&plugin_as(&alice, &["plan", "-f", file]).await);
        said.contains("Targets 3 of 3 nodes").then_some(said)
    })
    .await
    .unwrap();
    assert!(
        !planner.contains("cannot list nodes") && !planner.contains("cannot read HostTaskGrant"),
        "{planner}"
    );
    assert!(planner.contains("wave 2           2 nodes: win-001 win-002"), "{planner}");
}
