//! hostprocess-operator: reconciles HostTasks into HostProcess DaemonSets rolled out in waves
//! across Windows nodes, and HostGroups into per-node setup pods.
//!
//! Layers, each importing only those below it (`docs/architecture.md` has the picture):
//! `runtime` (watches, triggers, leader, stop, admin) and `preview` (what the controllers would
//! do, for `kubectl hostprocess plan`) → `hosttask`, `hostgroup` (the
//! controllers; `hosttask` asks `hostgroup::provisioned` one thing) → `context` → `writes` (what
//! is written behind the reconciles) → `state` (what the watches fill) → the ground floor
//! (`labels`, `hashing`, `conditions`, `finalizer`, `hostprocess_pod`, `events`, `metrics`,
//! `names`, `retry`, `permissions`).

mod conditions;
mod context;
mod events;
mod finalizer;
mod hashing;
mod hostgroup;
mod hostprocess_pod;
mod hosttask;
pub mod labels;
mod metrics;
mod names;
pub mod permissions;
pub mod preview;
mod retry;
mod runtime;
mod state;
mod writes;

#[cfg(test)]
mod gitops_tests;

pub use context::Config;
pub use hosttask::admission::label_key as admission_label;
pub use metrics::Metrics;
pub use runtime::admin::{Health, serve as serve_admin};
pub use runtime::leader::{Fence, LeaderElection, LeaseTiming, NotLeading, identity as leader_identity};
pub use runtime::{Runtime, Stopped, run};

/// The pure pieces the benches time, as the operator calls them. Not an API.
#[doc(hidden)]
pub mod bench {
    pub use crate::hosttask::build::{BuildInputs, daemon_set};
    pub use crate::hosttask::pods::read as read_task_pods;
    pub use crate::hosttask::rollout::{Limits, plan_once};
    pub use crate::state::cached_pod::{CachedPod, names_and_labels, strip_pod};
    pub use crate::state::pod_result::NodeResult;
    pub use crate::state::task_pods::PodIndex;
}
