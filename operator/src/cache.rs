//! What the caches keep of the objects they hold. A task pod carries its DaemonSet's whole
//! template (containers, volumes, probes, affinity, tolerations), but the operator needs only
//! where a pod runs, its labels and annotations, and its status: slimming before the reflector
//! stores keeps memory per pod small, and a fleet holds one pod per node and task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;

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

/// The operator's own writes of objects it also watches, kept until its cache shows them: a
/// reconcile that runs before the watch delivered the last write reads that write, not the older
/// cached object — without a GET per reconcile.
#[derive(Debug)]
pub struct OwnWrites<K: Resource<DynamicType = ()>>(Mutex<HashMap<ObjectRef<K>, Option<Arc<K>>>>);

impl<K: Resource<DynamicType = ()>> Default for OwnWrites<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

/// What is known of an object: the newer of the cache and the operator's last write, or
/// `Unsure` when they cannot be ordered (then read it from the API).
#[derive(Debug, Clone, PartialEq)]
pub enum Known<K> {
    Is(Option<Arc<K>>),
    Unsure,
}

fn resource_version<K: Resource>(object: &K) -> Option<u64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}

impl<K: Resource<DynamicType = ()> + Clone> OwnWrites<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<K>, Option<Arc<K>>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a write: the object the API returned, or `None` after deleting it.
    pub fn wrote(&self, key: ObjectRef<K>, object: Option<K>) {
        self.lock().insert(key, object.map(Arc::new));
    }

    /// The object as the operator must see it, given what its cache holds.
    pub fn resolve(&self, key: &ObjectRef<K>, cached: Option<Arc<K>>) -> Known<K> {
        let mut writes = self.lock();
        let Some(written) = writes.get(key) else { return Known::Is(cached) };
        match (written, cached) {
            // Deleted, and the cache agrees.
            (None, None) => {
                writes.remove(key);
                Known::Is(None)
            }
            (Some(w), Some(c)) => match (resource_version(&**w), resource_version(&*c)) {
                (Some(w_rv), Some(c_rv)) if c_rv >= w_rv => {
                    writes.remove(key);
                    Known::Is(Some(c))
                }
                (Some(_), Some(_)) => Known::Is(Some(w.clone())),
                _ => Known::Unsure,
            },
            // Written but not cached (created and not delivered yet, or deleted since by
            // someone else), or deleted but still cached: only the API can tell.
            (Some(_), None) | (None, Some(_)) => Known::Unsure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;
    use serde_json::json;

    fn ds(rv: &str) -> Arc<DaemonSet> {
        let mut ds = DaemonSet::default();
        ds.metadata.name = Some("hostprocess-patch".into());
        ds.metadata.namespace = Some("ns".into());
        ds.metadata.resource_version = Some(rv.into());
        Arc::new(ds)
    }

    #[test]
    fn own_writes_win_until_the_cache_catches_up() {
        let writes = OwnWrites::<DaemonSet>::default();
        let key = ObjectRef::new("hostprocess-patch").within("ns");
        assert_eq!(
            writes.resolve(&key, Some(ds("5"))),
            Known::Is(Some(ds("5"))),
            "nothing written: the cache"
        );
        writes.wrote(key.clone(), Some((*ds("9")).clone()));
        assert_eq!(writes.resolve(&key, Some(ds("5"))), Known::Is(Some(ds("9"))), "the cache is behind");
        assert_eq!(writes.resolve(&key, None), Known::Unsure, "created, or deleted since: ask the API");
        assert_eq!(writes.resolve(&key, Some(ds("12"))), Known::Is(Some(ds("12"))), "caught up");
        assert_eq!(writes.resolve(&key, Some(ds("5"))), Known::Is(Some(ds("5"))), "and forgotten");
        writes.wrote(key.clone(), None);
        assert_eq!(writes.resolve(&key, Some(ds("12"))), Known::Unsure, "deleted, still cached");
        assert_eq!(writes.resolve(&key, None), Known::Is(None));
    }

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
