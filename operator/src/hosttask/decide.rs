//! Decide: from what `resolve` read, which nodes run now (the rollout decision), which admission
//! labels change, and which Events tell the story. Pure: unit-tested without a cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use hostprocess_crds::units;
use hostprocess_crds::units::CountOrPercent;
use hostprocess_crds::{FailureBudget, HostTask, HostTaskStatus, Mode};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;

use super::admission::{self, Changes};
use super::resolve::{Account, Resolved};
use super::rollout::{self, Decision, Limits, Phase};
use crate::conditions::{READY, STALLED, ready_reason};
use crate::events::Note;
use crate::names::name_list;

/// Nodes named in a `WaveStarted` Event, at most.
const NAMED_IN_EVENTS: usize = 10;

/// What this reconcile does.
#[derive(Debug)]
pub struct Decided {
    pub decision: Decision,
    pub limits: Limits,
    /// The task runs only on nodes labelled for it (`Once`, or as a HostGroup).
    pub pinned: bool,
    pub label_changes: Changes,
    /// Earlier revisions still running on nodes being relabelled for this one: the DaemonSet
    /// keeps matching them until the relabel is written.
    pub transitional: Vec<String>,
}

impl Decided {
    /// Whether a DaemonSet should exist: a pinned task with no node admitted must have none,
    /// so labels left from an earlier rollout of this revision admit nothing.
    pub fn runs_anywhere(&self) -> bool {
        !self.pinned || !self.decision.admitted.is_empty()
    }

    /// The nodes the task has in flight after this decision: admitted and not finished (a
    /// reboot under way is not), the ones starting now included.
    pub fn in_flight(
        &self,
        results: &std::collections::BTreeMap<String, rollout::NodeResult>,
    ) -> Vec<String> {
        use rollout::NodeResult;
        let finished = |node: &String| {
            matches!(
                results.get(node),
                Some(NodeResult::Succeeded { .. } | NodeResult::Failed(_) | NodeResult::RetryPending)
            )
        };
        let mut nodes: Vec<String> =
            self.decision.admitted.iter().filter(|n| !finished(n)).cloned().collect();
        nodes.extend(self.decision.retrying.iter().cloned());
        nodes
    }
}

