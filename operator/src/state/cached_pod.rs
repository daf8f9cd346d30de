//! What the caches keep of the objects they hold. A pod the operator runs carries a whole
//! template (containers, volumes, probes, affinity, tolerations) and a verbose status, but the
//! operator needs only where a pod runs, its own labels and annotations, and what its containers
//! say. Pods are therefore decoded straight into `CachedPod` — the rest of each watch event is
//! skipped by the decoder, never allocated. Setup pods are kept so, packed by `strip_pod`, at
//! about a kilobyte each; task pods, one per node and task, go on into the task pod index
//! (`state::task_pods`), which keeps less (`cargo bench --bench cache_memory` measures both).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    Node, Pod, PodCondition, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher;
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
/// Whether `owner`, a pod's controller, is what the operator makes such a pod through: the task's
/// DaemonSet (task pods), the HostGroup it names (setup pods) or a HostTask (reboot pods).
fn controlled_by_operator(
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    labels: &BTreeMap<String, String>,
) -> bool {
    let group = format!("{}/{}", hostprocess_crds::GROUP, hostprocess_crds::VERSION);
    match (owner.api_version.as_str(), owner.kind.as_str()) {
        ("apps/v1", "DaemonSet") => labels
            .get(crate::labels::TASK)
            .is_some_and(|task| owner.name == crate::labels::daemon_set_name(task)),
        (api, "HostGroup") if api == group => labels.get(crate::labels::HOST_GROUP) == Some(&owner.name),
        (api, "HostTask") if api == group => true,
        _ => false,
    }
}

pub fn strip_pod(pod: &mut CachedPod) {
    let own = |key: &String| key.starts_with("hostprocess.dev/");
    let m = &mut pod.metadata;
    let labels = m.labels.take().unwrap_or_default();
    // A pod is read as the operator's only when the operator's objects control it: a pod that
    // merely carries the labels (anyone who may create pods can write them) is nobody's here.
    let controlled = m
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|o| o.controller == Some(true))
        .is_some_and(|owner| controlled_by_operator(owner, &labels));
    pod.own_labels = labels
        .into_iter()
        .filter(|(k, _)| controlled && own(k))
        .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
        .collect();
    *m = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        uid: m.uid.take(),
        resource_version: m.resource_version.take(),
        creation_timestamp: m.creation_timestamp.take(),
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

/// `names_and_labels`, and of a node's annotations only the operator's own: the cordon record
/// (the fleet-wide reboot budget counts the nodes that carry it) and the HostGroup records.
pub fn node_metadata<K>(object: &mut kube::core::PartialObjectMeta<K>) {
    let kept: BTreeMap<String, String> = object
        .metadata
        .annotations
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| {
            key == crate::labels::CORDONED_BY || key.starts_with(crate::labels::PROVISIONED_PREFIX)
        })
        .collect();
    names_and_labels(object);
    object.metadata.annotations = (!kept.is_empty()).then_some(kept);
}

/// A node as the cache keeps it: `node_metadata`, its machine ID under
/// `labels::CACHED_MACHINE_ID` and its readiness under `labels::CACHED_READY` (from the status,
/// which the cache does not keep).
pub fn cached_node(node: Node) -> kube::core::PartialObjectMeta<Node> {
    use kube::core::PartialObjectMetaExt;
    let status = node.status.unwrap_or_default();
    let machine = status.node_info.map(|i| i.machine_id).unwrap_or_default();
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map_or_else(|| "Unknown".to_string(), |c| c.status);
    let mut cached = node.metadata.into_request_partial::<Node>();
    node_metadata(&mut cached);
    let annotations = cached.metadata.annotations.get_or_insert_default();
    annotations.insert(crate::labels::CACHED_MACHINE_ID.into(), machine);
    annotations.insert(crate::labels::CACHED_READY.into(), ready);
    cached
}

/// A watch event of one type as the same event of another.
pub fn map_event<A, B>(event: watcher::Event<A>, f: impl Fn(A) -> B) -> watcher::Event<B> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(f(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(f(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(f(o)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_cached_pod_keeps_what_the_decisions_read() {
        let full = json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {"hostprocess.dev/task": "patch", "controller-revision-hash": "x"},
                "annotations": {"hostprocess.dev/reboot": "done", "other": "y"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "hostprocess-patch",
                    "uid": "d", "controller": true}],
                "managedFields": [{"manager": "x"}]},
            "spec": {"nodeName": "win-001", "containers": [{"name": "task", "image": "i"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}]}]}}}},
            "status": {"phase": "Running", "hostIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                "containerStatuses": [{"name": "task", "image": "i", "imageID": "", "ready": false, "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error",
                        "message": crate::state::pod_result::lines::ran(
                            hostprocess_protocol::State::Failed, 3, &[(hostprocess_protocol::AttemptOutcome::ExitCode, "")])}}}]},
        });
        let pod: Pod = serde_json::from_value(full.clone()).unwrap_or_else(|e| panic!("{e}"));
        let mut cached: CachedPod = serde_json::from_value(full.clone()).unwrap_or_else(|e| panic!("{e}"));
        strip_pod(&mut cached);
        let seen = cached.to_pod();
        assert_eq!(crate::state::pod_result::observe(&seen), crate::state::pod_result::observe(&pod));
        assert!(matches!(
            crate::state::pod_result::observe(&seen),
            Some((_, crate::state::pod_result::NodeResult::Failed(_)))
        ));
        assert_eq!(cached.node_name(), Some("win-001"));
        assert_eq!(cached.label("hostprocess.dev/task"), Some("patch"));
        assert_eq!(cached.label("controller-revision-hash"), None, "not the operator's");
        let meta = &seen.metadata;
        assert_eq!((meta.uid.as_deref(), meta.resource_version.as_deref()), (Some("u"), Some("7")));
        assert_eq!(meta.labels.as_ref().map(|l| l.len()), Some(1), "only the operator's own labels");
        assert_eq!(meta.annotations.as_ref().map(|a| a.len()), Some(1));
        assert!(meta.managed_fields.is_none() && meta.owner_references.is_none());

        // The same labels on a pod the operator's objects do not control: nobody's.
        for owners in [
            json!([]),
            json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "hostprocess-other", "uid": "x", "controller": true}]),
            json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "hostprocess-patch", "uid": "d"}]),
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "hostprocess-patch", "uid": "r", "controller": true}]),
        ] {
            let mut forged = full.clone();
            forged["metadata"]["ownerReferences"] = owners.clone();
            let mut cached: CachedPod = serde_json::from_value(forged).unwrap_or_else(|e| panic!("{e}"));
            strip_pod(&mut cached);
            assert_eq!(cached.label("hostprocess.dev/task"), None, "owners {owners}: not the operator's");
        }
    }
}
