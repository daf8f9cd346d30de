//! `reboot: IfRequired`: a node whose `Once` payload exited 3010 is cordoned, drained (through
//! the Eviction API, so PodDisruptionBudgets hold), rebooted by a HostProcess pod running
//! `node-executor reboot`, waited for (a new boot id and Ready), then uncordoned — only if the
//! operator cordoned it. The node keeps its `maxConcurrent` slot throughout.
//!
//! Where each node stands lives in the API, so a restarted operator resumes: the step in an
//! annotation on the node's task pod (the pod is per node and revision, as the reboot is), and
//! on the node which task cordoned it.

use hostprocess_crds::hosttask::NodeFailure;
use hostprocess_crds::{HostTask, Mode, RebootPolicy};
use k8s_openapi::api::core::v1::{Container, Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::pods::Rebooting;
use super::rollout::NodeResult;
use super::{Error, publish};
use crate::context::Context;
use crate::{hashing, hostprocess_pod, labels};

/// On a task pod: where its node's reboot stands.
pub const STEP: &str = "hostprocess.dev/reboot";
/// On a node: the task (`namespace/name`) that cordoned it, so only that task uncordons it.
pub const CORDONED_BY: &str = "hostprocess.dev/cordoned-by";
/// How long one eviction may take before it counts as refused for now.
const EVICTION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// On a reboot pod: the task it reboots a node for.
pub const REBOOT_FOR: &str = "hostprocess.dev/reboot-for";

/// Where a node's reboot stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The payload asked for a reboot; nothing done yet.
    Required,
    /// Cordoned; pods are being evicted.
    Draining,
    /// The reboot pod runs; the node had this boot id before.
    Rebooting { boot_id: String },
    /// Back, Ready, uncordoned.
    Done,
    /// The reboot could not be carried out.
    Failed(String),
}

impl Step {
    /// The step a task pod's `STEP` annotation records.
    pub fn of(annotation: Option<&str>) -> Step {
        match annotation {
            None => Step::Required,
            Some("draining") => Step::Draining,
            Some("done") => Step::Done,
            Some(other) => match other.split_once(':') {
                Some(("rebooting", id)) => Step::Rebooting { boot_id: id.to_string() },
                Some(("failed", message)) => Step::Failed(message.to_string()),
                _ => Step::Required,
            },
        }
    }

    fn annotation(&self) -> String {
        match self {
            Step::Required => String::new(),
            Step::Draining => "draining".into(),
            Step::Rebooting { boot_id } => format!("rebooting:{boot_id}"),
            Step::Done => "done".into(),
            Step::Failed(message) => format!("failed:{message}"),
        }
    }
}

/// A node's result once the reboot policy is applied: with `IfRequired`, a success that needs a
/// reboot is `Rebooting` until the reboot is done.
pub fn result(task: &HostTask, step: &Step, node: &str, observed: NodeResult) -> NodeResult {
    let applies = task.spec.reboot == RebootPolicy::IfRequired && task.spec.mode == Mode::Once;
    if !applies {
        return observed;
    }
    let reboot_required = observed == NodeResult::Succeeded { reboot_required: true };
    match (step.clone(), observed) {
        (Step::Done, NodeResult::Succeeded { .. }) => NodeResult::Succeeded { reboot_required: false },
        (Step::Failed(message), _) => NodeResult::Failed(Box::new(NodeFailure {
            node: node.to_string(),
            exit_code: Some(3010),
            reason: "RebootFailed".into(),
            message,
            attempts: 1,
        })),
        (Step::Required, _) if reboot_required => NodeResult::Rebooting,
        // Once started, the reboot goes on whatever the restarted container says meanwhile.
        (Step::Draining | Step::Rebooting { .. }, NodeResult::Succeeded { .. } | NodeResult::Running) => {
            NodeResult::Rebooting
        }
        (_, observed) => observed,
    }
}

/// The pods a drain evicts: not DaemonSet pods (they would come back; the task's own is one),
/// not mirror pods, not finished ones, not the reboot pod.
pub fn evictable(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| !p.owner_references().iter().any(|o| o.kind == "DaemonSet"))
        .filter(|p| !p.annotations().contains_key("kubernetes.io/config.mirror"))
        .filter(|p| !p.labels().contains_key(REBOOT_FOR))
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .collect()
}

fn boot_id(node: &Node) -> String {
    node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.boot_id.clone()).unwrap_or_default()
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node came back: another boot, and Ready.
pub fn is_back(node: &Node, before: &str) -> bool {
    let now = boot_id(node);
    !now.is_empty() && now != before && ready(node)
}

pub fn reboot_pod_name(task: &str, node: &str) -> String {
    format!("hostprocess-reboot-{task}-{}", hashing::short(node))
}

