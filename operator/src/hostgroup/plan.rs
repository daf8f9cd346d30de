//! What each node needs for a HostGroup: given the targeted nodes, the nodes that exist, the
//! records of where the group is in place (`record`) and the setup pods so far, which pods to
//! create and delete, which records to write or remove, and where each node stands. Pure.
//!
//! The records say where the group is in place; a succeeded `provision` pod (of the revision,
//! for the node's installation) is recorded, and stays as the account of what ran. A node whose record is of an older revision waits for its wave (at most
//! `maxConcurrent` nodes provisioning at once, none more once over `maxFailures` failed) and keeps
//! the group meanwhile; a node with no record that holds for it (new, or reimaged) goes first.
//! A node with a record or a setup pod that is no longer targeted is cleaned up.

use std::collections::{BTreeMap, BTreeSet};

use hostprocess_crds::DeletionPolicy;
use hostprocess_crds::schedule::Admission;
use hostprocess_protocol::ResultLine;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::build::Setup;
use super::record::Records;
use crate::labels;
use crate::state::pod_result::{last_terminated, shorten};

/// Where a setup pod stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupResult {
    Pending,
    Done,
    /// Failed. Setup pods are not restarted by the kubelet (`restartPolicy: Never`): a failure
    /// that may pass (a host error) is tried again by a new pod `RETRY_AFTER` later; one that
    /// lasts (the executor refused and changed nothing: a missing path, an unknown member) is
    /// not, until the spec changes or the pod is deleted.
    Failed {
        reason: String,
        message: String,
    },
}

/// How long after a failure that may pass a setup pod is tried again.
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// One setup pod, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupPod {
    pub name: String,
    pub node: String,
    pub setup: Setup,
    /// The revision a `provision` pod applies.
    pub revision: Option<String>,
    /// The installation it applies it to (a short hash of the machine ID; none on pods of
    /// operators that kept no records).
    pub machine: Option<String>,
    pub result: SetupResult,
    /// When a failed pod's container ended, if its failure may pass (`None`: it lasts, or the
    /// pod did not fail).
    pub retry_from: Option<Timestamp>,
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
    let mut retry_from = None;
    let result = match (phase, terminated) {
        ("Succeeded", _) => SetupResult::Done,
        (_, Some(t)) if t.exit_code != 0 => {
            let message = t.message.clone().unwrap_or_default();
            if !ResultLine::parse_last(&message).is_some_and(|line| line.lasting_refusal()) {
                retry_from = Some(t.finished_at.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0));
            }
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
        ("Failed", _) => {
            retry_from = Some(Timestamp::UNIX_EPOCH);
            SetupResult::Failed {
                reason: "SetupPodFailed".into(),
                message: status
                    .and_then(|s| s.message.clone())
                    .unwrap_or_else(|| "the setup pod failed".into()),
            }
        }
        _ => SetupResult::Pending,
    };
    Some(SetupPod {
        name: pod.name_any(),
        node,
        setup,
        revision: pod.labels().get(labels::REVISION).cloned(),
        machine: pod.labels().get(labels::MACHINE).cloned(),
        result,
        retry_from,
    })
}

/// The inputs of a plan.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// Windows nodes matching the selector, sorted.
    pub targeted: &'a [String],
    /// Every node that exists.
    pub existing: &'a BTreeSet<String>,
    /// Nodes whose `Ready` condition is not `True` (their setup pods cannot run meanwhile).
    pub not_ready: &'a BTreeSet<String>,
    pub pods: &'a [SetupPod],
    /// Where the group is recorded in place, and every node with a record.
    pub records: &'a Records,
    /// Each node's installation: a short hash of its machine ID.
    pub machines: &'a BTreeMap<String, String>,
    pub revision: &'a str,
    /// The HostGroup is being deleted (with policy `Delete`: clean every node).
    pub deleting: bool,
    pub policy: DeletionPolicy,
    /// At most this many nodes provisioning at once (at least 1).
    pub max_concurrent: usize,
    /// No node starts once more than this many failed.
    pub max_failures: usize,
    /// Whether the schedule lets nodes start now (`Open` without one).
    pub window: Admission,
    pub now: Timestamp,
}

