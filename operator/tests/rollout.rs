//! The operator end to end on the simulated cluster: real API server, simulated Windows nodes
//! whose kubelets run the real node-executor (Linux platform; scripts run with /bin/sh there).
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use hostprocess_sim::wait::until;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

#[tokio::test]
async fn a_patch_rollout_over_20_nodes_never_runs_more_than_max_concurrent_and_runs_each_once() {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};

    let fx = Fixture::start(20, "privileged").await;
    // On every watch event of the task's pods: how many nodes run the payload right now.
    let pods: Api<Pod> = Api::namespaced(fx.sim.client.clone(), NS);
    let most_running = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let events_seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watching = {
        let (most_running, events_seen) = (most_running.clone(), events_seen.clone());
        tokio::spawn(async move {
            let mut running: std::collections::BTreeMap<String, bool> = Default::default();
            let mut stream = std::pin::pin!(
                watcher(pods, watcher::Config::default().labels("hostprocess.dev/task=patch"))
                    .touched_objects()
            );
            while let Some(Ok(pod)) = stream.next().await {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let busy = pod.metadata.deletion_timestamp.is_none() && runs_its_payload(&pod);
                running.insert(name, busy);
                let now = running.values().filter(|b| **b).count();
                most_running.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                events_seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    fx.apply(
        "patch",
        json!({"script": "sleep 1\necho patched\n", "runAs": {"account": "System"},
            "rollout": {"maxConcurrent": 5}}),
    )
    .await;
    let mut most_reported = 0;
    let started = std::time::Instant::now();
    let done = loop {
        let task = fx.task("patch").await;
        if let Some(status) = &task.status {
            most_reported = most_reported.max(status.nodes.running);
        }
        if is(&task, "Ready", "True") {
            break task;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the rollout did not complete: {:?}",
            task.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    watching.abort();
    let most_running = most_running.load(std::sync::atomic::Ordering::SeqCst);
    assert!(events_seen.load(std::sync::atomic::Ordering::SeqCst) >= 40, "pod events were watched");
    assert!(most_running <= 5, "never more than maxConcurrent payloads at once, saw {most_running}");
    assert!(most_running >= 4, "the rollout used its slots, saw at most {most_running}");
    assert!(most_reported <= 5, "status never reported more than maxConcurrent running");
    let status = done.status.unwrap();
    assert_eq!((status.nodes.targeted, status.nodes.succeeded, status.nodes.failed), (20, 20, 0));
    assert!(status.completion_time.is_some());
    assert!(status.conditions.iter().all(|c| c.observed_generation == done.metadata.generation));
    // Each node ran the payload once for this revision: one record per node, succeeded.
    let revision = status.revision.unwrap();
    let uid = done.metadata.uid.unwrap();
    for kubelet in &fx.sim.kubelets {
        let record = record_of(kubelet, &uid, &revision).expect("record");
        assert_eq!(record["state"], "Succeeded");
        assert_eq!(record["attempts"].as_array().map(Vec::len), Some(1));
    }
    // Events say what happened (written in the background, so shortly after the status).
    let events: Api<Event> = Api::namespaced(fx.sim.client.clone(), NS);
    until("the rollout's events", Duration::from_secs(30), || async {
        let reasons: BTreeSet<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        (reasons.contains("WaveStarted") && reasons.contains("RolloutComplete")).then_some(())
    })
    .await
    .unwrap();
    // The first wave already honours maxConcurrent, all five at once. (Read from the operator's
    // own account: node labels are written one by one, so a poll can see a wave half-labelled.)
    let first_wave = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("WaveStarted"))
        .min_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0))
        .and_then(|e| e.note)
        .unwrap_or_default();
    assert!(first_wave.starts_with("starting on 5 nodes: "), "{first_wave}");
    // Every wave is an Event of its own (not a repeat of the first with a count): together they
    // name every node, each once.
    let mut named: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("WaveStarted"))
        .filter_map(|e| e.note)
        .flat_map(|note| {
            let nodes = note.split_once(": ").map(|(_, nodes)| nodes.to_string()).unwrap_or_default();
            nodes.split(", ").map(String::from).collect::<Vec<_>>()
        })
        .collect();
    named.sort();
    let every_node: Vec<String> = fx.sim.kubelets.iter().map(|k| k.config.node.clone()).collect();
    let mut every_node = every_node;
    every_node.sort();
    assert_eq!(named, every_node, "the waves' Events name every node once");

    // Deleting the task takes its admission labels off every node before it goes.
    let key = hostprocess_operator::admission_label(&uid);
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(fx.sim.client.clone());
    let labelled = |list: kube::api::ObjectList<k8s_openapi::api::core::v1::Node>| {
        list.items.iter().filter(|n| n.metadata.labels.as_ref().is_some_and(|l| l.contains_key(&key))).count()
    };
    assert_eq!(labelled(nodes.list(&ListParams::default()).await.unwrap()), 20, "every node was admitted");
    fx.tasks().delete("patch", &Default::default()).await.unwrap();
    until("the task to be gone", Duration::from_secs(30), || async {
        fx.tasks().get_opt("patch").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    assert_eq!(labelled(nodes.list(&ListParams::default()).await.unwrap()), 0, "no admission label is left");
}

#[tokio::test]
async fn a_rollout_halts_when_failures_exceed_max_failures() {
    let fx = Fixture::start(5, "privileged").await;
    fx.apply(
        "broken",
        json!({"script": "echo cannot patch >&2\nexit 3\n", "retries": {"limit": 0},
            "rollout": {"maxConcurrent": 1, "maxFailures": 1}}),
    )
    .await;
    let halted = until("the rollout to halt", Duration::from_secs(90), || async {
        let task = fx.task("broken").await;
        is(&task, "Stalled", "True").then_some(task)
    })
    .await
    .unwrap();
    assert_eq!(condition(&halted, "Stalled").unwrap().1, "FailureBudgetExceeded");
    assert_eq!(condition(&halted, "Ready").unwrap().0, "False");
    let status = halted.status.unwrap();
    assert_eq!((status.nodes.failed, status.nodes.succeeded, status.nodes.pending), (2, 0, 3));
    let failure = &status.failures[0];
    assert_eq!(failure.exit_code, Some(3));
    assert_eq!(failure.reason, "ExitCode");
    // Nothing new starts after the halt.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fx.admitted("broken").await.len(), 2);
    // Each failed node is an Event of its own, not a repeat of the first one's.
    let events: Api<Event> = Api::namespaced(fx.sim.client.clone(), NS);
    let failed_nodes = until("an Event per failed node", Duration::from_secs(30), || async {
        let mut named: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("NodeFailed"))
            .filter_map(|e| Some(e.note?.split_once(':')?.0.to_string()))
            .collect();
        named.sort();
        (named.len() == 2).then_some(named)
    })
    .await
    .unwrap();
    let mut listed: Vec<String> = status.failures.iter().map(|f| f.node.clone()).collect();
    listed.sort();
    assert_eq!(failed_nodes, listed);
}

/// The task namespace's Events with this reason.
async fn events_with_reason(fx: &Fixture, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(fx.sim.client.clone(), NS);
    let list = events.list(&ListParams::default()).await.unwrap();
    list.items.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
}

/// Every node's record of this task's revision: (node, state, when its first attempt started).
async fn records(fx: &Fixture, task: &str) -> Vec<(String, String, k8s_openapi::jiff::Timestamp)> {
    let task = fx.task(task).await;
    let (uid, revision) = (task.metadata.uid.unwrap(), task.status.unwrap().revision.unwrap());
    let mut found = vec![];
    for kubelet in &fx.sim.kubelets {
        let Some(record) = record_of(kubelet, &uid, &revision) else { continue };
        let started = record["attempts"][0]["startTime"].as_str().unwrap().parse().unwrap();
        found.push((kubelet.config.node.clone(), record["state"].as_str().unwrap().to_string(), started));
    }
    found
}

#[tokio::test]
async fn the_failure_budget_holds_with_payloads_that_fail_at_once() {
    let fx = Fixture::start(12, "privileged").await;
    let fail_at_once = json!({"script": "exit 3\n", "retries": {"limit": 0},
        "rollout": {"maxConcurrent": 4, "maxFailures": 1}});
    fx.apply("eager", fail_at_once.clone()).await;
    let mut strict = fail_at_once;
    strict["rollout"]["failureBudget"] = json!("Strict");
    strict["rollout"]["maxConcurrent"] = json!(6);
    fx.apply("strict", strict).await;
    for task in ["eager", "strict"] {
        until("the rollout to halt", Duration::from_secs(90), || async {
            is(&fx.task(task).await, "Stalled", "True").then_some(())
        })
        .await
        .unwrap();
    }
    // When the operator announced the halt of the eager rollout.
    let halted_at = until("the RolloutHalted Event", Duration::from_secs(30), || async {
        events_with_reason(&fx, "RolloutHalted")
            .await
            .into_iter()
            .find(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("eager"))
            .and_then(|e| e.event_time)
            .map(|t| t.0)
    })
    .await
    .unwrap();
    // Long enough for anything admitted before the halt to start, were it not withdrawn.
    tokio::time::sleep(Duration::from_secs(5)).await;

    // No node is admitted once the halt is decided: every wave was told before it, and every
    // payload that ran was on a node one of those waves admitted. (A pod already starting when
    // its node was withdrawn can still start its payload in that instant: withdrawal goes
    // through the DaemonSet controller.)
    let eager = records(&fx, "eager").await;
    let waves: Vec<Event> = events_with_reason(&fx, "WaveStarted")
        .await
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("eager"))
        .collect();
    let after: Vec<_> =
        waves.iter().filter(|e| e.event_time.as_ref().is_some_and(|t| t.0 > halted_at)).collect();
    assert!(after.is_empty(), "nodes admitted after the halt ({halted_at}): {after:?}");
    let admitted: BTreeSet<String> = waves
        .iter()
        .filter_map(|e| e.note.as_deref()?.split_once(": ").map(|(_, nodes)| nodes.to_string()))
        .flat_map(|nodes| nodes.split(", ").map(String::from).collect::<Vec<_>>())
        .collect();
    let unadmitted: Vec<_> = eager.iter().filter(|(node, _, _)| !admitted.contains(node)).collect();
    assert!(unadmitted.is_empty(), "payloads ran on nodes no wave admitted: {unadmitted:?} {admitted:?}");
    // maxConcurrent nodes, and one more in the slot the failure within the budget freed.
    assert!(eager.len() <= 4 + 1, "at most maxConcurrent + maxFailures nodes ran: {eager:?}");
    assert!(eager.iter().all(|(_, state, _)| state == "Failed"), "{eager:?}");
    // A node withdrawn in the instant its payload started may finish before its pod reports
    // it (its record on the node says what happened); what the status counts did run.
    let eager_task = fx.task("eager").await.status.unwrap();
    assert!((2..=eager.len()).contains(&(eager_task.nodes.failed as usize)), "{eager_task:?} {eager:?}");

    let strict = records(&fx, "strict").await;
    assert!(strict.len() <= 2, "a strict budget of 1 lets at most 2 nodes fail: {strict:?}");
    assert_eq!(fx.task("strict").await.status.unwrap().nodes.failed, 2);
}

#[tokio::test]
async fn a_namespace_that_refuses_hostprocess_pods_is_reported_not_retried() {
    let fx = Fixture::start(1, "baseline").await;
    fx.apply("patch", json!({"script": "exit 0"})).await;
    let stalled = until("the Stalled condition", Duration::from_secs(30), || async {
        let task = fx.task("patch").await;
        is(&task, "Stalled", "True").then_some(task)
    })
    .await
    .unwrap();
    let message =
        stalled.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Stalled").unwrap().message;
    assert!(message.contains("pod-security.kubernetes.io/enforce=privileged"), "{message}");
    assert!(fx.admitted("patch").await.is_empty(), "no DaemonSet was created");

    // The operator's judgement is the real PodSecurity admission plugin's: the pod it builds for
    // the same task in a privileged namespace is refused here (a server-side dry run).
    fx.namespace("privileged-tasks", "privileged").await;
    fx.apply_in("privileged-tasks", "patch", json!({"script": "exit 0"})).await;
    let sets: Api<DaemonSet> = Api::namespaced(fx.sim.client.clone(), "privileged-tasks");
    let template = until("the DaemonSet in the privileged namespace", Duration::from_secs(30), || async {
        Some(sets.get_opt("hostprocess-patch").await.ok()??.spec?.template)
    })
    .await
    .unwrap();
    let pod = Pod {
        metadata: kube::api::ObjectMeta { name: Some("probe".into()), ..Default::default() },
        spec: template.spec,
        ..Default::default()
    };
    let pods: Api<Pod> = Api::namespaced(fx.sim.client.clone(), NS);
    let refused = pods.create(&PostParams { dry_run: true, ..Default::default() }, &pod).await.unwrap_err();
    let refused = refused.to_string();
    assert!(refused.contains("violates PodSecurity \"baseline:latest\""), "{refused}");
    assert!(refused.contains("hostProcess"), "{refused}");
}

#[tokio::test]
async fn an_operator_restart_mid_rollout_resumes_without_exceeding_max_concurrent_or_rerunning() {
    let mut fx = Fixture::start(4, "privileged").await;
    fx.apply("patch", json!({"script": "sleep 2\n", "rollout": {"maxConcurrent": 1}})).await;
    until("the first node to finish", Duration::from_secs(60), || async {
        let task = fx.task("patch").await;
        (task.status?.nodes.succeeded >= 1).then_some(())
    })
    .await
    .unwrap();
    fx.restart_operator();
    let mut most_running = 0;
    let done = fx
        .watch_until_ready("patch", Duration::from_secs(90), |task| {
            most_running = most_running.max(task.status.as_ref().unwrap().nodes.running);
        })
        .await;
    assert!(most_running <= 1, "maxConcurrent held across the restart, saw {most_running}");
    assert_eq!(done.status.as_ref().unwrap().nodes.succeeded, 4);
    for node in 0..4 {
        assert_eq!(
            record(&fx.sim, node, &done)["attempts"].as_array().map(Vec::len),
            Some(1),
            "node {node} ran once"
        );
    }
}

#[tokio::test]
async fn a_node_joining_later_gets_the_task_and_a_new_revision_rolls_out_again() {
    let mut fx = Fixture::start(2, "privileged").await;
    fx.apply("config", json!({"script": "echo v1\n", "rollout": {"maxConcurrent": "50%"}})).await;
    let v1 = fx.wait_ready("config", "revision 1 on two nodes").await;
    assert_eq!(v1.status.as_ref().unwrap().nodes.succeeded, 2);

    fx.sim.add_nodes(1).await.unwrap();
    let joined = until("the new node to get the task", Duration::from_secs(60), || async {
        let task = fx.task("config").await;
        let nodes = &task.status.as_ref()?.nodes;
        (nodes.targeted == 3 && nodes.succeeded == 3).then_some(task)
    })
    .await
    .unwrap();
    assert_eq!(joined.status.as_ref().unwrap().revision, v1.status.as_ref().unwrap().revision);
    assert_eq!(record(&fx.sim, 2, &joined)["state"], "Succeeded");

    // Rollout settings are not a new revision; the payload is.
    fx.apply("config", json!({"script": "echo v1\n", "rollout": {"maxConcurrent": 3}})).await;
    let same = fx.wait_ready("config", "the rollout change to be observed").await;
    assert_eq!(same.status.as_ref().unwrap().revision, v1.status.as_ref().unwrap().revision);
    fx.apply("config", json!({"script": "echo v2\n", "rollout": {"maxConcurrent": 3}})).await;
    let v2 = fx.wait_ready("config", "revision 2 on three nodes").await;
    let status = v2.status.as_ref().unwrap();
    assert_ne!(status.revision, v1.status.as_ref().unwrap().revision);
    assert_eq!((status.nodes.targeted, status.nodes.succeeded), (3, 3));
    for node in 0..3 {
        assert_eq!(record(&fx.sim, node, &v2)["state"], "Succeeded");
    }
}

#[tokio::test]
async fn refused_label_and_status_writes_are_sent_again_and_never_exceed_max_concurrent() {
    use hostprocess_sim::faults::{FaultProxy, Matcher};

    let mut fx = Fixture::start(6, "privileged").await;
    // The operator talks to the API server through a proxy that refuses its next three node
    // patches (the admission labels a reconcile queues and does not wait for) and its next two
    // status writes (also queued).
    fx.operator.abort();
    let proxy = FaultProxy::start(&fx.sim.cluster, &fx.operator_kubeconfig).await.unwrap();
    proxy.faults.fail_next(
        3,
        Matcher::new(Some(hyper::Method::PATCH), "/api/v1/nodes/"),
        hyper::StatusCode::INTERNAL_SERVER_ERROR,
    );
    proxy.faults.fail_next(
        2,
        Matcher::new(Some(hyper::Method::PATCH), "/hosttasks/patch/status"),
        hyper::StatusCode::SERVICE_UNAVAILABLE,
    );
    let metrics = hostprocess_operator::Metrics::new();
    let runtime = hostprocess_operator::Runtime { metrics: metrics.clone(), ..Default::default() };
    fx.operator = spawn_operator_with(proxy.client().await.unwrap(), runtime);
    fx.apply("patch", json!({"script": "sleep 1\n", "rollout": {"maxConcurrent": 2}})).await;
    let done = fx
        .watch_until_ready("patch", Duration::from_secs(120), |task| {
            let running = task.status.as_ref().map_or(0, |s| s.nodes.running);
            assert!(running <= 2, "status reported {running} running");
        })
        .await;
    assert_eq!(proxy.faults.injected(), 5, "three label patches and two status writes were refused");
    let text = metrics.encode();
    assert!(text.contains("hostprocess_node_label_writes_failed_total 3"), "{text}");
    assert!(text.contains("hostprocess_status_writes_failed_total 2"), "{text}");
    // The refused writes were sent again: nothing stays pending (a write counted and never
    // answered would keep the gauge up for good).
    until("every queued write is out", Duration::from_secs(30), || async {
        let text = metrics.encode();
        let pending: Vec<&str> =
            text.lines().filter(|l| l.starts_with("hostprocess_writes_pending{")).collect();
        (pending.len() == 3 && pending.iter().all(|l| l.ends_with(" 0"))).then_some(())
    })
    .await
    .unwrap();
    let status = done.status.as_ref().unwrap();
    assert_eq!((status.nodes.succeeded, status.nodes.failed), (6, 0), "every node ran despite the refusals");
    // Each node ran once, and never more than two at a time (the executors' own records).
    let most = most_at_once(&fx.sim, &done, 6);
    assert!(most <= 2, "at most maxConcurrent payloads at once, saw {most}");
}

#[tokio::test]
async fn a_stopping_operator_writes_the_status_it_decided_before_it_returns() {
    use hostprocess_sim::faults::FaultProxy;

    let fx = Fixture::start(1, "privileged").await;
    fx.operator.abort();
    let proxy = FaultProxy::start(&fx.sim.cluster, &fx.operator_kubeconfig).await.unwrap();
    let operator = Stoppable::start(proxy.client().await.unwrap()).await;
    // From now on every request takes 1.5 s: the status write is still in flight when the
    // operator is told to stop.
    proxy.faults.set_latency(Duration::from_millis(1500));
    let name = "a".repeat(60);
    fx.apply(&name, json!({"script": "exit 0\n"})).await;
    until("the first reconcile", Duration::from_secs(30), || async {
        (reconciles(&operator.metrics) > 0).then_some(())
    })
    .await
    .unwrap();
    operator.stop(Duration::from_secs(20)).await;
    let task: hostprocess_crds::HostTask =
        Api::namespaced(fx.sim.client.clone(), NS).get(&name).await.unwrap();
    assert_eq!(
        condition(&task, "Stalled"),
        Some(("True".into(), "InvalidName".into())),
        "the status decided before the stop is written when the operator returns"
    );
}

#[tokio::test]
async fn an_operator_told_to_stop_before_its_controllers_have_listed_still_stops() {
    use hostprocess_sim::faults::{FaultProxy, Matcher};

    let fx = Fixture::start(1, "privileged").await;
    fx.operator.abort();
    let proxy = FaultProxy::start(&fx.sim.cluster, &fx.operator_kubeconfig).await.unwrap();
    // Only the HostTask controller's own watch reads HostTasks: it never lists.
    proxy.faults.fail_next(
        1_000_000,
        Matcher::new(Some(hyper::Method::GET), "/hosttasks"),
        hyper::StatusCode::SERVICE_UNAVAILABLE,
    );
    let operator = Stoppable::start(proxy.client().await.unwrap()).await;
    let hosttask_reads = Matcher::new(Some(hyper::Method::GET), "/hosttasks");
    until("the task controller's first list", Duration::from_secs(30), || async {
        (proxy.faults.seen(&hosttask_reads) > 0).then_some(())
    })
    .await
    .unwrap();
    // Ten seconds for the reconciles to finish, then the controllers are dropped.
    operator.stop(Duration::from_secs(20)).await;
}

#[tokio::test]
async fn a_continuous_agent_runs_everywhere_and_updates_roll_through_the_daemonset() {
    let fx = Fixture::start(3, "privileged").await;
    let agent = |version: &str| {
        json!({"script": format!("echo agent {version}\nsleep 3600\n"), "mode": "Continuous",
            "rollout": {"maxConcurrent": 1}})
    };
    fx.apply("agent", agent("v1")).await;
    let v1 = fx.wait_ready("agent", "the agent running on every node").await;
    let status = v1.status.clone().unwrap();
    assert_eq!((status.nodes.targeted, status.nodes.running, status.nodes.succeeded), (3, 3, 0));
    fx.apply("agent", agent("v2")).await;
    let v2 = fx.wait_ready("agent", "the agent updated on every node").await;
    let status = v2.status.unwrap();
    assert_ne!(status.revision, v1.status.unwrap().revision);
    assert_eq!(status.nodes.running, 3);
    let sets: Api<DaemonSet> = Api::namespaced(fx.sim.client.clone(), NS);
    let ds = sets.get("hostprocess-agent").await.unwrap();
    let strategy = ds.spec.unwrap().update_strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
}

#[tokio::test]
async fn a_reboot_required_payload_goes_through_cordon_drain_reboot_and_uncordon() {
    use k8s_openapi::api::core::v1::{Namespace, Node};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use kube::api::{DeleteParams, Patch, PatchParams};

    let fx = Fixture::start(2, "privileged").await;
    let client = fx.sim.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    // An administrator cordoned win-000 for reasons of their own: it must stay cordoned.
    nodes
        .patch("win-000", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"unschedulable": true}})))
        .await
        .unwrap();
    // A workload on win-001 whose PodDisruptionBudget allows no disruption at first.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "apps"}})).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "apps");
    let web = json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"nodeName": "win-001",
        "containers": [{"name": "web", "image": "web:1", "command": ["node-executor.exe", "payload", "sleep", "3600"]}]}});
    pods.create(&PostParams::default(), &serde_json::from_value(web).unwrap()).await.unwrap();
    until("the workload runs", Duration::from_secs(30), || async {
        let pod = pods.get("web").await.unwrap();
        let conditions = pod.status?.conditions?;
        conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await
    .unwrap();
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "apps");
    let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
    budgets.create(&PostParams::default(), &serde_json::from_value(pdb).unwrap()).await.unwrap();

    // The payload installs something that needs a reboot (exit 3010).
    fx.apply(
        "kb-patch",
        json!({"script": "exit 3010\n", "runAs": {"account": "System"}, "reboot": "IfRequired",
            "rollout": {"maxConcurrent": 2}}),
    )
    .await;
    // win-000 has nothing to drain: it reboots. win-001 waits for its budget.
    until("win-000 rebooted", Duration::from_secs(60), || async {
        (fx.sim.kubelets[0].boots() >= 2).then_some(())
    })
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    until("the eviction is reported blocked", Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items.iter().any(|e| e.reason.as_deref() == Some("EvictionBlocked")).then_some(())
    })
    .await
    .unwrap();
    let win1 = nodes.get("win-001").await.unwrap();
    assert_eq!(win1.spec.as_ref().unwrap().unschedulable, Some(true), "cordoned while draining");
    assert_eq!(
        win1.metadata.annotations.as_ref().unwrap().get("hostprocess.dev/cordoned-by").map(String::as_str),
        Some("hostprocess-tasks/kb-patch")
    );
    assert_eq!(fx.sim.kubelets[1].boots(), 1, "no reboot while the budget forbids the drain");
    assert!(pods.get_opt("web").await.unwrap().is_some(), "the budget kept the workload");
    let task = fx.task("kb-patch").await;
    assert!(task.status.unwrap().nodes.rebooting >= 1);

    // The budget is lifted: the drain, the reboot and the uncordon follow.
    budgets.delete("web", &DeleteParams::default()).await.unwrap();
    let done = fx.wait_ready("kb-patch", "the rollout completes after both reboots").await;
    let status = done.status.unwrap();
    assert_eq!((status.nodes.succeeded, status.nodes.rebooting, status.nodes.failed), (2, 0, 0));
    assert_eq!(fx.sim.kubelets[1].boots(), 2);
    assert!(pods.get_opt("web").await.unwrap().is_none(), "the workload was evicted");
    let win1 = nodes.get("win-001").await.unwrap();
    assert_ne!(win1.spec.unwrap().unschedulable, Some(true), "uncordoned by the operator that cordoned it");
    assert!(!win1.metadata.annotations.unwrap_or_default().contains_key("hostprocess.dev/cordoned-by"));
    let win0 = nodes.get("win-000").await.unwrap();
    assert_eq!(win0.spec.unwrap().unschedulable, Some(true), "the administrator's cordon stays");
    // The payload ran once per node: the reboot did not run it again.
    for node in 0..2 {
        let record = record(&fx.sim, node, &fx.task("kb-patch").await);
        assert_eq!(record["attempts"].as_array().map(Vec::len), Some(1));
        assert_eq!(record["state"], "RebootRequired");
    }
}

