//! Node label writes, behind the reconciles. A reconcile queues its label changes and goes on;
//! a few writers send them, one patch per node carrying every task's labels for that node (a
//! fleet-wide change admits the same node for many tasks at once). The writes count from the
//! moment they are queued until the node cache shows them (the rule in `writes`), so a reconcile
//! that runs before they land never admits a node twice. A write the API server refuses is taken
//! back — the next reconcile decides that node afresh — and after a back-off the tasks are told.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::apply::ignore_not_found;
use super::wake::when_notified;
use crate::labels;
use crate::metrics::Metrics;

/// How many node label writes are in flight at once.
pub const PARALLEL_WRITES: usize = 8;

/// One label change: the node and the value (`None` removes the label).
pub type LabelValue<'a> = (&'a str, Option<&'a str>);

/// The node label writes: those queued for the writers and those not yet in the node cache.
#[derive(Debug, Default)]
pub struct NodeLabels {
    written: Written,
    queue: Queue,
}

impl NodeLabels {
    /// The value of label `key` on every node that has it, the operator's own writes included.
    pub fn current(&self, key: &str, nodes: &[Arc<PartialObjectMeta<Node>>]) -> BTreeMap<String, String> {
        let mut values: BTreeMap<String, String> =
            nodes.iter().filter_map(|n| Some((n.name_any(), n.labels().get(key)?.clone()))).collect();
        for (node, value) in self.written.of(key) {
            match value {
                Some(value) => values.insert(node, value),
                None => values.remove(&node),
            };
        }
        values
    }

    /// Forgets the writes of `key` that the node cache shows now, and those to nodes that are gone.
    pub fn settle(&self, key: &str, nodes: &[Arc<PartialObjectMeta<Node>>]) {
        self.written.settle(key, nodes);
    }

    /// Forgets every write of `key` (its task is gone).
    pub fn forget(&self, key: &str) {
        self.written.forget(key);
    }

    /// Queues the changes of label `key` without waiting for them; they count at once.
    pub fn submit<'a>(&self, key: &str, values: impl IntoIterator<Item = LabelValue<'a>>) {
        self.enqueue(key, values, false);
    }

    /// Writes the changes of label `key` through the queue and waits until every node has them.
    /// A node deleted meanwhile is skipped.
    pub async fn write<'a>(
        &self,
        key: &str,
        values: impl IntoIterator<Item = LabelValue<'a>>,
    ) -> Result<(), Arc<kube::Error>> {
        for done in self.enqueue(key, values, true) {
            // A dropped sender: the writers stopped (the operator is shutting down).
            done.await.unwrap_or(Ok(()))?;
        }
        Ok(())
    }

    /// Records `values` as written and queues them; with `wait`, one receiver per node hears when
    /// it has them.
    fn enqueue<'a>(
        &self,
        key: &str,
        values: impl IntoIterator<Item = LabelValue<'a>>,
        wait: bool,
    ) -> Vec<tokio::sync::oneshot::Receiver<Result<(), Arc<kube::Error>>>> {
        let mut done = Vec::new();
        let mut any = false;
        for (node, value) in values {
            self.written.record(key, node, value);
            done.extend(self.queue.push(node, key, value, wait));
            any = true;
        }
        if any {
            self.queue.wake.notify_waiters();
        }
        done
    }

    /// How many node patches are queued or in flight.
    pub fn pending(&self) -> usize {
        self.queue.lock().nodes.len() + self.queue.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The writers: `PARALLEL_WRITES` node patches in flight at once, each with every label
    /// change queued for its node; a write the API refused is counted, taken back, and
    /// `refused` is called once the writer waited `REFUSED_BACKOFF`.
    pub async fn run_writers(&self, client: Client, metrics: &Metrics, refused: impl Fn()) {
        let api: Api<Node> = Api::all(client);
        let params =
            PatchParams { field_manager: Some(labels::FIELD_MANAGER.into()), ..PatchParams::default() };
        let writer = || async {
            loop {
                let (node, NodeWrite { labels, waiters }) =
                    when_notified(&self.queue.wake, || self.queue.take()).await;
                let patch = json!({"metadata": {"labels": &labels}});
                let result =
                    ignore_not_found(api.patch_metadata(&node, &params, &Patch::Merge(&patch)).await);
                if let Err(error) = &result {
                    warn!(%node, %error, "writing admission labels failed; the tasks decide again");
                    metrics.node_label_write_failed();
                    for (key, value) in &labels {
                        self.written.take_back(key, &node, value.as_deref());
                    }
                }
                let failed = result.is_err();
                let result = result.map_err(Arc::new);
                for done in waiters {
                    let _ = done.send(result.clone());
                }
                self.queue.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                if failed {
                    tokio::time::sleep(REFUSED_BACKOFF).await;
                    refused();
                }
            }
        };
        futures::future::join_all((0..PARALLEL_WRITES).map(|_| writer())).await;
    }
}

