//! The task pods as a rollout reads them. A task pod carries its DaemonSet's whole template and a
//! verbose status, and there is one per node and task (50,000 for 50 tasks on 1,000 nodes). A
//! rollout reads of each only its node, whether it is going away, what its containers say
//! (`pod_result::observe`, worked out once per watch event) and the reboot step. `PodIndex` keeps
//! exactly that — about 150 bytes a pod (`cargo bench --bench cache_memory`) — grouped by
//! namespace, task and revision, so a reconcile reads its own task's pods and no one else's.
//!
//! The index follows a watch of the task pods the way a reflector store does: events update it
//! in place, and a relist builds a new index that replaces the old one when complete (pods that
//! went while the watch was down go with it).

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use futures::{Stream, StreamExt};
use hostprocess_crds::HostTask;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::cached_pod::CachedPod;
use super::pod_result::{self, NodeResult};
use crate::labels;

/// What the rollout reads of one task pod.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPod {
    pub node: Option<Box<str>>,
    pub deleting: bool,
    /// What its containers say (`pod_result::observe`), once it is bound to a node.
    pub observed: Option<NodeResult>,
    /// The reboot step annotation (`labels::REBOOT_STEP`).
    pub reboot: Option<Box<str>>,
    /// The retry round its template was made for (`labels::RETRY`).
    pub retry: Option<Box<str>>,
    /// Its task's concurrency group (`labels::CONCURRENCY_GROUP`).
    pub group: Option<Box<str>>,
    pub created: Option<k8s_openapi::jiff::Timestamp>,
}

impl TaskPod {
    fn of(pod: &CachedPod) -> TaskPod {
        TaskPod {
            node: pod.node_name().map(Box::from),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            observed: pod_result::observe(&pod.to_pod()).map(|(_, observed)| observed),
            reboot: pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(labels::REBOOT_STEP))
                .map(|s| Box::from(&**s)),
            retry: pod.label(labels::RETRY).map(Box::from),
            group: pod.label(labels::CONCURRENCY_GROUP).map(Box::from),
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

/// A task's pods: revision → pod name → pod.
pub type Revisions = HashMap<Box<str>, HashMap<Box<str>, TaskPod>>;

/// Namespace → task → its pods.
#[derive(Debug, Default)]
struct Pods(HashMap<Box<str>, HashMap<Box<str>, Revisions>>);

/// A task whose pods changed as the rollout reads them: its reconcile has something new to read.
pub type Changed = ObjectRef<HostTask>;

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

    /// The nodes where a pod of concurrency group `group` that `in_flight` accepts runs, of any
    /// task but `namespace/name`.
    pub fn nodes_of_group(
        &self,
        group: &str,
        (namespace, name): (&str, &str),
        in_flight: impl Fn(&TaskPod) -> bool,
    ) -> std::collections::BTreeSet<String> {
        let pods = self.pods.read().unwrap_or_else(PoisonError::into_inner);
        let mut nodes = std::collections::BTreeSet::new();
        for (ns, tasks) in &pods.0 {
            for (task, revisions) in tasks {
                if &**ns == namespace && &**task == name {
                    continue;
                }
                for pod in revisions.values().flat_map(HashMap::values) {
                    if pod.group.as_deref() == Some(group) && !pod.deleting && in_flight(pod) {
                        nodes.extend(pod.node.as_deref().map(str::to_string));
                    }
                }
            }
        }
        nodes
    }

    /// Reads the pods of task `name` in `namespace`, by revision, under the index's lock.
    pub fn read_task<R>(&self, namespace: &str, name: &str, read: impl FnOnce(Option<&Revisions>) -> R) -> R {
        let pods = self.pods.read().unwrap_or_else(PoisonError::into_inner);
        read(pods.0.get(namespace).and_then(|tasks| tasks.get(name)))
    }

    /// How many pods task `name` in `namespace` has, of every revision.
    pub fn count(&self, namespace: &str, name: &str) -> usize {
        self.read_task(namespace, name, |revisions| {
            revisions.map_or(0, |r| r.values().map(HashMap::len).sum())
        })
    }

    /// Whether the index holds no pod at all.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pods.read().map(|p| p.0.is_empty()).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Vec<Result<watcher::Event<CachedPod>, watcher::Error>> {
        [watcher::Event::Init, watcher::Event::InitDone].into_iter().map(Ok).collect()
    }

    #[test]
    fn ready_once_the_first_list_is_complete() {
        let index = PodIndex::default();
        let waiting = futures::FutureExt::now_or_never(index.wait_until_ready());
        assert!(waiting.is_none());
        futures::executor::block_on(index.follow(futures::stream::iter(listed()), |_| {}));
        assert!(futures::FutureExt::now_or_never(index.wait_until_ready()).is_some());
    }
}