#[tokio::test]
async fn changed_secret_content_rolls_out_again_only_when_the_task_tracks_it() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams, PostParams};

    let mut fx = Fixture::start(2, "privileged").await;
    let secrets: Api<Secret> = Api::namespaced(fx.sim.client.clone(), NS);
    let secret = json!({"metadata": {"name": "agent-key"}, "stringData": {"key": "v1"}});
    secrets.create(&PostParams::default(), &serde_json::from_value(secret).unwrap()).await.unwrap();
    let spec = |track: bool| {
        json!({"script": "echo \"key $KEY\"\n", "runAs": {"account": "System"},
            "env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "agent-key", "key": "key"}}}],
            "rollout": {"maxConcurrent": 2, "trackReferencedData": track}})
    };
    fx.apply("tracked", spec(true)).await;
    fx.apply("untracked", spec(false)).await;
    let tracked = fx.wait_ready("tracked", "the tracked task completes").await;
    let untracked = fx.wait_ready("untracked", "the untracked task completes").await;
    let revision = |t: &hostprocess_crds::HostTask| t.status.as_ref().unwrap().revision.clone().unwrap();
    let (tracked_before, untracked_before) = (revision(&tracked), revision(&untracked));

    // The Secret rotates; the next reconcile of each task notices (here: a metadata change
    // triggers it at once; otherwise the periodic resync does, within 5 minutes).
    let rotate = json!({"stringData": {"key": "v2"}});
    secrets.patch("agent-key", &PatchParams::default(), &Patch::Merge(&rotate)).await.unwrap();
    let touch = json!({"metadata": {"annotations": {"test/touched": "1"}}});
    for name in ["tracked", "untracked"] {
        fx.tasks().patch(name, &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
    }
    let rolled = until("the tracked task rolls out a new revision", Duration::from_secs(60), || async {
        let task = fx.task("tracked").await;
        let ready = is(&task, "Ready", "True");
        (ready && revision(&task) != tracked_before).then_some(task)
    })
    .await
    .unwrap();
    for node in 0..2 {
        assert_eq!(record(&fx.sim, node, &rolled)["state"], "Succeeded", "ran again with the new key");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let untracked = fx.task("untracked").await;
    assert_eq!(revision(&untracked), untracked_before, "a rotating Secret does not re-run an untracked task");
    assert!(is(&untracked, "Ready", "True"));

    // The Secret's content enters the revision through a hash keyed with the operator's own
    // random key, kept in a Secret of its namespace: the published revision is no oracle for the
    // value, and a restarted operator (same key) decides the same revision, running nothing again.
    let own: Api<Secret> = Api::namespaced(fx.sim.client.clone(), hostprocess_sim::operator::NAMESPACE);
    let key = own.get("hostprocess-operator-revision-key").await.unwrap();
    assert_eq!(key.data.unwrap()["key"].0.len(), 32);
    let rolled_revision = revision(&rolled);
    fx.restart_operator();
    let rotate_to = |value: &str, touched: &str| {
        let (secrets, tasks) = (secrets.clone(), fx.tasks());
        let (rotate, touch) = (
            json!({"stringData": {"key": value}}),
            json!({"metadata": {"annotations": {"test/touched": touched}}}),
        );
        async move {
            secrets.patch("agent-key", &PatchParams::default(), &Patch::Merge(&rotate)).await.unwrap();
            tasks.patch("tracked", &PatchParams::default(), &Patch::Merge(&touch)).await.unwrap();
        }
    };
    let settles_on = |wanted: Option<String>, what: &'static str| {
        let fx = &fx;
        let rolled_revision = rolled_revision.clone();
        async move {
            until(what, Duration::from_secs(60), || async {
                let task = fx.task("tracked").await;
                let now = revision(&task);
                let arrived = match &wanted {
                    Some(r) => &now == r,
                    None => now != rolled_revision,
                };
                (arrived && is(&task, "Ready", "True")).then_some(now)
            })
            .await
            .unwrap()
        }
    };
    rotate_to("v3", "2").await;
    let third = settles_on(None, "the restarted operator rolls out the third value").await;
    rotate_to("v2", "3").await;
    settles_on(
        Some(rolled_revision.clone()),
        "the second value's revision again: the key survived the restart",
    )
    .await;
    assert_ne!(third, rolled_revision);
}

