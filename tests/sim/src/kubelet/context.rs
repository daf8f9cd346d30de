//! What a pod's tasks share: the pod, its runtime state, its sandbox and logs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

use super::config::*;
use super::status::*;

/// Everything a pod's tasks share.
pub(super) struct PodCtx {
    pub(super) client: Client,
    pub(super) config: Arc<KubeletConfig>,
    pub(super) pod: Pod,
    pub(super) runtime: Mutex<PodRuntime>,
    pub(super) changed: Notify,
    pub(super) sandbox: PathBuf,
    pub(super) logs: PathBuf,
}

impl PodCtx {
    pub(super) fn update(&self, change: impl FnOnce(&mut PodRuntime)) {
        change(&mut self.runtime.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_one();
    }

    pub(super) async fn write_status(&self) {
        let status = self.runtime.lock().unwrap_or_else(|e| e.into_inner()).status();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.pod.namespace().unwrap_or_default());
        let patch = serde_json::json!({"status": status});
        match pods.patch_status(&self.pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            // A pod deleted meanwhile: the worker is being stopped.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            // What the API server refuses is a defect of the simulation: say so in the test's log.
            Err(e) => eprintln!(
                "simulated kubelet on {}: pod status of {} refused: {e}",
                self.config.node,
                self.pod.name_any()
            ),
        }
    }
}
