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
    // Waiting for an object a sync may create next is progress (Reconciling), not Stalled.
    until("the task reports its missing HostGroup", Duration::from_secs(30), || async {
        condition(&fx.task("app-config").await, "Reconciling")
            .filter(|(s, r)| s == "True" && r == "HostGroupNotFound")
    })
    .await
    .unwrap();
    assert_eq!(condition(&fx.task("app-config").await, "Stalled").map(|c| c.0).as_deref(), Some("False"));

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

/// The records of HostGroup `name` on each node: node → (revision, machine ID, when).
async fn records(fx: &Fixture, name: &str) -> std::collections::BTreeMap<String, Value> {
    let uid = groups(fx).get(name).await.unwrap().metadata.uid.unwrap();
    let key = format!("provisioned.hostprocess.dev/{uid}");
    let nodes: Api<Node> = Api::all(fx.sim.client.clone());
    let mut records = std::collections::BTreeMap::new();
    for node in nodes.list(&ListParams::default()).await.unwrap() {
        if let Some(value) = node.metadata.annotations.as_ref().and_then(|a| a.get(&key)) {
            records.insert(node.metadata.name.clone().unwrap(), serde_json::from_str(value).unwrap());
        }
    }
    records
}

/// The setup pods of HostGroup `name` that exist now.
async fn setup_pods(fx: &Fixture, name: &str) -> Vec<String> {
    let pods: Api<Pod> =
        Api::namespaced(fx.sim.client.clone(), hostprocess_operator::Config::DEFAULT_GROUP_NAMESPACE);
    let selector = format!("hostprocess.dev/hostgroup={name}");
    pods.list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect()
}

/// Each running agent pod of task `name`: node → pod uid.
async fn agents(fx: &Fixture, name: &str) -> std::collections::BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(fx.sim.client.clone(), NS);
    let selector = format!("hostprocess.dev/task={name}");
    pods.list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| (p.spec.unwrap().node_name.unwrap(), p.metadata.uid.unwrap()))
        .collect()
}

async fn agent_running_as_group(fx: &Fixture) {
    fx.apply(
        "agent",
        json!({"script": "echo agent\nsleep 3600\n", "mode": "Continuous", "rollout": {"maxConcurrent": 2},
            "runAs": {"account": "HostGroup", "hostGroup": "agent-ops"}}),
    )
    .await;
    let ready = fx.wait_ready("agent", "the agent runs as the group on both nodes").await;
    assert_eq!(ready.status.unwrap().nodes.running, 2);
}

#[tokio::test]
async fn a_hostgroup_description_change_keeps_agents_running() {
    let fx = Fixture::start(2, "privileged").await;
    prepare_granted_path(&fx.sim);
    let spec = |description: &str, rights: &str| {
        json!({"groupName": "AgentOps", "description": description, "namespaces": [NS],
            "grants": [{"path": GRANTED, "rights": rights}], "rollout": {"maxConcurrent": 1}})
    };
    apply_group(&fx, "agent-ops", spec("runs the agent", "Read")).await;
    group_ready(&fx, "agent-ops").await;
    agent_running_as_group(&fx).await;
    let before = agents(&fx, "agent").await;
    assert_eq!(before.len(), 2);
    // Each node's success is recorded on the node.
    let recorded = until("both successes recorded", Duration::from_secs(30), || async {
        let records = records(&fx, "agent-ops").await;
        (records.len() == 2).then_some(records)
    })
    .await
    .unwrap();
    let pods = setup_pods(&fx, "agent-ops").await;
    assert_eq!(pods.len(), 2, "one provision pod per node: {pods:?}");

    // The description only: nothing is provisioned again, the agents keep running.
    apply_group(&fx, "agent-ops", spec("runs the monitoring agent", "Read")).await;
    group_ready(&fx, "agent-ops").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(setup_pods(&fx, "agent-ops").await, pods, "no setup pod for a description");
    assert_eq!(records(&fx, "agent-ops").await, recorded, "no node provisioned again");
    assert_eq!(agents(&fx, "agent").await, before, "the same agent pods run");

    // A real change rolls out node by node; the agents keep running meanwhile.
    apply_group(&fx, "agent-ops", spec("runs the monitoring agent", "ReadAndExecute")).await;
    let group = group_ready(&fx, "agent-ops").await;
    assert_eq!(group.status.unwrap().nodes.provisioned, 2);
    for node in 0..2 {
        assert_eq!(host_state(&fx.sim, node).1[0]["rights"], "ReadAndExecute");
    }
    let after = records(&fx, "agent-ops").await;
    for (node, record) in &after {
        assert_ne!(record["revision"], recorded[node]["revision"], "{node} has the new revision");
    }
    assert_eq!(agents(&fx, "agent").await, before, "the agents ran throughout");
    assert!(is(&fx.task("agent").await, "Ready", "True"));
}