/// Whether a task pod's node is running the payload as a user would read it: the pod is bound,
/// not Ready, and its `task` container has not ended once yet (a success exits once, then the
/// restarted container idles Ready; a failure leaves a terminated state).
fn runs_its_payload(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    let bound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let ended = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten().any(|c| {
        c.name == "task"
            && (c.state.as_ref().is_some_and(|s| s.terminated.is_some())
                || c.last_state.as_ref().is_some_and(|s| s.terminated.is_some()))
    });
    bound && !ready && !ended
}

#[tokio::test]
async fn a_node_lost_mid_payload_keeps_its_slot_until_it_comes_back_then_the_rollout_completes() {
    let fx = Fixture::start(2, "privileged").await;
    fx.apply("patch", json!({"script": "sleep 4\n", "rollout": {"maxConcurrent": 1}})).await;
    let first = until("a node to start the payload", Duration::from_secs(60), || async {
        let admitted = fx.admitted("patch").await;
        (admitted.len() == 1).then(|| admitted.into_iter().next().unwrap())
    })
    .await
    .unwrap();
    let index: usize = first.trim_start_matches("win-").parse().unwrap();
    fx.sim.kubelets[index].lose();
    // The real node-lifecycle controller marks it unreachable (10 s grace in the tests)...
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(fx.sim.client.clone());
    until("the lost node turns Unknown", Duration::from_secs(40), || async {
        let node = nodes.get(&first).await.ok()?;
        let ready = node.status?.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "Unknown").then_some(())
    })
    .await
    .unwrap();
    // ...and the rollout does not start the other node beside it: nobody knows whether the
    // payload still runs there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fx.admitted("patch").await, BTreeSet::from([first.clone()]), "maxConcurrent holds");
    fx.sim.kubelets[index].recover();
    let done = fx.wait_ready("patch", "the rollout after the node came back").await;
    assert_eq!(done.status.as_ref().unwrap().nodes.succeeded, 2);
}

