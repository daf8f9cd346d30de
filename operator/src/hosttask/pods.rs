//! The task pods as a rollout reads them. A task pod carries its DaemonSet's whole template and a
//! verbose status, and there is one per node and task (50,000 for 50 tasks on 1,000 nodes). A
//! rollout reads of each only its node, whether it is going away, what its containers say
//! (`rollout::observe`, worked out once per watch event) and the reboot step. `PodIndex` keeps
//! exactly that — about 150 bytes a pod (`cargo bench --bench cache_memory`) — grouped by
//! namespace, task and revision, so a reconcile reads its own task's pods and no one else's.
//!
//! The index follows a watch of the task pods the way a reflector store does: events update it
//! in place, and a relist builds a new index that replaces the old one when complete (pods that
//! went while the watch was down go with it).

use std::collections::{BTreeMap, HashMap};
use std::sync::{PoisonError, RwLock};

use futures::{Stream, StreamExt};
use hostprocess_crds::HostTask;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::reboot::{self, Step};
use super::rollout::{self, NodeResult};
use crate::cache::CachedPod;
use crate::labels;

/// What the rollout reads of one task pod.
#[derive(Debug, Clone, PartialEq)]
struct TaskPod {
    node: Option<Box<str>>,
    deleting: bool,
    /// What its containers say (`rollout::observe`), once it is bound to a node.
    observed: Option<NodeResult>,
    /// The reboot step annotation (`reboot::STEP`).
    reboot: Option<Box<str>>,
}

impl TaskPod {
    fn of(pod: &CachedPod) -> TaskPod {
        TaskPod {
            node: pod.node_name().map(Box::from),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            observed: rollout::observe(&pod.to_pod()).map(|(_, observed)| observed),
            reboot: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(reboot::STEP))
                .map(|s| Box::from(&**s)),
        }
    }
}

/// A task's pods: revision → pod name → pod.
type Revisions = HashMap<Box<str>, HashMap<Box<str>, TaskPod>>;

/// Namespace → task → its pods.
#[derive(Debug, Default)]
struct Pods(HashMap<Box<str>, HashMap<Box<str>, Revisions>>);

/// A task whose pods changed as the rollout reads them: its reconcile has something new to read.
pub type Changed = ObjectRef<HostTask>;

/// How often at most a task's pod changes reconcile it. While a fleet rolls, each of a task's
/// thousand pods changes a few times; a reconcile reads all of them, so one per change would
/// spend the operator's CPU (and the API server's, on status writes) re-reading the same
/// rollout. The first change after a quiet spell passes at once, so a wave's next node is
/// admitted as soon as the last one finishes.
pub const PACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Passes on each task's changes at most once per `every`: a change within `every` of the task's
/// last one passed waits until then, together with any others that come meanwhile.
pub fn paced(
    changes: impl Stream<Item = Changed>,
    every: std::time::Duration,
) -> impl Stream<Item = Changed> {
    use kube::runtime::scheduler::ScheduleRequest;
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    let passed: Arc<Mutex<HashMap<Changed, Instant>>> = Arc::default();
    let last = passed.clone();
    let requests = changes.map(move |task| {
        let now = Instant::now();
        let last = last.lock().unwrap_or_else(PoisonError::into_inner).get(&task).copied();
        ScheduleRequest { run_at: last.map_or(now, |at| (at + every).max(now)), message: task }
    });
    kube::runtime::scheduler(requests).map(move |task| {
        let now = Instant::now();
        let mut passed = passed.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the tasks passed within `every` can hold a change back.
        passed.retain(|_, at| now.duration_since(*at) < every);
        passed.insert(task.clone(), now);
        task
    })
}