/// `busy`: nodes another task of the task's concurrency group holds (none without a group).
pub fn decide(task: &HostTask, resolved: &Resolved, account: &Account, busy: &BTreeSet<String>) -> Decided {
    let pinned = task.spec.mode == Mode::Once || account.eligible.is_some();
    let admitted = admission::admitted(&resolved.labelled, &resolved.revision, resolved.runs_revision);
    let mut limits = limits(task, resolved.targeted.len());
    // Validation refused a schedule that does not compile: here it does.
    if let Some(Ok(schedule)) = task.spec.rollout.schedule.as_ref().map(|s| s.compile()) {
        limits.window = schedule.at(resolved.now);
    }
    let results = &resolved.pods.results;
    // Nodes another task of the group holds do not start; the others go on.
    let free: Option<BTreeSet<String>> = (!busy.is_empty()).then(|| {
        let targeted = resolved.targeted.iter().filter(|n| !busy.contains(*n));
        targeted.filter(|n| account.eligible.as_ref().is_none_or(|e| e.contains(*n))).cloned().collect()
    });
    let eligible = free.as_ref().or(account.eligible.as_ref());
    // The canary's completion, as first seen for this revision: the soak counts from it.
    let same_revision =
        resolved.previous.as_ref().and_then(|p| p.revision.as_deref()) == Some(resolved.revision.as_str());
    let completed = resolved
        .previous
        .as_ref()
        .filter(|_| same_revision)
        .and_then(|p| p.canary_completion_time.as_ref())
        .map(|t| t.0);
    let soak =
        task.spec.rollout.canary.as_ref().and_then(|c| c.soak.as_deref()).and_then(units::parse_duration);
    let soak_until = |completed: Timestamp| {
        soak.and_then(|soak| k8s_openapi::jiff::SignedDuration::try_from(soak).ok())
            .and_then(|soak| completed.checked_add(soak).ok())
    };
    limits.canary = task.spec.rollout.canary.as_ref().map(|canary| {
        let nodes =
            CountOrPercent::parse(&canary.nodes).map_or(1, |n| n.of(len(resolved.targeted.len()))).max(1);
        let promoted = canary.promoted.as_deref() == Some(resolved.revision.as_str());
        let soaked = completed.and_then(soak_until).is_some_and(|until| until <= resolved.now);
        rollout::CanaryGate { nodes, released: promoted || soaked }
    });
    let mut decision = match task.spec.mode {
        Mode::Once => {
            let zones = rollout::Zones {
                of: resolved.zones.clone(),
                cap: task.spec.rollout.zones.max_concurrent_per_zone.as_ref().and_then(CountOrPercent::parse),
            };
            rollout::plan_once_where(&resolved.targeted, &admitted, results, limits, eligible, &zones)
        }
        Mode::Continuous => rollout::plan_continuous(&resolved.targeted, results, limits.paused, eligible),
    };
    // Held back by the group, not by the HostGroup: told apart.
    let (held_by_group, waiting): (Vec<String>, Vec<String>) =
        std::mem::take(&mut decision.waiting).into_iter().partition(|n| busy.contains(n));
    decision.waiting = waiting;
    decision.held_by_group = held_by_group;
    if decision.canary_complete {
        let completed = completed.unwrap_or(resolved.now);
        decision.canary_completion_time = Some(completed);
        if let Phase::CanaryHold { until } = &mut decision.phase {
            *until = soak_until(completed);
        }
    }
    let desired = pinned.then_some(decision.admitted.as_slice());
    let mut label_changes = admission::changes(&resolved.labelled, desired, &resolved.revision);
    // Nodes that still run an earlier revision's payload keep matching the DaemonSet until their
    // label carries this revision (else it would delete their pod mid-run): those revisions stay
    // in its node affinity meanwhile, and other nodes still labelled with them are released.
    let mut transitional: Vec<String> = resolved
        .pods
        .results
        .iter()
        .filter(|(_, r)| matches!(r, rollout::NodeResult::Finishing))
        .filter_map(|(node, _)| resolved.labelled.get(node))
        .filter(|value| **value != resolved.revision)
        .cloned()
        .collect();
    transitional.sort();
    transitional.dedup();
    if pinned {
        let admitted: std::collections::BTreeSet<&String> = decision.admitted.iter().collect();
        label_changes.release.extend(
            resolved
                .labelled
                .iter()
                .filter(|(node, value)| transitional.contains(value) && !admitted.contains(node))
                .map(|(node, _)| node.clone()),
        );
    }
    Decided { decision, limits, pinned, label_changes, transitional }
}

fn len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The task's rollout limits resolved against the number of targeted nodes.
fn limits(task: &HostTask, targeted: usize) -> Limits {
    let total = u32::try_from(targeted).unwrap_or(u32::MAX);
    let rollout = &task.spec.rollout;
    let of = |value, fallback| CountOrPercent::parse(value).map_or(fallback, |c| c.of(total));
    Limits {
        strict: rollout.failure_budget == FailureBudget::Strict,
        paused: rollout.paused,
        ..Limits::new(of(&rollout.max_concurrent, 1).max(1), of(&rollout.max_failures, 0))
    }
}

