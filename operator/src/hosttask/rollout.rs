//! The rollout decision: given the targeted nodes, the nodes admitted so far and what each
//! admitted node's pod says, which nodes may start now, and how the rollout stands. Pure: the
//! reconciler reads the inputs from the API and writes the outcome back.
//!
//! `Once`: a node is admitted into the DaemonSet's node affinity when the rollout gives it a
//! slot; admitted nodes that have not finished hold a slot (`maxConcurrent`, from the very
//! first wave). Failures beyond `maxFailures` halt admissions and withdraw the admitted nodes
//! whose payload has not started; `paused` stops admissions at once. With a strict failure
//! budget no more nodes are in flight than the budget can still absorb.

use std::collections::{BTreeMap, BTreeSet};

use hostprocess_crds::hosttask::{NodeCounts, NodeFailure};
use hostprocess_crds::schedule::Admission;
use hostprocess_crds::units::CountOrPercent;
use k8s_openapi::jiff::Timestamp;

pub use crate::state::pod_result::NodeResult;

pub use hostprocess_crds::LISTED_FAILURES;

/// How the rollout stands after this decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Progressing,
    Paused,
    /// Every canary node succeeded; the rest waits for the soak to end (`until`) or, without a
    /// soak (`None`), for the revision to be promoted.
    CanaryHold {
        until: Option<Timestamp>,
    },
    /// Outside the maintenance windows (or in a blackout): nothing new starts until `opens`.
    WaitingForWindow {
        opens: Option<Timestamp>,
    },
    /// More failures than `maxFailures`: nothing new starts.
    Halted,
    Complete,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_concurrent: u32,
    pub max_failures: u32,
    /// `failureBudget: Strict`: in flight, at most `max_failures + 1 - failed` nodes.
    pub strict: bool,
    pub paused: bool,
    /// Whether the schedule lets nodes start now (`Open` without one).
    pub window: Admission,
    /// The canary stage, if the task has one.
    pub canary: Option<CanaryGate>,
}

impl Limits {
    /// At most `max_concurrent` in flight and `max_failures` failures; nothing else holds back.
    pub fn new(max_concurrent: u32, max_failures: u32) -> Limits {
        Limits {
            max_concurrent,
            max_failures,
            strict: false,
            paused: false,
            window: Admission::Open,
            canary: None,
        }
    }
}

/// The canary stage: its first `nodes` nodes (in rollout order) run the revision alone; the
/// rest starts once all of them succeeded and the stage is `released` (promoted, or soaked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryGate {
    pub nodes: u32,
    pub released: bool,
}

/// Where the targeted nodes are, to spread waves over zones.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    /// Each targeted node's zone (`""` without the topology label; a node not listed is in it).
    pub of: BTreeMap<String, String>,
    /// Most nodes of one zone in flight: a count, or a percentage of the zone's targeted nodes.
    pub cap: Option<CountOrPercent>,
}

impl Zones {
    fn zone<'a>(&'a self, node: &str) -> &'a str {
        self.of.get(node).map_or("", String::as_str)
    }

    /// The order nodes start in: one node of each zone in turn (zones by name), each zone's
    /// nodes by name. Deterministic, so a plan shows what a rollout will do.
    pub fn spread(&self, targeted: &[String]) -> Vec<String> {
        let mut by_zone: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for node in targeted {
            by_zone.entry(self.zone(node)).or_default().push(node);
        }
        let longest = by_zone.values().map(Vec::len).max().unwrap_or(0);
        (0..longest)
            .flat_map(|i| by_zone.values().filter_map(move |nodes| nodes.get(i).map(|n| (*n).clone())))
            .collect()
    }
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Every admitted node (sorted), the ones admitted now included.
    pub admitted: Vec<String>,
    /// Admitted by this decision: the wave that starts now.
    pub starting: Vec<String>,
    /// Of `starting`, the nodes that run again in a retry round (`RetryPending`): their failed
    /// pod is replaced.
    pub retrying: Vec<String>,
    pub counts: NodeCounts,
    /// Failing nodes, sorted by name, at most `LISTED_FAILURES`.
    pub failures: Vec<NodeFailure>,
    pub phase: Phase,
    /// Targeted nodes that may not start yet: the task's HostGroup is not provisioned there.
    pub waiting: Vec<String>,
    /// Targeted nodes that may not start yet: another task of the concurrency group runs there
    /// (set by `decide`).
    pub held_by_group: Vec<String>,
    /// Every canary node succeeded (false without a canary).
    pub canary_complete: bool,
    /// When every canary node had first been seen succeeded (set by `decide`).
    pub canary_completion_time: Option<Timestamp>,
}

