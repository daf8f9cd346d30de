//! How a HostTask reconcile fails: one variant per step that calls the API. Bad input is never
//! an error here — it becomes a Stalled condition (`validate`).

use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the DaemonSet: {0}")]
    GetDaemonSet(#[source] kube::Error),
    #[error("applying the DaemonSet: {0}")]
    ApplyDaemonSet(#[source] kube::Error),
    #[error("deleting the DaemonSet: {0}")]
    DeleteDaemonSet(#[source] kube::Error),
    #[error("deleting a pod of an older revision: {0}")]
    DeletePod(#[source] kube::Error),
    #[error("the script ConfigMap: {0}")]
    ApplyConfigMap(#[source] crate::writes::config_maps::ConfigMapError),
    #[error("reading or cordoning a node to reboot: {0}")]
    Node(#[source] kube::Error),
    #[error("draining a node to reboot: {0}")]
    Drain(#[source] kube::Error),
    #[error("the reboot pod: {0}")]
    RebootPod(#[source] kube::Error),
    #[error("recording a reboot step on the task pod: {0}")]
    PatchPod(#[source] kube::Error),
    #[error("reading a Secret or ConfigMap the task references (rollout.trackReferencedData): {0}")]
    ReadReferenced(#[source] kube::Error),
    #[error("reading or creating the operator's revision key (Secret {name} in its own namespace): {0}", name = crate::writes::revision_key::NAME)]
    RevisionKey(#[source] kube::Error),
    #[error("labelling nodes admitted to the rollout: {0}")]
    Admit(#[source] Arc<kube::Error>),
    #[error("updating the finalizer: {0}")]
    PatchFinalizer(#[source] kube::Error),
}

impl Error {
    /// The API server's answer, when the step failed on one.
    fn api(&self) -> Option<&kube::core::Status> {
        let source = match self {
            Error::GetDaemonSet(e)
            | Error::ApplyDaemonSet(e)
            | Error::DeleteDaemonSet(e)
            | Error::DeletePod(e)
            | Error::ApplyConfigMap(crate::writes::config_maps::ConfigMapError::Api(e))
            | Error::Node(e)
            | Error::Drain(e)
            | Error::RebootPod(e)
            | Error::PatchPod(e)
            | Error::ReadReferenced(e)
            | Error::PatchFinalizer(e) => e,
            Error::Admit(e) => e,
            // Not the task's namespace: a refusal there says nothing about the task's.
            Error::ApplyConfigMap(_) | Error::RevisionKey(_) => return None,
        };
        match source {
            kube::Error::Api(response) => Some(response),
            _ => None,
        }
    }

    /// Whether RBAC refused the step (403): waiting does not help, a cluster administrator
    /// must bind the operator's role in the namespace.
    pub fn forbidden(&self) -> bool {
        self.api().is_some_and(kube::core::Status::is_forbidden)
    }

    /// The failing step, as the `reason` label of `hostprocess_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::GetDaemonSet(_) => "get_daemonset",
            Error::ApplyDaemonSet(_) => "apply_daemonset",
            Error::DeleteDaemonSet(_) => "delete_daemonset",
            Error::ApplyConfigMap(_) => "apply_configmap",
            Error::DeletePod(_) => "delete_pod",
            Error::Node(_) => "node",
            Error::Drain(_) => "drain",
            Error::RebootPod(_) => "reboot_pod",
            Error::PatchPod(_) => "patch_pod",
            Error::ReadReferenced(_) => "read_referenced",
            Error::RevisionKey(_) => "revision_key",
            Error::Admit(_) => "admit",
            Error::PatchFinalizer(_) => "patch_finalizer",
        }
    }
}
