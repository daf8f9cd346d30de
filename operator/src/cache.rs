//! What the caches keep of the objects they hold. A pod the operator runs carries a whole
//! template (containers, volumes, probes, affinity, tolerations) and a verbose status, but the
//! operator needs only where a pod runs, its own labels and annotations, and what its containers
//! say. Pods are therefore decoded straight into `CachedPod` — the rest of each watch event is
//! skipped by the decoder, never allocated. Setup pods are kept so, packed by `strip_pod`, at
//! about a kilobyte each; task pods, one per node and task, go on into the task pod index
//! (`hosttask::pods`), which keeps less (`cargo bench --bench cache_memory` measures both).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use serde::{Deserialize, Deserializer};

/// A pod as the caches keep it (see the module). `to_pod` gives the `Pod` the decisions read.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachedPod {
    pub metadata: ObjectMeta,
    /// The operator's own labels once `strip_pod` moved them out of `metadata` (a label map
    /// costs half a kilobyte even for two entries).
    #[serde(skip)]
    own_labels: Box<[(Box<str>, Box<str>)]>,
    #[serde(default)]
    spec: CachedSpec,
    #[serde(default)]
    status: CachedStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CachedSpec {
    node_name: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CachedStatus {
    phase: Option<String>,
    message: Option<String>,
    #[serde(default)]
    conditions: Vec<CachedCondition>,
    #[serde(default)]
    container_statuses: Vec<CachedContainer>,
    #[serde(default)]
    init_container_statuses: Vec<CachedContainer>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct CachedCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CachedContainer {
    name: String,
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    restart_count: i32,
    #[serde(default, deserialize_with = "container_state")]
    state: Option<CachedState>,
    #[serde(default, deserialize_with = "container_state")]
    last_state: Option<CachedState>,
}

/// What a container state says to the decisions: whether it runs, waits or ended, and how it
/// ended (exit code, reason, the executor's result in the message). Times and ids are dropped.
#[derive(Clone, Debug, PartialEq)]
enum CachedState {
    Running,
    Waiting { reason: Option<Box<str>> },
    Terminated { exit_code: i32, reason: Option<Box<str>>, message: Option<Box<str>> },
}

fn container_state<'de, D: Deserializer<'de>>(decoder: D) -> Result<Option<CachedState>, D::Error> {
    let Some(state) = Option::<ContainerState>::deserialize(decoder)? else { return Ok(None) };
    Ok(if let Some(t) = state.terminated {
        Some(CachedState::Terminated {
            exit_code: t.exit_code,
            reason: t.reason.map(String::into_boxed_str),
            message: t.message.map(String::into_boxed_str),
        })
    } else if let Some(w) = state.waiting {
        Some(CachedState::Waiting { reason: w.reason.map(String::into_boxed_str) })
    } else {
        state.running.map(|_| CachedState::Running)
    })
}

impl CachedState {
    fn to_state(&self) -> ContainerState {
        let text = |s: &Option<Box<str>>| s.as_deref().map(String::from);
        match self {
            CachedState::Running => ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..ContainerState::default()
            },
            CachedState::Waiting { reason } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: text(reason),
                    ..ContainerStateWaiting::default()
                }),
                ..ContainerState::default()
            },
            CachedState::Terminated { exit_code, reason, message } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    reason: text(reason),
                    message: text(message),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            },
        }
    }
}

impl Resource for CachedPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Pod")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("pods")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl CachedPod {
    /// The node the pod runs on.
    pub fn node_name(&self) -> Option<&str> {
        self.spec.node_name.as_deref()
    }

    pub fn phase(&self) -> Option<&str> {
        self.status.phase.as_deref()
    }

    /// A label of the pod: one of the operator's own once stripped, any before.
    pub fn label(&self, key: &str) -> Option<&str> {
        match &self.metadata.labels {
            Some(labels) => labels.get(key).map(String::as_str),
            None => self.own_labels.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v),
        }
    }

    /// The pod as the decisions read it: metadata, node, phase, conditions, container states.
    pub fn to_pod(&self) -> Pod {
        let containers = |list: &[CachedContainer]| {
            (!list.is_empty()).then(|| {
                list.iter()
                    .map(|c| ContainerStatus {
                        name: c.name.clone(),
                        ready: c.ready,
                        restart_count: c.restart_count,
                        state: c.state.as_ref().map(CachedState::to_state),
                        last_state: c.last_state.as_ref().map(CachedState::to_state),
                        ..ContainerStatus::default()
                    })
                    .collect()
            })
        };
        let status = &self.status;
        let mut metadata = self.metadata.clone();
        if metadata.labels.is_none() && !self.own_labels.is_empty() {
            metadata.labels =
                Some(self.own_labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        }
        Pod {
            metadata,
            spec: Some(PodSpec { node_name: self.spec.node_name.clone(), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: status.phase.clone(),
                message: status.message.clone(),
                conditions: (!status.conditions.is_empty()).then(|| {
                    status
                        .conditions
                        .iter()
                        .map(|c| PodCondition {
                            type_: c.type_.clone(),
                            status: c.status.clone(),
                            ..PodCondition::default()
                        })
                        .collect()
                }),
                container_statuses: containers(&status.container_statuses),
                init_container_statuses: containers(&status.init_container_statuses),
                ..PodStatus::default()
            }),
        }
    }
}

