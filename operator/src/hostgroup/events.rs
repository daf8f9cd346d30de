//! The Events a HostGroup reconcile tells: setups or cleanups started, nodes gone, each node's
//! failure once. Pure.

use hostprocess_crds::HostGroup;

use super::plan::{Plan, SetupPod, SetupResult};
use crate::events::Note;
use crate::names::name_list;

/// Nodes named in an Event, at most.
const NAMED_IN_EVENTS: usize = 10;

/// What changed since the pods last said something; `before`: the setup pods the plan read.
pub fn notes(group: &HostGroup, plan: &Plan, before: &[SetupPod], deleting: bool) -> Vec<Note> {
    let mut notes = Vec::new();
    let starting: Vec<&String> = plan.create.iter().map(|(n, _)| n).collect();
    if !starting.is_empty() {
        let (reason, what) = if deleting {
            ("CleanupStarted", "removing the group from")
        } else {
            ("SetupStarted", "setting up")
        };
        let message = format!("{what} {} nodes: {}", starting.len(), name_list(&starting, NAMED_IN_EVENTS));
        notes.push(Note::normal(reason, message));
    }
    if !plan.gone.is_empty() {
        let message =
            format!("nodes gone, nothing to clean there: {}", name_list(&plan.gone, NAMED_IN_EVENTS));
        notes.push(Note::normal("NodesGone", message));
    }
    let known_failed =
        |node: &str| group.status.as_ref().is_some_and(|s| s.failures.iter().any(|f| f.node == node));
    for (node, result) in plan.provisioning.iter().chain(plan.cleaning.iter()) {
        if let SetupResult::Failed { reason, message } = result
            && !known_failed(node)
            && before.iter().any(|p| p.node == *node)
        {
            notes.push(Note::warning(reason, format!("{node}: {message}")));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostgroup::build::Setup;

    #[test]
    fn a_start_and_a_failure_are_told_with_their_nodes() {
        let spec = serde_json::from_value(serde_json::json!({"groupName": "LogReaders"}));
        let group = HostGroup::new("log-readers", spec.unwrap_or_else(|e| panic!("spec: {e}")));
        let failed = SetupResult::Failed { reason: "ProvisionFailed".into(), message: "no such path".into() };
        let plan = Plan {
            create: vec![("win-2".into(), Setup::Provision)],
            provisioning: [("win-1".to_string(), failed), ("win-2".to_string(), SetupResult::Pending)].into(),
            ..Plan::default()
        };
        let before = [SetupPod {
            name: "p".into(),
            node: "win-1".into(),
            setup: Setup::Provision,
            revision: None,
            machine: None,
            result: SetupResult::Pending,
            retry_from: None,
        }];
        let notes = notes(&group, &plan, &before, false);
        let told: Vec<(&str, &str)> = notes.iter().map(|n| (n.reason.as_str(), n.message.as_str())).collect();
        assert_eq!(
            told,
            [("SetupStarted", "setting up 1 nodes: win-2"), ("ProvisionFailed", "win-1: no such path")]
        );
        assert!(super::notes(&group, &plan, &[], true).iter().any(|n| n.reason == "CleanupStarted"));
    }
}
