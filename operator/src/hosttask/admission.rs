//! Which nodes a pinned task's DaemonSet may run on. A `Once` task admits nodes wave by wave and a
//! task that runs as a HostGroup only where the group is provisioned; both say so with one label
//! per task on the node, `admitted.hostprocess.dev/<task uid>=<revision>`, which the DaemonSet's
//! node affinity requires. A pod therefore carries one short requirement, not the names of every
//! admitted node (pods × nodes names in etcd, in every watch and in the scheduler), and the
//! DaemonSet's template changes only with the revision.
//!
//! The labels are the record of the rollout: a restarted operator reads them from its node
//! cache. Its own writes are remembered from the moment they are queued until the cache shows
//! them, so a reconcile that runs before they land or before the watch delivers them never
//! admits a node twice over `maxConcurrent`. A reconcile queues its writes and goes on: a few
//! writers send them, one patch per node for every task's labels; a write that fails is
//! forgotten again, so the next reconcile decides that node afresh.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::labels;
use crate::metrics::Metrics;
use tracing::warn;

/// How many node label writes (and pod replacements of a wave) are in flight at once.
pub const PARALLEL_WRITES: usize = 8;

/// The label key of a task: its uid, so a task deleted and created again under the same name
/// starts afresh.
pub fn label_key(task_uid: &str) -> String {
    format!("{}/{task_uid}", labels::ADMITTED_PREFIX)
}

/// The value of `key` on every node that has it, the operator's own writes included.
pub fn current(
    key: &str,
    nodes: &[Arc<PartialObjectMeta<Node>>],
    written: &Written,
) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> =
        nodes.iter().filter_map(|n| Some((n.name_any(), n.labels().get(key)?.clone()))).collect();
    for (node, value) in written.of(key) {
        match value {
            Some(value) => values.insert(node, value),
            None => values.remove(&node),
        };
    }
    values
}

/// The nodes admitted for `revision`: those labelled with it while the DaemonSet runs that
/// revision. Before it does (a new rollout, or a spec changed back to an earlier revision) such
/// labels are left from an earlier rollout and admit nothing.
pub fn admitted(current: &BTreeMap<String, String>, revision: &str, rolling: bool) -> Vec<String> {
    if !rolling {
        return Vec::new();
    }
    current.iter().filter(|(_, v)| *v == revision).map(|(n, _)| n.clone()).collect()
}

/// Label writes that make the nodes labelled with `revision` exactly `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Nodes to label with the revision.
    pub admit: Vec<String>,
    /// Nodes whose label goes.
    pub release: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.admit.is_empty() && self.release.is_empty()
    }
}

/// What to write so that exactly `desired` carries `revision`. Labels with another revision
/// stay (they admit nothing and are overwritten when their node's turn comes), unless the task
/// pins nothing any more (`desired` is `None`), when every label of the task goes.
pub fn changes(current: &BTreeMap<String, String>, desired: Option<&[String]>, revision: &str) -> Changes {
    let Some(desired) = desired else {
        return Changes { admit: Vec::new(), release: current.keys().cloned().collect() };
    };
    let wanted: BTreeSet<&String> = desired.iter().collect();
    Changes {
        admit: desired
            .iter()
            .filter(|n| current.get(*n).map(String::as_str) != Some(revision))
            .cloned()
            .collect(),
        release: current
            .iter()
            .filter(|(n, v)| *v == revision && !wanted.contains(n))
            .map(|(n, _)| n.clone())
            .collect(),
    }
}

/// The operator's own label writes per label key, kept until the node cache shows them.
#[derive(Debug, Default)]
pub struct Written(Mutex<HashMap<String, BTreeMap<String, Option<String>>>>);

impl Written {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<String, Option<String>>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn of(&self, key: &str) -> BTreeMap<String, Option<String>> {
        self.lock().get(key).cloned().unwrap_or_default()
    }

    fn record(&self, key: &str, node: &str, value: Option<&str>) {
        self.lock().entry(key.to_string()).or_default().insert(node.to_string(), value.map(String::from));
    }

    /// Forgets a write that failed, unless a later one for the same label is waiting.
    fn take_back(&self, key: &str, node: &str, value: Option<&str>) {
        let mut all = self.lock();
        let Some(written) = all.get_mut(key) else { return };
        if written.get(node).is_some_and(|w| w.as_deref() == value) {
            written.remove(node);
        }
        if written.is_empty() {
            all.remove(key);
        }
    }

    /// Forgets the writes the cache shows now, and those to nodes that are gone.
    pub fn settle(&self, key: &str, nodes: &[Arc<PartialObjectMeta<Node>>]) {
        let mut all = self.lock();
        let Some(written) = all.get_mut(key) else { return };
        let cached: HashMap<String, Option<&String>> =
            nodes.iter().map(|n| (n.name_any(), n.labels().get(key))).collect();
        written.retain(|node, value| cached.get(node).is_some_and(|c| c.cloned() != *value));
        if written.is_empty() {
            all.remove(key);
        }
    }