/// A HostProcess pod pinned to `node` that asks Windows to restart (SYSTEM holds the shutdown
/// privilege). It tolerates every taint: the node is cordoned by then.
pub fn reboot_pod(task: &HostTask, node: &str, executor_image: &str, revision: &str) -> Pod {
    let name = task.name_any();
    let reason = format!(
        "hostprocess-operator: HostTask {}/{name} revision {revision} requires a reboot",
        task.namespace().unwrap_or_default()
    );
    Pod {
        metadata: ObjectMeta {
            name: Some(reboot_pod_name(&name, node)),
            namespace: task.namespace(),
            labels: Some({
                let mut labels = labels::managed("hostprocess-reboot");
                labels.insert(REBOOT_FOR.to_string(), name.clone());
                labels
            }),
            owner_references: task.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(hostprocess_pod::pinned_system_spec(
            node,
            vec![Toleration { operator: Some("Exists".into()), ..Toleration::default() }],
            "Never",
            Container {
                name: "reboot".into(),
                image: Some(executor_image.into()),
                command: Some(vec!["node-executor.exe".into(), "reboot".into(), "--reason".into(), reason]),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Container::default()
            },
            None,
        )),
        status: None,
    }
}

/// Why the reboot pod failed, if it did before the node rebooted.
fn reboot_pod_failure(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let terminated = status.container_statuses.as_ref()?.first()?.state.as_ref()?.terminated.as_ref()?;
    if terminated.exit_code == 0 {
        return None;
    }
    let error = super::rollout::result_line(terminated.message.as_deref().unwrap_or_default())
        .and_then(|v| v["error"].as_str().map(str::to_string));
    Some(error.unwrap_or_else(|| format!("the reboot pod exited with code {}", terminated.exit_code)))
}

/// Moves one node's reboot a step further, as far as it can go now.
pub async fn advance(ctx: &Context, task: &HostTask, pod: &Rebooting, revision: &str) -> Result<(), Error> {
    let node_name = pod.node.clone();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let namespace = task.namespace().unwrap_or_default();
    let owner = format!("{namespace}/{}", task.name_any());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(node) = nodes.get_opt(&node_name).await.map_err(Error::Node)? else { return Ok(()) };
    let cordoned_by = node.annotations().get(CORDONED_BY).cloned();
    let step = pod.step.clone();
    tracing::debug!(node = %node_name, ?step, ?cordoned_by, "reboot step");
    match step {
        Step::Required => {
            let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
            match (&cordoned_by, unschedulable) {
                // Another task is rebooting this node: its turn first.
                (Some(other), _) if *other != owner => return Ok(()),
                // Cordoned by an administrator: drain, but never uncordon it.
                (None, true) => {}
                _ => {
                    let patch = json!({
                        "metadata": {"resourceVersion": node.resource_version(), "annotations": {CORDONED_BY: owner}},
                        "spec": {"unschedulable": true},
                    });
                    match nodes.patch(&node_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        Ok(_) => {}
                        // Changed meanwhile (another task may have cordoned it): decide again later.
                        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
                        Err(e) => return Err(Error::Node(e)),
                    }
                }
            }
            set_step(&pods, pod, &Step::Draining).await?;
            publish(
                ctx,
                task,
                EventType::Normal,
                "NodeDraining",
                format!("{node_name}: cordoned, draining before the reboot the payload asked for"),
            );
        }
        Step::Draining => {
            let on_node = Api::<Pod>::all(ctx.client.clone())
                .list(&ListParams::default().fields(&format!("spec.nodeName={node_name}")))
                .await
                .map_err(Error::Drain)?;
            let mut blocked = Vec::new();
            let mut remaining = 0;
            for victim in evictable(&on_node.items) {
                remaining += 1;
                if victim.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let api: Api<Pod> =
                    Api::namespaced(ctx.client.clone(), &victim.namespace().unwrap_or_default());
                // A client that retries 429 itself would hold this reconcile: bound the wait.
                let evicted = tokio::time::timeout(
                    EVICTION_WAIT,
                    api.evict(&victim.name_any(), &EvictParams::default()),
                )
                .await;
                let Ok(evicted) = evicted else {
                    blocked.push(format!("{}/{}", victim.namespace().unwrap_or_default(), victim.name_any()));
                    continue;
                };
                match evicted {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => remaining -= 1,
                    // A PodDisruptionBudget does not allow it now: try again later.
                    Err(kube::Error::Api(s)) if s.code == 429 => blocked.push(format!(
                        "{}/{}",
                        victim.namespace().unwrap_or_default(),
                        victim.name_any()
                    )),
                    Err(e) => return Err(Error::Drain(e)),
                }
            }
            if !blocked.is_empty() {
                publish(
                    ctx,
                    task,
                    EventType::Warning,
                    "EvictionBlocked",
                    format!(
                        "{node_name}: a PodDisruptionBudget does not allow evicting {} yet",
                        blocked.join(", ")
                    ),
                );
            }
            if remaining > 0 {
                return Ok(());
            }
            let boot_id = boot_id(&node);
            let reboot = reboot_pod(task, &node_name, &ctx.config.executor_image, revision);
            match pods.create(&PostParams::default(), &reboot).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(Error::RebootPod(e)),
            }
            set_step(&pods, pod, &Step::Rebooting { boot_id }).await?;
            publish(
                ctx,
                task,
                EventType::Normal,
                "NodeRebooting",
                format!("{node_name}: drained, rebooting"),
            );
        }
        Step::Rebooting { boot_id } => {
            let reboot_name = reboot_pod_name(&task.name_any(), &node_name);
            if is_back(&node, &boot_id) {
                if cordoned_by.as_deref() == Some(owner.as_str()) {
                    let patch = json!({"metadata": {"annotations": {CORDONED_BY: null}}, "spec": {"unschedulable": null}});
                    nodes
                        .patch(&node_name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .map_err(Error::Node)?;
                }
                delete_quietly(&pods, &reboot_name).await?;
                set_step(&pods, pod, &Step::Done).await?;
                publish(
                    ctx,
                    task,
                    EventType::Normal,
                    "NodeRebooted",
                    format!("{node_name}: back after the reboot and Ready"),
                );
                return Ok(());
            }
            let failure = pods
                .get_opt(&reboot_name)
                .await
                .map_err(Error::RebootPod)?
                .as_ref()
                .and_then(reboot_pod_failure);
            if let Some(message) = failure {
                set_step(&pods, pod, &Step::Failed(message.clone())).await?;
                publish(
                    ctx,
                    task,
                    EventType::Warning,
                    "RebootFailed",
                    format!("{node_name}: {message}; the node stays cordoned"),
                );
            }
        }
        Step::Done | Step::Failed(_) => {}
    }
    Ok(())
}

async fn set_step(pods: &Api<Pod>, pod: &Rebooting, step: &Step) -> Result<(), Error> {
    let patch = json!({"metadata": {"annotations": {STEP: step.annotation()}}});
    pods.patch(&pod.pod, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(Error::PatchPod)?;
    Ok(())
}

async fn delete_quietly(pods: &Api<Pod>, name: &str) -> Result<(), Error> {
    crate::ignore_not_found(pods.delete(name, &DeleteParams::default()).await).map_err(Error::RebootPod)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("pod: {e}"))
    }

    #[test]
    fn the_step_round_trips_through_the_annotation() {
        for step in [
            Step::Draining,
            Step::Rebooting { boot_id: "b-1".into() },
            Step::Done,
            Step::Failed("no privilege".into()),
        ] {
            assert_eq!(Step::of(Some(&step.annotation())), step);
        }
        assert_eq!(Step::of(None), Step::Required);
    }

    #[test]
    fn a_drain_evicts_workloads_but_not_daemonset_mirror_or_finished_pods() {
        let pods = [
            pod(json!({"metadata": {"name": "web"}})),
            pod(
                json!({"metadata": {"name": "ds", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "x", "uid": "u"}]}}),
            ),
            pod(json!({"metadata": {"name": "mirror", "annotations": {"kubernetes.io/config.mirror": "h"}}})),
            pod(json!({"metadata": {"name": "done"}, "status": {"phase": "Succeeded"}})),
            pod(json!({"metadata": {"name": "reboot", "labels": {REBOOT_FOR: "t"}}})),
        ];
        let names: Vec<String> = evictable(&pods).iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["web"]);
    }

    #[test]
    fn a_node_is_back_after_a_new_boot_once_ready() {
        let node = |boot: &str, ready: &str| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {
                "nodeInfo": {"bootID": boot, "machineID": "", "systemUUID": "", "kernelVersion": "", "osImage": "",
                    "containerRuntimeVersion": "", "kubeletVersion": "", "kubeProxyVersion": "", "operatingSystem": "", "architecture": ""},
                "conditions": [{"type": "Ready", "status": ready}]}}))
            .unwrap_or_else(|e| panic!("node: {e}"))
        };
        assert!(!is_back(&node("b-1", "True"), "b-1"), "same boot");
        assert!(!is_back(&node("b-2", "False"), "b-1"), "not Ready yet");
        assert!(is_back(&node("b-2", "True"), "b-1"));
    }
}
