//! A task's pods read as its rollout reads them: per node the result of the current revision
//! (with the reboot the operator carries out applied), the pods of older revisions, and the nodes
//! whose reboot is under way.

use std::collections::{BTreeMap, HashMap};

use hostprocess_crds::HostTask;
use k8s_openapi::jiff::Timestamp;

use super::reboot::step::{self, Step};
use super::rollout::{self, NodeResult};
use crate::state::task_pods::{PodIndex, TaskPod};

/// How long a pod of an earlier revision that reads as not started yet may still be starting
/// its payload unseen: until then it is left to finish, after it replaced.
const STARTING_GRACE: k8s_openapi::jiff::SignedDuration = k8s_openapi::jiff::SignedDuration::from_secs(30);

/// A pod on a node whose reboot the operator carries out.
#[derive(Debug, Clone, PartialEq)]
pub struct Rebooting {
    pub pod: String,
    pub node: String,
    pub step: Step,
}

/// What a task's pods say, read in one pass.
#[derive(Debug, Default, PartialEq)]
pub struct TaskPods {
    /// Per node, what this revision's pod says (a reboot the operator carries out included; a
    /// pod going away says nothing).
    pub results: BTreeMap<String, NodeResult>,
    /// Pods of older revisions that are not going yet: (pod, node).
    pub outdated: Vec<(String, String)>,
    /// This revision's pods whose node is rebooting.
    pub rebooting: Vec<Rebooting>,
    /// Per node, the failed pod of an earlier retry round (`RetryPending`): replaced when the
    /// node is admitted again.
    pub retry: BTreeMap<String, String>,
}

/// The pods of `task` in `index`, read against its current `revision`.
pub fn read(index: &PodIndex, task: &HostTask, revision: &str, now: Timestamp) -> TaskPods {
    let round = super::build::retry_round(task);
    let (namespace, name) = (task.metadata.namespace.as_deref(), task.metadata.name.as_deref());
    index.read_task(namespace.unwrap_or_default(), name.unwrap_or_default(), |revisions| {
        let Some(revisions) = revisions else { return TaskPods::default() };
        // Pods that are bound and not going away: (name, node, pod), borrowed from the index.
        fn live(pods: &HashMap<Box<str>, TaskPod>) -> Vec<(&str, &str, &TaskPod)> {
            pods.iter()
                .filter(|(_, p)| !p.deleting)
                .filter_map(|(name, p)| Some((&**name, p.node.as_deref()?, p)))
                .collect()
        }
        let current = revisions.get(revision).map(live).unwrap_or_default();
        let mut read = TaskPods::default();
        for &(name, node, pod) in &current {
            let Some(observed) = pod.observed.clone() else { continue };
            let mut result = step::result(task, &Step::of(pod.reboot.as_deref()), node, observed);
            if matches!(result, NodeResult::Failed(_))
                && round.is_some()
                && pod.retry.as_deref() != round.as_deref()
            {
                read.retry.insert(node.to_string(), name.to_string());
                result = NodeResult::RetryPending;
            }
            rollout::keep_settled(&mut read.results, node.to_string(), result);
        }
        for (name, node, pod) in current {
            if read.results.get(node) == Some(&NodeResult::Rebooting) {
                let step = Step::of(pod.reboot.as_deref());
                read.rebooting.push(Rebooting { pod: name.to_string(), node: node.to_string(), step });
            }
        }
        for (_, pods) in revisions.iter().filter(|(r, _)| &***r != revision) {
            for (name, node, pod) in live(pods) {
                read.outdated.push((name.to_string(), node.to_string()));
                // An earlier revision's payload still running there (or maybe: its container
                // may have started before the kubelet said so): it finishes first.
                let may_run = match pod.observed {
                    Some(NodeResult::Running) => true,
                    Some(NodeResult::Starting) => {
                        pod.created.is_some_and(|c| now.duration_since(c) < STARTING_GRACE)
                    }
                    _ => false,
                };
                if may_run && !read.results.contains_key(node) {
                    read.results.insert(node.to_string(), NodeResult::Finishing);
                }
            }
        }
        read.outdated.sort();
        read.rebooting.sort_by(|a, b| a.node.cmp(&b.node));
        read
    })
}

