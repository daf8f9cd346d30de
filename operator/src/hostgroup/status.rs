//! The status of a HostGroup: node counts, the bounded failure list and kstatus conditions, from
//! the plan. Pure: `now` is an input.

use hostprocess_crds::hostgroup::{GroupNodeCounts, GroupNodeFailure, HostGroupStatus};
use k8s_openapi::jiff::Timestamp;

use super::plan::{Plan, SetupResult};
use crate::conditions::{self, Blocked, READY, RECONCILING, STALLED, WAITING_FOR_WINDOW, Wanted};
use crate::names::name_list;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use hostprocess_crds::LISTED_FAILURES;

/// Nodes named in a condition message, at most.
const NAMED_IN_CONDITIONS: usize = 5;

fn failures<'a>(results: impl Iterator<Item = (&'a String, &'a SetupResult)>) -> Vec<GroupNodeFailure> {
    results
        .filter_map(|(node, r)| match r {
            SetupResult::Failed { reason, message } => Some(GroupNodeFailure {
                node: node.clone(),
                reason: reason.clone(),
                message: message.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The status to write. `deleting`: the HostGroup is being deleted and its nodes cleaned.
pub fn status(
    previous: Option<&HostGroupStatus>,
    generation: Option<i64>,
    plan: Option<&Plan>,
    blocked: Option<&Blocked>,
    deleting: bool,
    now: Timestamp,
) -> HostGroupStatus {
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or_default();
    let mut status = HostGroupStatus { observed_generation: generation, ..HostGroupStatus::default() };
    let wanted = match (blocked, plan) {
        (Some(_), _) | (None, None) => {
            let (reason, message) =
                blocked.map_or(("Unknown", String::new()), |b| (b.reason, b.message.clone()));
            vec![
                Wanted::new(READY, false, reason, message.clone()),
                Wanted::new(RECONCILING, false, reason, ""),
                Wanted::new(STALLED, true, reason, message),
            ]
        }
        (None, Some(plan)) if deleting => {
            let mut failed = failures(plan.cleaning.iter());
            let waiting: Vec<&String> =
                plan.cleaning.iter().filter(|(_, r)| **r != SetupResult::Done).map(|(n, _)| n).collect();
            let mut message = format!(
                "removing the group: {} of {} nodes clean, waiting for {}: {}",
                plan.cleaning.len() - waiting.len(),
                plan.cleaning.len(),
                waiting.len(),
                name_list(&waiting, NAMED_IN_CONDITIONS)
            );
            if !plan.cleaning_not_ready.is_empty() {
                message.push_str(&format!(
                    "; not Ready, cleaned when back: {}",
                    name_list(&plan.cleaning_not_ready, NAMED_IN_CONDITIONS)
                ));
            }
            failed.truncate(LISTED_FAILURES);
            status.failures = failed;
            vec![
                Wanted::new(READY, false, "Deleting", message.clone()),
                Wanted::new(RECONCILING, true, "Deleting", message),
                Wanted::new(STALLED, false, "Deleting", ""),
            ]
        }
        (None, Some(plan)) => {
            let count = |f: fn(&SetupResult) -> bool| {
                u32::try_from(plan.provisioning.values().filter(|r| f(r)).count()).unwrap_or(u32::MAX)
            };
            let counts = GroupNodeCounts {
                targeted: u32::try_from(plan.provisioning.len()).unwrap_or(u32::MAX),
                provisioned: count(|r| *r == SetupResult::Done),
                pending: count(|r| *r == SetupResult::Pending),
                failed: count(|r| matches!(r, SetupResult::Failed { .. })),
            };
            let mut failed = failures(plan.provisioning.iter());
            let failing: Vec<&str> = failed.iter().map(|f| f.node.as_str()).collect();
            let failing = name_list(&failing, NAMED_IN_CONDITIONS);
            failed.extend(failures(plan.cleaning.iter()));
            failed.truncate(LISTED_FAILURES);
            status.failures = failed;
            let waiting = if plan.waiting > 0 {
                format!(" ({} waiting for their wave)", plan.waiting)
            } else {
                String::new()
            };
            let progress = format!(
                "provisioned on {} of {} nodes, {} pending{waiting}, {} failed",
                counts.provisioned, counts.targeted, counts.pending, counts.failed
            );
            // Nothing runs any more: every node is done or failed, or the failures halted the rest.
            let settled = counts.pending == 0 || (plan.halted && counts.pending as usize == plan.waiting);
            let wanted = if counts.failed > 0 && settled {
                let halted = if plan.halted { ", more than maxFailures: the other nodes wait" } else { "" };
                let message = format!(
                    "{progress}{halted}: {failing} (see status.failures; a failure that may pass is tried \
                     again every minute, one that lasts — a missing path, an unknown member — waits: fix it \
                     on the node and delete the failed setup pod, or change the spec)"
                );
                vec![
                    Wanted::new(READY, false, "SetupFailed", message.clone()),
                    Wanted::new(RECONCILING, false, "SetupFailed", ""),
                    Wanted::new(STALLED, true, "SetupFailed", message),
                ]
            } else if let Some(opens) = plan.window_closed.filter(|_| !plan.halted) {
                status.next_window = opens.map(Time);
                let message = format!("{progress}; {}", crate::conditions::window_message(opens));
                vec![
                    Wanted::new(READY, false, WAITING_FOR_WINDOW, message),
                    Wanted::new(RECONCILING, false, WAITING_FOR_WINDOW, ""),
                    Wanted::new(STALLED, false, WAITING_FOR_WINDOW, ""),
                ]
            } else if counts.pending > 0 {
                vec![
                    Wanted::new(READY, false, "Provisioning", progress.clone()),
                    Wanted::new(RECONCILING, true, "Provisioning", progress),
                    Wanted::new(STALLED, false, "Provisioning", ""),
                ]
            } else {
                let message = if counts.targeted == 0 {
                    "no Windows node matches the HostGroup's node selector".to_string()
                } else {
                    progress
                };
                vec![
                    Wanted::new(READY, true, "Provisioned", message),
                    Wanted::new(RECONCILING, false, "Provisioned", ""),
                    Wanted::new(STALLED, false, "Provisioned", ""),
                ]
            };
            status.nodes = counts;
            wanted
        }
    };
    status.conditions = conditions::merge(previous_conditions, &wanted, generation, now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap_or_default()
    }

    fn condition<'a>(status: &'a HostGroupStatus, kind: &str) -> (&'a str, &'a str) {
        let c = status.conditions.iter().find(|c| c.type_ == kind).unwrap_or_else(|| panic!("{kind}"));
        (c.status.as_str(), c.reason.as_str())
    }

    fn plan(results: &[(&str, SetupResult)]) -> Plan {
        Plan {
            provisioning: results.iter().map(|(n, r)| (n.to_string(), r.clone())).collect(),
            ..Plan::default()
        }
    }

    #[test]
    fn counts_and_conditions_follow_the_nodes() {
        let failed = SetupResult::Failed { reason: "ProvisionFailed".into(), message: "no such path".into() };
        let progressing =
            plan(&[("a", SetupResult::Done), ("b", SetupResult::Pending), ("c", failed.clone())]);
        let s = status(None, Some(3), Some(&progressing), None, false, now());
        assert_eq!((s.nodes.targeted, s.nodes.provisioned, s.nodes.pending, s.nodes.failed), (3, 1, 1, 1));
        assert_eq!(condition(&s, RECONCILING), ("True", "Provisioning"));
        assert_eq!(s.failures[0].node, "c");
        assert!(s.conditions.iter().all(|c| c.observed_generation == Some(3)));

        let stalled = plan(&[("a", SetupResult::Done), ("c", failed)]);
        let s = status(Some(&s), Some(3), Some(&stalled), None, false, now());
        assert_eq!(condition(&s, STALLED), ("True", "SetupFailed"));
        assert_eq!(condition(&s, READY), ("False", "SetupFailed"));

        let done = plan(&[("a", SetupResult::Done), ("c", SetupResult::Done)]);
        let s = status(Some(&s), Some(3), Some(&done), None, false, now());
        assert_eq!(condition(&s, READY), ("True", "Provisioned"));
        assert!(s.failures.is_empty());
    }

    #[test]
    fn a_rollout_outside_its_window_waits_and_says_when_it_opens() {
        let opens: Timestamp = "2026-12-05T21:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let waiting = Plan {
            window_closed: Some(Some(opens)),
            ..plan(&[("a", SetupResult::Done), ("b", SetupResult::Pending)])
        };
        let s = status(None, Some(2), Some(&waiting), None, false, now());
        assert_eq!(condition(&s, READY), ("False", WAITING_FOR_WINDOW));
        assert_eq!(condition(&s, RECONCILING), ("False", WAITING_FOR_WINDOW), "a wait, not progress");
        assert_eq!(condition(&s, STALLED), ("False", WAITING_FOR_WINDOW));
        assert_eq!(s.next_window.map(|t| t.0), Some(opens));
    }

    #[test]
    fn deletion_reports_the_nodes_still_being_cleaned() {
        let mut p = Plan::default();
        p.cleaning.insert("a".into(), SetupResult::Done);
        p.cleaning.insert("b".into(), SetupResult::Pending);
        let s = status(None, Some(1), Some(&p), None, true, now());
        assert_eq!(condition(&s, RECONCILING), ("True", "Deleting"));
        let message = &s.conditions.iter().find(|c| c.type_ == READY).map(|c| c.message.clone());
        assert_eq!(message.as_deref(), Some("removing the group: 1 of 2 nodes clean, waiting for 1: b"));
        p.cleaning_not_ready.push("b".into());
        let s = status(None, Some(1), Some(&p), None, true, now());
        let message = s.conditions.iter().find(|c| c.type_ == READY).map(|c| c.message.clone());
        assert_eq!(
            message.as_deref(),
            Some("removing the group: 1 of 2 nodes clean, waiting for 1: b; not Ready, cleaned when back: b")
        );
    }
}
