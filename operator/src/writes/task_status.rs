//! HostTask status writes, off the reconcile. A reconcile decides the status and hands it over; a
//! few writers send it, one write in flight per task, and a status decided while an earlier one
//! still waits replaces it: only the newest is worth writing, so a task whose counts change on
//! every pod event is written as often as the API server takes it, not once per reconcile.
//!
//! The next reconcile builds on the newest status decided, written or not (its times, conditions
//! and which events were already published follow on from it), and the operator's written status
//! wins over the cache until the cache shows it. A write the API server refuses is sent again
//! after a back-off (the newest status by then); a task that is gone is forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hostprocess_crds::{HostTask, HostTaskStatus};
use kube::api::Api;
use kube::{Client, ResourceExt};
use tracing::warn;

use super::apply::apply_status;
use super::own_writes::resource_version;
use super::wake::when_notified;
use crate::metrics::Metrics;

/// How many status writes (of different tasks) are in flight at once.
pub const WRITERS: usize = 4;
/// How long a writer waits before sending a refused status again: what a failed reconcile waits.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How long a written status is preferred to the cache's when the cache never shows it (the
/// task was deleted, or a watch lags far behind): then the cache is believed again.
const TRUST_WRITE_FOR: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    namespace: String,
    name: String,
    /// The newest status decided.
    status: HostTaskStatus,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Waiting for a writer; `since`: when the oldest status not yet written was decided.
    Queued { since: Instant },
    /// Being written; `newer`: when a later status was decided meanwhile (it is queued after).
    Writing { since: Instant, newer: Option<Instant> },
    /// Written: the task's resourceVersion after the write.
    Written { resource_version: u64, at: Instant },
}

#[derive(Debug, Default)]
struct Tasks {
    /// By task uid.
    entries: HashMap<String, Entry>,
    /// Queued task uids, first come first written.
    order: VecDeque<String>,
}

/// The statuses decided and not yet seen in the cache, and the queue of those to write.
#[derive(Debug, Default)]
pub struct StatusWrites {
    tasks: Mutex<Tasks>,
    /// Wakes the writers (a status queued) and `idle` (a write done).
    wake: tokio::sync::Notify,
}

/// One status to send: the task's uid, name and namespace, the status, and since when it waits.
struct Write {
    uid: String,
    namespace: String,
    name: String,
    status: HostTaskStatus,
    since: Instant,
}

impl StatusWrites {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The task's status as the operator last decided it: its own newest status until the cache
    /// shows it, else the cached one.
    pub fn current(&self, task: &HostTask) -> Option<HostTaskStatus> {
        let uid = task.uid().unwrap_or_default();
        let mut tasks = self.lock();
        let Some(entry) = tasks.entries.get(&uid) else { return task.status.clone() };
        match entry.state {
            State::Written { resource_version: written, at }
                if resource_version(task) >= Some(written) || at.elapsed() > TRUST_WRITE_FOR =>
            {
                tasks.entries.remove(&uid);
                task.status.clone()
            }
            _ => Some(entry.status.clone()),
        }
    }

    /// Hands `status` to the writers unless it is the task's current status (the reconcile read
    /// that with `current` first, so an entry left here is newer than the cache).
    pub fn submit(&self, task: &HostTask, status: HostTaskStatus) {
        let uid = task.uid().unwrap_or_default();
        let now = Instant::now();
        let mut tasks = self.lock();
        let current = tasks.entries.get(&uid).map_or(task.status.as_ref(), |e| Some(&e.status));
        if current == Some(&status) {
            return;
        }
        // Written statuses the cache never showed (their tasks were deleted) go in time.
        tasks
            .entries
            .retain(|_, e| !matches!(e.state, State::Written { at, .. } if at.elapsed() > TRUST_WRITE_FOR));
        let entry = tasks.entries.entry(uid.clone()).or_insert_with(|| Entry {
            namespace: String::new(),
            name: String::new(),
            status: HostTaskStatus::default(),
            state: State::Written { resource_version: 0, at: now },
        });
        entry.namespace = task.namespace().unwrap_or_default();
        entry.name = task.name_any();
        entry.status = status;
        match entry.state {
            State::Queued { .. } | State::Writing { newer: Some(_), .. } => {}
            State::Writing { since, newer: None } => entry.state = State::Writing { since, newer: Some(now) },
            State::Written { .. } => {
                entry.state = State::Queued { since: now };
                tasks.order.push_back(uid);
                self.wake.notify_waiters();
            }
        }
    }

    /// Forgets a task (it is gone).
    pub fn forget(&self, uid: &str) {
        self.lock().entries.remove(uid);
    }

    fn take(&self) -> Option<Write> {
        let mut tasks = self.lock();
        while let Some(uid) = tasks.order.pop_front() {
            let Some(entry) = tasks.entries.get_mut(&uid) else { continue };
            let State::Queued { since } = entry.state else { continue };
            entry.state = State::Writing { since, newer: None };
            let (namespace, name, status) =
                (entry.namespace.clone(), entry.name.clone(), entry.status.clone());
            return Some(Write { uid, namespace, name, status, since });
        }
        None
    }

