//! The simulated DaemonSet controller's decision: given a DaemonSet, the nodes and its pods,
//! which pods to create and delete, and the status to report. It follows the real controller
//! for what the operator uses: node selector and required node affinity, tolerations against
//! NoSchedule/NoExecute taints (with the tolerations the real controller adds itself),
//! `controller-revision-hash`, `OnDelete` and `RollingUpdate` (maxUnavailable), status counts.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, Pod, PodTemplateSpec, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The label that carries the hash of the pod template a pod was made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// What the controller should do now.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes that need a pod of the current revision.
    pub create_on: Vec<String>,
    /// Pods to delete (on nodes that no longer qualify, or replaced by a rolling update).
    pub delete: Vec<String>,
    pub status: DaemonSetStatus,
}

/// The revision hash of a pod template: stable across runs for the same template.
pub fn revision_hash(template: &PodTemplateSpec) -> String {
    // FNV-1a over the canonical JSON: cheap, stable, and enough to tell templates apart.
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

/// The tolerations the real DaemonSet controller adds to every daemon pod.
fn implicit_tolerations() -> Vec<Toleration> {
    [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ]
    .into_iter()
    .map(|(key, effect)| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    })
    .collect()
}

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = toleration.key.as_deref().is_none_or(|k| k.is_empty() || k == taint.key);
    let value_ok = match toleration.operator.as_deref() {
        Some("Exists") => true,
        _ => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    };
    effect_ok
        && key_ok
        && value_ok
        && !(toleration.key.as_deref().unwrap_or("").is_empty()
            && toleration.operator.as_deref() != Some("Exists"))
}

