//! Where a node's reboot stands, and what that means for the rollout. Pure: the driver
//! (`reboot::advance`) reads the node and pods and moves the step on.

use hostprocess_crds::hosttask::NodeFailure;
use hostprocess_crds::{HostTask, Mode, RebootPolicy};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::{self, Timestamp};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::labels::REBOOT_FOR;
use crate::state::pod_result::NodeResult;

/// Where a node's reboot stands, as the task pod's `REBOOT_STEP` annotation records it. A step
/// with a deadline records when it began (`None`: recorded by an operator that kept no time; the
/// driver records it now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The payload asked for a reboot; nothing done yet.
    Required,
    /// Cordoned; pods are being evicted.
    Draining { since: Option<Timestamp> },
    /// The reboot pod runs; the node had this boot id before.
    Rebooting { boot_id: String, since: Option<Timestamp> },
    /// Back, Ready, uncordoned.
    Done,
    /// The reboot could not be carried out: `reason` is `RebootFailed`, `DrainTimedOut` or
    /// `RebootTimedOut`.
    Failed { reason: String, message: String },
}

/// The reasons a failed step records.
pub const REBOOT_FAILED: &str = "RebootFailed";
pub const DRAIN_TIMED_OUT: &str = "DrainTimedOut";
pub const REBOOT_TIMED_OUT: &str = "RebootTimedOut";

fn with_time(text: &str) -> (&str, Option<Timestamp>) {
    match text.rsplit_once('@') {
        Some((head, time)) => match time.parse() {
            Ok(time) => (head, Some(time)),
            Err(_) => (text, None),
        },
        None => (text, None),
    }
}

impl Step {
    /// The step a task pod's annotation records.
    pub fn of(annotation: Option<&str>) -> Step {
        let Some(annotation) = annotation else { return Step::Required };
        let (head, since) = with_time(annotation);
        match head {
            "draining" => Step::Draining { since },
            "done" => Step::Done,
            _ => match annotation.split_once(':') {
                Some(("rebooting", _)) => match head.split_once(':') {
                    Some((_, id)) => Step::Rebooting { boot_id: id.to_string(), since },
                    None => Step::Required,
                },
                Some(("failed", rest)) => match rest.split_once(':') {
                    Some((reason @ (REBOOT_FAILED | DRAIN_TIMED_OUT | REBOOT_TIMED_OUT), message)) => {
                        Step::Failed { reason: reason.into(), message: message.into() }
                    }
                    // Recorded before failures had a reason.
                    _ => Step::Failed { reason: REBOOT_FAILED.into(), message: rest.into() },
                },
                _ => Step::Required,
            },
        }
    }

    /// The annotation value that records this step.
    pub fn annotation(&self) -> String {
        let at = |since: &Option<Timestamp>| since.map(|t| format!("@{t}")).unwrap_or_default();
        match self {
            Step::Required => String::new(),
            Step::Draining { since } => format!("draining{}", at(since)),
            Step::Rebooting { boot_id, since } => format!("rebooting:{boot_id}{}", at(since)),
            Step::Done => "done".into(),
            Step::Failed { reason, message } => format!("failed:{reason}:{message}"),
        }
    }

    /// When this step gives up: its start plus `limit`.
    pub fn deadline(since: Option<Timestamp>, limit: std::time::Duration) -> Option<Timestamp> {
        since?.checked_add(jiff::SignedDuration::try_from(limit).ok()?).ok()
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
        (Step::Failed { reason, message }, _) => NodeResult::Failed(Box::new(NodeFailure {
            node: node.to_string(),
            exit_code: Some(3010),
            reason,
            message,
            attempts: 1,
        })),
        (Step::Required, _) if reboot_required => NodeResult::Rebooting,
        // Once started, the reboot goes on whatever the restarted container says meanwhile.
        (
            Step::Draining { .. } | Step::Rebooting { .. },
            NodeResult::Succeeded { .. } | NodeResult::Running,
        ) => NodeResult::Rebooting,
        (_, observed) => observed,
    }
}

/// The pods a drain evicts: not DaemonSet pods (they would come back; the task's own is one),
/// not mirror pods, not finished ones, not the reboot pod, not those `skip` selects (a selector
/// the API server would refuse skips nothing).
pub fn evictable<'a>(pods: &'a [Pod], skip: Option<&LabelSelector>) -> Vec<&'a Pod> {
    let skip: Option<Selector> = skip.and_then(|s| Selector::try_from(s.clone()).ok());
    pods.iter()
        .filter(|p| !skip.as_ref().is_some_and(|s| s.matches(p.labels())))
        .filter(|p| !p.owner_references().iter().any(|o| o.kind == "DaemonSet"))
        .filter(|p| !p.annotations().contains_key("kubernetes.io/config.mirror"))
        .filter(|p| !p.labels().contains_key(REBOOT_FOR))
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .collect()
}

/// The node's boot id: a new one means it rebooted.
pub fn boot_id(node: &Node) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("pod: {e}"))
    }

    #[test]
    fn the_step_round_trips_through_the_annotation() {
        let at: Timestamp = "2026-12-02T13:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        for step in [
            Step::Draining { since: Some(at) },
            Step::Draining { since: None },
            Step::Rebooting { boot_id: "b-1".into(), since: Some(at) },
            Step::Done,
            Step::Failed { reason: DRAIN_TIMED_OUT.into(), message: "pods left: a/web".into() },
        ] {
            assert_eq!(Step::of(Some(&step.annotation())), step);
        }
        assert_eq!(Step::of(None), Step::Required);
        // What an operator of the previous version recorded still reads.
        assert_eq!(Step::of(Some("draining")), Step::Draining { since: None });
        assert_eq!(Step::of(Some("rebooting:b-1")), Step::Rebooting { boot_id: "b-1".into(), since: None });
        assert_eq!(
            Step::of(Some("failed:no privilege: SeShutdownPrivilege")),
            Step::Failed {
                reason: REBOOT_FAILED.into(),
                message: "no privilege: SeShutdownPrivilege".into()
            }
        );
        let deadline = Step::deadline(Some(at), std::time::Duration::from_secs(1800));
        assert_eq!(deadline, "2026-12-02T13:30:00Z".parse().ok());
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
        let names: Vec<String> = evictable(&pods, None).iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["web"]);
        let cache = pod(json!({"metadata": {"name": "cache", "labels": {"drain": "skip"}}}));
        let with_cache = [pods[0].clone(), cache];
        let skip: LabelSelector = serde_json::from_value(json!({"matchLabels": {"drain": "skip"}}))
            .unwrap_or_else(|e| panic!("selector: {e}"));
        let names: Vec<String> = evictable(&with_cache, Some(&skip)).iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["web"], "the pod the task skips stays");
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
