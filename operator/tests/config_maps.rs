//! Nothing is trusted by name: a namespace editor (the built-in `edit` role: ConfigMaps, not
//! HostTaskGrants) who plants a script under the name the operator will use, or swaps the
//! operator's script for their own, gets nothing run on any node. The operator refuses a
//! ConfigMap it does not control; the executor refuses a script whose SHA-256 is not the one in
//! the pod spec.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Fixture, NS, is};
use hostprocess_operator::labels::script_config_map_name;
use hostprocess_sim::wait::until;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// The planted script: it leaves `marker` behind if it ever runs.
fn planted(name: &str, marker: &Path) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name},
        "data": {"script.ps1": format!("touch {}\nexit 0\n", marker.display())}}))
    .unwrap()
}

#[tokio::test]
async fn a_swapped_or_planted_script_config_map_runs_nothing() {
    let fx = Fixture::start(2, "privileged").await;
    let bob = common::user_with_role(&fx, NS, "bob", "edit").await;
    let bobs_maps: Api<ConfigMap> = Api::namespaced(bob.clone(), NS);
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("planted-script-ran");
    let spec =
        json!({"script": "echo patched\n", "retries": {"limit": 0}, "rollout": {"maxConcurrent": "100%"}});

    // 1. Swapped: the operator wrote the script of a paused task; bob deletes it and creates his
    //    own under the same name before the rollout starts.
    let mut paused = spec.clone();
    paused["rollout"]["paused"] = json!(true);
    fx.apply("first", paused).await;
    let revision =
        until("the revision", Duration::from_secs(30), || async { fx.task("first").await.status?.revision })
            .await
            .unwrap();
    let name = script_config_map_name("first", &revision);
    until("the operator's script ConfigMap", Duration::from_secs(30), || async {
        bobs_maps.get_opt(&name).await.ok()?.map(|_| ())
    })
    .await
    .unwrap();
    bobs_maps.delete(&name, &DeleteParams::default()).await.unwrap();
    bobs_maps.create(&PostParams::default(), &planted(&name, &marker)).await.unwrap();
    fx.apply("first", spec.clone()).await;
    let halted = until("the rollout halts on the refused script", Duration::from_secs(90), || async {
        let task = fx.task("first").await;
        (task.status.as_ref()?.nodes.failed >= 1 && is(&task, "Stalled", "True")).then_some(task)
    })
    .await
    .unwrap();
    let failures = halted.status.unwrap().failures;
    assert!(
        failures.iter().all(|f| f.message.contains("is not the one the operator wrote")),
        "every failing node says why: {failures:?}"
    );
    assert!(!marker.exists(), "the swapped script ran");

    // 2. Planted: the same script under a second task's name, before that task exists (the name
    //    is predictable: the revision is a hash of the spec, shown in the first task's status).
    let name = script_config_map_name("second", &revision);
    bobs_maps.create(&PostParams::default(), &planted(&name, &marker)).await.unwrap();
    fx.apply("second", spec.clone()).await;
    let message = until("the second task refuses the planted ConfigMap", Duration::from_secs(30), || async {
        let task = fx.task("second").await;
        let stalled =
            task.status?.conditions.into_iter().find(|c| c.type_ == "Stalled" && c.status == "True")?;
        (stalled.reason == "ForeignConfigMap").then_some(stalled.message)
    })
    .await
    .unwrap();
    assert!(message.contains(&format!("ConfigMap {NS}/{name} exists but is not controlled")), "{message}");
    let sets: Api<DaemonSet> = Api::namespaced(fx.sim.client.clone(), NS);
    assert!(sets.get_opt("hostprocess-second").await.unwrap().is_none(), "nothing runs the second task");

    // Once the planted one is gone, the operator writes its own and the task runs it.
    bobs_maps.delete(&name, &DeleteParams::default()).await.unwrap();
    let done = fx.wait_ready("second", "the second task runs its own script").await;
    assert_eq!(done.status.unwrap().nodes.succeeded, 2);
    let written = Api::<ConfigMap>::namespaced(fx.sim.client.clone(), NS).get(&name).await.unwrap();
    assert_eq!(written.data.unwrap()["script.ps1"], "echo patched\n");
    assert!(!marker.exists(), "the planted script ran");
    // Server-side apply by the editor cannot change the operator's script either: it is immutable.
    let change = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
        "data": {"script.ps1": "exit 0\n"}});
    let refused = bobs_maps.patch(&name, &PatchParams::apply("bob").force(), &Patch::Apply(&change)).await;
    assert!(refused.is_err(), "an immutable ConfigMap changed: {refused:?}");
}