/// The Events this decision tells, given the status decided before it: the wave that starts,
/// the halt and the completion once each, each node's failure once per revision.
pub fn events(previous: Option<&HostTaskStatus>, revision: &str, decision: &Decision) -> Vec<Note> {
    let mut notes = Vec::new();
    if !decision.starting.is_empty() {
        let (n, nodes) = (decision.starting.len(), name_list(&decision.starting, NAMED_IN_EVENTS));
        let note = Note::normal("WaveStarted", format!("starting on {n} nodes: {nodes}"));
        notes.push(note.about(&decision.starting[0]));
    }
    let was = |type_: &str| {
        previous.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_ && c.status == "True"))
    };
    let same_revision = previous.is_some_and(|s| s.revision.as_deref() == Some(revision));
    let counts = &decision.counts;
    let canary_told = same_revision && previous.is_some_and(|s| s.canary_completion_time.is_some());
    if decision.canary_complete && !canary_told {
        let message = match decision.phase {
            Phase::CanaryHold { until: Some(until) } => {
                format!("every canary node succeeded; the other nodes start at {until}")
            }
            Phase::CanaryHold { until: None } => format!(
                "every canary node succeeded; set spec.rollout.canary.promoted to {revision} to start the other nodes"
            ),
            _ => "every canary node succeeded".to_string(),
        };
        notes.push(Note::normal("CanarySucceeded", message));
    }
    if let Phase::WaitingForWindow { opens } = decision.phase {
        let waited =
            previous.and_then(|s| ready_reason(&s.conditions)) == Some(super::status::WAITING_FOR_WINDOW);
        if !(same_revision && waited) {
            notes.push(Note::normal(super::status::WAITING_FOR_WINDOW, super::status::window_message(opens)));
        }
    }
    if decision.phase == Phase::Halted && !was(STALLED) {
        let message = format!("{} nodes failed, more than maxFailures allows", counts.failed);
        notes.push(Note::warning("RolloutHalted", message));
    }
    let was_idle =
        previous.and_then(|s| ready_reason(&s.conditions)) == Some(super::status::NO_TARGETED_NODES);
    if decision.phase == Phase::Complete && counts.targeted == 0 && !(same_revision && was_idle) {
        notes.push(Note::warning(super::status::NO_TARGETED_NODES, super::status::NO_TARGETED_NODES_MESSAGE));
    }
    if decision.phase == Phase::Complete && !(same_revision && was(READY)) && counts.targeted > 0 {
        let message =
            format!("revision {revision}: {} nodes succeeded, {} failed", counts.succeeded, counts.failed);
        notes.push(Note::normal("RolloutComplete", message));
    }
    let known_failure =
        |node: &str| same_revision && previous.is_some_and(|s| s.failures.iter().any(|p| p.node == node));
    for failure in decision.failures.iter().filter(|f| !known_failure(&f.node)) {
        // The code once: the executor's account often names it already.
        let message = match failure.exit_code {
            Some(code) if !failure.message.contains(&format!("code {code}")) => {
                format!("{}: {} (exit code {code})", failure.node, failure.message)
            }
            _ => format!("{}: {}", failure.node, failure.message),
        };
        notes.push(Note::warning("NodeFailed", message).about(&failure.node));
    }
    notes
}