#[tokio::test]
async fn a_reimaged_node_is_provisioned_again_before_tasks_run_there() {
    let fx = Fixture::start(2, "privileged").await;
    apply_group(&fx, "agent-ops", json!({"groupName": "AgentOps", "namespaces": [NS]})).await;
    group_ready(&fx, "agent-ops").await;
    agent_running_as_group(&fx).await;
    let before = agents(&fx, "agent").await;

    // win-001 is reimaged: same name, new machine ID, no local groups, no executor records.
    fx.sim.kubelets[1].reimage();
    let task = fx.tasks().get("agent").await.unwrap();
    let uid = task.metadata.uid.clone().unwrap();
    let (record, agent_started) =
        until("win-001 provisioned again and its agent back", Duration::from_secs(120), || async {
            let record = records(&fx, "agent-ops").await.remove("win-001")?;
            (record["machineID"] == "win-001-image-1").then_some(())?;
            let task = fx.task("agent").await;
            let status = task.status.as_ref()?;
            (status.nodes.running == 2).then_some(())?;
            // The executor's record of the agent on the new installation.
            let revision = task.status.as_ref()?.revision.clone()?;
            let file = fx.sim.kubelets[1].config.state_dir().join(format!("tasks/{uid}/{revision}.json"));
            let run: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
            let attempt = run["attempts"].as_array()?.first()?;
            let started = attempt["startTime"].as_str()?.parse::<k8s_openapi::jiff::Timestamp>().ok()?;
            Some((record, started))
        })
        .await
        .unwrap();
    assert!(host_state(&fx.sim, 1).0.contains("agentops"), "the group is back on win-001");
    // The provision pod of the new installation (the earlier one's went) finished before the
    // agent started there: the kubelet's retries of the agent's container failed to log on as a
    // group that did not exist, and the operator held the node back until its record was new.
    let pods: Api<Pod> =
        Api::namespaced(fx.sim.client.clone(), hostprocess_operator::Config::DEFAULT_GROUP_NAMESPACE);
    let provisions =
        pods.list(&ListParams::default().labels("hostprocess.dev/setup=provision")).await.unwrap();
    let on_win_001: Vec<&Pod> = provisions
        .items
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("win-001"))
        .collect();
    assert_eq!(on_win_001.len(), 1, "one provision pod on win-001, of its new installation");
    let terminated = on_win_001[0].status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    let provisioned = terminated.finished_at.unwrap().0;
    assert!(
        agent_started >= provisioned.round(k8s_openapi::jiff::Unit::Second).unwrap(),
        "the agent started ({agent_started}) after the group was back ({provisioned})"
    );
    assert_eq!(record["machineID"], "win-001-image-1");
    let after = agents(&fx, "agent").await;
    assert_eq!(after["win-000"], before["win-000"], "win-000's agent ran throughout");
}