fn requirement_matches(req: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.clone().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

/// Whether a daemon pod made from `template` belongs on `node`.
pub fn node_qualifies(template: &PodTemplateSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.clone().unwrap_or_default();
    let Some(spec) = &template.spec else { return false };
    if let Some(selector) = &spec.node_selector
        && selector.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    if let Some(required) = required {
        // Terms are ORed; the requirements of one term are ANDed.
        let fields = BTreeMap::from([("metadata.name".to_string(), name)]);
        let any = required.node_selector_terms.iter().any(|term| {
            term.match_expressions.iter().flatten().all(|r| requirement_matches(r, &labels))
                && term.match_fields.iter().flatten().all(|r| requirement_matches(r, &fields))
        });
        if !any {
            return false;
        }
    }
    let mut tolerations = spec.tolerations.clone().unwrap_or_default();
    tolerations.extend(implicit_tolerations());
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| tolerations.iter().any(|tol| tolerates(tol, taint)))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn max_unavailable(ds: &DaemonSet, desired: usize) -> usize {
    let value = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    let n = match value {
        IntOrString::Int(n) => usize::try_from(n).unwrap_or(0),
        IntOrString::String(s) => {
            let percent: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            (desired * percent).div_ceil(100)
        }
    };
    n.max(1)
}

/// Decides what to do for `ds` given all nodes and the pods it owns.
pub fn plan<N: Borrow<Node>, P: Borrow<Pod>>(ds: &DaemonSet, nodes: &[N], pods: &[P]) -> Plan {
    let Some(spec) = &ds.spec else { return Plan::default() };
    let revision = revision_hash(&spec.template);
    let on_delete = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()) == Some("OnDelete");
    let qualifying: BTreeSet<String> = nodes
        .iter()
        .map(Borrow::borrow)
        .filter(|n| node_qualifies(&spec.template, n))
        .filter_map(|n| n.metadata.name.clone())
        .collect();

    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in pods.iter().map(Borrow::borrow).filter(|p: &&Pod| p.metadata.deletion_timestamp.is_none()) {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        by_node.entry(node).or_default().push(pod);
    }
    let mut plan = Plan::default();
    let (mut scheduled, mut misscheduled, mut ready, mut updated) = (0i32, 0i32, 0i32, 0i32);
    let mut outdated = vec![];
    let mut unavailable = 0usize;
    for node in &qualifying {
        match by_node.get(node).map(Vec::as_slice) {
            None | Some([]) => {
                plan.create_on.push(node.clone());
                unavailable += 1;
            }
            Some(pods) => {
                scheduled += 1;
                // More than one daemon pod on a node: keep the first, delete the rest.
                plan.delete.extend(pods.iter().skip(1).filter_map(|p| p.metadata.name.clone()));
                let pod = pods[0];
                let current =
                    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)) == Some(&revision);
                if pod_ready(pod) {
                    ready += 1;
                } else {
                    unavailable += 1;
                }
                if current {
                    updated += 1;
                } else {
                    outdated.push((pod_ready(pod), pod.metadata.name.clone().unwrap_or_default()));
                }
            }
        }
    }
    for (node, pods) in &by_node {
        if !qualifying.contains(node) {
            misscheduled += 1;
            plan.delete.extend(pods.iter().filter_map(|p| p.metadata.name.clone()));
        }
    }
    if !on_delete {
        // Replace not-ready outdated pods first, then ready ones within maxUnavailable.
        outdated.sort();
        let budget = max_unavailable(ds, qualifying.len()).saturating_sub(unavailable);
        let mut taken = 0;
        for (is_ready, name) in outdated {
            if !is_ready {
                plan.delete.push(name);
            } else if taken < budget {
                plan.delete.push(name);
                taken += 1;
            }
        }
    }
    let desired = i32::try_from(qualifying.len()).unwrap_or(i32::MAX);
    plan.status = DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: scheduled,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: Some(ready),
        number_unavailable: Some(desired - ready),
        updated_number_scheduled: Some(updated),
        observed_generation: ds.metadata.generation,
        ..DaemonSetStatus::default()
    };
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        )
        .expect("node")
    }

    fn windows(name: &str) -> Node {
        node(
            name,
            json!({"kubernetes.io/os": "windows", "pool": "a"}),
            json!([{"key": "os", "value": "windows", "effect": "NoSchedule"}]),
        )
    }

    fn ds(template_spec: serde_json::Value, strategy: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "ds", "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "updateStrategy": strategy,
                "template": {"metadata": {"labels": {"app": "x"}}, "spec": template_spec}},
        }))
        .expect("ds")
    }

    fn windows_ds(strategy: serde_json::Value) -> DaemonSet {
        ds(
            json!({"nodeSelector": {"kubernetes.io/os": "windows"},
                "tolerations": [{"key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"}],
                "containers": [{"name": "c", "image": "i"}]}),
            strategy,
        )
    }

    fn pod(name: &str, node: &str, revision: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {REVISION_LABEL: revision}},
            "spec": {"nodeName": node, "containers": []},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .expect("pod")
    }

    #[test]
    fn selector_and_taints_decide_where_pods_go() {
        let linux = node("linux-1", json!({"kubernetes.io/os": "linux"}), json!([]));
        let tainted = node(
            "win-gpu",
            json!({"kubernetes.io/os": "windows"}),
            json!([{"key": "gpu", "effect": "NoSchedule"}]),
        );
        let cordoned = node(
            "win-cordoned",
            json!({"kubernetes.io/os": "windows"}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        );
        let nodes = [windows("win-1"), windows("win-2"), linux, tainted, cordoned];
        let plan = plan(&windows_ds(json!({"type": "OnDelete"})), &nodes, &[] as &[Pod]);
        assert_eq!(
            plan.create_on,
            ["win-1", "win-2", "win-cordoned"],
            "daemon pods tolerate cordoned nodes, as the real controller makes them"
        );
        assert_eq!(plan.status.desired_number_scheduled, 3);
        assert_eq!(plan.status.observed_generation, Some(3));
    }

    #[test]
    fn required_node_affinity_is_honoured() {
        let template = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["win-9"]}]}]}}},
            "tolerations": [{"operator": "Exists"}], "containers": []});
        let b = node("win-b", json!({"pool": "b"}), json!([]));
        let nine = node("win-9", json!({"pool": "b"}), json!([]));
        let plan =
            plan(&ds(template, json!({"type": "OnDelete"})), &[windows("win-1"), b, nine], &[] as &[Pod]);
        assert_eq!(plan.create_on, ["win-1", "win-9"]);
    }

    #[test]
    fn pods_on_nodes_that_no_longer_qualify_are_deleted() {
        let ds = windows_ds(json!({"type": "OnDelete"}));
        let rev = revision_hash(&ds.spec.as_ref().expect("spec").template);
        let pods = [
            pod("p1", "win-1", &rev, true),
            pod("p-gone", "win-gone", &rev, true),
            pod("p1b", "win-1", &rev, true),
        ];
        let plan = plan(&ds, &[windows("win-1")], &pods);
        assert_eq!(plan.delete, ["p1b", "p-gone"]);
        assert!(plan.create_on.is_empty());
        assert_eq!(plan.status.number_misscheduled, 1);
    }

    #[test]
    fn on_delete_keeps_outdated_pods_until_someone_deletes_them() {
        let ds = windows_ds(json!({"type": "OnDelete"}));
        let pods = [pod("p1", "win-1", "old", true), pod("p2", "win-2", "old", true)];
        let plan = plan(&ds, &[windows("win-1"), windows("win-2")], &pods);
        assert!(plan.delete.is_empty() && plan.create_on.is_empty());
        assert_eq!(plan.status.updated_number_scheduled, Some(0));
        assert_eq!(plan.status.number_ready, 2);
    }

    #[test]
    fn rolling_update_replaces_within_max_unavailable() {
        let ds = windows_ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}));
        let nodes: Vec<Node> = (1..=5).map(|i| windows(&format!("win-{i}"))).collect();
        let pods: Vec<Pod> =
            (1..=5).map(|i| pod(&format!("p{i}"), &format!("win-{i}"), "old", true)).collect();
        assert_eq!(plan(&ds, &nodes, &pods).delete, ["p1", "p2"]);
        // One is already unavailable (not ready): only one more may go, the not-ready one first.
        let mut pods = pods;
        pods[3] = pod("p4", "win-4", "old", false);
        assert_eq!(plan(&ds, &nodes, &pods).delete, ["p4", "p1"]);
        // Percentages round up.
        let ds = windows_ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "30%"}}));
        let pods: Vec<Pod> =
            (1..=5).map(|i| pod(&format!("p{i}"), &format!("win-{i}"), "old", true)).collect();
        assert_eq!(plan(&ds, &nodes, &pods).delete.len(), 2);
    }

    #[test]
    fn the_revision_hash_follows_the_template() {
        let a = windows_ds(json!({"type": "OnDelete"}));
        let b = ds(json!({"containers": [{"name": "c", "image": "other"}]}), json!({"type": "OnDelete"}));
        let template = |d: &DaemonSet| d.spec.as_ref().expect("spec").template.clone();
        assert_eq!(revision_hash(&template(&a)), revision_hash(&template(&a)));
        assert_ne!(revision_hash(&template(&a)), revision_hash(&template(&b)));
    }
}