/// What to do, and how each node stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Setup pods to create: (node, what).
    pub create: Vec<(String, Setup)>,
    /// Setup pods to delete, by name (after the creates: a cleanup pod exists before the
    /// provision pods that show the node needs one go).
    pub delete: Vec<String>,
    /// Records to write: (node, revision) whose provision pod succeeded.
    pub record: Vec<(String, String)>,
    /// Records to remove: the node is clean, or no longer targeted under policy `Retain`.
    pub forget: Vec<String>,
    /// Targeted nodes and their provisioning for the current revision.
    pub provisioning: BTreeMap<String, SetupResult>,
    /// Targeted nodes waiting for their wave (counted as pending in `provisioning`).
    pub waiting: usize,
    /// More nodes failed than `maxFailures` allows: no further node starts.
    pub halted: bool,
    /// Outside the maintenance windows with nodes waiting: when the next one opens (`Some(None)`:
    /// none within a year).
    pub window_closed: Option<Option<Timestamp>>,
    /// When the next failed pod whose failure may pass is due to be tried again.
    pub next_retry: Option<Timestamp>,
    /// Nodes being cleaned up (no longer targeted, or the HostGroup is being deleted).
    pub cleaning: BTreeMap<String, SetupResult>,
    /// Nodes that are gone while they had setup pods or a record: nothing can be cleaned there.
    pub gone: Vec<String>,
    /// Nodes being cleaned up that are not Ready: their cleanup runs when they are back.
    pub cleaning_not_ready: Vec<String>,
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
    if !inputs.deleting {
        provision(inputs, &by_node, &mut plan);
    }
    let mut elsewhere: BTreeSet<&str> = by_node.keys().copied().collect();
    elsewhere.extend(inputs.records.recorded.iter().map(String::as_str));
    for node in elsewhere {
        if inputs.deleting || !targeted.contains(node) {
            clean(inputs, node, by_node.get(node).map(Vec::as_slice).unwrap_or_default(), &mut plan);
        }
    }
    plan
}

/// The targeted nodes: record what succeeded, start the next wave, drop what is superseded.
fn provision(inputs: &Inputs<'_>, by_node: &BTreeMap<&str, Vec<&SetupPod>>, plan: &mut Plan) {
    // This revision, for the installation the node is now.
    let current = |pod: &&&SetupPod| {
        pod.setup == Setup::Provision
            && pod.revision.as_deref() == Some(inputs.revision)
            && pod.machine.is_some()
            && pod.machine.as_ref() == inputs.machines.get(&pod.node)
    };
    // Nodes to provision, those with nothing in place first (tasks cannot run there meanwhile).
    let mut next: Vec<(bool, &str)> = Vec::new();
    let (mut running, mut failed) = (0, 0);
    for node in inputs.targeted {
        let pods = by_node.get(node.as_str()).map(Vec::as_slice).unwrap_or_default();
        let mut in_place = inputs.records.in_place.get(node).map(String::as_str);
        // A success never recorded (pods of an operator that kept no records) is recorded as the
        // revision it applied, and kept until it is.
        let unrecorded = (!inputs.records.recorded.contains(node))
            .then(|| pods.iter().find(|p| p.setup == Setup::Provision && p.result == SetupResult::Done))
            .flatten();
        let result = if in_place == Some(inputs.revision) {
            SetupResult::Done
        } else if let Some(pod) = pods.iter().find(current) {
            match &pod.result {
                SetupResult::Done => plan.record.push((node.clone(), inputs.revision.to_string())),
                SetupResult::Pending => running += 1,
                SetupResult::Failed { .. } => {
                    failed += 1;
                    retry(inputs, pod, plan);
                }
            }
            pod.result.clone()
        } else {
            if let Some(pod) = unrecorded
                && let Some(revision) = &pod.revision
            {
                plan.record.push((node.clone(), revision.clone()));
                in_place = Some(revision);
            }
            next.push((in_place.is_some(), node));
            SetupResult::Pending
        };
        plan.provisioning.insert(node.clone(), result);
        // Pods of other revisions or installations and cleanups are superseded; this revision's
        // pod stays (what ran, and the node's name should the node go).
        plan.delete.extend(
            pods.iter()
                .filter(|p| !current(p) && unrecorded.is_none_or(|u| u.name != p.name))
                .map(|p| p.name.clone()),
        );
    }
    plan.halted = failed > inputs.max_failures;
    let closed = match inputs.window {
        Admission::Open => None,
        Admission::Closed { opens } => Some(opens),
    };
    plan.window_closed = closed.filter(|_| !next.is_empty());
    let slots = if plan.halted || closed.is_some() {
        0
    } else {
        inputs.max_concurrent.max(1).saturating_sub(running)
    };
    next.sort();
    plan.waiting = next.len().saturating_sub(slots);
    plan.create.extend(next.into_iter().take(slots).map(|(_, node)| (node.to_string(), Setup::Provision)));
}