#[tokio::test]
async fn a_setup_that_fails_for_a_lasting_reason_stops_and_says_why_until_it_is_fixed() {
    let fx = Fixture::start(2, "privileged").await;
    // The granted path exists on win-000 only.
    std::fs::create_dir_all(fx.sim.kubelets[0].config.test_store().join("fs/c/programdata/app")).unwrap();
    apply_group(
        &fx,
        "app-operators",
        json!({"groupName": "AppOperators", "grants": [{"path": GRANTED, "rights": "Read"}],
            "rollout": {"maxConcurrent": 2, "maxFailures": 1}}),
    )
    .await;
    let stalled = until("the HostGroup says why win-001 failed", Duration::from_secs(60), || async {
        let group = groups(&fx).get("app-operators").await.unwrap();
        let status = group.status.clone()?;
        let stalled = status.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True");
        (stalled && status.nodes.provisioned == 1).then_some(status)
    })
    .await
    .unwrap();
    assert_eq!(stalled.failures[0].node, "win-001");
    assert!(
        stalled.failures[0].message.contains("does not exist on this node"),
        "{}",
        stalled.failures[0].message
    );
    let stalled_message = stalled.conditions.iter().find(|c| c.type_ == "Stalled").unwrap().message.clone();
    assert!(stalled_message.contains("delete the failed setup pod"), "{stalled_message}");

    // Nothing retries a refusal that lasts: the one pod stays Failed, not restarted.
    let pods: Api<Pod> =
        Api::namespaced(fx.sim.client.clone(), hostprocess_operator::Config::DEFAULT_GROUP_NAMESPACE);
    let on_win_001 = || async {
        pods.list(&ListParams::default().labels("hostprocess.dev/setup=provision"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("win-001"))
            .collect::<Vec<Pod>>()
    };
    let first = on_win_001().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = on_win_001().await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].metadata.uid, first[0].metadata.uid, "the same pod");
    let status = later[0].status.clone().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(status.container_statuses.unwrap()[0].restart_count, 0, "not restarted");

    // Fixed on the node, the failed pod deleted: provisioned.
    std::fs::create_dir_all(fx.sim.kubelets[1].config.test_store().join("fs/c/programdata/app")).unwrap();
    pods.delete(later[0].metadata.name.as_deref().unwrap(), &DeleteParams::default()).await.unwrap();
    let group = group_ready(&fx, "app-operators").await;
    assert_eq!(group.status.unwrap().nodes.provisioned, 2);
}

#[tokio::test]
async fn a_hostgroup_rollout_waits_for_its_maintenance_window() {
    use k8s_openapi::jiff::{Timestamp, ToSpan, tz::TimeZone};
    let fx = Fixture::start(2, "privileged").await;
    let now = Timestamp::now().to_zoned(TimeZone::UTC);
    let weekday = format!("{:?}", now.date().checked_add(2.days()).unwrap().weekday());
    // A window the day after tomorrow only: nothing is provisioned, and the status says until when.
    let later =
        json!({"timeZone": "UTC", "windows": [{"days": [weekday], "start": "00:00", "end": "06:00"}]});
    apply_group(&fx, "readers", json!({"groupName": "LogReaders", "rollout": {"schedule": later}})).await;
    let waiting = until("the HostGroup to wait for its window", Duration::from_secs(30), || async {
        let group = groups(&fx).get("readers").await.unwrap();
        let status = group.status.as_ref()?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.reason == "WaitingForMaintenanceWindow").then_some(group)
    })
    .await
    .unwrap();
    let opens = now.date().checked_add(2.days()).unwrap().to_zoned(TimeZone::UTC).unwrap().timestamp();
    let status = waiting.status.unwrap();
    assert_eq!(status.next_window.map(|t| t.0), Some(opens));
    assert_eq!((status.nodes.provisioned, status.nodes.pending), (0, 2));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!((0..2).all(|n| !host_state(&fx.sim, n).0.contains("logreaders")), "no node provisioned");

    // A window around now: the group is provisioned everywhere.
    let clock = |t: k8s_openapi::jiff::Zoned| format!("{:02}:{:02}", t.hour(), t.minute());
    let around = json!({"windows": [{"start": clock(now.checked_sub(1.hour()).unwrap()),
        "end": clock(now.checked_add(1.hour()).unwrap())}]});
    apply_group(&fx, "readers", json!({"groupName": "LogReaders", "rollout": {"schedule": around}})).await;
    let ready = group_ready(&fx, "readers").await.status.unwrap();
    assert_eq!((ready.nodes.provisioned, ready.next_window), (2, None));
    assert!((0..2).all(|n| host_state(&fx.sim, n).0.contains("logreaders")));
}
