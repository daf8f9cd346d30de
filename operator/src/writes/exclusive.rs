//! Concurrency groups (`rollout.concurrencyGroup`): of the tasks that name a group, at most one
//! is in flight on a node at a time — its payload, its retries, its reboot — across namespaces.
//!
//! A task decides its rollout under this unit's lock, told which nodes other tasks of its group
//! hold; what it holds after the decision (its nodes in flight, the ones it admits now included)
//! replaces what it held before. Two tasks deciding at once therefore never admit the same node.
//! Holds are the operator's own memory; after a restart the task pods in the cache say which
//! nodes run a task of the group (`hosttask::pods::in_flight_in_group`) until every task has
//! decided again. When a task lets nodes go, the tasks that waited for them are woken.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use futures::channel::mpsc;
use hostprocess_crds::HostTask;
use kube::runtime::reflector::ObjectRef;

#[derive(Debug, Default)]
struct Holds {
    /// Group → node → the task (`namespace/name`) that holds it.
    nodes: BTreeMap<String, BTreeMap<String, String>>,
    /// Group → tasks that found a node of theirs held by another task.
    waiting: BTreeMap<String, BTreeSet<(String, String)>>,
    wake: Option<mpsc::UnboundedSender<ObjectRef<HostTask>>>,
}

#[derive(Debug, Default)]
pub struct Exclusive(Mutex<Holds>);

/// A task as the holds name it.
fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Exclusive {
    fn lock(&self) -> std::sync::MutexGuard<'_, Holds> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The tasks to reconcile when nodes they waited for are let go.
    pub fn woken(&self) -> mpsc::UnboundedReceiver<ObjectRef<HostTask>> {
        let (send, receive) = mpsc::unbounded();
        self.lock().wake = Some(send);
        receive
    }

    /// Decides task `namespace/name` of `group`: `decide` is given the nodes other tasks hold
    /// (`cached`, what the pods say, and the holds) and returns its outcome with the nodes the
    /// task holds after it.
    pub fn decide<T>(
        &self,
        group: &str,
        (namespace, name): (&str, &str),
        cached: BTreeSet<String>,
        decide: impl FnOnce(&BTreeSet<String>) -> (T, Vec<String>),
    ) -> T {
        let task = key(namespace, name);
        let mut holds = self.lock();
        let mut busy = cached;
        if let Some(nodes) = holds.nodes.get(group) {
            busy.extend(nodes.iter().filter(|(_, holder)| **holder != task).map(|(node, _)| node.clone()));
        }
        let (outcome, holding) = decide(&busy);
        let freed = release(&mut holds, &task, Some((group, &holding)));
        let nodes = holds.nodes.entry(group.to_string()).or_default();
        for node in holding {
            nodes.entry(node).or_insert_with(|| task.clone());
        }
        let waiters = holds.waiting.entry(group.to_string()).or_default();
        let me = (namespace.to_string(), name.to_string());
        if busy.is_empty() {
            waiters.remove(&me);
        } else {
            waiters.insert(me);
        }
        for group in freed {
            wake(&holds, &group, &task);
        }
        outcome
    }

    /// The task holds nothing any more (deleted, or in no group now).
    pub fn release(&self, namespace: &str, name: &str) {
        let task = key(namespace, name);
        let mut holds = self.lock();
        for group in release(&mut holds, &task, None) {
            wake(&holds, &group, &task);
        }
        for waiters in holds.waiting.values_mut() {
            waiters.remove(&(namespace.to_string(), name.to_string()));
        }
    }
}

/// Drops `task`'s holds, but those on the nodes `keep` names in its group; the groups where
/// a node was let go.
fn release(holds: &mut Holds, task: &str, keep: Option<(&str, &[String])>) -> Vec<String> {
    let mut freed = Vec::new();
    for (group, nodes) in &mut holds.nodes {
        let before = nodes.len();
        nodes.retain(|node, holder| {
            holder != task || keep.is_some_and(|(kept, keep)| kept == group && keep.contains(node))
        });
        if nodes.len() < before {
            freed.push(group.clone());
        }
    }
    freed
}

/// Reconciles the tasks of `group` that waited, but the one that let nodes go.
fn wake(holds: &Holds, group: &str, task: &str) {
    let Some(send) = &holds.wake else { return };
    for (namespace, name) in holds.waiting.get(group).into_iter().flatten() {
        if key(namespace, name) != task {
            let _ = send.unbounded_send(ObjectRef::new(name).within(namespace));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn two_tasks_of_a_group_never_hold_one_node_and_a_waiter_is_woken() {
        let exclusive = Exclusive::default();
        let mut woken = exclusive.woken();
        // `a` takes win-1 and win-2.
        let seen = exclusive
            .decide("msi", ("ops", "a"), BTreeSet::new(), |busy| (busy.clone(), nodes(&["win-1", "win-2"])));
        assert!(seen.is_empty());
        // `b` sees both held (and a node the cache shows), and takes win-3.
        let cached = BTreeSet::from(["win-9".to_string()]);
        let seen = exclusive.decide("msi", ("ops", "b"), cached, |busy| (busy.clone(), nodes(&["win-3"])));
        assert_eq!(seen, BTreeSet::from(["win-1".into(), "win-2".into(), "win-9".into()]));
        // Another group is not concerned.
        let other = exclusive.decide("agents", ("ops", "c"), BTreeSet::new(), |busy| (busy.clone(), vec![]));
        assert!(other.is_empty());
        // `a` finished win-1: `b`, which waited, is woken and may take it.
        exclusive.decide("msi", ("ops", "a"), BTreeSet::new(), |_| ((), nodes(&["win-2"])));
        let next = futures::executor::block_on(woken.next());
        assert_eq!(next, Some(ObjectRef::new("b").within("ops")));
        let seen = exclusive
            .decide("msi", ("ops", "b"), BTreeSet::new(), |busy| (busy.clone(), nodes(&["win-1", "win-3"])));
        assert_eq!(seen, BTreeSet::from(["win-2".into()]));
        // `a` is deleted: `b` holds what it holds, and nothing of `a` is left.
        exclusive.release("ops", "a");
        let seen = exclusive.decide("msi", ("ops", "d"), BTreeSet::new(), |busy| (busy.clone(), vec![]));
        assert_eq!(seen, BTreeSet::from(["win-1".into(), "win-3".into()]));
    }
}