/// The nodes where another task of concurrency group `group` is in flight, as its pods say:
/// not yet finished, or in the reboot it asked for.
pub fn in_flight_in_group(
    index: &PodIndex,
    group: &str,
    task: &HostTask,
) -> std::collections::BTreeSet<String> {
    let (namespace, name) = (task.metadata.namespace.as_deref(), task.metadata.name.as_deref());
    index.nodes_of_group(group, (namespace.unwrap_or_default(), name.unwrap_or_default()), |pod| {
        match &pod.observed {
            None | Some(NodeResult::Starting | NodeResult::Running) => true,
            Some(NodeResult::Succeeded { reboot_required: true }) => {
                matches!(Step::of(pod.reboot.as_deref()), Step::Draining { .. } | Step::Rebooting { .. })
            }
            Some(_) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;
    use crate::state::cached_pod::CachedPod;
    use crate::state::pod_result::lines;
    use hostprocess_protocol::{AttemptOutcome, State};
    use kube::runtime::watcher;
    use serde_json::json;
    use std::sync::PoisonError;

    fn task(reboot: &str) -> HostTask {
        serde_json::from_value(json!({
            "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
            "metadata": {"name": "patch", "namespace": "ops"},
            "spec": {"script": "exit 0", "reboot": reboot}}))
        .unwrap_or_else(|e| panic!("task: {e}"))
    }

    /// A pod of `task` at `revision` on `node`; `result` is the executor's last result line.
    fn pod(name: &str, task: &str, revision: &str, node: &str, result: Option<&str>) -> CachedPod {
        let last_state = result.map_or(
            json!({}),
            |line| json!({"terminated": {"exitCode": 0, "reason": "Completed", "message": line}}),
        );
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ops",
                "labels": {labels::TASK: task, labels::REVISION: revision}},
            "spec": {"nodeName": node},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": if result.is_some() { "True" } else { "False" }}],
                "containerStatuses": [{"name": "task", "ready": result.is_some(), "restartCount": 0,
                    "state": {"running": {}}, "lastState": last_state}]},
        }))
        .unwrap_or_else(|e| panic!("pod: {e}"))
    }

    /// Feeds `events` to the index; returns the tasks it said changed, in order.
    fn follow(index: &PodIndex, events: Vec<watcher::Event<CachedPod>>) -> Vec<String> {
        let changed = std::sync::Mutex::new(Vec::new());
        futures::executor::block_on(index.follow(
            futures::stream::iter(events.into_iter().map(Ok)),
            |task| {
                let namespace = task.namespace.unwrap_or_default();
                changed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(format!("{namespace}/{}", task.name));
            },
        ));
        changed.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    fn listed(pods: Vec<CachedPod>) -> Vec<watcher::Event<CachedPod>> {
        let mut events = vec![watcher::Event::Init];
        events.extend(pods.into_iter().map(watcher::Event::InitApply));
        events.push(watcher::Event::InitDone);
        events
    }

    fn ok() -> String {
        lines::ran(State::Succeeded, 0, &[(AttemptOutcome::Succeeded, "")])
    }

    #[test]
    fn a_task_reads_its_own_pods_by_revision() {
        let index = PodIndex::default();
        let mut going = pod("patch-c", "patch", "r2", "win-003", None);
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        follow(
            &index,
            listed(vec![
                pod("patch-a", "patch", "r2", "win-001", Some(&ok())),
                pod("patch-b", "patch", "r2", "win-002", None),
                going,
                pod("patch-d", "patch", "r1", "win-004", Some(&ok())),
                pod("other-a", "other", "r2", "win-005", Some(&ok())),
            ]),
        );
        let seen = read(&index, &task("Never"), "r2", Timestamp::now());
        let nodes: Vec<(&str, &NodeResult)> = seen.results.iter().map(|(n, r)| (n.as_str(), r)).collect();
        assert_eq!(
            nodes,
            [
                ("win-001", &NodeResult::Succeeded { reboot_required: false }),
                ("win-002", &NodeResult::Running)
            ],
            "a pod going away says nothing; other tasks' and revisions' pods are not this revision's"
        );
        assert_eq!(seen.outdated, [("patch-d".to_string(), "win-004".to_string())]);
        assert!(seen.rebooting.is_empty());
        let mut elsewhere = task("Never");
        elsewhere.metadata.namespace = Some("elsewhere".into());
        assert_eq!(read(&index, &elsewhere, "r2", Timestamp::now()), TaskPods::default());
    }

    #[test]
    fn a_reboot_the_payload_asks_for_is_read_with_its_step() {
        let index = PodIndex::default();
        let asks = &lines::ran(State::RebootRequired, 3010, &[(AttemptOutcome::RebootRequired, "")]);
        let mut draining = pod("patch-b", "patch", "r1", "win-002", Some(asks));
        draining.metadata.annotations =
            Some([(labels::REBOOT_STEP.to_string(), "draining".to_string())].into());
        let mut done = pod("patch-c", "patch", "r1", "win-003", Some(asks));
        done.metadata.annotations = Some([(labels::REBOOT_STEP.to_string(), "done".to_string())].into());
        follow(&index, listed(vec![pod("patch-a", "patch", "r1", "win-001", Some(asks)), draining, done]));

        let seen = read(&index, &task("IfRequired"), "r1", Timestamp::now());
        assert_eq!(seen.results["win-001"], NodeResult::Rebooting);
        assert_eq!(seen.results["win-003"], NodeResult::Succeeded { reboot_required: false });
        let steps: Vec<(&str, &Step)> = seen.rebooting.iter().map(|r| (r.pod.as_str(), &r.step)).collect();
        assert_eq!(steps, [("patch-a", &Step::Required), ("patch-b", &Step::Draining { since: None })]);

        let never = read(&index, &task("Never"), "r1", Timestamp::now());
        assert_eq!(never.results["win-001"], NodeResult::Succeeded { reboot_required: true });
        assert!(never.rebooting.is_empty(), "with reboot: Never the operator reboots nothing");
    }

    #[test]
    fn watch_events_update_the_index_and_a_relist_replaces_it() {
        let index = PodIndex::default();
        follow(&index, listed(vec![pod("patch-a", "patch", "r1", "win-001", None)]));
        follow(
            &index,
            vec![
                watcher::Event::Apply(pod("patch-a", "patch", "r1", "win-001", Some(&ok()))),
                watcher::Event::Apply(pod("patch-b", "patch", "r1", "win-002", None)),
            ],
        );
        let nodes = |index: &PodIndex| -> Vec<String> {
            read(index, &task("Never"), "r1", Timestamp::now()).results.into_keys().collect()
        };
        assert_eq!(
            read(&index, &task("Never"), "r1", Timestamp::now()).results["win-001"],
            NodeResult::Succeeded { reboot_required: false }
        );
        follow(&index, vec![watcher::Event::Delete(pod("patch-a", "patch", "r1", "win-001", None))]);
        assert_eq!(nodes(&index), ["win-002"]);

        // A relist: until it is done the index keeps what it had; then it is what was listed,
        // and a pod deleted while the watch was down is gone.
        let mut relist = listed(vec![pod("patch-c", "patch", "r1", "win-003", None)]);
        relist.pop();
        follow(&index, relist);
        assert_eq!(nodes(&index), ["win-002"], "a relist is not read half done");
        follow(
            &index,
            vec![
                watcher::Event::Init,
                watcher::Event::InitApply(pod("patch-c", "patch", "r1", "win-003", None)),
                watcher::Event::InitDone,
            ],
        );
        assert_eq!(nodes(&index), ["win-003"]);
    }

    #[test]
    fn a_pod_whose_labels_change_is_read_where_its_labels_say() {
        let index = PodIndex::default();
        follow(&index, listed(vec![pod("patch-a", "patch", "r1", "win-001", None)]));
        follow(&index, vec![watcher::Event::Apply(pod("patch-a", "other", "r1", "win-001", None))]);
        assert!(read(&index, &task("Never"), "r1", Timestamp::now()).results.is_empty());
        let mut unlabelled = pod("patch-a", "other", "r1", "win-001", None);
        unlabelled.metadata.labels = None;
        follow(&index, vec![watcher::Event::Apply(unlabelled)]);
        let other: HostTask = serde_json::from_value(json!({
            "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
            "metadata": {"name": "other", "namespace": "ops"}, "spec": {"script": "exit 0"}}))
        .unwrap_or_else(|e| panic!("task: {e}"));
        assert!(read(&index, &other, "r1", Timestamp::now()).results.is_empty());
        assert!(index.is_empty(), "nothing left behind");
    }

    #[test]
    fn only_a_change_the_rollout_reads_reconciles_the_task() {
        let index = PodIndex::default();
        let changed = follow(&index, listed(vec![pod("patch-a", "patch", "r1", "win-001", None)]));
        assert_eq!(changed, ["ops/patch"], "the first list: every task");
        let mut heartbeat = pod("patch-a", "patch", "r1", "win-001", None);
        heartbeat.metadata.resource_version = Some("8".into());
        assert!(
            follow(&index, vec![watcher::Event::Apply(heartbeat)]).is_empty(),
            "nothing the rollout reads"
        );
        let finished = pod("patch-a", "patch", "r1", "win-001", Some(&ok()));
        assert_eq!(follow(&index, vec![watcher::Event::Apply(finished)]).len(), 1, "a result");
        let moved = pod("patch-a", "other", "r1", "win-001", Some(&ok()));
        assert_eq!(
            follow(&index, vec![watcher::Event::Apply(moved.clone())]),
            ["ops/patch", "ops/other"],
            "relabelled: the task it left and the one it joined"
        );
        assert_eq!(follow(&index, vec![watcher::Event::Delete(moved)]), ["ops/other"]);
        let relisted = follow(&index, listed(vec![pod("patch-b", "patch", "r1", "win-002", None)]));
        assert_eq!(relisted, ["ops/patch"]);
    }

    #[test]
    fn a_failure_of_an_earlier_retry_round_is_pending_and_one_of_this_round_stays_failed() {
        let index = PodIndex::default();
        let failed = lines::ran(State::Failed, 3, &[(AttemptOutcome::ExitCode, "")]);
        let down = |name: &str, node: &str, round: Option<&str>| {
            let mut pod: CachedPod = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ops",
                    "labels": {labels::TASK: "patch", labels::REVISION: "r1"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "controller": true,
                        "name": labels::daemon_set_name("patch"), "uid": "ds-1"}]},
                "spec": {"nodeName": node},
                "status": {"phase": "Running", "containerStatuses": [{"name": "task", "ready": false,
                    "restartCount": 1, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 3, "message": failed}}}]},
            }))
            .unwrap_or_else(|e| panic!("pod: {e}"));
            if let (Some(labels), Some(round)) = (pod.metadata.labels.as_mut(), round) {
                labels.insert(labels::RETRY.into(), round.into());
            }
            crate::state::cached_pod::strip_pod(&mut pod);
            pod
        };
        let mut retried = task("Never");
        retried.spec.retry_failed = Some("CHG-1".into());
        let round = super::super::build::retry_round(&retried);
        follow(
            &index,
            listed(vec![down("patch-a", "win-001", None), down("patch-b", "win-002", round.as_deref())]),
        );
        let seen = read(&index, &retried, "r1", Timestamp::now());
        assert_eq!(seen.results["win-001"], NodeResult::RetryPending);
        assert_eq!(seen.retry.get("win-001").map(String::as_str), Some("patch-a"));
        assert!(matches!(seen.results["win-002"], NodeResult::Failed(_)), "failed in this round: {seen:?}");
        // Without a retry token, a failure is a failure.
        assert!(matches!(
            read(&index, &task("Never"), "r1", Timestamp::now()).results["win-001"],
            NodeResult::Failed(_)
        ));
    }
}
