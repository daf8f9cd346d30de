//! What reconciles what, by name. A watch event reconciles an object only when it changes what
//! that object's reconcile reads; each trigger here says which change that is:
//!
//! | trigger | from | reconciles |
//! |---|---|---|
//! | `acted_on` | a HostTask's spec, labels, finalizers, deletion (not its status) | that task |
//! | `paced` | a task pod change the rollout reads (`state::task_pods`) | its task, at most every `PACE` |
//! | owned DaemonSet | a task's DaemonSet | that task |
//! | `NodeTargeting` | a node added, removed, or relabelled (not admission labels) | every task and group |
//! | `NamespaceLabels` | a namespace's labels (Pod Security) | every task and group |
//! | a HostTaskGrant | created, changed or deleted | every task |
//! | `SetupSucceeded` | a setup pod succeeding or going; `GroupGeneration`: a HostGroup spec or deletion | every task (where it may run) |
//! | a setup pod change | a setup pod of a HostGroup | that HostGroup |
//! | a refused node label write | `writes::node_labels` | every task |

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use hostprocess_crds::{HostGroup, HostTask};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

use crate::labels;
use crate::state::cached_pod::CachedPod;
use crate::state::task_pods::Changed;

/// A signal to every controller that subscribed: something many objects read changed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Broadcast(Vec<UnboundedSender<()>>);

impl Broadcast {
    pub fn subscribe(&mut self) -> UnboundedReceiver<()> {
        let (tx, rx) = unbounded();
        self.0.push(tx);
        rx
    }

    pub fn send(&self) {
        for tx in &self.0 {
            let _ = tx.unbounded_send(());
        }
    }
}

/// A hash of what a HostTask reconcile acts on: all of the task but its status and the
/// bookkeeping every write changes (resourceVersion, managedFields). The operator's own status
/// writes therefore reconcile nothing.
pub(crate) fn acted_on(task: &HostTask) -> Option<u64> {
    let meta = &task.metadata;
    let mut hasher = std::hash::DefaultHasher::new();
    (&meta.uid, meta.generation, meta.deletion_timestamp.is_some(), &meta.finalizers).hash(&mut hasher);
    (&meta.labels, &meta.annotations).hash(&mut hasher);
    Some(hasher.finish())
}

/// Per node, a hash of what decides where tasks and HostGroups go: the labels targeting reads
/// (a copy of them all would double the node cache), the HostGroup records and the machine ID;
/// the operator's own admission labels change with every wave and are left out.
#[derive(Debug, Default)]
pub(crate) struct NodeTargeting(HashMap<String, u64>);

impl NodeTargeting {
    /// Whether `event` changes which nodes some selector matches (the first list counts).
    pub fn changed(&mut self, event: &watcher::Event<PartialObjectMeta<Node>>) -> bool {
        match event {
            watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
                let mut hasher = std::hash::DefaultHasher::new();
                node.labels()
                    .iter()
                    .filter(|(key, _)| !labels::is_admission_label(key))
                    .for_each(|l| l.hash(&mut hasher));
                node.annotations()
                    .iter()
                    .filter(|(key, _)| {
                        key.starts_with(labels::PROVISIONED_PREFIX) || *key == labels::CACHED_MACHINE_ID
                    })
                    .for_each(|a| a.hash(&mut hasher));
                let targeting = hasher.finish();
                self.0.insert(node.name_any(), targeting) != Some(targeting)
            }
            watcher::Event::Delete(node) => self.0.remove(&node.name_any()).is_some(),
            watcher::Event::InitDone => true,
            watcher::Event::Init => false,
        }
    }
}

/// Per namespace, its labels: a Pod Security label change re-evaluates blocked objects.
#[derive(Debug, Default)]
pub(crate) struct NamespaceLabels(HashMap<String, BTreeMap<String, String>>);

impl NamespaceLabels {
    pub fn changed(&mut self, namespace: &PartialObjectMeta<Namespace>) -> bool {
        let labels = namespace.labels().clone();
        self.0.insert(namespace.name_any(), labels.clone()).is_some_and(|before| before != labels)
    }
}

/// Per setup pod, whether it succeeded: a task running as a HostGroup starts where the group is
/// provisioned, so a success (or a successful pod going) may let it start or stop somewhere.
#[derive(Debug, Default)]
pub(crate) struct SetupSucceeded(HashMap<String, bool>);

