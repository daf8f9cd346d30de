//! Which nodes a pinned task's DaemonSet may run on. A `Once` task admits nodes wave by wave and a
//! task that runs as a HostGroup only where the group is provisioned; both say so with one label
//! per task on the node, `admitted.hostprocess.dev/<task uid>=<revision>`, which the DaemonSet's
//! node affinity requires. A pod therefore carries one short requirement, not the names of every
//! admitted node (pods × nodes names in etcd, in every watch and in the scheduler), and the
//! DaemonSet's template changes only with the revision.
//!
//! The labels are the record of the rollout: a restarted operator reads them from its node
//! cache. This module decides them; `writes::node_labels` writes them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::core::PartialObjectMeta;

use crate::labels;
use crate::writes::node_labels::{LabelValue, NodeLabels};

/// The label key of a task: its uid, so a task deleted and created again under the same name
/// starts afresh.
pub fn label_key(task_uid: &str) -> String {
    format!("{}/{task_uid}", labels::ADMITTED_PREFIX)
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
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.admit.is_empty() && self.release.is_empty()
    }

    /// The label values that carry these changes out: `revision` on `admit`, none on `release`.
    pub fn values<'a>(&'a self, revision: &'a str) -> impl Iterator<Item = LabelValue<'a>> {
        let admit = self.admit.iter().map(move |n| (n.as_str(), Some(revision)));
        admit.chain(self.release.iter().map(|n| (n.as_str(), None)))
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

/// Takes label `key` off every node that has it (the operator's own writes included) and
/// forgets the task's writes: the task is going.
pub async fn release_all(
    labels: &NodeLabels,
    key: &str,
    nodes: &[Arc<PartialObjectMeta<Node>>],
) -> Result<(), Arc<kube::Error>> {
    // Releasing writes no revision anywhere.
    let release = changes(&labels.current(key, nodes), None, "");
    labels.write(key, release.values("")).await?;
    labels.forget(key);
    Ok(())
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
    fn changes_are_written_as_the_revision_on_admitted_nodes_and_no_label_on_released_ones() {
        let c = Changes { admit: names(&["win-1"]), release: names(&["win-2"]) };
        let values: Vec<LabelValue<'_>> = c.values("rev-b").collect();
        assert_eq!(values, [("win-1", Some("rev-b")), ("win-2", None)]);
    }
}
