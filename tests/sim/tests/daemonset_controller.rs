//! The simulated DaemonSet controller against the real API server.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use hostprocess_sim::wait::eventually;

/// Pods of the DaemonSet by node, with their revision label.
async fn placement(pods: &Api<Pod>) -> BTreeMap<String, String> {
    pods.list(&ListParams::default().labels("app=agent"))
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|p| {
            let node = p.spec.and_then(|s| s.node_name).unwrap_or_default();
            let rev = p
                .metadata
                .labels
                .unwrap_or_default()
                .get("controller-revision-hash")
                .cloned()
                .unwrap_or_default();
            (node, rev)
        })
        .collect()
}

#[tokio::test]
async fn daemon_pods_follow_nodes_selectors_taints_and_on_delete_updates() {
    let binaries = hostprocess_sim::Binaries::locate().expect("binaries");
    let cluster = hostprocess_sim::Cluster::start(&binaries).await.expect("cluster");
    let client = cluster.client().await.expect("client");
    let controller = hostprocess_sim::controllers::spawn_daemonset_controller(client.clone());
    hostprocess_sim::add_windows_nodes(&client, 3).await.expect("nodes");
    let nodes: Api<Node> = Api::all(client.clone());
    let linux: Node = serde_json::from_value(
        json!({"metadata": {"name": "linux-0", "labels": {"kubernetes.io/os": "linux"}}}),
    )
    .expect("node");
    nodes.create(&PostParams::default(), &linux).await.expect("linux node");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "hp"}})).expect("ns"),
        )
        .await
        .expect("ns");

    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "hp");
    let ds = |image: &str| -> DaemonSet {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": {"type": "OnDelete"},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                    "nodeSelector": {"kubernetes.io/os": "windows"},
                    "tolerations": [{"key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"}],
                    "containers": [{"name": "agent", "image": image}]}}},
        }))
        .expect("ds")
    };
    sets.patch("agent", &PatchParams::apply("test"), &Patch::Apply(&ds("agent:1"))).await.expect("ds");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "hp");

    // One pod per Windows node, none on Linux; owned by the DaemonSet; status counts.
    let first =
        eventually("three daemon pods", || async { Some(placement(&pods).await).filter(|p| p.len() == 3) })
            .await;
    assert_eq!(first.keys().cloned().collect::<Vec<_>>(), ["win-000", "win-001", "win-002"]);
    let revision = first["win-000"].clone();
    let owned = pods.list(&ListParams::default()).await.expect("list").items;
    assert!(
        owned.iter().all(|p| p.metadata.owner_references.as_ref().is_some_and(|o| o[0].kind == "DaemonSet"))
    );
    eventually("status", || async {
        let s = sets.get("agent").await.ok()?.status?;
        (s.desired_number_scheduled == 3 && s.current_number_scheduled == 3).then_some(())
    })
    .await;

    // A node that joins gets its pod; a node that leaves the selector loses it.
    hostprocess_sim::add_windows_nodes(&client, 4).await.expect("one more node");
    eventually("pod on the new node", || async {
        placement(&pods).await.contains_key("win-003").then_some(())
    })
    .await;
    let relabel = json!({"metadata": {"labels": {"kubernetes.io/os": "linux"}}});
    nodes.patch("win-001", &PatchParams::default(), &Patch::Merge(&relabel)).await.expect("relabel");
    eventually("pod removed from win-001", || async {
        (!placement(&pods).await.contains_key("win-001")).then_some(())
    })
    .await;

    // OnDelete: a new template changes nothing until a pod is deleted; its replacement is new.
    sets.patch("agent", &PatchParams::apply("test"), &Patch::Apply(&ds("agent:2"))).await.expect("update");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(placement(&pods).await.values().all(|r| *r == revision), "OnDelete keeps the old pods");
    let on_000 = pods
        .list(&ListParams::default().fields("spec.nodeName=win-000"))
        .await
        .expect("list")
        .items
        .remove(0);
    pods.delete(&on_000.metadata.name.unwrap_or_default(), &Default::default()).await.expect("delete");
    let after = eventually("replacement on win-000", || async {
        let p = placement(&pods).await;
        let replaced = p.get("win-000").is_some_and(|r| *r != revision);
        replaced.then_some(p)
    })
    .await;
    assert_eq!(after["win-002"], revision, "the other pods keep the old revision");
    controller.abort();
}