    /// Forgets a task's writes (it is gone).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Node label writes waiting for a writer, merged per node: when several tasks admit the same
/// node at once (a fleet-wide change), the node gets one patch with all their labels instead of
/// one per task.
#[derive(Debug, Default)]
pub struct Queue {
    waiting: Mutex<Waiting>,
    wake: tokio::sync::Notify,
}

type Done = tokio::sync::oneshot::Sender<Result<(), Arc<kube::Error>>>;

#[derive(Debug, Default)]
struct Waiting {
    /// Nodes in the order their first change came.
    order: std::collections::VecDeque<String>,
    nodes: HashMap<String, NodeWrite>,
}

/// One node's queued write: the label values (`None` removes) and who waits for them.
#[derive(Debug, Default)]
struct NodeWrite {
    labels: BTreeMap<String, Option<String>>,
    waiters: Vec<Done>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues one label change; with `wait`, the receiver hears when the node has it.
    fn push(
        &self,
        node: &str,
        key: &str,
        value: Option<&str>,
        wait: bool,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<(), Arc<kube::Error>>>> {
        let mut waiting = self.lock();
        if !waiting.nodes.contains_key(node) {
            waiting.order.push_back(node.to_string());
        }
        let write = waiting.nodes.entry(node.to_string()).or_default();
        write.labels.insert(key.to_string(), value.map(String::from));
        wait.then(|| {
            let (done, written) = tokio::sync::oneshot::channel();
            write.waiters.push(done);
            written
        })
    }

    fn take(&self) -> Option<(String, NodeWrite)> {
        let mut waiting = self.lock();
        let node = waiting.order.pop_front()?;
        let write = waiting.nodes.remove(&node)?;
        Some((node, write))
    }
}

/// Queues `changes` (label `key` = `revision` on `admit`, off `release`) for the writers and
/// records them as written at once; with `wait`, one receiver per node hears when it has them.
fn enqueue(
    queue: &Queue,
    written: &Written,
    key: &str,
    revision: &str,
    changes: &Changes,
    wait: bool,
) -> Vec<tokio::sync::oneshot::Receiver<Result<(), Arc<kube::Error>>>> {
    let values =
        changes.admit.iter().map(|n| (n, Some(revision))).chain(changes.release.iter().map(|n| (n, None)));
    let mut done = Vec::new();
    for (node, value) in values {
        written.record(key, node, value);
        done.extend(queue.push(node, key, value, wait));
    }
    if !changes.is_empty() {
        queue.wake.notify_waiters();
    }
    done
}

/// Queues `changes` without waiting for them (see `enqueue`).
pub fn submit(queue: &Queue, written: &Written, key: &str, revision: &str, changes: &Changes) {
    enqueue(queue, written, key, revision, changes, false);
}

/// Writes `changes` through the queue and waits until every node has them. A node deleted
/// meanwhile is skipped.
pub async fn write(
    queue: &Queue,
    written: &Written,
    key: &str,
    revision: &str,
    changes: &Changes,
) -> Result<(), Arc<kube::Error>> {
    for done in enqueue(queue, written, key, revision, changes, true) {
        // A dropped sender: the writers stopped (the operator is shutting down).
        done.await.unwrap_or(Ok(()))?;
    }
    Ok(())
}

/// Takes label `key` off every node that has it (the operator's own writes included) and
/// forgets the task's writes: the task is going.
pub async fn release_all(
    queue: &Queue,
    written: &Written,
    key: &str,
    nodes: &[Arc<PartialObjectMeta<Node>>],
) -> Result<(), Arc<kube::Error>> {
    // Releasing writes no revision anywhere.
    let release = changes(&current(key, nodes, written), None, "");
    write(queue, written, key, "", &release).await?;
    written.forget(key);
    Ok(())
}

/// How long a writer waits after a refused write before `refused` is called (the tasks then
/// decide again): what a failed reconcile waits, so a node the API keeps refusing is not retried
/// in a tight loop.
const REFUSED_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// The writers: a few node patches in flight at once, each with every label change queued for
/// its node; a write the API refused is counted, taken back out of `written`, and `refused` is
/// called once the writer waited `REFUSED_BACKOFF`.
pub async fn run_writers(
    client: Client,
    queue: &Queue,
    written: &Written,
    metrics: &Metrics,
    refused: impl Fn(),
) {
    let api: Api<Node> = Api::all(client);
    let params = PatchParams { field_manager: Some(labels::FIELD_MANAGER.into()), ..PatchParams::default() };
    let writer = || async {
        loop {
            let (node, NodeWrite { labels, waiters }) =
                crate::when_notified(&queue.wake, || queue.take()).await;
            let patch = json!({"metadata": {"labels": &labels}});
            let result =
                crate::ignore_not_found(api.patch_metadata(&node, &params, &Patch::Merge(&patch)).await);
            if let Err(error) = &result {
                warn!(%node, %error, "writing admission labels failed; the tasks decide again");
                metrics.node_label_write_failed();
                for (key, value) in &labels {
                    written.take_back(key, &node, value.as_deref());
                }
            }
            let failed = result.is_err();
            let result = result.map_err(Arc::new);
            for done in waiters {
                let _ = done.send(result.clone());
            }
            if failed {
                tokio::time::sleep(REFUSED_BACKOFF).await;
                refused();
            }
        }
    };
    futures::future::join_all((0..PARALLEL_WRITES).map(|_| writer())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_of_the_revision_admit_only_while_the_daemon_set_runs_it() {
        let current = labelled(&[("win-1", "rev-b"), ("win-2", "rev-a"), ("win-3", "rev-b")]);
        assert_eq!(admitted(&current, "rev-b", true), ["win-1", "win-3"]);
        // Spec changed back to rev-b after rev-a: the old labels must not start a whole wave.
        assert!(admitted(&current, "rev-b", false).is_empty());
    }

    #[test]
    fn changes_label_the_new_nodes_and_release_the_dropped_ones() {
        let current = labelled(&[("win-1", "rev-b"), ("win-2", "rev-a"), ("win-3", "rev-b")]);
        let c = changes(&current, Some(&names(&["win-1", "win-2", "win-4"])), "rev-b");
        assert_eq!(c.admit, ["win-2", "win-4"], "another revision's label is overwritten");
        assert_eq!(c.release, ["win-3"], "a node labelled for this revision but no longer admitted");
        let none = changes(&current, Some(&names(&["win-1", "win-3"])), "rev-b");
        assert!(none.is_empty(), "nothing to write when the labels say what is wanted");
        let unpinned = changes(&current, None, "rev-b");
        assert_eq!((unpinned.admit.len(), unpinned.release.len()), (0, 3));
    }

    #[test]
    fn own_writes_count_until_the_cache_shows_them() {
        let node = |name: &str, labels: &[(&str, &str)]| {
            let mut n = PartialObjectMeta::<Node>::default();
            n.metadata.name = Some(name.into());
            n.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
            Arc::new(n)
        };
        let key = label_key("uid-1");
        let written = Written::default();
        written.record(&key, "win-1", Some("rev-b"));
        written.record(&key, "win-2", None);
        let stale = [node("win-1", &[]), node("win-2", &[(&key, "rev-b")])];
        assert_eq!(current(&key, &stale, &written), labelled(&[("win-1", "rev-b")]));
        let caught_up = [node("win-1", &[(&key, "rev-b")]), node("win-2", &[(&key, "rev-b")])];
        written.settle(&key, &caught_up);
        assert_eq!(written.of(&key).len(), 1, "win-1 settled; win-2's removal is not in the cache yet");
        written.settle(&key, &[node("win-1", &[(&key, "rev-b")])]);
        assert!(written.of(&key).is_empty(), "a node that is gone is forgotten");
    }

    #[test]
    fn queued_writes_count_at_once_and_a_refused_one_is_taken_back() {
        let (queue, written) = (Queue::default(), Written::default());
        let key = label_key("uid-1");
        let admit = Changes { admit: names(&["win-1", "win-2"]), release: Vec::new() };
        submit(&queue, &written, &key, "rev-a", &admit);
        assert_eq!(
            current(&key, &[], &written),
            labelled(&[("win-1", "rev-a"), ("win-2", "rev-a")]),
            "queued, not yet sent: the next reconcile already counts both nodes"
        );
        // win-1's write fails; meanwhile win-2 was released by a later reconcile.
        let release = Changes { admit: Vec::new(), release: names(&["win-2"]) };
        submit(&queue, &written, &key, "rev-a", &release);
        written.take_back(&key, "win-1", Some("rev-a"));
        written.take_back(&key, "win-2", Some("rev-a"));
        assert!(
            current(&key, &[], &written).is_empty(),
            "win-1 is decided again; win-2's later release still stands"
        );
        assert_eq!(written.of(&key), BTreeMap::from([("win-2".to_string(), None)]));
        let (node, write) = queue.take().unwrap_or_else(|| panic!("win-1 is queued"));
        assert_eq!((node.as_str(), write.waiters.len()), ("win-1", 0), "nobody waits for a submit");
        let (node, write) = queue.take().unwrap_or_else(|| panic!("win-2 is queued"));
        assert_eq!(node, "win-2");
        assert_eq!(
            write.labels,
            BTreeMap::from([(key.clone(), None)]),
            "the later release replaced the admit"
        );
        assert!(queue.take().is_none());
    }

    #[test]
    fn tasks_admitting_the_same_node_share_one_write() {
        let queue = Queue::default();
        let (a, b) = (label_key("uid-a"), label_key("uid-b"));
        let _first = queue.push("win-1", &a, Some("rev-a"), true);
        let _second = queue.push("win-2", &a, Some("rev-a"), true);
        let _third = queue.push("win-1", &b, None, true);
        let (node, write) = queue.take().unwrap_or_else(|| panic!("a node waits"));
        assert_eq!(node, "win-1", "first come, first written");
        assert_eq!(write.labels, BTreeMap::from([(a.clone(), Some("rev-a".to_string())), (b, None)]));
        assert_eq!(write.waiters.len(), 2, "both tasks hear when their label is written");
        assert_eq!(
            queue.take().map(|(node, write)| (node, write.labels.len())),
            Some(("win-2".to_string(), 1))
        );
        assert!(queue.take().is_none());
    }
}