/// The operator's own label writes per label key, kept until the node cache shows them.
#[derive(Debug, Default)]
struct Written(Mutex<HashMap<String, BTreeMap<String, Option<String>>>>);

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
    fn settle(&self, key: &str, nodes: &[Arc<PartialObjectMeta<Node>>]) {
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
    fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Node label writes waiting for a writer, merged per node: when several tasks admit the same
/// node at once (a fleet-wide change), the node gets one patch with all their labels instead of
/// one per task.
#[derive(Debug, Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    wake: tokio::sync::Notify,
    /// Patches taken by a writer and not answered yet.
    in_flight: std::sync::atomic::AtomicUsize,
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
        // Counted while the queue is locked, so a write is never counted nowhere.
        self.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some((node, write))
    }
}

/// How long a writer waits after a refused write before `refused` is called (the tasks then
/// decide again): what a failed reconcile waits, so a node the API keeps refusing is not retried
/// in a tight loop.
const REFUSED_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn own_writes_count_until_the_cache_shows_them() {
        let node = |name: &str, labels: &[(&str, &str)]| {
            let mut n = PartialObjectMeta::<Node>::default();
            n.metadata.name = Some(name.into());
            n.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
            Arc::new(n)
        };
        let key = "admitted.hostprocess.dev/uid-1";
        let labels = NodeLabels::default();
        labels.submit(key, [("win-1", Some("rev-b")), ("win-2", None)]);
        let stale = [node("win-1", &[]), node("win-2", &[(key, "rev-b")])];
        assert_eq!(labels.current(key, &stale), labelled(&[("win-1", "rev-b")]));
        let caught_up = [node("win-1", &[(key, "rev-b")]), node("win-2", &[(key, "rev-b")])];
        labels.settle(key, &caught_up);
        assert_eq!(labels.written.of(key).len(), 1, "win-1 settled; win-2's removal is not in the cache yet");
        labels.settle(key, &[node("win-1", &[(key, "rev-b")])]);
        assert!(labels.written.of(key).is_empty(), "a node that is gone is forgotten");
    }

    #[test]
    fn queued_writes_count_at_once_and_a_refused_one_is_taken_back() {
        let labels = NodeLabels::default();
        let key = "admitted.hostprocess.dev/uid-1".to_string();
        labels.submit(&key, [("win-1", Some("rev-a")), ("win-2", Some("rev-a"))]);
        assert_eq!(
            labels.current(&key, &[]),
            labelled(&[("win-1", "rev-a"), ("win-2", "rev-a")]),
            "queued, not yet sent: the next reconcile already counts both nodes"
        );
        // win-1's write fails; meanwhile win-2 was released by a later reconcile.
        labels.submit(&key, [("win-2", None)]);
        labels.written.take_back(&key, "win-1", Some("rev-a"));
        labels.written.take_back(&key, "win-2", Some("rev-a"));
        assert!(
            labels.current(&key, &[]).is_empty(),
            "win-1 is decided again; win-2's later release still stands"
        );
        assert_eq!(labels.written.of(&key), BTreeMap::from([("win-2".to_string(), None)]));
        assert_eq!(labels.pending(), 2, "two node patches queued");
        let queue = &labels.queue;
        let (node, write) = queue.take().unwrap_or_else(|| panic!("win-1 is queued"));
        assert_eq!(labels.pending(), 2, "one queued, one taken by a writer and not answered yet");
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
        let (a, b) =
            ("admitted.hostprocess.dev/uid-a".to_string(), "admitted.hostprocess.dev/uid-b".to_string());
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