/// `Once` mode. `targeted` and `admitted` are node names; `results` holds the nodes whose pod
/// of this revision said something.
pub fn plan_once(
    targeted: &[String],
    admitted: &[String],
    results: &BTreeMap<String, NodeResult>,
    limits: Limits,
) -> Decision {
    plan_once_where(targeted, admitted, results, limits, None, &Zones::default())
}

/// `plan_once` where only `eligible` nodes may start (`None`: every targeted node), spread over
/// `zones`. A task that runs as a HostGroup starts only where the group is provisioned.
pub fn plan_once_where(
    targeted: &[String],
    admitted: &[String],
    results: &BTreeMap<String, NodeResult>,
    limits: Limits,
    eligible: Option<&BTreeSet<String>>,
    zones: &Zones,
) -> Decision {
    let mut targeted: Vec<String> = targeted.to_vec();
    targeted.sort();
    targeted.dedup();
    // A node that left (or stopped matching) is dropped from the rollout and its counts.
    let mut kept: Vec<String> =
        admitted.iter().filter(|n| targeted.binary_search(n).is_ok()).cloned().collect();
    // A node withdrawn as not started whose pod turns out to have run this revision (the
    // withdrawal raced its start) is counted with what it did, and stays admitted.
    kept.extend(
        results
            .iter()
            .filter(|(n, r)| !matches!(r, NodeResult::Starting) && targeted.binary_search(n).is_ok())
            .map(|(n, _)| n.clone()),
    );
    kept.sort();
    kept.dedup();
    let mut counts = NodeCounts { targeted: len(&targeted), ..NodeCounts::default() };
    let mut failures = Vec::new();
    let mut not_started = Vec::new();
    // Failed before the retry round asked for: pending again, started like a new node.
    let mut retry_pending = Vec::new();
    let mut zone_in_flight: BTreeMap<&str, u32> = BTreeMap::new();
    for node in &kept {
        // Admitted and no pod yet: its payload has not started either.
        let result = results.get(node).unwrap_or(&NodeResult::Starting);
        if matches!(result, NodeResult::Running | NodeResult::Rebooting | NodeResult::Finishing) {
            *zone_in_flight.entry(zones.zone(node)).or_default() += 1;
        }
        match result {
            NodeResult::Starting => {
                counts.running += 1;
                not_started.push(node.clone());
            }
            NodeResult::Running | NodeResult::Finishing => counts.running += 1,
            NodeResult::Succeeded { reboot_required } => {
                counts.succeeded += 1;
                counts.reboot_required += u32::from(*reboot_required);
            }
            NodeResult::Rebooting => counts.rebooting += 1,
            NodeResult::Failed(failure) => {
                counts.failed += 1;
                failures.push((**failure).clone());
            }
            NodeResult::RetryPending => retry_pending.push(node.clone()),
        }
    }
    let halted = counts.failed > limits.max_failures;
    if halted {
        // Nodes admitted before the failure that exceeded the budget was seen: their payload
        // has not started, so they are withdrawn rather than let run a failing change.
        kept.retain(|n| not_started.binary_search(n).is_err());
        counts.running -= len(&not_started);
    } else {
        for node in &not_started {
            *zone_in_flight.entry(zones.zone(node)).or_default() += 1;
        }
    }
    let may_start = |n: &&String| eligible.is_none_or(|e| e.contains(*n));
    let waiting: Vec<String> =
        targeted.iter().filter(|n| kept.binary_search(n).is_err() && !may_start(n)).cloned().collect();
    let order = zones.spread(&targeted);
    let canary: Vec<&String> =
        limits.canary.map_or(vec![], |c| order.iter().take(c.nodes as usize).collect());
    let canary_complete = limits.canary.is_some()
        && canary.iter().all(|n| matches!(results.get(*n), Some(NodeResult::Succeeded { .. })));
    // Until the canary succeeded and was released, only canary nodes start.
    let held = limits.canary.is_some_and(|c| !(canary_complete && c.released));
    let closed = match limits.window {
        Admission::Open => None,
        Admission::Closed { opens } => Some(opens),
    };
    let mut starting = Vec::new();
    let mut retrying = Vec::new();
    if !halted && !limits.paused && closed.is_none() {
        let in_flight = counts.running + counts.rebooting;
        let mut most = limits.max_concurrent;
        if limits.strict {
            // Every node in flight may fail: keep them within what the budget can absorb.
            most = most.min((limits.max_failures + 1).saturating_sub(counts.failed));
        }
        let mut slots = most.saturating_sub(in_flight) as usize;
        let mut zone_size: BTreeMap<&str, u32> = BTreeMap::new();
        for node in &targeted {
            *zone_size.entry(zones.zone(node)).or_default() += 1;
        }
        let zone_cap = |zone: &str| {
            zones.cap.map_or(u32::MAX, |cap| cap.of(zone_size.get(zone).copied().unwrap_or(0)).max(1))
        };
        for node in &order {
            if slots == 0 {
                break;
            }
            let retry = retry_pending.binary_search(node).is_ok();
            if (kept.binary_search(node).is_ok() && !retry)
                || !may_start(&node)
                || (held && !canary.contains(&node))
            {
                continue;
            }
            let zone = zones.zone(node).to_string();
            let busy = zone_in_flight.get(zone.as_str()).copied().unwrap_or(0);
            if busy >= zone_cap(&zone) {
                continue;
            }
            zone_in_flight.insert(zones.zone(node), busy + 1);
            if retry {
                retrying.push(node.clone());
            }
            starting.push(node.clone());
            slots -= 1;
        }
    }
    counts.running += len(&starting);
    retrying.sort();
    let mut all = kept;
    all.extend(starting.iter().filter(|n| retrying.binary_search(n).is_err()).cloned());
    all.sort();
    // A node waiting for its retry round stays admitted (labelled) but counts as pending.
    counts.pending = counts.targeted - len(&all) + len(&retry_pending) - len(&retrying);
    let phase = if halted {
        Phase::Halted
    } else if counts.pending == 0 && counts.running == 0 && counts.rebooting == 0 {
        Phase::Complete
    } else if limits.paused {
        Phase::Paused
    } else if held && canary_complete && counts.pending > 0 {
        Phase::CanaryHold { until: None }
    } else if let Some(opens) = closed.filter(|_| counts.pending > 0) {
        Phase::WaitingForWindow { opens }
    } else {
        Phase::Progressing
    };
    failures.sort_by(|a, b| a.node.cmp(&b.node));
    failures.truncate(LISTED_FAILURES);
    Decision {
        admitted: all,
        starting,
        retrying,
        counts,
        failures,
        phase,
        waiting,
        held_by_group: Vec::new(),
        canary_complete,
        canary_completion_time: None,
    }
}