#[tokio::test]
async fn reboots_across_tasks_never_take_more_nodes_than_the_fleet_wide_budget() {
    use hostprocess_crds::units::CountOrPercent;
    use k8s_openapi::api::core::v1::Node;

    let mut fx = Fixture::start(4, "privileged").await;
    fx.restart_operator_with(|config| config.max_rebooting = CountOrPercent::Count(1));
    // Two tenants' patches, each allowed two nodes at once: four nodes could be down together.
    for name in ["kb-a", "kb-b"] {
        fx.apply(
            name,
            json!({"script": "exit 3010\n", "runAs": {"account": "System"}, "reboot": "IfRequired",
                "retries": {"limit": 0}, "rollout": {"maxConcurrent": 2}}),
        )
        .await;
    }
    let nodes: Api<Node> = Api::all(fx.sim.client.clone());
    let mut most_out = 0;
    let started = std::time::Instant::now();
    loop {
        let out = nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false))
            .count();
        most_out = most_out.max(out);
        let (a, b) = (fx.task("kb-a").await, fx.task("kb-b").await);
        if is(&a, "Ready", "True") && is(&b, "Ready", "True") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the reboots did not finish: {:?} {:?}",
            a.status,
            b.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(most_out, 1, "never more than --max-rebooting nodes cordoned at once");
    // Each node rebooted for the first task that asked; a reboot after the second's payload ran
    // serves it too.
    for kubelet in &fx.sim.kubelets {
        assert!(kubelet.boots() >= 2, "every node rebooted");
    }
}

