//! What reconciles what, by name. A watch event reconciles an object only when it changes what
//! that object's reconcile reads; each trigger here says which change that is:
//!
//! | trigger | from | reconciles |
//! |---|---|---|
//! | `acted_on` | a HostTask's spec, labels, finalizers, deletion (not its status) | that task |
//! | `paced` | a task pod change the rollout reads (`state::task_pods`) | its task, at most every `pace` (by its pods) |
//! | owned DaemonSet | a task's DaemonSet | that task |
//! | `NodeTargeting` | a node added, removed, or relabelled (not admission labels) | every task and group |
//! | `NamespaceLabels` | a namespace's labels (Pod Security) | every task and group |
//! | a HostTaskGrant | created, changed or deleted | every task |
//! | `SetupSucceeded` | a setup pod succeeding or going; `GroupGeneration`: a HostGroup spec or deletion | every task (where it may run) |
//! | a setup pod change | a setup pod of a HostGroup | that HostGroup |
//! | a refused node label write | `writes::node_labels` | every task |

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, StreamExt};
use hostprocess_crds::{HostGroup, HostTask};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

use crate::labels;
use crate::state::cached_pod::CachedPod;
use crate::state::task_pods::Changed;

/// The keys waiting to be reconciled, each at most once: a key sent again while it waits is not
/// queued twice. The queue is therefore bounded by the number of distinct keys (the objects the
/// operator manages, or one for a signal), and a sender never waits, so the watch that sends
/// never stalls: the back-pressure policy is to coalesce, and nothing is dropped that is not
/// already waiting.
#[derive(Debug)]
pub(crate) struct Pending<T>(Arc<(Mutex<Queue<T>>, tokio::sync::Notify)>);

/// The keys in the order sent, and the same keys as a set.
type Queue<T> = (VecDeque<T>, HashSet<T>);

impl<T> Clone for Pending<T> {
    fn clone(&self) -> Self {
        Pending(self.0.clone())
    }
}

impl<T: Hash + Eq + Clone + Send + 'static> Pending<T> {
    /// A queue and the stream that takes its keys, oldest first (one reader).
    pub fn new() -> (Self, futures::stream::BoxStream<'static, T>) {
        let pending = Pending(Arc::default());
        let taken = futures::stream::unfold(pending.0.clone(), |inner| async move {
            loop {
                let next = {
                    let mut queue = inner.0.lock().unwrap_or_else(PoisonError::into_inner);
                    let next = queue.0.pop_front();
                    if let Some(key) = &next {
                        queue.1.remove(key);
                    }
                    next
                };
                match next {
                    Some(key) => return Some((key, inner)),
                    // A key sent since the queue was seen empty left a permit: no wake-up is lost.
                    None => inner.1.notified().await,
                }
            }
        });
        (pending, taken.boxed())
    }

    pub fn send(&self, key: T) {
        let mut queue = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.1.insert(key.clone()) {
            queue.0.push_back(key);
            self.0.1.notify_one();
        }
    }
}

/// A signal to every controller that subscribed: something many objects read changed. Each
/// subscriber holds at most one signal.
#[derive(Debug, Clone, Default)]
pub(crate) struct Broadcast(Vec<Pending<()>>);

impl Broadcast {
    pub fn subscribe(&mut self) -> futures::stream::BoxStream<'static, ()> {
        let (pending, signals) = Pending::new();
        self.0.push(pending);
        signals
    }

    pub fn send(&self) {
        for pending in &self.0 {
            pending.send(());
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

/// Per namespace, its labels: a Pod Security label change re-evaluates blocked objects. A
/// namespace that goes is forgotten.
#[derive(Debug, Default)]
pub(crate) struct NamespaceLabels(HashMap<String, BTreeMap<String, String>>);

impl NamespaceLabels {
    pub fn changed(&mut self, event: &watcher::Event<PartialObjectMeta<Namespace>>) -> bool {
        match event {
            watcher::Event::Apply(ns) | watcher::Event::InitApply(ns) => {
                let labels = ns.labels().clone();
                self.0.insert(ns.name_any(), labels.clone()).is_some_and(|before| before != labels)
            }
            watcher::Event::Delete(ns) => {
                self.0.remove(&ns.name_any());
                false
            }
            watcher::Event::Init | watcher::Event::InitDone => false,
        }
    }
}

/// Per setup pod, whether it succeeded: a task running as a HostGroup starts where the group is
/// provisioned, so a success (or a successful pod going) may let it start or stop somewhere. A
/// pod that goes is forgotten.
#[derive(Debug, Default)]
pub(crate) struct SetupSucceeded(HashMap<String, bool>);

impl SetupSucceeded {
    pub fn changed(&mut self, event: &watcher::Event<CachedPod>) -> bool {
        match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                let done = pod.phase() == Some("Succeeded") && pod.metadata.deletion_timestamp.is_none();
                self.0.insert(pod.uid().unwrap_or_default(), done).unwrap_or(false) != done
            }
            watcher::Event::Delete(pod) => self.0.remove(&pod.uid().unwrap_or_default()).unwrap_or(false),
            watcher::Event::Init | watcher::Event::InitDone => false,
        }
    }
}

/// Per HostGroup, its generation and whether it is being deleted: a new revision (or a
/// deletion) changes where its tasks may run. A HostGroup that goes is forgotten.
#[derive(Debug, Default)]
pub(crate) struct GroupGeneration(HashMap<String, (Option<i64>, bool)>);