/// `Continuous` mode: every targeted node runs the agent; the DaemonSet's rolling update
/// (maxUnavailable = maxConcurrent) replaces old revisions. Running means ready on this revision.
pub fn plan_continuous(
    targeted: &[String],
    results: &BTreeMap<String, NodeResult>,
    paused: bool,
    eligible: Option<&BTreeSet<String>>,
) -> Decision {
    let (admitted, waiting): (Vec<String>, Vec<String>) =
        targeted.iter().cloned().partition(|n| eligible.is_none_or(|e| e.contains(n)));
    let mut counts = NodeCounts { targeted: len(targeted), ..NodeCounts::default() };
    let mut failures = Vec::new();
    for node in targeted {
        match results.get(node) {
            Some(NodeResult::Succeeded { .. }) => counts.running += 1,
            Some(NodeResult::Failed(failure)) => {
                counts.failed += 1;
                failures.push((**failure).clone());
            }
            _ => counts.pending += 1,
        }
    }
    failures.sort_by(|a, b| a.node.cmp(&b.node));
    failures.truncate(LISTED_FAILURES);
    let phase = match (counts.running == counts.targeted, paused) {
        (true, _) => Phase::Complete,
        (false, true) => Phase::Paused,
        (false, false) => Phase::Progressing,
    };
    Decision {
        admitted,
        starting: Vec::new(),
        retrying: Vec::new(),
        counts,
        failures,
        phase,
        waiting,
        held_by_group: Vec::new(),
        canary_complete: false,
        canary_completion_time: None,
    }
}

/// Records a node's result; with two pods on one node (a DaemonSet controller can briefly make a
/// second one), the more settled result counts — a node that finished does not turn back into
/// running because a duplicate pod has not started.
pub fn keep_settled(results: &mut BTreeMap<String, NodeResult>, node: String, result: NodeResult) {
    let rank = |r: &NodeResult| match r {
        NodeResult::Finishing | NodeResult::Starting => 0,
        NodeResult::Running => 1,
        NodeResult::Rebooting => 2,
        NodeResult::Failed(_) | NodeResult::RetryPending => 3,
        NodeResult::Succeeded { .. } => 4,
    };
    match results.get(&node) {
        Some(existing) if rank(existing) >= rank(&result) => {}
        _ => {
            results.insert(node, result);
        }
    }
}

