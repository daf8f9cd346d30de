//! How a HostGroup reconcile fails: one variant per step that calls the API. Bad input is never
//! an error here — it becomes a Stalled condition (`validate`).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the spec ConfigMap: {0}")]
    ApplyConfigMap(#[source] crate::writes::config_maps::ConfigMapError),
    #[error("creating a setup pod: {0}")]
    CreatePod(#[source] kube::Error),
    #[error("deleting a setup pod: {0}")]
    DeletePod(#[source] kube::Error),
    #[error("writing a node's provisioning record: {0}")]
    WriteRecord(#[source] kube::Error),
    #[error("updating the finalizer: {0}")]
    PatchFinalizer(#[source] kube::Error),
    #[error("writing status: {0}")]
    PatchStatus(#[source] kube::Error),
}

impl Error {
    /// The failing step, as the `reason` label of `hostprocess_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ApplyConfigMap(_) => "apply_configmap",
            Error::CreatePod(_) => "create_pod",
            Error::DeletePod(_) => "delete_pod",
            Error::WriteRecord(_) => "write_record",
            Error::PatchFinalizer(_) => "patch_finalizer",
            Error::PatchStatus(_) => "patch_status",
        }
    }
}
