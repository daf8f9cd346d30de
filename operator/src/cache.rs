//! What the caches keep of the objects they hold. A task pod carries its DaemonSet's template —
//! in `Once` mode a node affinity naming every admitted node — so a full pod cache grows with
//! pods × nodes; the operator needs only where a pod runs, its labels and annotations, and its
//! status. Slimming before the reflector stores keeps memory in step with the number of pods.

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};

/// Drops what no decision reads: managed fields, every spec field but `nodeName`, and the
/// status fields beyond phase, conditions, container states and the message.
pub fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    pod.spec = Some(PodSpec { node_name, ..PodSpec::default() });
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            phase: status.phase,
            conditions: status.conditions,
            container_statuses: status.container_statuses,
            init_container_statuses: status.init_container_statuses,
            message: status.message,
            ..PodStatus::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_slim_pod_keeps_what_the_decisions_read() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {"a": "b"}, "annotations": {"hostprocess.dev/reboot": "done"},
                "managedFields": [{"manager": "x"}]},
            "spec": {"nodeName": "win-001", "containers": [{"name": "task", "image": "i"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["win-000", "win-001"]}]}]}}}},
            "status": {"phase": "Running", "hostIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let before = crate::hosttask::rollout::observe(&pod);
        slim_pod(&mut pod);
        assert_eq!(crate::hosttask::rollout::observe(&pod), before);
        let spec = pod.spec.as_ref().unwrap_or_else(|| panic!("spec"));
        assert_eq!(spec.node_name.as_deref(), Some("win-001"));
        assert!(spec.affinity.is_none() && spec.containers.is_empty());
        assert!(pod.metadata.managed_fields.is_none());
        assert_eq!(pod.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
        assert!(pod.status.as_ref().is_some_and(|s| s.host_ip.is_none()));
    }
}