#[tokio::test]
async fn a_task_that_targets_no_node_says_so_and_creates_nothing() {
    let fx = Fixture::start(2, "privileged").await;
    fx.apply("nowhere", json!({"script": "echo hi\n", "nodeSelector": {"matchLabels": {"ring": "none"}}}))
        .await;
    let task = fx.wait_ready("nowhere", "the task is done with nothing to do").await;
    assert_eq!(condition(&task, "Ready"), Some(("True".into(), "NoTargetedNodes".into())));
    let events: Api<Event> = Api::namespaced(fx.sim.client.clone(), NS);
    until("a Warning event says no node matches", Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("NoTargetedNodes") && e.type_.as_deref() == Some("Warning"))
            .then_some(())
    })
    .await
    .unwrap();
    let selector = format!("hostprocess.dev/task={}", "nowhere");
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(fx.sim.client.clone(), NS);
    assert!(
        maps.list(&ListParams::default().labels(&selector)).await.unwrap().items.is_empty(),
        "no script ConfigMap"
    );
    let sets: Api<DaemonSet> = Api::namespaced(fx.sim.client.clone(), NS);
    assert!(sets.get_opt("hostprocess-nowhere").await.unwrap().is_none(), "no DaemonSet");
}

#[tokio::test]
async fn a_deletion_that_cannot_release_its_nodes_says_why_and_finishes_once_it_can() {
    use hostprocess_sim::faults::{FaultProxy, Matcher};

    let mut fx = Fixture::start(2, "privileged").await;
    fx.operator.abort();
    let proxy = FaultProxy::start(&fx.sim.cluster, &fx.operator_kubeconfig).await.unwrap();
    fx.operator =
        spawn_operator_with(proxy.client().await.unwrap(), hostprocess_operator::Runtime::default());
    // A long payload: both nodes are admitted (labelled) while it runs.
    fx.apply("agent", json!({"script": "sleep 3600\n", "rollout": {"maxConcurrent": 2}})).await;
    until("the payload runs on both nodes", Duration::from_secs(60), || async {
        (fx.admitted("agent").await.len() == 2).then_some(())
    })
    .await
    .unwrap();

    // The API server refuses the operator's node patches: the admission labels stay.
    let node_patches = Matcher::new(Some(hyper::Method::PATCH), "/api/v1/nodes/");
    proxy.faults.fail_next(usize::MAX, node_patches, hyper::StatusCode::FORBIDDEN);
    fx.tasks().delete("agent", &Default::default()).await.unwrap();
    let blocked = until("the task says why its deletion waits", Duration::from_secs(30), || async {
        let task = fx.tasks().get_opt("agent").await.unwrap()?;
        condition(&task, "Reconciling").filter(|(s, r)| s == "True" && r == "DeletionBlocked").map(|_| task)
    })
    .await
    .unwrap();
    let ready = blocked.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert!(ready.message.contains("admission label"), "{}", ready.message);
    assert!(proxy.faults.injected() > 0);
    // Once the patches go through, the labels come off and the task goes.
    proxy.faults.clear();
    until("the task is gone", Duration::from_secs(60), || async {
        fx.tasks().get_opt("agent").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(fx.sim.client.clone());
    for node in nodes.list(&ListParams::default()).await.unwrap() {
        let admitted =
            node.metadata.labels.unwrap_or_default().into_keys().filter(|k| k.starts_with("admitted."));
        assert_eq!(admitted.count(), 0, "no admission label left");
    }
}

#[tokio::test]
async fn a_rollout_waits_for_its_maintenance_window() {
    use k8s_openapi::jiff::{Timestamp, ToSpan, tz::TimeZone};
    let fx = Fixture::start(3, "privileged").await;
    let now = Timestamp::now().to_zoned(TimeZone::UTC);
    let weekday = |offset: i64| format!("{:?}", now.date().checked_add(offset.days()).unwrap().weekday());
    // A window the day after tomorrow only (a test run across midnight does not reach it): the
    // rollout waits, and says until when.
    let later =
        json!({"timeZone": "UTC", "windows": [{"days": [weekday(2)], "start": "00:00", "end": "06:00"}]});
    let spec = |schedule: Value| json!({"script": "echo patched\n", "rollout": {"maxConcurrent": 3, "schedule": schedule}});
    fx.apply("patch", spec(later)).await;
    let waiting = until("the task to wait for its window", Duration::from_secs(30), || async {
        let task = fx.task("patch").await;
        (condition(&task, "Ready")?.1 == "WaitingForMaintenanceWindow").then_some(task)
    })
    .await
    .unwrap();
    let midnight_in =
        |days: i64| now.date().checked_add(days.days()).unwrap().to_zoned(TimeZone::UTC).unwrap().timestamp();
    let opens = midnight_in(2);
    let status = waiting.status.unwrap();
    assert_eq!(status.next_window.map(|t| t.0), Some(opens));
    assert_eq!((status.nodes.pending, status.nodes.running), (3, 0));
    assert_eq!(
        condition(&fx.task("patch").await, "Reconciling").unwrap().0,
        "False",
        "waiting is not progress"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(fx.admitted("patch").await.is_empty(), "no node starts outside the window");

    // A blackout from today to the day after tomorrow closes an open schedule too.
    let (today, last) = (now.date().to_string(), now.date().checked_add(2.days()).unwrap().to_string());
    fx.apply("patch", spec(json!({"blackouts": [{"from": today, "to": last}]}))).await;
    until("the blackout to be told", Duration::from_secs(30), || async {
        let status = fx.task("patch").await.status?;
        (status.next_window?.0 == midnight_in(3)).then_some(())
    })
    .await
    .unwrap();
    assert!(fx.admitted("patch").await.is_empty(), "no node starts in a blackout");

    // A window around now, across midnight if need be: the rollout goes on and completes.
    let clock = |t: k8s_openapi::jiff::Zoned| format!("{:02}:{:02}", t.hour(), t.minute());
    let around = json!({"windows": [{"start": clock(now.checked_sub(1.hour()).unwrap()),
        "end": clock(now.checked_add(1.hour()).unwrap())}]});
    fx.apply("patch", spec(around)).await;
    let done = fx.watch_until_ready("patch", Duration::from_secs(90), |_| {}).await;
    let status = done.status.unwrap();
    assert_eq!((status.nodes.succeeded, status.next_window), (3, None));
    let events: Api<Event> = Api::namespaced(fx.sim.client.clone(), NS);
    let told = events.list(&ListParams::default()).await.unwrap().items.into_iter().any(|e| {
        e.reason.as_deref() == Some("WaitingForMaintenanceWindow")
            && e.note.as_deref().is_some_and(|n| n.contains(&opens.to_string()))
    });
    assert!(told, "an Event said when the window opens");
}

#[tokio::test]
async fn rerunning_an_unchanged_task_runs_it_again_on_every_node_once() {
    let fx = Fixture::start(3, "privileged").await;
    let spec = json!({"script": "echo patched\n", "rollout": {"maxConcurrent": 3}});
    let first = fx.watch_until_ready_after_apply("patch", spec.clone()).await;
    let first_revision = first.status.unwrap().revision.unwrap();
    // Nothing changed: applying it again runs nothing.
    fx.apply("patch", spec.clone()).await;
    assert_eq!(fx.task("patch").await.status.unwrap().revision.unwrap(), first_revision);

    let mut rerun = spec;
    rerun["rerun"] = json!("CHG-4711");
    let again = fx.watch_until_ready_after_apply("patch", rerun).await;
    let status = again.status.unwrap();
    let second_revision = status.revision.unwrap();
    assert_ne!(second_revision, first_revision, "the token is a new revision");
    assert_eq!(status.nodes.succeeded, 3);
    let uid = again.metadata.uid.unwrap();
    for kubelet in &fx.sim.kubelets {
        for revision in [&first_revision, &second_revision] {
            let record = record_of(kubelet, &uid, revision).expect("record");
            assert_eq!(record["state"], "Succeeded", "{revision}: {record}");
            assert_eq!(record["attempts"].as_array().map(Vec::len), Some(1), "{revision}: {record}");
        }
    }
}

#[tokio::test]
async fn waves_spread_across_zones() {
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::{Patch, PatchParams};
    let fx = Fixture::start(6, "privileged").await;
    let zone_of = |node: &str| match node {
        "win-000" | "win-001" | "win-002" => "zone-a",
        "win-003" | "win-004" => "zone-b",
        _ => "zone-c",
    };
    let nodes: Api<Node> = Api::all(fx.sim.client.clone());
    for kubelet in &fx.sim.kubelets {
        let node = &kubelet.config.node;
        let patch = json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone_of(node)}}});
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    fx.apply(
        "patch",
        json!({"script": "sleep 1\n", "rollout": {"maxConcurrent": 6, "zones": {"maxConcurrentPerZone": 1}}}),
    )
    .await;
    let done = fx.watch_until_ready("patch", Duration::from_secs(120), |_| {}).await;
    let status = done.status.unwrap();
    assert_eq!(status.nodes.succeeded, 6);
    // Within each zone, no two nodes ran the payload at the same time (the executor's records).
    let (uid, revision) = (done.metadata.uid.unwrap(), status.revision.unwrap());
    let mut runs: Vec<(&str, Timestamp, Timestamp, String)> = vec![];
    for kubelet in &fx.sim.kubelets {
        let record = record_of(kubelet, &uid, &revision).expect("record");
        let attempt = &record["attempts"][0];
        let time = |field: &str| attempt[field].as_str().unwrap().parse::<Timestamp>().unwrap();
        let node = kubelet.config.node.clone();
        runs.push((zone_of(&node), time("startTime"), time("endTime"), node));
    }
    for a in &runs {
        for b in runs.iter().filter(|b| b.0 == a.0 && b.3 != a.3) {
            assert!(a.2 <= b.1 || b.2 <= a.1, "{} and {} in {} ran at once: {a:?} {b:?}", a.3, b.3, a.0);
        }
    }
    // The first wave took one node of each zone.
    let first = until("the first wave's Event", Duration::from_secs(30), || async {
        events_with_reason(&fx, "WaveStarted")
            .await
            .into_iter()
            .min_by_key(|e| e.event_time.clone().map(|t| t.0))
            .and_then(|e| e.note)
    })
    .await
    .unwrap();
    assert_eq!(first, "starting on 3 nodes: win-000, win-003, win-005");
}