impl Pods {
    /// Takes in a pod's new state; returns the tasks whose pods now read differently (none when
    /// only what the rollout ignores changed: a condition's time, an IP, the kubelet's heartbeat
    /// of a running container).
    fn apply(&mut self, pod: &CachedPod) -> Vec<Changed> {
        let (Some(namespace), Some(name)) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref())
        else {
            return Vec::new();
        };
        let (Some(task), Some(revision)) = (pod.label(labels::TASK), pod.label(labels::REVISION)) else {
            // Not (or no longer) a pod of a task's revision.
            return self.delete(namespace, name);
        };
        let now = TaskPod::of(pod);
        let tasks = self.0.entry(namespace.into()).or_default();
        let known = tasks.get_mut(task).and_then(|r| r.get_mut(revision)).and_then(|p| p.get_mut(name));
        if let Some(known) = known {
            if *known == now {
                return Vec::new();
            }
            *known = now;
            return vec![ObjectRef::new(task).within(namespace)];
        }
        // New here: if its labels changed, it leaves where it was.
        let mut changed = remove(tasks, name, namespace);
        tasks.entry(task.into()).or_default().entry(revision.into()).or_default().insert(name.into(), now);
        changed.push(ObjectRef::new(task).within(namespace));
        changed
    }

    /// Forgets a pod; returns the task it belonged to.
    fn delete(&mut self, namespace: &str, name: &str) -> Vec<Changed> {
        let Some(tasks) = self.0.get_mut(namespace) else { return Vec::new() };
        let changed = remove(tasks, name, namespace);
        if tasks.is_empty() {
            self.0.remove(namespace);
        }
        changed
    }

    /// Every task that has pods.
    fn tasks(&self) -> impl Iterator<Item = Changed> + '_ {
        self.0.iter().flat_map(|(namespace, tasks)| {
            tasks.keys().map(move |task| ObjectRef::new(task).within(namespace))
        })
    }
}

/// Removes a pod by name from a namespace's tasks, and what it leaves empty; returns the tasks
/// that had it.
fn remove(tasks: &mut HashMap<Box<str>, Revisions>, name: &str, namespace: &str) -> Vec<Changed> {
    let mut had = Vec::new();
    tasks.retain(|task, revisions| {
        revisions.retain(|_, pods| {
            if pods.remove(name).is_some() {
                had.push(ObjectRef::new(task).within(namespace));
            }
            !pods.is_empty()
        });
        !revisions.is_empty()
    });
    had
}

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
}

/// The task pods of the cluster (or of the operator's namespace), as the rollout reads them.
#[derive(Debug)]
pub struct PodIndex {
    pods: RwLock<Pods>,
    ready: tokio::sync::watch::Sender<bool>,
}

impl Default for PodIndex {
    fn default() -> Self {
        Self { pods: RwLock::default(), ready: tokio::sync::watch::Sender::new(false) }
    }
}

impl PodIndex {
    /// Keeps the index in step with a watch of the task pods, until the watch ends, and tells
    /// `changed` each task whose pods read differently after an event (after a relist: every
    /// task the old or the new index has).
    pub async fn follow(
        &self,
        events: impl Stream<Item = Result<watcher::Event<CachedPod>, watcher::Error>>,
        changed: impl Fn(Changed),
    ) {
        // A relist fills a new index; reads see the old one until it is complete.
        let mut relisting: Option<Pods> = None;
        events
            .for_each(|event| {
                let tasks = match event {
                    Ok(watcher::Event::Init) => {
                        relisting = Some(Pods::default());
                        Vec::new()
                    }
                    Ok(watcher::Event::InitApply(pod)) => {
                        relisting.get_or_insert_default().apply(&pod);
                        Vec::new()
                    }
                    Ok(watcher::Event::InitDone) => {
                        let listed = relisting.take().unwrap_or_default();
                        let mut tasks: Vec<Changed> = listed.tasks().collect();
                        let before = std::mem::replace(&mut *self.write(), listed);
                        tasks.extend(before.tasks());
                        self.ready.send_replace(true);
                        tasks
                    }
                    Ok(watcher::Event::Apply(pod)) => self.write().apply(&pod),
                    Ok(watcher::Event::Delete(pod)) => match (pod.metadata.namespace, pod.metadata.name) {
                        (Some(namespace), Some(name)) => self.write().delete(&namespace, &name),
                        _ => Vec::new(),
                    },
                    // The watcher retries with back-off; the index keeps what it had.
                    Err(error) => {
                        tracing::debug!(%error, "task pod watch");
                        Vec::new()
                    }
                };
                // Told once the index shows the change, so the reconcile reads it.
                tasks.into_iter().for_each(&changed);
                futures::future::ready(())
            })
            .await;
    }

