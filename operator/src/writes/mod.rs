//! Everything the operator writes behind its reconciles, and the one rule they share:
//!
//! **Own writes win until the cache shows them.** A reconcile reads the caches, not the API. A
//! write the operator made (or queued) is newer than the cache until the watch delivers it, so
//! each unit here remembers its own writes and answers with them until the cache holds the same
//! resourceVersion (or value), then forgets them. No reconcile ever decides from a cache that is
//! older than the operator's own last word: it never admits a node twice, never re-applies a
//! DaemonSet it just wrote, never rolls a status back.
//!
//! - `own_writes`: whole objects (the tasks' DaemonSets), read back by resourceVersion.
//! - `node_labels`: admission labels, queued and sent by a few writers, one patch per node.
//! - `task_status`: HostTask statuses, the newest one per task, sent by a few writers.
//! - `reboots`: the fleet-wide reboot budget: nodes claimed for a reboot the cache may not show.
//! - `exclusive`: the nodes each concurrency group's tasks hold, decided under one lock.
//! - `script_maps`: the script ConfigMaps already in the API (immutable, written once).
//! - `config_maps`: a script or spec ConfigMap is used only if the operator's object controls it
//!   and its content is the operator's.
//!
//! HostGroup status is written in its reconcile instead: HostGroups are few, change rarely, and
//! their reconciles are not on the path of a fleet-wide rollout; the writers exist because 50
//! tasks × 1,000 nodes change task status faster than the API server takes single writes.

pub(crate) mod apply;
pub(crate) mod config_maps;
pub(crate) mod exclusive;
pub(crate) mod node_labels;
pub(crate) mod own_writes;
pub(crate) mod reboots;
pub(crate) mod revision_key;
pub(crate) mod script_maps;
pub(crate) mod task_status;
pub(crate) mod wake;

use k8s_openapi::api::apps::v1::DaemonSet;

pub(crate) use apply::{apply, apply_status, ignore_not_found};

/// The write-behind units every reconcile shares.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// The operator's DaemonSet writes the cache may not show yet.
    pub daemon_sets: own_writes::OwnWrites<DaemonSet>,
    /// Admission labels: written (or queued) and not yet cached.
    pub node_labels: node_labels::NodeLabels,
    /// HostTask statuses decided and not yet cached, and the queue of those to write.
    pub task_status: task_status::StatusWrites,
    /// The script ConfigMaps already applied or found.
    pub script_maps: script_maps::ScriptMaps,
    /// Nodes claimed for a reboot, against `--max-rebooting`.
    pub reboots: reboots::RebootSlots,
    /// Nodes held by a task of a concurrency group.
    pub exclusive: exclusive::Exclusive,
}