/// When to look again: node status (boot id, Ready) is not watched, so a reboot is polled.
/// A rollout waiting for its window looks again when the window opens (at most an hour ahead:
/// a clock that drifts or a time zone that changes its rules is caught up with).
pub fn requeue(decided: &Decided, rebooting: bool, now: k8s_openapi::jiff::Timestamp) -> Action {
    Action::requeue(match decided.decision.phase {
        _ if rebooting => Duration::from_secs(2),
        Phase::WaitingForWindow { opens: Some(at) } | Phase::CanaryHold { until: Some(at) } => {
            let until = Duration::try_from(at.duration_since(now)).unwrap_or_default();
            (until + Duration::from_secs(1)).min(Duration::from_secs(3600))
        }
        Phase::Progressing => Duration::from_secs(30),
        _ => Duration::from_secs(300),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostprocess_crds::hosttask::NodeFailure;
    use hostprocess_crds::schedule::Admission;
    use rollout::{NodeResult, plan_once};
    use std::collections::BTreeMap;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("win-{i:03}")).collect()
    }

    fn failed(node: &str) -> NodeResult {
        let failure = NodeFailure {
            node: node.into(),
            exit_code: Some(1),
            reason: "ExitCode".into(),
            message: "exited with code 1".into(),
            attempts: 1,
        };
        NodeResult::Failed(Box::new(failure))
    }

    fn reasons(notes: &[Note]) -> Vec<&str> {
        notes.iter().map(|n| n.reason.as_str()).collect()
    }

    #[test]
    fn a_wave_a_failure_and_the_halt_are_each_told_once() {
        let limits = Limits::new(2, 0);
        let first = plan_once(&nodes(4), &[], &BTreeMap::new(), limits);
        let notes = events(None, "r1", &first);
        assert_eq!(reasons(&notes), ["WaveStarted"]);
        assert_eq!(notes[0].message, "starting on 2 nodes: win-000, win-001");

        let results = BTreeMap::from([("win-000".to_string(), failed("win-000"))]);
        let halted = plan_once(&nodes(4), &nodes(2), &results, limits);
        let notes = events(None, "r1", &halted);
        assert_eq!(reasons(&notes), ["RolloutHalted", "NodeFailed"]);
        assert_eq!(notes[1].message, "win-000: exited with code 1", "the code once");
        // Each failure and each wave is about a node: Events of their own, never merged.
        assert_eq!(notes[1].node.as_deref(), Some("win-000"));

        let now = k8s_openapi::jiff::Timestamp::now();
        let told = super::super::status::status(None, Some(1), "r1", Some(&halted), None, false, now);
        assert!(
            events(Some(&told), "r1", &halted).is_empty(),
            "the same halt and failure again: nothing new"
        );
        assert_eq!(reasons(&events(Some(&told), "r2", &halted)), ["NodeFailed"], "a new revision's failure");
    }

    #[test]
    fn waiting_for_a_window_is_told_once_and_looked_at_again_when_it_opens() {
        let now: k8s_openapi::jiff::Timestamp =
            "2026-12-05T20:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let opens: k8s_openapi::jiff::Timestamp =
            "2026-12-05T21:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let limits = Limits { window: Admission::Closed { opens: Some(opens) }, ..Limits::new(2, 0) };
        let waiting = plan_once(&nodes(4), &[], &BTreeMap::new(), limits);
        let notes = events(None, "r1", &waiting);
        assert_eq!(reasons(&notes), ["WaitingForMaintenanceWindow"]);
        assert!(notes[0].message.contains("2026-12-05T21:00:00Z"), "{}", notes[0].message);
        let told = super::super::status::status(None, Some(1), "r1", Some(&waiting), None, false, now);
        assert_eq!(told.next_window.as_ref().map(|t| t.0), Some(opens));
        assert!(events(Some(&told), "r1", &waiting).is_empty(), "told once");
        let decided = Decided {
            decision: waiting,
            limits,
            pinned: true,
            label_changes: Default::default(),
            transitional: vec![],
        };
        // An hour ahead: the most a reconcile waits; a window in ten minutes: then.
        assert_eq!(requeue(&decided, false, now), Action::requeue(Duration::from_secs(3600)));
        let soon = "2026-12-05T20:50:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(requeue(&decided, false, soon), Action::requeue(Duration::from_secs(601)));
    }

    #[test]
    fn completion_is_told_once_and_a_task_that_targets_nothing_is_warned_about_once() {
        let limits = Limits::new(2, 0);
        let done =
            BTreeMap::from([("win-000".to_string(), NodeResult::Succeeded { reboot_required: false })]);
        let complete = plan_once(&nodes(1), &nodes(1), &done, limits);
        let notes = events(None, "r1", &complete);
        assert_eq!(reasons(&notes), ["RolloutComplete"]);
        assert_eq!(notes[0].message, "revision r1: 1 nodes succeeded, 0 failed");
        let now = k8s_openapi::jiff::Timestamp::now();
        let told = super::super::status::status(None, Some(1), "r1", Some(&complete), None, false, now);
        assert!(events(Some(&told), "r1", &complete).is_empty());
        let nothing = plan_once(&[], &[], &BTreeMap::new(), limits);
        assert_eq!(reasons(&events(None, "r1", &nothing)), ["NoTargetedNodes"]);
        let idle = super::super::status::status(None, Some(1), "r1", Some(&nothing), None, false, now);
        let ready =
            idle.conditions.iter().find(|c| c.type_ == READY).map(|c| (c.status.as_str(), c.reason.as_str()));
        assert_eq!(ready, Some(("True", "NoTargetedNodes")));
        assert!(events(Some(&idle), "r1", &nothing).is_empty(), "told once");
    }
}