impl SetupSucceeded {
    pub fn changed(&mut self, pod: &CachedPod) -> bool {
        let done = pod.phase() == Some("Succeeded") && pod.metadata.deletion_timestamp.is_none();
        self.0.insert(pod.uid().unwrap_or_default(), done).unwrap_or(false) != done
    }
}

/// Per HostGroup, its generation and whether it is being deleted: a new revision (or a
/// deletion) changes where its tasks may run.
#[derive(Debug, Default)]
pub(crate) struct GroupGeneration(HashMap<String, (Option<i64>, bool)>);

impl GroupGeneration {
    pub fn changed(&mut self, group: &HostGroup) -> bool {
        let now = (group.metadata.generation, group.metadata.deletion_timestamp.is_some());
        self.0.insert(group.name_any(), now) != Some(now)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::ObjectRef;
    use serde_json::json;

    #[test]
    fn a_status_write_reconciles_nothing_but_a_spec_finalizer_or_deletion_does() {
        let mut task: HostTask = serde_json::from_value(json!({
            "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
            "metadata": {"name": "patch", "namespace": "ops", "uid": "u", "generation": 1,
                "resourceVersion": "10"},
            "spec": {"script": "exit 0"}}))
        .unwrap_or_else(|e| panic!("task: {e}"));
        let first = acted_on(&task);
        task.status =
            Some(hostprocess_crds::HostTaskStatus { observed_generation: Some(1), ..Default::default() });
        task.metadata.resource_version = Some("11".into());
        assert_eq!(acted_on(&task), first, "the operator's own status write");
        task.metadata.generation = Some(2);
        let spec_changed = acted_on(&task);
        assert_ne!(spec_changed, first, "a spec change");
        task.metadata.finalizers = Some(vec![crate::finalizer::FINALIZER.into()]);
        let finalized = acted_on(&task);
        assert_ne!(finalized, spec_changed, "the finalizer the operator adds before the first label");
        task.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        assert_ne!(acted_on(&task), finalized, "deletion");
    }

    fn node(name: &str, labels: serde_json::Value) -> PartialObjectMeta<Node> {
        let mut node = PartialObjectMeta::<Node>::default();
        node.metadata.name = Some(name.into());
        node.metadata.labels = serde_json::from_value(labels).unwrap_or_else(|e| panic!("labels: {e}"));
        node
    }

    #[test]
    fn only_a_label_that_targeting_reads_retargets() {
        let mut targeting = NodeTargeting::default();
        let apply = |n| watcher::Event::Apply(n);
        assert!(targeting.changed(&apply(node("win-1", json!({"pool": "a"})))), "a new node");
        assert!(!targeting.changed(&apply(node("win-1", json!({"pool": "a"})))), "a heartbeat");
        let admitted = json!({"pool": "a", "admitted.hostprocess.dev/uid-1": "rev"});
        assert!(!targeting.changed(&apply(node("win-1", admitted))), "the operator's own admission label");
        assert!(targeting.changed(&apply(node("win-1", json!({"pool": "b"})))), "relabelled");
        assert!(targeting.changed(&watcher::Event::Delete(node("win-1", json!({})))), "gone");
        assert!(!targeting.changed(&watcher::Event::Delete(node("win-1", json!({})))), "gone already");
    }

    #[test]
    fn a_namespace_label_change_counts_but_its_first_sight_does_not() {
        let mut namespaces = NamespaceLabels::default();
        let mut ns = PartialObjectMeta::<Namespace>::default();
        ns.metadata.name = Some("ops".into());
        assert!(!namespaces.changed(&ns), "first seen: the caches are filling");
        ns.metadata.labels = Some([(labels::POD_SECURITY_ENFORCE.into(), "privileged".into())].into());
        assert!(namespaces.changed(&ns));
        assert!(!namespaces.changed(&ns));
    }

    #[test]
    fn a_setup_pod_counts_when_it_succeeds_and_when_a_succeeded_one_goes() {
        let mut setups = SetupSucceeded::default();
        let pod = |phase: &str, deleting: bool| -> CachedPod {
            let mut pod: CachedPod = serde_json::from_value(json!({"metadata": {"name": "s", "uid": "u-1"},
                "status": {"phase": phase}}))
            .unwrap_or_else(|e| panic!("pod: {e}"));
            if deleting {
                pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
            }
            pod
        };
        assert!(!setups.changed(&pod("Pending", false)));
        assert!(!setups.changed(&pod("Running", false)));
        assert!(setups.changed(&pod("Succeeded", false)));
        assert!(!setups.changed(&pod("Succeeded", false)));
        assert!(setups.changed(&pod("Succeeded", true)), "going away");
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
}
