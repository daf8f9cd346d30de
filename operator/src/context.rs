//! What every reconcile shares: the client, the operator's settings, the caches of what it
//! watches, its writes the caches may not show yet, and the queue of events to write.

use std::sync::Arc;

use hostprocess_crds::units::CountOrPercent;
use kube::Client;

use crate::events::Events;
use crate::metrics::Metrics;
use crate::state::Caches;
use crate::writes::Writes;

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
    /// The most Windows nodes in a reboot the operator started, across all tasks: a count, or a
    /// percentage of the Windows nodes (rounded up, at least 1).
    pub max_rebooting: CountOrPercent,
    /// The operator's own namespace: its Lease and its revision key (`writes::revision_key`).
    pub operator_namespace: String,
}

impl Config {
    /// The namespace the install creates for HostProcess workloads (privileged Pod Security).
    pub const DEFAULT_GROUP_NAMESPACE: &str = "hostprocess-tasks";
    /// Reconciles at once per kind, by default.
    pub const DEFAULT_CONCURRENCY: u16 = 4;
    /// Nodes rebooting at once fleet-wide, by default: a tenth of the Windows nodes.
    pub const DEFAULT_MAX_REBOOTING: CountOrPercent = CountOrPercent::Percent(10);

    /// The registry of the images `deploy/` names until they are published: `.invalid` is
    /// reserved (RFC 2606), so nobody can own it and nothing is ever pulled from it.
    pub const PLACEHOLDER_REGISTRY: &str = "registry.invalid";

    /// Whether `image` may be the executor image of the task pods: a valid reference, not the
    /// placeholder of `deploy/`. The operator refuses to start otherwise, rather than create
    /// pods that can never pull.
    pub fn check_executor_image(image: &str) -> Result<(), String> {
        if let Err(e) = hostprocess_crds::format::IMAGE.check(image) {
            return Err(format!("--executor-image {image:?}: {e}"));
        }
        if image.split('/').next() == Some(Self::PLACEHOLDER_REGISTRY) {
            return Err(format!(
                "--executor-image is {image:?}, the placeholder of deploy/: build and push the node-executor image (deploy/images/node-executor.Dockerfile) and set HOSTPROCESS_EXECUTOR_IMAGE to it, by digest (REGISTRY/node-executor@sha256:…)"
            ));
        }
        Ok(())
    }
}

pub(crate) struct Context {
    pub client: Client,
    pub config: Config,
    /// What the watches fill (`state`).
    pub cache: Caches,
    /// What the operator wrote or queued and the caches may not show yet (`writes`).
    pub writes: Writes,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    /// Failed reconciles per object, for the back-off of the next try.
    pub backoff: crate::retry::Backoff,
    /// The key of referenced-data hashes, read (or created) the first time a task needs it.
    pub revision_key: tokio::sync::OnceCell<Vec<u8>>,
}

impl Context {
    /// The writes queued or in flight behind the reconciles, by kind.
    pub fn pending_writes(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("event", self.events.pending()),
            ("status", self.writes.task_status.pending()),
            ("node_label", self.writes.node_labels.pending()),
        ]
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("config", &self.config).finish_non_exhaustive()
    }
}
