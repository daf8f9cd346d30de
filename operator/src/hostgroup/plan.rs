//! What each node needs for a HostGroup: given the targeted nodes, the nodes that exist and the
//! setup pods so far, which pods to create and delete, and where each node stands. Pure.
//!
//! The setup pods are the record: a `provision` pod of the current revision that succeeded means
//! the group is in place on its node; a node with any setup pod may hold something to clean up.

use std::collections::{BTreeMap, BTreeSet};

use hostprocess_crds::DeletionPolicy;
use hostprocess_protocol::ResultLine;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::build::Setup;
use crate::labels;
use crate::state::pod_result::{last_terminated, shorten};

/// Where a setup pod stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupResult {
    Pending,
    Done,
    /// Failed (the kubelet may still be retrying it with back-off).
    Failed {
        reason: String,
        message: String,
    },
}

/// One setup pod, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupPod {
    pub name: String,
    pub node: String,
    pub setup: Setup,
    /// The revision a `provision` pod applies.
    pub revision: Option<String>,
    pub result: SetupResult,
}

/// Why the executor refused, from its result line at the end of a termination message.
fn executor_error(message: &str) -> Option<String> {
    ResultLine::parse_last(message).and_then(|line| line.error().map(str::to_string))
}

/// A setup pod's state from its status; `None` for a pod that is not a bound setup pod or is
/// being deleted.
pub fn observe(pod: &Pod) -> Option<SetupPod> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let node = pod.spec.as_ref()?.node_name.clone()?;
    let setup = Setup::from_label(pod.labels().get(labels::SETUP)?)?;
    let status = pod.status.as_ref();
    let container = status.and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first());
    let terminated = container.and_then(last_terminated);
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let result = match (phase, terminated) {
        ("Succeeded", _) => SetupResult::Done,
        (_, Some(t)) if t.exit_code != 0 => {
            let message = t.message.clone().unwrap_or_default();
            let message = executor_error(&message).unwrap_or(if message.is_empty() {
                format!("the setup container exited with code {}", t.exit_code)
            } else {
                message
            });
            let reason = match setup {
                Setup::Provision => "ProvisionFailed",
                Setup::Cleanup => "CleanupFailed",
            };
            SetupResult::Failed { reason: reason.into(), message: shorten(&message) }
        }
        ("Failed", _) => SetupResult::Failed {
            reason: "SetupPodFailed".into(),
            message: status.and_then(|s| s.message.clone()).unwrap_or_else(|| "the setup pod failed".into()),
        },
        _ => SetupResult::Pending,
    };
    Some(SetupPod {
        name: pod.name_any(),
        node,
        setup,
        revision: pod.labels().get(labels::REVISION).cloned(),
        result,
    })
}

/// The inputs of a plan.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// Windows nodes matching the selector, sorted.
    pub targeted: &'a [String],
    /// Every node that exists.
    pub existing: &'a BTreeSet<String>,
    pub pods: &'a [SetupPod],
    pub revision: &'a str,
    /// The HostGroup is being deleted (with policy `Delete`: clean every node).
    pub deleting: bool,
    pub policy: DeletionPolicy,
}

/// What to do, and how each node stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Setup pods to create: (node, what).
    pub create: Vec<(String, Setup)>,
    /// Setup pods to delete, by name (after the creates: a cleanup pod exists before the
    /// provision pods that show the node needs one go).
    pub delete: Vec<String>,
    /// Targeted nodes and their provisioning for the current revision.
    pub provisioning: BTreeMap<String, SetupResult>,
    /// Nodes being cleaned up (no longer targeted, or the HostGroup is being deleted).
    pub cleaning: BTreeMap<String, SetupResult>,
    /// Nodes that are gone while they had setup pods: nothing can be cleaned there.
    pub gone: Vec<String>,
}

impl Plan {
    /// Every node that had the group is clean (or gone).
    pub fn clean(&self) -> bool {
        self.cleaning.values().all(|r| *r == SetupResult::Done)
    }

    /// Nodes where the group is in place at the current revision.
    #[cfg(test)]
    pub fn provisioned(&self) -> impl Iterator<Item = &String> {
        self.provisioning.iter().filter(|(_, r)| **r == SetupResult::Done).map(|(n, _)| n)
    }
}

