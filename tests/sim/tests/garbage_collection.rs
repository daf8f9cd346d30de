//! The simulated garbage collector against the real API server: background cascades through a
//! custom resource, foreground deletes dependents before the owner, orphan keeps them.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use hostprocess_crds::HostTask;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Resource, ResourceExt};
use serde_json::json;

async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let probe = || {
        let done = probe();
        async move { done.await.then_some(()) }
    };
    hostprocess_sim::wait::eventually(what, probe).await
}

fn daemonset(name: &str) -> DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "updateStrategy": {"type": "OnDelete"},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "tolerations": [{"operator": "Exists"}], "containers": [{"name": "c", "image": "i"}]}}},
    }))
    .expect("ds")
}

#[tokio::test]
async fn owner_references_cascade_in_background_foreground_and_orphan_modes() {
    let binaries = hostprocess_sim::Binaries::locate().expect("binaries");
    let cluster = hostprocess_sim::Cluster::start(&binaries).await.expect("cluster");
    let client = cluster.client().await.expect("client");
    let ds_controller = hostprocess_sim::controllers::spawn_daemonset_controller(client.clone());
    let gc = hostprocess_sim::gc::spawn_garbage_collector(client.clone());
    hostprocess_sim::add_windows_nodes(&client, 2).await.expect("nodes");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in hostprocess_crds::crds() {
        let name = crd.name_any();
        crds.patch(&name, &PatchParams::apply("test"), &Patch::Apply(&crd)).await.expect("crd");
        tokio::time::timeout(
            Duration::from_secs(20),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .expect("in time")
        .expect("established");
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "gc"}})).expect("ns"),
        )
        .await
        .expect("ns");
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), "gc");
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "gc");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "gc");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "gc");
    let pods_of = |app: &'static str| {
        let pods = pods.clone();
        async move { pods.list(&ListParams::default().labels(&format!("app={app}"))).await.expect("list").items }
    };

    // Background: a HostTask owns a ConfigMap and a DaemonSet, which owns pods.
    let task: HostTask =
        serde_json::from_value(json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
        "metadata": {"name": "t"}, "spec": {"script": "exit 0"}}))
        .expect("task");
    let task = tasks.create(&PostParams::default(), &task).await.expect("task");
    let owner = task.controller_owner_ref(&()).expect("owner ref");
    let mut ds = daemonset("bg");
    ds.metadata.owner_references = Some(vec![owner.clone()]);
    sets.create(&PostParams::default(), &ds).await.expect("ds");
    let mut cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "script"}, "data": {"run.ps1": "exit 0"}}))
            .expect("cm");
    cm.metadata.owner_references = Some(vec![owner]);
    maps.create(&PostParams::default(), &cm).await.expect("cm");
    eventually("daemon pods", || async { pods_of("bg").await.len() == 2 }).await;
    tasks.delete("t", &DeleteParams::background()).await.expect("delete task");
    eventually("the task's ConfigMap, DaemonSet and pods gone", || async {
        maps.get_opt("script").await.expect("get").is_none()
            && sets.get_opt("bg").await.expect("get").is_none()
            && pods_of("bg").await.is_empty()
    })
    .await;

    // Foreground: the pods go first, then the DaemonSet.
    sets.create(&PostParams::default(), &daemonset("fg")).await.expect("ds");
    eventually("daemon pods", || async { pods_of("fg").await.len() == 2 }).await;
    sets.delete("fg", &DeleteParams::foreground()).await.expect("delete");
    let waiting = sets.get("fg").await.expect("still there while pods exist");
    assert!(waiting.finalizers().iter().any(|f| f == "foregroundDeletion"));
    eventually("the DaemonSet gone after its pods", || async {
        match sets.get_opt("fg").await.expect("get") {
            Some(_) => false,
            None => {
                assert!(pods_of("fg").await.is_empty(), "the owner went before its dependents");
                true
            }
        }
    })
    .await;

    // Orphan: the pods stay, without the reference.
    sets.create(&PostParams::default(), &daemonset("or")).await.expect("ds");
    eventually("daemon pods", || async { pods_of("or").await.len() == 2 }).await;
    ds_controller.abort();
    sets.delete("or", &DeleteParams::orphan()).await.expect("delete");
    eventually("the DaemonSet gone", || async { sets.get_opt("or").await.expect("get").is_none() }).await;
    let orphans = pods_of("or").await;
    assert_eq!(orphans.len(), 2);
    assert!(orphans.iter().all(|p| p.owner_references().is_empty()), "{orphans:?}");
    gc.abort();
}
