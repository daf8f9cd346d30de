//! What every reconcile shares: the client, the operator's settings, the caches of what it
//! watches, and the queue of events to write.

use hostprocess_crds::HostGroup;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;

/// The operator's settings (flags and environment).
#[derive(Debug, Clone)]
pub struct Config {
    /// The node-executor image the pods run (or copy the executor from).
    pub executor_image: String,
    /// Its version: where `node-executor install` puts it on the host.
    pub executor_version: String,
    /// Watch only this namespace's HostTasks (and their DaemonSets and pods); all when `None`.
    pub namespace: Option<String>,
    /// Where the HostGroup setup pods run: a namespace that allows privileged pods.
    pub group_namespace: String,
    /// How many HostTasks (and, apart, HostGroups) are reconciled at once: bounds the operator's
    /// load on the API server and its own memory while a whole fleet changes.
    pub concurrency: u16,
}

impl Config {
    /// The namespace the install creates for HostProcess workloads (privileged Pod Security).
    pub const DEFAULT_GROUP_NAMESPACE: &str = "hostprocess-tasks";
    /// Reconciles at once per kind, by default.
    pub const DEFAULT_CONCURRENCY: u16 = 4;

    /// The image the operator defaults to: the executor built from the same sources.
    pub fn default_executor_image() -> String {
        format!("ghcr.io/hostprocess-operator/node-executor:{}", env!("CARGO_PKG_VERSION"))
    }
}

pub struct Context {
    pub client: Client,
    pub config: Config,
    /// The tasks' DaemonSets (label-selected), and the operator's writes the cache may not show yet.
    pub daemon_sets: Store<k8s_openapi::api::apps::v1::DaemonSet>,
    pub daemon_set_writes: crate::cache::OwnWrites<k8s_openapi::api::apps::v1::DaemonSet>,
    /// Task pods (label-selected), as the rollout reads them.
    pub pods: std::sync::Arc<crate::hosttask::pods::PodIndex>,
    /// HostGroup setup pods (label-selected, in `config.group_namespace`).
    pub setup_pods: Store<crate::cache::CachedPod>,
    /// HostGroups: a task that runs as one needs its group name and where it is provisioned.
    pub groups: Store<HostGroup>,
    /// Namespaces, metadata only: their Pod Security labels.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Nodes, metadata only: names and labels are all the rollout needs.
    pub nodes: Store<PartialObjectMeta<Node>>,
    /// The operator's own admission label writes, until the node cache shows them.
    pub admissions: crate::hosttask::admission::Written,
    /// Admission label writes waiting for the writers (merged per node).
    pub node_labels: crate::hosttask::admission::Queue,
    /// HostTask statuses decided and not yet in the cache, and the queue of those to write.
    pub statuses: crate::hosttask::status_writes::StatusWrites,
    /// The script ConfigMaps already applied or found.
    pub script_maps: crate::hosttask::ScriptMaps,
    pub events: crate::events::Events,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("config", &self.config).finish_non_exhaustive()
    }
}