    /// The write of `uid` is done: `Some` resourceVersion when it was written, `None` when the
    /// task is gone. A status decided meanwhile is queued.
    fn written(&self, uid: &str, resource_version: Option<u64>) {
        let mut tasks = self.lock();
        let Some(entry) = tasks.entries.get_mut(uid) else { return };
        match (entry.state, resource_version) {
            // Forgotten and decided afresh meanwhile: that status waits in the queue.
            (State::Queued { .. } | State::Written { .. }, _) => {}
            (State::Writing { .. }, None) => {
                tasks.entries.remove(uid);
            }
            (State::Writing { newer: Some(since), .. }, Some(_)) => {
                entry.state = State::Queued { since };
                tasks.order.push_back(uid.to_string());
            }
            (State::Writing { newer: None, .. }, Some(resource_version)) => {
                entry.state = State::Written { resource_version, at: Instant::now() };
            }
        }
        self.wake.notify_waiters();
    }

    /// A refused write of `uid` goes back in the queue (with the newest status by then).
    fn retry(&self, uid: &str, since: Instant) {
        let mut tasks = self.lock();
        let Some(entry) = tasks.entries.get_mut(uid) else { return };
        if matches!(entry.state, State::Writing { .. }) {
            entry.state = State::Queued { since };
            tasks.order.push_back(uid.to_string());
            self.wake.notify_waiters();
        }
    }

    /// How many tasks have a status queued or being written.
    pub fn pending(&self) -> usize {
        self.lock().entries.values().filter(|e| !matches!(e.state, State::Written { .. })).count()
    }

    fn is_idle(&self) -> bool {
        self.pending() == 0
    }

    /// Completes once every status decided is written (or its task is gone); the writers must
    /// be running.
    pub async fn idle(&self) {
        when_notified(&self.wake, || self.is_idle().then_some(())).await;
    }
}

impl StatusWrites {
    /// The writers: `WRITERS` status writes in flight at once, each with the newest status of its
    /// task. A refused write is counted and sent again after `RETRY_AFTER`.
    pub async fn run_writers(&self, client: Client, metrics: &Metrics) {
        let writes = self;
        let writer = || async {
            loop {
                let write = when_notified(&writes.wake, || writes.take()).await;
                let api: Api<HostTask> = Api::namespaced(client.clone(), &write.namespace);
                match apply_status(&api, &write.name, &write.status).await {
                    Ok(task) => {
                        metrics.status_written(write.since.elapsed());
                        writes.written(&write.uid, Some(resource_version(&task).unwrap_or(0)));
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 => writes.written(&write.uid, None),
                    Err(error) => {
                        warn!(task = %write.name, namespace = %write.namespace, %error, "writing status failed; trying again");
                        metrics.status_write_failed();
                        tokio::time::sleep(RETRY_AFTER).await;
                        writes.retry(&write.uid, write.since);
                    }
                }
            }
        };
        futures::future::join_all((0..WRITERS).map(|_| writer())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostprocess_crds::hosttask::NodeCounts;
    use serde_json::json;

    fn task(resource_version: &str, status: Option<HostTaskStatus>) -> HostTask {
        let mut task = HostTask::new("patch", serde_json::from_value(json!({"script": "x"})).unwrap());
        task.metadata.namespace = Some("tasks".into());
        task.metadata.uid = Some("uid-1".into());
        task.metadata.resource_version = Some(resource_version.into());
        task.status = status;
        task
    }

    fn succeeded(n: u32) -> HostTaskStatus {
        HostTaskStatus {
            nodes: NodeCounts { succeeded: n, ..NodeCounts::default() },
            ..HostTaskStatus::default()
        }
    }

    #[test]
    fn only_the_newest_status_is_written_and_it_counts_until_the_cache_shows_it() {
        let writes = StatusWrites::default();
        let cached = task("10", Some(succeeded(0)));
        writes.submit(&cached, succeeded(0));
        assert!(writes.take().is_none(), "the cache shows this status already: nothing to write");

        writes.submit(&cached, succeeded(1));
        writes.submit(&cached, succeeded(2));
        assert_eq!(writes.current(&cached), Some(succeeded(2)), "the next reconcile builds on the newest");
        let first = writes.take().unwrap_or_else(|| panic!("queued"));
        assert_eq!(first.status, succeeded(2), "a status not sent yet is replaced, not written too");
        assert!(writes.take().is_none(), "one write in flight per task");

        // Decided while the write is in flight: queued after it.
        writes.submit(&cached, succeeded(3));
        assert!(writes.take().is_none());
        writes.written("uid-1", Some(11));
        let second = writes.take().unwrap_or_else(|| panic!("the newer status is queued"));
        assert_eq!(second.status, succeeded(3));
        assert!(!writes.is_idle());
        writes.written("uid-1", Some(12));
        assert!(writes.is_idle());

        assert_eq!(
            writes.current(&task("11", Some(succeeded(2)))),
            Some(succeeded(3)),
            "the cache is behind"
        );
        assert_eq!(writes.current(&task("12", Some(succeeded(3)))), Some(succeeded(3)), "caught up");
        assert!(writes.lock().entries.is_empty(), "and forgotten");
    }

    #[test]
    fn a_refused_write_is_queued_again_with_the_newest_status_and_a_gone_task_forgotten() {
        let writes = StatusWrites::default();
        let cached = task("10", None);
        writes.submit(&cached, succeeded(1));
        let write = writes.take().unwrap_or_else(|| panic!("queued"));
        writes.submit(&cached, succeeded(2));
        writes.retry(&write.uid, write.since);
        let again = writes.take().unwrap_or_else(|| panic!("queued again"));
        assert_eq!(
            (again.status, again.since),
            (succeeded(2), write.since),
            "waiting since the first decision"
        );
        writes.written("uid-1", None);
        assert!(writes.lock().entries.is_empty(), "the task is gone");
        assert_eq!(writes.current(&cached), None);
    }
}