pub fn plan(inputs: &Inputs<'_>) -> Plan {
    let mut by_node: BTreeMap<&str, Vec<&SetupPod>> = BTreeMap::new();
    for pod in inputs.pods {
        by_node.entry(pod.node.as_str()).or_default().push(pod);
    }
    let mut plan = Plan::default();
    let targeted: BTreeSet<&str> = inputs.targeted.iter().map(String::as_str).collect();
    let clean_up = inputs.policy == DeletionPolicy::Delete;

    if !inputs.deleting {
        for node in &targeted {
            let pods = by_node.get(node).map(Vec::as_slice).unwrap_or_default();
            let current = pods
                .iter()
                .find(|p| p.setup == Setup::Provision && p.revision.as_deref() == Some(inputs.revision));
            let result = match current {
                Some(pod) => pod.result.clone(),
                None => {
                    plan.create.push((node.to_string(), Setup::Provision));
                    SetupResult::Pending
                }
            };
            plan.provisioning.insert(node.to_string(), result);
            // Older revisions and an earlier cleanup are superseded by the current provisioning.
            plan.delete.extend(
                pods.iter()
                    .filter(|p| p.setup == Setup::Cleanup || p.revision.as_deref() != Some(inputs.revision))
                    .map(|p| p.name.clone()),
            );
        }
    }

    for (node, pods) in &by_node {
        if !inputs.deleting && targeted.contains(node) {
            continue;
        }
        let names = pods.iter().map(|p| p.name.clone());
        if !inputs.existing.contains(*node) {
            // The node is gone: nothing to undo there, and the pods will never run.
            plan.gone.push(node.to_string());
            plan.delete.extend(names);
            continue;
        }
        if !clean_up {
            plan.delete.extend(names);
            continue;
        }
        let cleanup = pods.iter().find(|p| p.setup == Setup::Cleanup);
        let provisions = pods.iter().filter(|p| p.setup == Setup::Provision).map(|p| p.name.clone());
        match cleanup {
            None => {
                plan.create.push((node.to_string(), Setup::Cleanup));
                plan.delete.extend(provisions);
                plan.cleaning.insert(node.to_string(), SetupResult::Pending);
            }
            Some(pod) => {
                plan.delete.extend(provisions);
                // A node that left the selector and is clean needs no record any more; while the
                // HostGroup is deleted the cleanup pods stay until it goes (they are owned).
                if pod.result == SetupResult::Done && !inputs.deleting {
                    plan.delete.push(pod.name.clone());
                } else {
                    plan.cleaning.insert(node.to_string(), pod.result.clone());
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn pod(node: &str, setup: Setup, revision: &str, result: SetupResult) -> SetupPod {
        SetupPod {
            name: format!("{node}-{}-{revision}", setup.label()),
            node: node.into(),
            setup,
            revision: (setup == Setup::Provision).then(|| revision.to_string()),
            result,
        }
    }

    fn inputs<'a>(
        targeted: &'a [String],
        existing: &'a BTreeSet<String>,
        pods: &'a [SetupPod],
        deleting: bool,
    ) -> Inputs<'a> {
        Inputs { targeted, existing, pods, revision: "r2", deleting, policy: DeletionPolicy::Delete }
    }

    #[test]
    fn every_targeted_node_gets_a_provision_pod_and_a_new_revision_replaces_the_old() {
        let targeted = nodes(&["a", "b", "c"]);
        let existing: BTreeSet<String> = targeted.iter().cloned().collect();
        let pods = [
            pod("a", Setup::Provision, "r2", SetupResult::Done),
            pod("b", Setup::Provision, "r1", SetupResult::Done),
            pod("c", Setup::Provision, "r2", SetupResult::Failed { reason: "x".into(), message: "y".into() }),
        ];
        let plan = plan(&inputs(&targeted, &existing, &pods, false));
        assert_eq!(plan.create, [("b".to_string(), Setup::Provision)]);
        assert_eq!(plan.delete, ["b-provision-r1"]);
        assert_eq!(plan.provisioned().collect::<Vec<_>>(), ["a"]);
        assert!(matches!(plan.provisioning["c"], SetupResult::Failed { .. }));
        assert_eq!(plan.provisioning["b"], SetupResult::Pending);
    }

    #[test]
    fn a_node_that_leaves_the_selector_is_cleaned_then_forgotten() {
        let targeted = nodes(&["a"]);
        let existing: BTreeSet<String> = nodes(&["a", "b"]).into_iter().collect();
        let provisioned = [pod("b", Setup::Provision, "r2", SetupResult::Done)];
        let first = plan(&inputs(&targeted, &existing, &provisioned, false));
        assert!(first.create.contains(&("b".to_string(), Setup::Cleanup)));
        assert!(first.delete.contains(&"b-provision-r2".to_string()));

        let cleaned = [pod("b", Setup::Cleanup, "", SetupResult::Done)];
        let second = plan(&inputs(&targeted, &existing, &cleaned, false));
        assert_eq!(second.delete, ["b-cleanup-"]);
        assert!(second.cleaning.is_empty());
    }

    #[test]
    fn deletion_cleans_every_node_that_had_the_group_and_skips_nodes_that_are_gone() {
        let targeted = nodes(&["a", "b"]);
        let existing: BTreeSet<String> = targeted.iter().cloned().collect();
        let pods = [
            pod("a", Setup::Provision, "r2", SetupResult::Done),
            pod("b", Setup::Cleanup, "", SetupResult::Done),
            pod("gone", Setup::Provision, "r2", SetupResult::Done),
        ];
        let plan = plan(&inputs(&targeted, &existing, &pods, true));
        assert_eq!(plan.create, [("a".to_string(), Setup::Cleanup)]);
        assert_eq!(plan.gone, ["gone"]);
        assert!(!plan.clean(), "a is still being cleaned");
        assert_eq!(plan.cleaning["b"], SetupResult::Done);

        let all_done = [pod("a", Setup::Cleanup, "", SetupResult::Done)];
        assert!(super::plan(&inputs(&targeted, &existing, &all_done, true)).clean());
    }

    #[test]
    fn retain_removes_only_the_pods() {
        let targeted = nodes(&[]);
        let existing: BTreeSet<String> = nodes(&["a"]).into_iter().collect();
        let pods = [pod("a", Setup::Provision, "r2", SetupResult::Done)];
        let plan =
            plan(&Inputs { policy: DeletionPolicy::Retain, ..inputs(&targeted, &existing, &pods, false) });
        assert!(plan.create.is_empty());
        assert_eq!(plan.delete, ["a-provision-r2"]);
    }
}