fn len<T>(items: &[T]) -> u32 {
    u32::try_from(items.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("win-{i:03}")).collect()
    }

    fn limits(max_concurrent: u32, max_failures: u32) -> Limits {
        Limits::new(max_concurrent, max_failures)
    }

    #[test]
    fn a_canary_runs_alone_then_holds_until_released() {
        let canary = Limits { canary: Some(CanaryGate { nodes: 2, released: false }), ..limits(5, 0) };
        let d = plan_once(&nodes(10), &[], &BTreeMap::new(), canary);
        assert_eq!(d.starting, ["win-000", "win-001"], "the canary alone, though maxConcurrent is 5");
        let one_done =
            BTreeMap::from([("win-000".to_string(), done()), ("win-001".to_string(), NodeResult::Running)]);
        let d = plan_once(&nodes(10), &nodes(2), &one_done, canary);
        assert!(d.starting.is_empty());
        assert_eq!((d.phase, d.canary_complete), (Phase::Progressing, false));
        let both: BTreeMap<String, NodeResult> = nodes(2).into_iter().map(|n| (n, done())).collect();
        let d = plan_once(&nodes(10), &nodes(2), &both, canary);
        assert!(d.starting.is_empty(), "not released: held");
        assert_eq!((d.phase, d.canary_complete), (Phase::CanaryHold { until: None }, true));
        let released = Limits { canary: Some(CanaryGate { nodes: 2, released: true }), ..canary };
        let d = plan_once(&nodes(10), &nodes(2), &both, released);
        assert_eq!(d.starting, ["win-002", "win-003", "win-004", "win-005", "win-006"]);
    }

    fn zones(of: &[(&str, &str)], cap: Option<u32>) -> Zones {
        Zones {
            of: of.iter().map(|(n, z)| (n.to_string(), z.to_string())).collect(),
            cap: cap.map(CountOrPercent::Count),
        }
    }

    #[test]
    fn waves_take_each_zone_in_turn_and_keep_to_the_zone_cap() {
        let of = [
            ("win-000", "a"),
            ("win-001", "a"),
            ("win-002", "a"),
            ("win-003", "b"),
            ("win-004", "b"),
            ("win-005", "c"),
        ];
        let spread = zones(&of, None);
        assert_eq!(
            spread.spread(&nodes(6)),
            ["win-000", "win-003", "win-005", "win-001", "win-004", "win-002"]
        );
        let d = plan_once_where(&nodes(6), &[], &BTreeMap::new(), limits(4, 0), None, &spread);
        assert_eq!(
            d.starting,
            ["win-000", "win-003", "win-005", "win-001"],
            "every zone before a second of one"
        );
        // At most one node per zone in flight: three zones, three nodes, whatever maxConcurrent.
        let capped = zones(&of, Some(1));
        let d = plan_once_where(&nodes(6), &[], &BTreeMap::new(), limits(5, 0), None, &capped);
        assert_eq!(d.starting, ["win-000", "win-003", "win-005"]);
        // win-003 (zone b) done: zone b's next node starts, zones a and c stay busy.
        let mut results = running(&["win-000", "win-005"]);
        results.insert("win-003".into(), done());
        let admitted = ["win-000", "win-003", "win-005"].map(String::from);
        let d = plan_once_where(&nodes(6), &admitted, &results, limits(5, 0), None, &capped);
        assert_eq!(d.starting, ["win-004"]);
    }

    #[test]
    fn outside_its_window_nothing_starts_and_running_nodes_finish() {
        let opens: Timestamp = "2026-12-05T21:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let closed = Limits { window: Admission::Closed { opens: Some(opens) }, ..limits(5, 0) };
        let d = plan_once(&nodes(10), &nodes(2), &running(&["win-000", "win-001"]), closed);
        assert!(d.starting.is_empty());
        assert_eq!((d.counts.running, d.counts.pending), (2, 8));
        assert_eq!(d.phase, Phase::WaitingForWindow { opens: Some(opens) });
        // Only nodes that have finished left: complete, whatever the window.
        let all_done: BTreeMap<String, NodeResult> = nodes(2).into_iter().map(|n| (n, done())).collect();
        assert_eq!(plan_once(&nodes(2), &nodes(2), &all_done, closed).phase, Phase::Complete);
    }

    fn running(nodes: &[&str]) -> BTreeMap<String, NodeResult> {
        nodes.iter().map(|n| (n.to_string(), NodeResult::Running)).collect()
    }

    #[test]
    fn a_halt_withdraws_admitted_nodes_whose_payload_has_not_started() {
        // win-000 and win-001 failed; win-002 runs its payload; win-003 has a pod in its init
        // container and win-004 no pod yet.
        let mut results = running(&["win-002"]);
        results.insert("win-000".into(), failed("win-000"));
        results.insert("win-001".into(), failed("win-001"));
        results.insert("win-003".into(), NodeResult::Starting);
        let d = plan_once(&nodes(10), &nodes(5), &results, limits(5, 1));
        assert_eq!(d.phase, Phase::Halted);
        assert_eq!(d.admitted, ["win-000", "win-001", "win-002"], "the running payload finishes");
        assert!(d.starting.is_empty());
        assert_eq!((d.counts.running, d.counts.failed, d.counts.pending), (1, 2, 7));
    }

    #[test]
    fn a_strict_budget_keeps_no_more_nodes_in_flight_than_it_can_absorb() {
        let strict = Limits { strict: true, ..limits(5, 1) };
        let d = plan_once(&nodes(10), &[], &BTreeMap::new(), strict);
        assert_eq!(d.starting, ["win-000", "win-001"], "maxFailures + 1 in flight, not maxConcurrent");
        // One failed: one more may be in flight, and it is.
        let results = BTreeMap::from([("win-000".to_string(), failed("win-000"))]);
        let d = plan_once(&nodes(10), &nodes(2), &results, strict);
        assert!(d.starting.is_empty(), "win-001 is in flight: the budget can absorb no more");
        let mut results = results;
        results.insert("win-001".into(), done());
        let d = plan_once(&nodes(10), &nodes(2), &results, strict);
        assert_eq!(d.starting, ["win-002"]);
        // Whatever happens, at most maxFailures + 1 nodes fail: win-002 failing halts.
        results.insert("win-002".into(), failed("win-002"));
        let d = plan_once(&nodes(10), &nodes(3), &results, strict);
        assert_eq!((d.phase, d.counts.failed), (Phase::Halted, 2));
    }

    fn failed(node: &str) -> NodeResult {
        NodeResult::Failed(Box::new(NodeFailure {
            node: node.into(),
            exit_code: Some(1),
            reason: "ExitCode".into(),
            message: "exit code 1".into(),
            attempts: 1,
        }))
    }

    fn done() -> NodeResult {
        NodeResult::Succeeded { reboot_required: false }
    }

    #[test]
    fn a_duplicate_pod_does_not_turn_a_finished_node_back_into_running() {
        let mut results = BTreeMap::new();
        keep_settled(&mut results, "win-000".into(), done());
        keep_settled(&mut results, "win-000".into(), NodeResult::Running);
        assert_eq!(results["win-000"], done());
        keep_settled(&mut results, "win-001".into(), NodeResult::Running);
        keep_settled(&mut results, "win-001".into(), failed("win-001"));
        assert!(matches!(results["win-001"], NodeResult::Failed(_)));
    }

    #[test]
    fn a_rebooting_node_holds_its_slot_until_it_is_back() {
        let results =
            BTreeMap::from([("win-000".to_string(), NodeResult::Rebooting), ("win-001".to_string(), done())]);
        let admitted = ["win-000", "win-001"].map(String::from);
        let d = plan_once(&nodes(4), &admitted, &results, limits(1, 0));
        assert!(d.starting.is_empty(), "the reboot counts against maxConcurrent");
        assert_eq!((d.counts.rebooting, d.counts.succeeded, d.phase), (1, 1, Phase::Progressing));
        let back = BTreeMap::from([("win-000".to_string(), done()), ("win-001".to_string(), done())]);
        assert_eq!(plan_once(&nodes(4), &admitted, &back, limits(1, 0)).starting, ["win-002"]);
    }

    #[test]
    fn only_eligible_nodes_start_and_the_others_wait() {
        let eligible: BTreeSet<String> = ["win-001", "win-003"].map(String::from).into();
        let d = plan_once_where(
            &nodes(4),
            &[],
            &BTreeMap::new(),
            limits(3, 0),
            Some(&eligible),
            &Zones::default(),
        );
        assert_eq!(d.starting, ["win-001", "win-003"]);
        assert_eq!(d.waiting, ["win-000", "win-002"]);
        assert_eq!((d.counts.running, d.counts.pending, d.phase), (2, 2, Phase::Progressing));

        let results = BTreeMap::from([("win-001".to_string(), done()), ("win-003".to_string(), done())]);
        let admitted = ["win-001", "win-003"].map(String::from);
        let d =
            plan_once_where(&nodes(4), &admitted, &results, limits(3, 0), Some(&eligible), &Zones::default());
        assert_eq!(d.phase, Phase::Progressing, "not complete while nodes wait for the group");

        let c = plan_continuous(&nodes(4), &BTreeMap::new(), false, Some(&eligible));
        assert_eq!((c.admitted.len(), c.waiting.len()), (2, 2));
    }

    #[test]
    fn the_first_wave_already_honours_max_concurrent() {
        let d = plan_once(&nodes(10), &[], &BTreeMap::new(), limits(3, 0));
        assert_eq!(d.starting, ["win-000", "win-001", "win-002"]);
        assert_eq!((d.counts.running, d.counts.pending, d.counts.targeted), (3, 7, 10));
        assert_eq!(d.phase, Phase::Progressing);
    }

    #[test]
    fn a_finished_node_frees_its_slot_for_the_next() {
        let admitted = nodes(3);
        let results = BTreeMap::from([("win-001".to_string(), done())]);
        let d = plan_once(&nodes(10), &admitted, &results, limits(3, 0));
        assert_eq!(d.starting, ["win-003"]);
        assert_eq!((d.counts.running, d.counts.succeeded, d.counts.pending), (3, 1, 6));
        // Nothing finished: nothing new starts, and running never exceeds maxConcurrent.
        let d = plan_once(&nodes(10), &admitted, &BTreeMap::new(), limits(3, 0));
        assert!(d.starting.is_empty());
        assert_eq!(d.counts.running, 3);
    }

    #[test]
    fn failures_beyond_the_budget_halt_new_starts() {
        let admitted = nodes(4);
        let results = BTreeMap::from([
            ("win-000".to_string(), failed("win-000")),
            ("win-001".to_string(), failed("win-001")),
            ("win-002".to_string(), done()),
        ]);
        let within = plan_once(&nodes(10), &admitted, &results, limits(4, 2));
        assert_eq!(within.phase, Phase::Progressing);
        assert_eq!(within.starting.len(), 3, "two failures are within maxFailures=2");
        let beyond = plan_once(&nodes(10), &admitted, &results, limits(4, 1));
        assert_eq!(beyond.phase, Phase::Halted);
        assert!(beyond.starting.is_empty());
        assert_eq!(
            beyond.failures.iter().map(|f| f.node.as_str()).collect::<Vec<_>>(),
            ["win-000", "win-001"]
        );
    }

    #[test]
    fn paused_stops_new_starts_but_lets_running_nodes_finish() {
        let paused = Limits { paused: true, ..limits(5, 0) };
        let d = plan_once(&nodes(10), &nodes(2), &BTreeMap::new(), paused);
        assert!(d.starting.is_empty());
        assert_eq!((d.counts.running, d.phase), (2, Phase::Paused));
    }

    #[test]
    fn completion_nodes_joining_and_leaving() {
        let all_done: BTreeMap<String, NodeResult> = nodes(3).into_iter().map(|n| (n, done())).collect();
        let d = plan_once(&nodes(3), &nodes(3), &all_done, limits(1, 0));
        assert_eq!((d.phase, d.counts.succeeded), (Phase::Complete, 3));
        // A node joins: it gets the task.
        let d = plan_once(&nodes(4), &nodes(3), &all_done, limits(1, 0));
        assert_eq!(d.starting, ["win-003"]);
        // A node leaves: it is dropped from the counts and the admitted list.
        let d = plan_once(&nodes(2), &nodes(3), &all_done, limits(1, 0));
        assert_eq!((d.counts.targeted, d.counts.succeeded, d.admitted.len()), (2, 2, 2));
        assert_eq!(d.phase, Phase::Complete);
    }

    #[test]
    fn the_failure_list_is_bounded() {
        let many = nodes(50);
        let results: BTreeMap<String, NodeResult> = many.iter().map(|n| (n.clone(), failed(n))).collect();
        let d = plan_once(&many, &many, &results, limits(50, 100));
        assert_eq!((d.counts.failed, d.failures.len()), (50, LISTED_FAILURES));
    }
}
