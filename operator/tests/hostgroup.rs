//! HostGroups end to end on the simulated cluster: setup pods provision the local group and its
//! grants on each node (the real node-executor, its Linux platform's file-backed account and ACL
//! store standing for Windows), tasks run as the group only where it is provisioned, deletion
//! cleans every node. The simulated kubelet refuses to start a container whose
//! `runAsUserName` is a group missing on its node, as containerd 1.7 does.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use hostprocess_crds::HostGroup;
use hostprocess_sim::Simulation;
use hostprocess_sim::wait::until;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

const GRANTED: &str = r"C:\ProgramData\App";

fn groups(fx: &Fixture) -> Api<HostGroup> {
    Api::all(fx.sim.client.clone())
}

async fn apply_group(fx: &Fixture, name: &str, spec: Value) {
    let group = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostGroup",
        "metadata": {"name": name}, "spec": spec});
    groups(fx)
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&group))
        .await
        .expect("applies");
}

/// The HostGroup once its status describes its current generation and says Ready.
async fn group_ready(fx: &Fixture, name: &str) -> HostGroup {
    until("the HostGroup is Ready", Duration::from_secs(60), || async {
        let group = groups(fx).get(name).await.unwrap();
        let status = group.status.as_ref()?;
        let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && status.observed_generation == group.metadata.generation).then_some(group)
    })
    .await
    .unwrap()
}