/// A failed pod whose failure may pass goes once `RETRY_AFTER` passed, so that the next plan
/// makes a new one; until then the plan says when to look again.
fn retry(inputs: &Inputs<'_>, pod: &SetupPod, plan: &mut Plan) {
    let Some(due) = pod.retry_from.and_then(|t| t.checked_add(RETRY_AFTER).ok()) else { return };
    if due <= inputs.now {
        plan.delete.push(pod.name.clone());
    } else {
        plan.next_retry = Some(plan.next_retry.map_or(due, |t| t.min(due)));
    }
}

/// A node the group leaves (or every node, when the HostGroup is deleted): clean it up under
/// policy `Delete`, forget it under `Retain`.
fn clean(inputs: &Inputs<'_>, node: &str, pods: &[&SetupPod], plan: &mut Plan) {
    let names = pods.iter().map(|p| p.name.clone());
    let recorded = inputs.records.recorded.contains(node);
    if !inputs.existing.contains(node) {
        // The node is gone: nothing to undo there, and the pods will never run.
        plan.gone.push(node.to_string());
        plan.delete.extend(names);
        return;
    }
    if inputs.policy != DeletionPolicy::Delete {
        plan.delete.extend(names);
        if recorded {
            plan.forget.push(node.to_string());
        }
        return;
    }
    let cleanup = pods.iter().find(|p| p.setup == Setup::Cleanup);
    let provisions = pods.iter().filter(|p| p.setup == Setup::Provision).map(|p| p.name.clone());
    plan.delete.extend(provisions);
    if inputs.not_ready.contains(node) && cleanup.is_none_or(|p| p.result != SetupResult::Done) {
        plan.cleaning_not_ready.push(node.to_string());
    }
    match cleanup {
        None => {
            plan.create.push((node.to_string(), Setup::Cleanup));
            plan.cleaning.insert(node.to_string(), SetupResult::Pending);
        }
        Some(pod) => {
            if matches!(pod.result, SetupResult::Failed { .. }) {
                retry(inputs, pod, plan);
            }
            if pod.result == SetupResult::Done && recorded {
                plan.forget.push(node.to_string());
            }
            // A node that left the selector and is clean needs no pod any more; while the
            // HostGroup is deleted the cleanup pods stay until it goes (they are owned).
            if pod.result == SetupResult::Done && !inputs.deleting {
                plan.delete.push(pod.name.clone());
            } else {
                plan.cleaning.insert(node.to_string(), pod.result.clone());
            }
        }
    }
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
            machine: (setup == Setup::Provision).then(|| "m".to_string()),
            result,
            retry_from: None,
        }
    }

    fn inputs<'a>(
        targeted: &'a [String],
        existing: &'a BTreeSet<String>,
        pods: &'a [SetupPod],
        deleting: bool,
    ) -> Inputs<'a> {
        Inputs {
            targeted,
            existing,
            not_ready: Box::leak(Box::default()),
            pods,
            records: Box::leak(Box::default()),
            machines: Box::leak(Box::new(existing.iter().map(|n| (n.clone(), "m".to_string())).collect())),
            revision: "r2",
            deleting,
            policy: DeletionPolicy::Delete,
            max_concurrent: 100,
            max_failures: 0,
            window: Admission::Open,
            now: Timestamp::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000),
        }
    }

    /// Records of the group: node → revision in place, and nodes whose record is of another
    /// machine (reimaged).
    fn records(in_place: &[(&str, &str)], reimaged: &[&str]) -> &'static Records {
        let in_place: BTreeMap<String, String> =
            in_place.iter().map(|(n, r)| (n.to_string(), r.to_string())).collect();
        let mut recorded: BTreeSet<String> = in_place.keys().cloned().collect();
        recorded.extend(reimaged.iter().map(|n| n.to_string()));
        Box::leak(Box::new(Records { in_place, recorded }))
    }

    #[test]
    fn a_recorded_node_needs_no_pod_and_a_success_is_recorded() {
        let targeted = nodes(&["a", "b"]);
        let existing: BTreeSet<String> = targeted.iter().cloned().collect();
        let pods = [
            pod("a", Setup::Provision, "r2", SetupResult::Done),
            pod("b", Setup::Provision, "r2", SetupResult::Done),
        ];
        let plan = plan(&Inputs {
            records: records(&[("a", "r2")], &[]),
            ..inputs(&targeted, &existing, &pods, false)
        });
        assert!(plan.create.is_empty(), "{plan:?}");
        assert_eq!(plan.record, [("b".to_string(), "r2".to_string())]);
        assert!(plan.delete.is_empty(), "the pods stay as the account of what ran");
        assert_eq!(plan.provisioned().count(), 2);
    }

    #[test]
    fn outside_the_maintenance_windows_no_node_starts() {
        let targeted = nodes(&["a", "b"]);
        let existing: BTreeSet<String> = targeted.iter().cloned().collect();
        let opens: Timestamp = "2026-12-05T21:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let closed = plan(&Inputs {
            window: Admission::Closed { opens: Some(opens) },
            ..inputs(&targeted, &existing, &[], false)
        });
        assert!(closed.create.is_empty(), "{closed:?}");
        assert_eq!((closed.waiting, closed.window_closed), (2, Some(Some(opens))));
        let open = plan(&inputs(&targeted, &existing, &[], false));
        assert_eq!((open.create.len(), open.window_closed), (2, None));
    }

    #[test]
    fn a_change_rolls_out_in_waves_with_new_and_reimaged_nodes_first_and_halts_on_failures() {
        let targeted = nodes(&["a", "b", "c", "d", "e"]);
        let existing: BTreeSet<String> = targeted.iter().cloned().collect();
        // a..c have r1 in place; d was reimaged; e is new.
        let records = records(&[("a", "r1"), ("b", "r1"), ("c", "r1")], &["d"]);
        let waves = Inputs { records, max_concurrent: 2, ..inputs(&targeted, &existing, &[], false) };
        let first = plan(&waves);
        assert_eq!(first.create, [("d".to_string(), Setup::Provision), ("e".to_string(), Setup::Provision)]);
        assert_eq!((first.waiting, first.halted), (3, false));

        let running = [
            pod("d", Setup::Provision, "r2", SetupResult::Pending),
            pod("e", Setup::Provision, "r2", SetupResult::Done),
        ];
        // A success on d's earlier installation is not d's now.
        let before_reimage = SetupPod {
            machine: Some("old".into()),
            name: "d-old".into(),
            ..pod("d", Setup::Provision, "r2", SetupResult::Done)
        };
        let reimaged = plan(&Inputs { pods: std::slice::from_ref(&before_reimage), ..waves.clone() });
        assert!(reimaged.create.contains(&("d".to_string(), Setup::Provision)), "{reimaged:?}");
        assert_eq!(reimaged.delete, ["d-old"]);
        assert!(reimaged.record.is_empty());
        let second = plan(&Inputs { pods: &running, ..waves.clone() });
        assert_eq!(second.create, [("a".to_string(), Setup::Provision)], "one slot: e is done");

        let failed = SetupResult::Failed { reason: "ProvisionFailed".into(), message: "no such path".into() };
        let failing =
            [pod("d", Setup::Provision, "r2", failed), pod("e", Setup::Provision, "r2", SetupResult::Done)];
        let halted = plan(&Inputs { pods: &failing, ..waves });
        assert!(halted.halted && halted.create.is_empty(), "more than maxFailures (0): {halted:?}");
        assert_eq!(halted.waiting, 3);
    }

    #[test]
    fn a_failure_that_may_pass_is_tried_again_after_a_while_and_one_that_lasts_is_not() {
        let targeted = nodes(&["a", "b"]);
        let existing: BTreeSet<String> = targeted.iter().cloned().collect();
        let failed = SetupResult::Failed { reason: "ProvisionFailed".into(), message: "m".into() };
        let base = inputs(&targeted, &existing, &[], false);
        let ended = |secs_ago: u64| Some(base.now - std::time::Duration::from_secs(secs_ago));
        let pods = [
            SetupPod { retry_from: ended(90), ..pod("a", Setup::Provision, "r2", failed.clone()) },
            SetupPod { retry_from: None, ..pod("b", Setup::Provision, "r2", failed.clone()) },
        ];
        let plan = plan(&Inputs { pods: &pods, max_failures: 2, ..base.clone() });
        assert_eq!(plan.delete, ["a-provision-r2"], "a's host error is due again; b's refusal lasts");
        assert!(plan.next_retry.is_none());

        let recent = [SetupPod { retry_from: ended(10), ..pod("a", Setup::Provision, "r2", failed) }];
        let waiting = super::plan(&Inputs { pods: &recent, max_failures: 2, ..base.clone() });
        assert!(waiting.delete.is_empty());
        assert_eq!(waiting.next_retry, base.now.checked_add(std::time::Duration::from_secs(50)).ok());
    }

    #[test]
    fn a_success_of_an_operator_without_records_is_recorded_as_its_revision() {
        let targeted = nodes(&["a"]);
        let existing: BTreeSet<String> = targeted.iter().cloned().collect();
        let pods = [pod("a", Setup::Provision, "r1", SetupResult::Done)];
        let plan = plan(&Inputs { max_concurrent: 1, ..inputs(&targeted, &existing, &pods, false) });
        assert_eq!(plan.record, [("a".to_string(), "r1".to_string())]);
        assert!(plan.delete.is_empty(), "kept until recorded");
        assert_eq!(plan.create, [("a".to_string(), Setup::Provision)], "then provisioned at r2");
    }

    #[test]
    fn a_recorded_node_that_leaves_the_selector_is_cleaned_even_without_pods() {
        let targeted = nodes(&[]);
        let existing: BTreeSet<String> = nodes(&["a"]).into_iter().collect();
        let records = records(&[("a", "r2")], &[]);
        let first = plan(&Inputs { records, ..inputs(&targeted, &existing, &[], false) });
        assert_eq!(first.create, [("a".to_string(), Setup::Cleanup)]);
        let cleaned = [pod("a", Setup::Cleanup, "", SetupResult::Done)];
        let second = plan(&Inputs { records, ..inputs(&targeted, &existing, &cleaned, false) });
        assert_eq!(second.forget, ["a"]);
        assert_eq!(second.delete, ["a-cleanup-"]);
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
        // b's r1 is recorded as in place there; c's failure is within maxFailures.
        let records = records(&[("b", "r1")], &[]);
        let plan = plan(&Inputs { records, max_failures: 1, ..inputs(&targeted, &existing, &pods, false) });
        assert_eq!(plan.create, [("b".to_string(), Setup::Provision)]);
        assert_eq!(plan.delete, ["b-provision-r1"]);
        assert_eq!(plan.record, [("a".to_string(), "r2".to_string())]);
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

        let a_down: BTreeSet<String> = nodes(&["a"]).into_iter().collect();
        let waiting =
            super::plan(&Inputs { not_ready: &a_down, ..inputs(&targeted, &existing, &pods, true) });
        assert_eq!(waiting.cleaning_not_ready, ["a"], "its cleanup waits for it");
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