#[tokio::test]
async fn a_canary_stage_pauses_until_resumed() {
    let fx = Fixture::start(4, "privileged").await;
    let spec = |canary: Value| json!({"script": "echo patched\n", "rollout": {"maxConcurrent": 4, "canary": canary}});
    fx.apply("patch", spec(json!({"nodes": 1}))).await;
    let held = until("the canary to succeed and hold", Duration::from_secs(60), || async {
        let task = fx.task("patch").await;
        (condition(&task, "Ready")?.1 == "WaitingForPromotion").then_some(task)
    })
    .await
    .unwrap();
    let status = held.status.unwrap();
    assert_eq!((status.nodes.succeeded, status.nodes.pending), (1, 3));
    assert!(status.canary_completion_time.is_some());
    let revision = status.revision.unwrap();
    let task = fx.task("patch").await;
    let ready = task.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Ready").unwrap();
    let message = ready.message;
    assert!(message.contains(&format!("spec.rollout.canary.promoted to {revision}")), "{message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fx.admitted("patch").await.len(), 1, "nothing beyond the canary starts unpromoted");

    // Promoting the revision lets the others go.
    let done =
        fx.watch_until_ready_after_apply("patch", spec(json!({"nodes": 1, "promoted": revision}))).await;
    assert_eq!(done.status.unwrap().nodes.succeeded, 4);
}

#[tokio::test]
async fn a_canary_soaks_before_the_other_nodes_start() {
    let fx = Fixture::start(3, "privileged").await;
    fx.apply(
        "patch",
        json!({"script": "echo patched\n", "rollout": {"maxConcurrent": 3, "canary": {"nodes": 1, "soak": "4s"}}}),
    )
    .await;
    let done = fx.watch_until_ready("patch", Duration::from_secs(90), |_| {}).await;
    let status = done.status.unwrap();
    assert_eq!(status.nodes.succeeded, 3);
    // The status keeps whole seconds: the completion was seen at or after this second began.
    let soaked_from = status.canary_completion_time.unwrap().0;
    let mut runs = records(&fx, "patch").await;
    runs.sort_by_key(|(_, _, started)| *started);
    let (canary, others) = runs.split_first().unwrap();
    assert!(canary.2 < soaked_from.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(1)).unwrap());
    let soak_end = soaked_from.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(4)).unwrap();
    let early: Vec<_> = others.iter().filter(|(_, _, started)| *started < soak_end).collect();
    assert!(early.is_empty(), "started before the soak of 4s from {soaked_from} ended: {early:?}");
}

/// A namespace `apps` with a pod `web` on `node` whose PodDisruptionBudget allows no eviction.
async fn unevictable_workload(fx: &Fixture, node: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let client = fx.sim.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let apps = json!({"metadata": {"name": "apps"}});
    namespaces.create(&PostParams::default(), &serde_json::from_value(apps).unwrap()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "apps");
    let web = json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"nodeName": node,
        "containers": [{"name": "web", "image": "web:1", "command": ["node-executor.exe", "payload", "sleep", "3600"]}]}});
    pods.create(&PostParams::default(), &serde_json::from_value(web).unwrap()).await.unwrap();
    until("the workload runs", Duration::from_secs(30), || async {
        let conditions = pods.get("web").await.unwrap().status?.conditions?;
        conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await
    .unwrap();
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client, "apps");
    let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
    budgets.create(&PostParams::default(), &serde_json::from_value(pdb).unwrap()).await.unwrap();
}

fn unschedulable(node: &k8s_openapi::api::core::v1::Node) -> bool {
    node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
}

#[tokio::test]
async fn a_drain_blocked_by_a_budget_times_out() {
    use k8s_openapi::api::core::v1::Node;
    let fx = Fixture::start(2, "privileged").await;
    unevictable_workload(&fx, "win-001").await;
    fx.apply(
        "kb-patch",
        json!({"script": "exit 3010\n", "runAs": {"account": "System"}, "reboot": "IfRequired",
            "drain": {"timeout": "3s"}, "rollout": {"maxConcurrent": 1, "maxFailures": 1}}),
    )
    .await;
    let done = fx.wait_ready("kb-patch", "the rollout completes within its failure budget").await;
    let status = done.status.unwrap();
    assert_eq!((status.nodes.succeeded, status.nodes.failed, status.nodes.rebooting), (1, 1, 0));
    let failure = &status.failures[0];
    assert_eq!((failure.node.as_str(), failure.reason.as_str()), ("win-001", "DrainTimedOut"));
    assert!(failure.message.contains("apps/web"), "{}", failure.message);
    let nodes: Api<Node> = Api::all(fx.sim.client.clone());
    let win1 = nodes.get("win-001").await.unwrap();
    assert!(!unschedulable(&win1), "the drain that gave up took its cordon back");
    assert!(!win1.metadata.annotations.unwrap_or_default().contains_key("hostprocess.dev/cordoned-by"));
    assert_eq!(fx.sim.kubelets[1].boots(), 1, "not rebooted");
    assert_eq!(fx.sim.kubelets[0].boots(), 2, "the other node rebooted: the slot was freed");
    let pods: Api<Pod> = Api::namespaced(fx.sim.client.clone(), "apps");
    assert!(pods.get_opt("web").await.unwrap().is_some(), "the budget kept the workload");
}

#[tokio::test]
async fn a_node_that_never_returns_from_reboot_fails_and_frees_its_slot() {
    use k8s_openapi::api::core::v1::Node;
    let fx = Fixture::start(2, "privileged").await;
    fx.apply(
        "kb-patch",
        json!({"script": "exit 3010\n", "runAs": {"account": "System"}, "reboot": "IfRequired",
            "rebootTimeout": "5s", "rollout": {"maxConcurrent": 1, "maxFailures": 1}}),
    )
    .await;
    // win-000 goes first; once its reboot is under way it never comes back.
    let events: Api<Event> = Api::namespaced(fx.sim.client.clone(), NS);
    until("win-000's reboot to start", Duration::from_secs(60), || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("NodeRebooting")
                    && e.note.as_deref().is_some_and(|n| n.starts_with("win-000"))
            })
            .then_some(())
    })
    .await
    .unwrap();
    fx.sim.kubelets[0].lose();
    let done = fx.wait_ready("kb-patch", "the rollout goes on past the lost node").await;
    let status = done.status.unwrap();
    assert_eq!((status.nodes.succeeded, status.nodes.failed), (1, 1));
    assert_eq!(status.failures[0].node, "win-000");
    assert_eq!(status.failures[0].reason, "RebootTimedOut");
    assert_eq!(fx.sim.kubelets[1].boots(), 2, "win-001 got the slot and rebooted");
    let nodes: Api<Node> = Api::all(fx.sim.client.clone());
    assert!(unschedulable(&nodes.get("win-000").await.unwrap()), "left cordoned: it is not back");
    assert!(!unschedulable(&nodes.get("win-001").await.unwrap()));
}