/// Keeps of a cached pod what decisions and writes read: name, namespace, uid, resourceVersion,
/// deletion, the operator's own labels and annotations (`hostprocess.dev/…`), and of its
/// conditions only `Ready`.
pub fn strip_pod(pod: &mut CachedPod) {
    let own = |key: &String| key.starts_with("hostprocess.dev/");
    let m = &mut pod.metadata;
    let labels = m.labels.take().unwrap_or_default();
    pod.own_labels = labels
        .into_iter()
        .filter(|(k, _)| own(k))
        .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
        .collect();
    *m = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        uid: m.uid.take(),
        resource_version: m.resource_version.take(),
        deletion_timestamp: m.deletion_timestamp.take(),
        annotations: m
            .annotations
            .take()
            .map(|a| a.into_iter().filter(|(k, _)| own(k)).collect::<BTreeMap<_, _>>())
            .filter(|a| !a.is_empty()),
        ..ObjectMeta::default()
    };
    let status = &mut pod.status;
    status.conditions.retain(|c| c.type_ == "Ready");
    status.conditions.shrink_to_fit();
    status.container_statuses.shrink_to_fit();
    status.init_container_statuses.shrink_to_fit();
}

/// Keeps of a node's or namespace's metadata its name, labels and deletion: what targeting and
/// the Pod Security check read (a node's annotations and managed fields are most of its metadata).
pub fn names_and_labels<K>(object: &mut kube::core::PartialObjectMeta<K>) {
    let m = &mut object.metadata;
    *m = ObjectMeta {
        name: m.name.take(),
        resource_version: m.resource_version.take(),
        deletion_timestamp: m.deletion_timestamp.take(),
        labels: m.labels.take(),
        ..ObjectMeta::default()
    };
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

/// An object's resourceVersion as a number (etcd's revision), to order two versions of it.
pub(crate) fn resource_version<K: Resource>(object: &K) -> Option<u64> {
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
    fn a_cached_pod_keeps_what_the_decisions_read() {
        let full = json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {"hostprocess.dev/task": "patch", "controller-revision-hash": "x"},
                "annotations": {"hostprocess.dev/reboot": "done", "other": "y"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "d"}],
                "managedFields": [{"manager": "x"}]},
            "spec": {"nodeName": "win-001", "containers": [{"name": "task", "image": "i"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]}}}},
            "status": {"phase": "Running", "hostIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                "containerStatuses": [{"name": "task", "image": "i", "imageID": "", "ready": false, "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error",
                        "message": "{\"state\":\"Failed\",\"exitCode\":3,\"attempts\":[{\"outcome\":\"Exited\"}]}"}}}]},
        });
        let pod: Pod = serde_json::from_value(full.clone()).unwrap_or_else(|e| panic!("{e}"));
        let mut cached: CachedPod = serde_json::from_value(full).unwrap_or_else(|e| panic!("{e}"));
        strip_pod(&mut cached);
        let seen = cached.to_pod();
        assert_eq!(crate::hosttask::rollout::observe(&seen), crate::hosttask::rollout::observe(&pod));
        assert!(matches!(
            crate::hosttask::rollout::observe(&seen),
            Some((_, crate::hosttask::rollout::NodeResult::Failed(_)))
        ));
        assert_eq!(cached.node_name(), Some("win-001"));
        assert_eq!(cached.label("hostprocess.dev/task"), Some("patch"));
        assert_eq!(cached.label("controller-revision-hash"), None, "not the operator's");
        let meta = &seen.metadata;
        assert_eq!((meta.uid.as_deref(), meta.resource_version.as_deref()), (Some("u"), Some("7")));
        assert_eq!(meta.labels.as_ref().map(|l| l.len()), Some(1), "only the operator's own labels");
        assert_eq!(meta.annotations.as_ref().map(|a| a.len()), Some(1));
        assert!(meta.managed_fields.is_none() && meta.owner_references.is_none());
    }
}