/// A node's local groups and the ACL entries on `GRANTED`, from its test store.
fn host_state(sim: &Simulation, node: usize) -> (BTreeSet<String>, Value) {
    let store = sim.kubelets[node].config.test_store();
    let read = |file: &str| -> Value {
        std::fs::read(store.join(file)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    };
    let accounts = read("accounts.json");
    let groups = accounts["groups"].as_object().map(|g| g.keys().cloned().collect()).unwrap_or_default();
    let acl = read("acls.json")[GRANTED.to_lowercase()].clone();
    (groups, acl)
}

fn prepare_granted_path(sim: &Simulation) {
    for kubelet in &sim.kubelets {
        std::fs::create_dir_all(kubelet.config.test_store().join("fs/c/programdata/app")).unwrap();
    }
}

async fn label_node(fx: &Fixture, node: &str, ring: &str) {
    let nodes: Api<Node> = Api::all(fx.sim.client.clone());
    let patch = json!({"metadata": {"labels": {"ring": ring}}});
    nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

#[tokio::test]
async fn a_task_running_as_a_hostgroup_starts_only_where_the_group_is_provisioned() {
    let fx = Fixture::start(3, "privileged").await;
    prepare_granted_path(&fx.sim);
    label_node(&fx, "win-000", "a").await;
    label_node(&fx, "win-001", "a").await;

    // The task first: it must wait for its HostGroup, not start anywhere.
    fx.apply(
        "app-config",
        json!({"script": "echo configured\n", "runAs": {"account": "HostGroup", "hostGroup": "app-operators"}}),
    )
    .await;
    until("the task reports its missing HostGroup", Duration::from_secs(30), || async {
        condition(&fx.task("app-config").await, "Stalled")
            .filter(|(s, r)| s == "True" && r == "HostGroupNotFound")
    })
    .await
    .unwrap();

    // The group on ring "a" only: two of the three nodes.
    apply_group(
        &fx,
        "app-operators",
        json!({"groupName": "AppOperators", "description": "operates the app", "namespaces": [NS],
            "nodeSelector": {"matchLabels": {"ring": "a"}},
            "grants": [{"path": GRANTED, "rights": "Modify"}]}),
    )
    .await;
    let group = group_ready(&fx, "app-operators").await;
    let status = group.status.unwrap();
    assert_eq!((status.nodes.targeted, status.nodes.provisioned, status.nodes.failed), (2, 2, 0));
    for node in [0, 1] {
        let (groups, acl) = host_state(&fx.sim, node);
        assert!(groups.contains("appoperators"), "win-00{node} has the group: {groups:?}");
        assert_eq!(acl[0]["group"], "AppOperators");
        assert_eq!(acl[0]["rights"], "Modify");
    }
    assert!(!host_state(&fx.sim, 2).0.contains("appoperators"), "win-002 is not targeted");

    // The task runs on the two provisioned nodes, as the group; the third waits.
    let task = until("the task ran where the group is", Duration::from_secs(60), || async {
        let task = fx.task("app-config").await;
        let status = task.status.as_ref()?;
        (status.nodes.succeeded == 2).then_some(task)
    })
    .await
    .unwrap();
    let status = task.status.as_ref().unwrap();
    assert_eq!((status.nodes.targeted, status.nodes.failed, status.nodes.pending), (3, 0, 1));
    assert_eq!(condition(&task, "Reconciling").map(|c| c.1).as_deref(), Some("WaitingForHostGroup"));
    assert_eq!(fx.admitted("app-config").await, BTreeSet::from(["win-000".into(), "win-001".into()]));
    let sets: Api<DaemonSet> = Api::namespaced(fx.sim.client.clone(), NS);
    let ds = sets.get("hostprocess-app-config").await.unwrap();
    let user = ds.spec.unwrap().template.spec.unwrap().security_context.unwrap().windows_options.unwrap();
    assert_eq!(user.run_as_user_name.as_deref(), Some("AppOperators"));

    // The third node joins the ring: provisioned first, then the task runs there too.
    label_node(&fx, "win-002", "a").await;
    let done = fx.wait_ready("app-config", "the task completes on all three nodes").await;
    assert_eq!(done.status.unwrap().nodes.succeeded, 3);
    assert!(host_state(&fx.sim, 2).0.contains("appoperators"));
    for node in 0..3 {
        assert_eq!(record(&fx.sim, node, &fx.task("app-config").await)["state"], "Succeeded");
    }

    // A spec change re-provisions every node with the new grant.
    apply_group(
        &fx,
        "app-operators",
        json!({"groupName": "AppOperators", "description": "operates the app", "namespaces": [NS],
            "nodeSelector": {"matchLabels": {"ring": "a"}},
            "grants": [{"path": GRANTED, "rights": "ReadAndExecute"}]}),
    )
    .await;
    group_ready(&fx, "app-operators").await;
    for node in 0..3 {
        assert_eq!(host_state(&fx.sim, node).1[0]["rights"], "ReadAndExecute");
    }
}

#[tokio::test]
async fn deleting_a_hostgroup_cleans_every_node_and_a_node_that_is_gone_does_not_block_it() {
    let fx = Fixture::start(3, "privileged").await;
    prepare_granted_path(&fx.sim);
    apply_group(
        &fx,
        "app-operators",
        json!({"groupName": "AppOperators", "grants": [{"path": GRANTED, "rights": "Modify"}]}),
    )
    .await;
    let group = group_ready(&fx, "app-operators").await;
    assert!(group.metadata.finalizers.unwrap_or_default().contains(&"hostprocess.dev/cleanup".to_string()));
    for node in 0..3 {
        assert!(host_state(&fx.sim, node).0.contains("appoperators"));
    }

    // One node leaves the cluster for good before the group is deleted: it goes down, then
    // its Node object is removed.
    fx.sim.kubelets[2].lose();
    Api::<Node>::all(fx.sim.client.clone()).delete("win-002", &DeleteParams::default()).await.unwrap();
    groups(&fx).delete("app-operators", &DeleteParams::default()).await.unwrap();
    until("the HostGroup is gone", Duration::from_secs(60), || async {
        groups(&fx).get_opt("app-operators").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    for node in [0, 1] {
        let (groups, acl) = host_state(&fx.sim, node);
        assert!(!groups.contains("appoperators"), "win-00{node} no longer has the group: {groups:?}");
        assert!(acl.is_null(), "the grant is revoked on win-00{node}: {acl}");
    }
    // Nothing could run on the node that is gone: the group stays there (reported in an event).
    assert!(host_state(&fx.sim, 2).0.contains("appoperators"));
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(fx.sim.client.clone());
    until("an event names the node that is gone", Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("NodesGone"))
            .any(|e| e.note.as_deref().unwrap_or_default().contains("win-002"))
            .then_some(())
    })
    .await
    .unwrap();
    // The setup pods went with the HostGroup.
    let pods: Api<Pod> = Api::namespaced(fx.sim.client.clone(), NS);
    until("the setup pods are gone", Duration::from_secs(30), || async {
        let left = pods.list(&ListParams::default().labels("hostprocess.dev/hostgroup")).await.unwrap();
        left.items.is_empty().then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_second_hostgroup_naming_a_managed_windows_group_is_refused_and_the_first_keeps_working() {
    use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
    use kube::api::PostParams;
    let fx = Fixture::start(2, "privileged").await;
    prepare_granted_path(&fx.sim);
    apply_group(
        &fx,
        "dup-grp",
        json!({"groupName": "DupGrp", "namespaces": [NS], "grants": [{"path": GRANTED, "rights": "Modify"}]}),
    )
    .await;
    group_ready(&fx, "dup-grp").await;
    fx.apply(
        "agent",
        json!({"script": "sleep 3600\n", "mode": "Continuous", "runAs": {"account": "HostGroup", "hostGroup": "dup-grp"}}),
    )
    .await;
    let sets: Api<DaemonSet> = Api::namespaced(fx.sim.client.clone(), NS);
    let agent_ready = || async {
        let ds = sets.get_opt("hostprocess-agent").await.ok()??;
        (ds.status?.number_ready == 2).then_some(())
    };
    until("the agent runs as the group on both nodes", Duration::from_secs(60), agent_ready).await.unwrap();
    let before: Vec<_> = (0..2).map(|n| host_state(&fx.sim, n)).collect();

    // The admission policy refuses the second HostGroup (the same group, another case).
    let second: HostGroup = serde_json::from_value(json!({"apiVersion": "hostprocess.dev/v1alpha1",
        "kind": "HostGroup", "metadata": {"name": "dupgrp"}, "spec": {"groupName": "dupgrp"}}))
    .unwrap();
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    let refused = until("the admission policy refuses it", Duration::from_secs(30), || async {
        match groups(&fx).create(&dry_run, &second).await {
            Err(kube::Error::Api(status)) => Some(status.message),
            _ => None,
        }
    })
    .await
    .unwrap();
    let said = refused.split_once("denied request: ").map(|(_, m)| m.to_string()).unwrap_or(refused.clone());
    assert!(said.starts_with("Windows group dupgrp is managed by HostGroup dup-grp"), "{refused}");

    // Without the policy, the operator refuses it in the same words and touches no node.
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(fx.sim.client.clone());
    bindings.delete("hostprocess-hostgroup-owner", &DeleteParams::default()).await.unwrap();
    until("the API server stores it", Duration::from_secs(30), || async {
        groups(&fx).create(&PostParams::default(), &second).await.ok().map(|_| ())
    })
    .await
    .unwrap();
    let stalled = until("the second HostGroup is refused", Duration::from_secs(30), || async {
        let group = groups(&fx).get("dupgrp").await.ok()?;
        let status = group.status?;
        let c = status.conditions.into_iter().find(|c| c.type_ == "Stalled" && c.status == "True")?;
        (c.reason == "GroupNameTaken").then_some(c.message)
    })
    .await
    .unwrap();
    assert_eq!(stalled, said);
    let pods: Api<Pod> = Api::namespaced(fx.sim.client.clone(), NS);
    let setup = pods.list(&ListParams::default().labels("hostprocess.dev/hostgroup=dupgrp")).await.unwrap();
    assert!(setup.items.is_empty(), "no setup pod for the second HostGroup");

    // Deleting it leaves the first's group, grant and agent alone.
    groups(&fx).delete("dupgrp", &DeleteParams::default()).await.unwrap();
    until("the second HostGroup is gone", Duration::from_secs(30), || async {
        groups(&fx).get_opt("dupgrp").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    let after: Vec<_> = (0..2).map(|n| host_state(&fx.sim, n)).collect();
    assert_eq!(after, before, "the nodes' groups and grants are as the first HostGroup left them");
    assert!(after[0].0.contains("dupgrp"), "{after:?}");
    let first = groups(&fx).get("dup-grp").await.unwrap();
    assert!(first.status.unwrap().conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    until("the agent still runs on both nodes", Duration::from_secs(10), agent_ready).await.unwrap();
}
