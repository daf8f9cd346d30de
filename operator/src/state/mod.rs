//! What the watches fill: the caches the decisions read. Nothing here writes to the API or
//! decides a rollout; `runtime` fills these, the controllers read them through `Context`.

pub(crate) mod cached_pod;
pub(crate) mod pod_result;
pub(crate) mod targeting;
pub(crate) mod task_pods;

use hostprocess_crds::{HostGroup, HostTaskGrant};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;

use cached_pod::CachedPod;
use task_pods::PodIndex;

/// Every cache the reconciles read.
#[derive(Debug, Clone)]
pub(crate) struct Caches {
    /// The tasks' DaemonSets (label-selected).
    pub daemon_sets: Store<DaemonSet>,
    /// Task pods (label-selected), as the rollout reads them.
    pub task_pods: std::sync::Arc<PodIndex>,
    /// HostGroup setup pods (label-selected, in the setup namespace).
    pub setup_pods: Store<CachedPod>,
    /// HostTaskGrants: which namespaces are enabled and what their tasks may do.
    pub grants: Store<HostTaskGrant>,
    /// HostGroups: a task that runs as one needs its group name and where it is provisioned.
    pub groups: Store<HostGroup>,
    /// Namespaces, metadata only: their Pod Security labels.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Nodes, metadata only: names and labels are all the rollout needs.
    pub nodes: Store<PartialObjectMeta<Node>>,
}