#[tokio::test]
async fn deleting_a_task_mid_reboot_uncordons_its_node() {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Patch, PatchParams};
    let fx = Fixture::start(2, "privileged").await;
    let nodes: Api<Node> = Api::all(fx.sim.client.clone());
    // An administrator's cordon on win-001, and a workload on win-000 its budget keeps there.
    let cordon = json!({"spec": {"unschedulable": true}});
    nodes.patch("win-001", &PatchParams::default(), &Patch::Merge(&cordon)).await.unwrap();
    unevictable_workload(&fx, "win-000").await;
    fx.apply(
        "kb-patch",
        json!({"script": "exit 3010\n", "runAs": {"account": "System"}, "reboot": "IfRequired",
            "rollout": {"maxConcurrent": 2}}),
    )
    .await;
    until("win-000 cordoned by the task and draining", Duration::from_secs(60), || async {
        let node = nodes.get("win-000").await.unwrap();
        let ours = node.metadata.annotations.as_ref()?.get("hostprocess.dev/cordoned-by").cloned();
        (unschedulable(&node) && ours.as_deref() == Some("hostprocess-tasks/kb-patch")).then_some(())
    })
    .await
    .unwrap();

    fx.tasks().delete("kb-patch", &Default::default()).await.unwrap();
    until("the task to be gone", Duration::from_secs(30), || async {
        fx.tasks().get_opt("kb-patch").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
    let win0 = nodes.get("win-000").await.unwrap();
    assert!(!unschedulable(&win0), "the task's cordon went with it");
    assert!(!win0.metadata.annotations.unwrap_or_default().contains_key("hostprocess.dev/cordoned-by"));
    assert!(unschedulable(&nodes.get("win-001").await.unwrap()), "the administrator's cordon stays");
    assert_eq!(fx.sim.kubelets[0].boots(), 1, "the abandoned reboot did not happen");
}

#[tokio::test]
async fn a_new_revision_waits_for_in_flight_nodes() {
    use k8s_openapi::jiff::Timestamp;
    let fx = Fixture::start(2, "privileged").await;
    fx.apply("patch", json!({"script": "sleep 4\necho v1\n", "rollout": {"maxConcurrent": 2}})).await;
    // Both nodes run revision 1's payload...
    let uid = until("revision 1 running on both nodes", Duration::from_secs(60), || async {
        let task = fx.task("patch").await;
        let (uid, revision) = (task.metadata.uid.clone()?, task.status?.revision?);
        let running = fx.sim.kubelets.iter().filter(|k| record_of(k, &uid, &revision).is_some()).count();
        (running == 2).then_some(uid)
    })
    .await
    .unwrap();
    let v1 = fx.task("patch").await.status.unwrap().revision.unwrap();
    // ...when revision 2 is applied.
    fx.apply("patch", json!({"script": "echo v2\n", "rollout": {"maxConcurrent": 2}})).await;
    let done = until("revision 2 complete", Duration::from_secs(90), || async {
        let task = fx.task("patch").await;
        let status = task.status.as_ref()?;
        (status.revision.as_deref() != Some(v1.as_str()) && is(&task, "Ready", "True")).then_some(task)
    })
    .await
    .unwrap();
    let v2 = done.status.unwrap().revision.unwrap();
    for kubelet in &fx.sim.kubelets {
        let read = |revision: &str| record_of(kubelet, &uid, revision).expect("record");
        let (first, second) = (read(&v1), read(&v2));
        let node = &kubelet.config.node;
        assert_eq!(first["state"], "Succeeded", "{node}: revision 1 was not killed: {first}");
        assert_eq!(first["attempts"].as_array().map(Vec::len), Some(1), "{node}: {first}");
        let time = |record: &Value, field: &str| -> Timestamp {
            record["attempts"][0][field].as_str().unwrap().parse().unwrap()
        };
        assert!(
            time(&first, "endTime") <= time(&second, "startTime"),
            "{node}: revision 2 started before revision 1 ended: {first} {second}"
        );
    }
}

#[tokio::test]
async fn retrying_failed_nodes_reruns_only_them() {
    let fx = Fixture::start(5, "privileged").await;
    // The payload fails on two nodes until their cause is fixed (a file the test creates).
    let fixed = tempfile::tempdir().unwrap();
    let marker = fixed.path().join("fixed");
    let script = format!(
        "case \"$COMPUTERNAME\" in WIN-001|WIN-003) [ -e '{}' ] || {{ echo disk full >&2; exit 3; }} ;; esac\necho patched\n",
        marker.display()
    );
    let spec = json!({"script": script, "retries": {"limit": 0},
        "rollout": {"maxConcurrent": 2, "maxFailures": 1}});
    fx.apply("patch", spec.clone()).await;
    let halted = until("the rollout to halt on two failures", Duration::from_secs(90), || async {
        let task = fx.task("patch").await;
        let status = task.status.clone()?;
        (is(&task, "Stalled", "True") && status.nodes.failed == 2).then_some(task)
    })
    .await
    .unwrap();
    let revision = halted.status.as_ref().unwrap().revision.clone().unwrap();
    let uid = halted.metadata.uid.clone().unwrap();
    let before: Vec<(String, usize)> = fx
        .sim
        .kubelets
        .iter()
        .filter_map(|k| {
            let record = record_of(k, &uid, &revision)?;
            Some((k.config.node.clone(), record["attempts"].as_array()?.len()))
        })
        .collect();

    std::fs::write(&marker, "").unwrap();
    let mut retry = spec;
    retry["retryFailed"] = json!("CHG-4712");
    let done = fx.watch_until_ready_after_apply("patch", retry).await;
    let status = done.status.unwrap();
    assert_eq!(status.revision.as_deref(), Some(revision.as_str()), "a retry is not a new revision");
    assert_eq!((status.nodes.succeeded, status.nodes.failed), (5, 0), "{status:?}");
    for kubelet in &fx.sim.kubelets {
        let node = kubelet.config.node.clone();
        let record = record_of(kubelet, &uid, &revision).expect("every node ran the revision");
        let attempts = record["attempts"].as_array().unwrap();
        let ran_before = before.iter().find(|(n, _)| *n == node).map(|(_, a)| *a);
        if ["win-001", "win-003"].contains(&node.as_str()) {
            assert_eq!(ran_before, Some(1), "{node} failed once before the retry");
            assert_eq!(attempts.len(), 2, "{node}: one more attempt: {record}");
            assert_eq!(record["state"], "Succeeded", "{node}: {record}");
        } else {
            assert_eq!(attempts.len(), 1, "{node} succeeded and never ran again: {record}");
        }
    }
    // The retry is told as a wave like any other.
    let retried: Vec<Event> = events_with_reason(&fx, "WaveStarted").await;
    let named_after_retry: usize =
        retried.iter().filter(|e| e.note.as_deref().is_some_and(|n| n.contains("win-001"))).count();
    assert_eq!(named_after_retry, 2, "win-001 started twice: its first run and its retry");
}

#[tokio::test]
async fn counts_a_user_watches_only_move_forward() {
    let fx = Fixture::start(4, "privileged").await;
    // Every node reboots after the patch; win-002's first attempt fails and its retry succeeds.
    let tries = tempfile::tempdir().unwrap();
    let script = format!(
        "if [ \"$COMPUTERNAME\" = WIN-002 ] && [ ! -e '{0}/tried' ]; then touch '{0}/tried'; exit 5; fi\nexit 3010\n",
        tries.path().display()
    );
    fx.apply(
        "patch",
        json!({"script": script, "runAs": {"account": "System"}, "reboot": "IfRequired",
            "retries": {"limit": 1, "backoff": "1s"}, "rollout": {"maxConcurrent": 2}}),
    )
    .await;
    let mut seen: Vec<(u32, u32)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let task = fx.task("patch").await;
        if let Some(status) = &task.status {
            let now = (status.nodes.succeeded, status.nodes.failed);
            if seen.last() != Some(&now) {
                seen.push(now);
            }
            if is(&task, "Ready", "True") && status.nodes.succeeded == 4 {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "not complete in time; counts seen: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.iter().all(|(_, failed)| *failed == 0), "no node ever counted failed: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "succeeded never went back: {seen:?}");
    let boots: Vec<u32> = fx.sim.kubelets.iter().map(|k| k.boots()).collect();
    assert_eq!(boots, [2, 2, 2, 2], "each node rebooted once");
}

#[tokio::test]
async fn exclusive_tasks_never_overlap_on_a_node() {
    let fx = Fixture::start(3, "privileged").await;
    // Two installers in one group, each free to take every node at once.
    let installer = json!({"script": "sleep 2\n", "timeout": "5m",
        "rollout": {"maxConcurrent": 3, "concurrencyGroup": "windows-installer"}});
    fx.apply("kb-a", installer.clone()).await;
    fx.apply("kb-b", installer).await;
    fx.apply("kb-free", json!({"script": "sleep 2\n", "rollout": {"maxConcurrent": 3}})).await;
    for task in ["kb-a", "kb-b", "kb-free"] {
        fx.wait_ready(task, "both installers to complete").await;
    }
    let interval = |record: &Value| -> (k8s_openapi::jiff::Timestamp, k8s_openapi::jiff::Timestamp) {
        let attempt = &record["attempts"][0];
        (
            attempt["startTime"].as_str().unwrap().parse().unwrap(),
            attempt["endTime"].as_str().unwrap().parse().unwrap(),
        )
    };
    let (a, b) = (fx.task("kb-a").await, fx.task("kb-b").await);
    let of = |task: &hostprocess_crds::HostTask, kubelet| {
        record_of(
            kubelet,
            task.metadata.uid.as_deref().unwrap(),
            task.status.as_ref().unwrap().revision.as_deref().unwrap(),
        )
    };
    for kubelet in &fx.sim.kubelets {
        let (ra, rb) = (of(&a, kubelet).expect("kb-a ran"), of(&b, kubelet).expect("kb-b ran"));
        let ((a_start, a_end), (b_start, b_end)) = (interval(&ra), interval(&rb));
        assert!(
            a_end <= b_start || b_end <= a_start,
            "{}: kb-a ran {a_start}..{a_end} and kb-b {b_start}..{b_end}",
            kubelet.config.node
        );
    }
    // A task outside the group ran beside them: what the check above would catch.
    let free = fx.task("kb-free").await;
    let overlapped = fx.sim.kubelets.iter().any(|kubelet| {
        let (f_start, f_end) = interval(&of(&free, kubelet).expect("kb-free ran"));
        let (a_start, a_end) = interval(&of(&a, kubelet).expect("kb-a ran"));
        let (b_start, b_end) = interval(&of(&b, kubelet).expect("kb-b ran"));
        (f_start < a_end && a_start < f_end) || (f_start < b_end && b_start < f_end)
    });
    assert!(overlapped, "the task outside the group ran beside an installer somewhere");
}

#[tokio::test]
async fn a_payload_that_restarts_the_node_itself_is_waited_for_not_rebooted_again() {
    let fx = Fixture::start(2, "privileged").await;
    // An installer that starts the restart itself and says so (1641).
    let script = "touch \"$HOSTPROCESS_TEST_STORE/reboot-requested\"\nexit 1641\n";
    let done = fx
        .watch_until_ready_after_apply(
            "self-restart",
            json!({"script": script, "runAs": {"account": "System"}, "reboot": "IfRequired",
                "rollout": {"maxConcurrent": 1}}),
        )
        .await;
    let status = done.status.unwrap();
    assert_eq!((status.nodes.succeeded, status.nodes.reboot_required), (2, 0), "{status:?}");
    let boots: Vec<u32> = fx.sim.kubelets.iter().map(|k| k.boots()).collect();
    assert_eq!(boots, [2, 2], "each node restarted once, by its payload");
    assert!(events_with_reason(&fx, "NodeRebooting").await.is_empty(), "the operator rebooted nothing");
    let (uid, revision) = (done.metadata.uid.unwrap(), status.revision.unwrap());
    for kubelet in &fx.sim.kubelets {
        let record = record_of(kubelet, &uid, &revision).expect("record");
        assert_eq!(record["state"], "RebootInitiated", "{record}");
        assert!(record["rebootedAt"].is_string(), "the executor saw the restart: {record}");
    }
}

#[tokio::test]
async fn a_failing_health_check_counts_as_a_failure() {
    let fx = Fixture::start(3, "privileged").await;
    // The patch installs everywhere, but on win-001 the check finds it missing.
    fx.apply(
        "patch",
        json!({"script": "echo installed\n", "retries": {"limit": 2, "backoff": "1s"},
            "healthCheck": {"command": ["sh", "-c", "echo checking; [ \"$COMPUTERNAME\" != WIN-001 ]"], "timeout": "1m"},
            "rollout": {"maxConcurrent": 3, "maxFailures": 1}}),
    )
    .await;
    let task = until("two nodes succeeded and one failed", Duration::from_secs(90), || async {
        let task = fx.task("patch").await;
        let nodes = &task.status.as_ref()?.nodes;
        (nodes.succeeded == 2 && nodes.failed == 1).then_some(task)
    })
    .await
    .unwrap();
    let status = task.status.unwrap();
    let failure = &status.failures[0];
    assert_eq!(
        (failure.node.as_str(), failure.reason.as_str()),
        ("win-001", "HealthCheckFailed"),
        "{failure:?}"
    );
    assert!(failure.message.contains("health check exited with code 1"), "{failure:?}");
    let (uid, revision) = (task.metadata.uid.unwrap(), status.revision.unwrap());
    for kubelet in &fx.sim.kubelets {
        let record = record_of(kubelet, &uid, &revision).expect("record");
        let attempts = record["attempts"].as_array().map(Vec::len);
        assert_eq!(attempts, Some(1), "the payload ran once, the check decided: {record}");
        let expected =
            if kubelet.config.node == "win-001" { ("Failed", "Failed") } else { ("Succeeded", "Passed") };
        assert_eq!(
            (record["state"].as_str(), record["healthCheck"].as_str()),
            (Some(expected.0), Some(expected.1)),
            "{record}"
        );
    }
}

#[tokio::test]
async fn a_health_check_after_a_reboot_runs_once_the_node_is_back() {
    let fx = Fixture::start(2, "privileged").await;
    let seen = tempfile::tempdir().unwrap();
    let dir = seen.path().display();
    // The payload notes the boot it ran in; the check passes only in a later one.
    let script = format!("cp \"$HOSTPROCESS_TEST_STORE/booted-at\" '{dir}/'\"$COMPUTERNAME\"\nexit 3010\n");
    let check = format!("! cmp -s \"$HOSTPROCESS_TEST_STORE/booted-at\" '{dir}/'\"$COMPUTERNAME\"");
    let done = fx
        .watch_until_ready_after_apply(
            "patch",
            json!({"script": script, "runAs": {"account": "System"}, "reboot": "IfRequired",
                "healthCheck": {"command": ["sh", "-c", check]}, "rollout": {"maxConcurrent": 2}}),
        )
        .await;
    let status = done.status.unwrap();
    assert_eq!((status.nodes.succeeded, status.nodes.failed), (2, 0), "{status:?}");
    let (uid, revision) = (done.metadata.uid.unwrap(), status.revision.unwrap());
    for kubelet in &fx.sim.kubelets {
        assert_eq!(kubelet.boots(), 2, "{} rebooted once", kubelet.config.node);
        let record = record_of(kubelet, &uid, &revision).expect("record");
        assert_eq!(record["healthCheck"], "Passed", "{record}");
    }
}

/// A GitOps tool or a user changing a task right after creating it (here: created paused, then
/// unpaused by another field manager): the change is acted on at once. The operator's first
/// status write used to make its finalizer patch for the change stale, and a stale patch waited
/// for a change that had already happened (a status write reconciles no task): the task stayed
/// at its first generation.
#[tokio::test]
async fn a_change_right_after_creation_is_acted_on_at_once() {
    let fx = Fixture::start(2, "privileged").await;
    let names: Vec<String> = (0..20).map(|i| format!("quick-{i}")).collect();
    for name in &names {
        fx.apply(name, json!({"script": "echo ok\n", "rollout": {"maxConcurrent": 2, "paused": true}})).await;
        let unpause = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
            "metadata": {"name": name}, "spec": {"rollout": {"paused": false}}});
        fx.tasks()
            .patch(name, &PatchParams::apply("another").force(), &Patch::Apply(&unpause))
            .await
            .unwrap();
    }
    let mut stuck = Vec::new();
    for name in &names {
        let done = until("the second generation to complete", Duration::from_secs(30), || async {
            let task = fx.task(name).await;
            let observed = task.status.as_ref()?.observed_generation;
            (observed == task.metadata.generation && is(&task, "Ready", "True")).then_some(())
        })
        .await;
        if done.is_err() {
            let task = fx.task(name).await;
            let observed = task.status.as_ref().and_then(|s| s.observed_generation);
            stuck.push(format!("{name}: generation {:?}, observed {observed:?}", task.metadata.generation));
        }
    }
    assert!(stuck.is_empty(), "not acted on: {stuck:?}");
}