    /// Waits until the index holds what the cluster holds (the first list is complete).
    pub async fn wait_until_ready(&self) {
        let _ = self.ready.subscribe().wait_for(|ready| *ready).await;
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Pods> {
        self.pods.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pods of `task`, read against its current `revision`.
    pub fn task(&self, task: &HostTask, revision: &str) -> TaskPods {
        let pods = self.pods.read().unwrap_or_else(PoisonError::into_inner);
        let (namespace, name) = (task.metadata.namespace.as_deref(), task.metadata.name.as_deref());
        let Some(revisions) =
            pods.0.get(namespace.unwrap_or_default()).and_then(|tasks| tasks.get(name.unwrap_or_default()))
        else {
            return TaskPods::default();
        };
        // Pods that are bound and not going away: (name, node, pod), borrowed from the index.
        fn live(pods: &HashMap<Box<str>, TaskPod>) -> Vec<(&str, &str, &TaskPod)> {
            pods.iter()
                .filter(|(_, p)| !p.deleting)
                .filter_map(|(name, p)| Some((&**name, p.node.as_deref()?, p)))
                .collect()
        }
        let current = revisions.get(revision).map(live).unwrap_or_default();
        let mut read = TaskPods::default();
        for &(_, node, pod) in &current {
            let Some(observed) = pod.observed.clone() else { continue };
            let result = reboot::result(task, &Step::of(pod.reboot.as_deref()), node, observed);
            rollout::keep_settled(&mut read.results, node.to_string(), result);
        }
        for (name, node, pod) in current {
            if read.results.get(node) == Some(&NodeResult::Rebooting) {
                let step = Step::of(pod.reboot.as_deref());
                read.rebooting.push(Rebooting { pod: name.to_string(), node: node.to_string(), step });
            }
        }
        for (_, pods) in revisions.iter().filter(|(r, _)| &***r != revision) {
            read.outdated
                .extend(live(pods).into_iter().map(|(name, node, _)| (name.to_string(), node.to_string())));
        }
        read.outdated.sort();
        read.rebooting.sort_by(|a, b| a.node.cmp(&b.node));
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    const OK: &str = r#"{"state":"Succeeded","ok":true}"#;

    #[test]
    fn a_task_reads_its_own_pods_by_revision() {
        let index = PodIndex::default();
        let mut going = pod("patch-c", "patch", "r2", "win-003", None);
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        follow(
            &index,
            listed(vec![
                pod("patch-a", "patch", "r2", "win-001", Some(OK)),
                pod("patch-b", "patch", "r2", "win-002", None),
                going,
                pod("patch-d", "patch", "r1", "win-004", Some(OK)),
                pod("other-a", "other", "r2", "win-005", Some(OK)),
            ]),
        );
        let read = index.task(&task("Never"), "r2");
        let nodes: Vec<(&str, &NodeResult)> = read.results.iter().map(|(n, r)| (n.as_str(), r)).collect();
        assert_eq!(
            nodes,
            [
                ("win-001", &NodeResult::Succeeded { reboot_required: false }),
                ("win-002", &NodeResult::Running)
            ],
            "a pod going away says nothing; other tasks' and revisions' pods are not this revision's"
        );
        assert_eq!(read.outdated, [("patch-d".to_string(), "win-004".to_string())]);
        assert!(read.rebooting.is_empty());
        let mut elsewhere = task("Never");
        elsewhere.metadata.namespace = Some("elsewhere".into());
        assert_eq!(index.task(&elsewhere, "r2"), TaskPods::default());
    }

    #[test]
    fn a_reboot_the_payload_asks_for_is_read_with_its_step() {
        let index = PodIndex::default();
        let asks = r#"{"state":"RebootRequired","ok":true}"#;
        let mut draining = pod("patch-b", "patch", "r1", "win-002", Some(asks));
        draining.metadata.annotations = Some([(reboot::STEP.to_string(), "draining".to_string())].into());
        let mut done = pod("patch-c", "patch", "r1", "win-003", Some(asks));
        done.metadata.annotations = Some([(reboot::STEP.to_string(), "done".to_string())].into());
        follow(&index, listed(vec![pod("patch-a", "patch", "r1", "win-001", Some(asks)), draining, done]));

        let read = index.task(&task("IfRequired"), "r1");
        assert_eq!(read.results["win-001"], NodeResult::Rebooting);
        assert_eq!(read.results["win-003"], NodeResult::Succeeded { reboot_required: false });
        let steps: Vec<(&str, &Step)> = read.rebooting.iter().map(|r| (r.pod.as_str(), &r.step)).collect();
        assert_eq!(steps, [("patch-a", &Step::Required), ("patch-b", &Step::Draining)]);

        let never = index.task(&task("Never"), "r1");
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
                watcher::Event::Apply(pod("patch-a", "patch", "r1", "win-001", Some(OK))),
                watcher::Event::Apply(pod("patch-b", "patch", "r1", "win-002", None)),
            ],
        );
        let nodes = |index: &PodIndex| -> Vec<String> {
            index.task(&task("Never"), "r1").results.into_keys().collect()
        };
        assert_eq!(
            index.task(&task("Never"), "r1").results["win-001"],
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
        assert!(index.task(&task("Never"), "r1").results.is_empty());
        let mut unlabelled = pod("patch-a", "other", "r1", "win-001", None);
        unlabelled.metadata.labels = None;
        follow(&index, vec![watcher::Event::Apply(unlabelled)]);
        let other: HostTask = serde_json::from_value(json!({
            "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
            "metadata": {"name": "other", "namespace": "ops"}, "spec": {"script": "exit 0"}}))
        .unwrap_or_else(|e| panic!("task: {e}"));
        assert!(index.task(&other, "r1").results.is_empty());
        assert!(index.pods.read().map(|p| p.0.is_empty()).unwrap_or(false), "nothing left behind");
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
        let finished = pod("patch-a", "patch", "r1", "win-001", Some(OK));
        assert_eq!(follow(&index, vec![watcher::Event::Apply(finished)]).len(), 1, "a result");
        let moved = pod("patch-a", "other", "r1", "win-001", Some(OK));
        assert_eq!(
            follow(&index, vec![watcher::Event::Apply(moved.clone())]),
            ["ops/patch", "ops/other"],
            "relabelled: the task it left and the one it joined"
        );
        assert_eq!(follow(&index, vec![watcher::Event::Delete(moved)]), ["ops/other"]);
        let relisted = follow(&index, listed(vec![pod("patch-b", "patch", "r1", "win-002", None)]));
        assert_eq!(relisted, ["ops/patch"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_s_changes_pass_at_once_after_a_quiet_spell_and_at_most_once_per_pace() {
        use tokio::time::{Duration, Instant, sleep};
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let start = Instant::now();
        let patch = || ObjectRef::<HostTask>::new("patch").within("ops");
        let other = || ObjectRef::<HostTask>::new("other").within("ops");
        let send = move |at: u64, task: Changed| {
            let tx = tx.clone();
            async move {
                sleep(Duration::from_millis(at)).await;
                let _ = tx.unbounded_send(task);
            }
        };
        let changes = futures::future::join_all([
            send(0, patch()),
            send(10, patch()),
            send(50, patch()),
            send(60, other()),
            send(300, patch()),
            send(1000, patch()),
        ]);
        let passed = paced(rx, Duration::from_millis(200))
            .map(|task| (task.name, start.elapsed().as_millis()))
            .take(5)
            .collect::<Vec<_>>();
        let (_, passed) = futures::future::join(changes, passed).await;
        assert_eq!(
            passed,
            [
                ("patch".to_string(), 0),
                ("other".to_string(), 60),
                ("patch".to_string(), 200),
                ("patch".to_string(), 400),
                ("patch".to_string(), 1000)
            ],
            "10 and 50 ms pass together at 200; 300 waits for 400; another task is not held back"
        );
    }

    #[test]
    fn ready_once_the_first_list_is_complete() {
        let index = PodIndex::default();
        let waiting = futures::FutureExt::now_or_never(index.wait_until_ready());
        assert!(waiting.is_none());
        follow(&index, listed(vec![]));
        assert!(futures::FutureExt::now_or_never(index.wait_until_ready()).is_some());
    }
}