impl GroupGeneration {
    pub fn changed(&mut self, event: &watcher::Event<HostGroup>) -> bool {
        match event {
            watcher::Event::Apply(group) | watcher::Event::InitApply(group) => {
                let now = (group.metadata.generation, group.metadata.deletion_timestamp.is_some());
                self.0.insert(group.name_any(), now) != Some(now)
            }
            watcher::Event::Delete(group) => self.0.remove(&group.name_any()).is_some(),
            watcher::Event::Init | watcher::Event::InitDone => false,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The object an event is about, if it is about one.
pub(crate) fn object_of<K>(event: &watcher::Event<K>) -> Option<&K> {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => Some(o),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// How often at most a task's pod changes reconcile it. While a fleet rolls, each of a task's
/// thousand pods changes a few times; a reconcile reads all of them, so one per change would
/// spend the operator's CPU (and the API server's, on status writes) re-reading the same
/// rollout. The first change after a quiet spell passes at once, so a wave's next node is
/// admitted as soon as the last one finishes.
pub const PACE: std::time::Duration = std::time::Duration::from_millis(200);

/// What each pod of a task adds to its pace: a reconcile reads every pod, so a task with more
/// pods is reconciled less often and the operator's CPU per task stays flat as the fleet grows
/// (a 2,500-node task: every 450 ms; its rollout takes minutes).
const PACE_PER_POD: std::time::Duration = std::time::Duration::from_micros(100);

/// The longest pace, whatever the task's size.
const LONGEST_PACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How often at most the pod changes of a task with `pods` pods reconcile it.
pub fn pace(pods: usize) -> std::time::Duration {
    let added = PACE_PER_POD.saturating_mul(u32::try_from(pods).unwrap_or(u32::MAX));
    PACE.saturating_add(added).min(LONGEST_PACE)
}

/// Passes on each task's changes at most once per `every(task)`: a change within that time of
/// the task's last one passed waits until then, together with any others that come meanwhile.
pub fn paced(
    changes: impl Stream<Item = Changed>,
    every: impl Fn(&Changed) -> std::time::Duration + Send + 'static,
) -> impl Stream<Item = Changed> {
    use kube::runtime::scheduler::ScheduleRequest;
    use tokio::time::Instant;

    // Each task passed lately, and until when it waits.
    let passed: Arc<Mutex<HashMap<Changed, Instant>>> = Arc::default();
    let last = passed.clone();
    let requests = changes.map(move |task| {
        let now = Instant::now();
        let until = last.lock().unwrap_or_else(PoisonError::into_inner).get(&task).copied();
        ScheduleRequest { run_at: until.map_or(now, |until| until.max(now)), message: task }
    });
    kube::runtime::scheduler(requests).map(move |task| {
        let now = Instant::now();
        let mut passed = passed.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the tasks still waiting can hold a change back.
        passed.retain(|_, until| *until > now);
        passed.insert(task.clone(), now + every(&task));
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
        let apply = |ns: &PartialObjectMeta<Namespace>| watcher::Event::Apply(ns.clone());
        assert!(!namespaces.changed(&apply(&ns)), "first seen: the caches are filling");
        ns.metadata.labels = Some([(labels::POD_SECURITY_ENFORCE.into(), "privileged".into())].into());
        assert!(namespaces.changed(&apply(&ns)));
        assert!(!namespaces.changed(&apply(&ns)));
        namespaces.changed(&watcher::Event::Delete(ns));
        assert!(namespaces.0.is_empty(), "a namespace that goes is forgotten");
    }

    #[test]
    fn a_hostgroup_counts_on_a_new_generation_and_when_it_goes() {
        let mut generations = GroupGeneration::default();
        let group = |generation: i64| -> HostGroup {
            serde_json::from_value(json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostGroup",
                "metadata": {"name": "g", "generation": generation}, "spec": {"groupName": "G"}}))
            .unwrap_or_else(|e| panic!("group: {e}"))
        };
        assert!(generations.changed(&watcher::Event::InitApply(group(1))));
        assert!(!generations.changed(&watcher::Event::Apply(group(1))), "a status write");
        assert!(generations.changed(&watcher::Event::Apply(group(2))));
        assert!(generations.changed(&watcher::Event::Delete(group(2))));
        assert_eq!(generations.len(), 0, "forgotten");
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
        let apply = |pod: CachedPod| watcher::Event::Apply(pod);
        assert!(!setups.changed(&apply(pod("Pending", false))));
        assert!(!setups.changed(&apply(pod("Running", false))));
        assert!(setups.changed(&apply(pod("Succeeded", false))));
        assert!(!setups.changed(&apply(pod("Succeeded", false))));
        assert!(setups.changed(&apply(pod("Succeeded", true))), "going away");
        assert!(!setups.changed(&watcher::Event::Delete(pod("Succeeded", true))), "gone, not a success");
        assert!(setups.0.is_empty(), "a pod that goes is forgotten");
    }

    #[tokio::test]
    async fn a_key_waits_in_the_queue_at_most_once() {
        let (pending, mut taken) = Pending::new();
        for key in ["a", "b", "a", "a", "c", "b"] {
            pending.send(key);
        }
        let first: Vec<&str> = (&mut taken).take(3).collect().await;
        assert_eq!(first, ["a", "b", "c"], "each key once, oldest first");
        pending.send("a");
        assert_eq!(taken.next().await, Some("a"), "taken keys may come again");
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
        let passed = paced(rx, |_| Duration::from_millis(200))
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
    fn a_task_with_more_pods_is_paced_longer_up_to_a_second() {
        assert_eq!(pace(0), PACE);
        assert_eq!(pace(10), std::time::Duration::from_millis(201), "a wave of ten: as quick as before");
        assert_eq!(pace(2_500), std::time::Duration::from_millis(450));
        assert_eq!(pace(50_000), std::time::Duration::from_secs(1));
    }
}
