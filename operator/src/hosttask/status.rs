//! The status of a HostTask: counts, the bounded failure list, times and kstatus conditions,
//! from the rollout decision. Pure: `now` is an input.

use hostprocess_crds::HostTaskStatus;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::rollout::{Decision, Phase};
use crate::conditions::{self, Blocked, PAUSED, READY, RECONCILING, STALLED, Wanted};
use crate::names::name_list;

/// Nodes named in a condition message, at most.
const NAMED_IN_CONDITIONS: usize = 5;

/// The reason of a task whose node selector matches no Windows node.
pub const NO_TARGETED_NODES: &str = "NoTargetedNodes";
pub const NO_TARGETED_NODES_MESSAGE: &str = "no Windows node matches the task's node selector: nothing runs, nothing is created; nodes that match later start it";

/// The reason of a rollout whose canary succeeded and soaks before the other nodes start.
pub const CANARY_SOAKING: &str = "CanarySoaking";
/// The reason of a rollout whose canary succeeded and waits to be promoted by hand.
pub const WAITING_FOR_PROMOTION: &str = "WaitingForPromotion";

pub use crate::conditions::{WAITING_FOR_WINDOW, window_message};

/// The status to write.
pub fn status(
    previous: Option<&HostTaskStatus>,
    generation: Option<i64>,
    revision: &str,
    decision: Option<&Decision>,
    blocked: Option<&Blocked>,
    paused: bool,
    now: Timestamp,
) -> HostTaskStatus {
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or_default();
    let same_revision = previous.and_then(|p| p.revision.as_deref()) == Some(revision);
    let mut status = HostTaskStatus {
        observed_generation: generation,
        revision: Some(revision.to_string()),
        start_time: previous.filter(|_| same_revision).and_then(|p| p.start_time.clone()).or(Some(Time(now))),
        ..HostTaskStatus::default()
    };
    let wanted = if let Some(blocked) = blocked {
        blocked.conditions()
    } else if let Some(d) = decision {
        status.nodes = d.counts.clone();
        status.canary_completion_time = d.canary_completion_time.map(Time);
        status.failures = d.failures.clone();
        let c = &d.counts;
        let mut progress = format!(
            "{} of {} nodes succeeded, {} running, {} pending, {} failed",
            c.succeeded, c.targeted, c.running, c.pending, c.failed
        );
        if c.rebooting > 0 {
            progress.push_str(&format!(", {} rebooting", c.rebooting));
        }
        match d.phase {
            Phase::Complete => {
                status.completion_time = previous
                    .filter(|_| same_revision)
                    .and_then(|p| p.completion_time.clone())
                    .or(Some(Time(now)));
                // Nothing to run is done, and said: a selector that matches nothing is most
                // often a mistake (a Warning Event tells it too).
                let (reason, message) = if c.targeted == 0 {
                    (NO_TARGETED_NODES, NO_TARGETED_NODES_MESSAGE.to_string())
                } else {
                    ("RolloutComplete", format!("revision {revision} done: {progress}"))
                };
                vec![
                    Wanted::new(READY, true, reason, message),
                    Wanted::new(RECONCILING, false, reason, ""),
                    Wanted::new(STALLED, false, reason, ""),
                ]
            }
            Phase::Halted => {
                let failing: Vec<&str> = d.failures.iter().map(|f| f.node.as_str()).collect();
                let failing = name_list(&failing, NAMED_IN_CONDITIONS);
                let message = format!(
                    "halted: {} nodes failed, more than maxFailures allows ({failing}); fix the payload (a new revision rolls out again), retry the failed nodes (a new spec.retryFailed) or raise maxFailures",
                    c.failed
                );
                vec![
                    Wanted::new(READY, false, "FailureBudgetExceeded", message.clone()),
                    Wanted::new(RECONCILING, false, "FailureBudgetExceeded", ""),
                    Wanted::new(STALLED, true, "FailureBudgetExceeded", message),
                ]
            }
            Phase::CanaryHold { until } => {
                let (reason, message) = match until {
                    Some(until) => (
                        CANARY_SOAKING,
                        format!(
                            "the canary succeeded; the other nodes start at {until}, after the soak; {progress}"
                        ),
                    ),
                    None => (
                        WAITING_FOR_PROMOTION,
                        format!(
                            "the canary succeeded; the other nodes start when the revision is promoted: set spec.rollout.canary.promoted to {revision} (kubectl hostprocess resume); {progress}"
                        ),
                    ),
                };
                vec![
                    Wanted::new(READY, false, reason, message),
                    Wanted::new(RECONCILING, false, reason, ""),
                    Wanted::new(STALLED, false, reason, ""),
                ]
            }
            Phase::WaitingForWindow { opens } => {
                status.next_window = opens.map(Time);
                let message = format!("{}; {progress}", window_message(opens));
                vec![
                    Wanted::new(READY, false, WAITING_FOR_WINDOW, message),
                    Wanted::new(RECONCILING, false, WAITING_FOR_WINDOW, ""),
                    Wanted::new(STALLED, false, WAITING_FOR_WINDOW, ""),
                ]
            }
            Phase::Paused => vec![
                Wanted::new(READY, false, "Paused", format!("paused: {progress}")),
                Wanted::new(RECONCILING, false, "Paused", ""),
                Wanted::new(STALLED, false, "Paused", ""),
            ],
            Phase::Progressing if !d.waiting.is_empty() => {
                let message = format!(
                    "{progress}; {} nodes wait for the HostGroup to be provisioned: {}",
                    d.waiting.len(),
                    name_list(&d.waiting, NAMED_IN_CONDITIONS)
                );
                vec![
                    Wanted::new(READY, false, "WaitingForHostGroup", message.clone()),
                    Wanted::new(RECONCILING, true, "WaitingForHostGroup", message),
                    Wanted::new(STALLED, false, "WaitingForHostGroup", ""),
                ]
            }
            Phase::Progressing => {
                let mut progress = progress;
                if !d.held_by_group.is_empty() {
                    progress.push_str(&format!(
                        "; {} nodes wait for another task of the concurrency group to finish there: {}",
                        d.held_by_group.len(),
                        name_list(&d.held_by_group, NAMED_IN_CONDITIONS)
                    ));
                }
                vec![
                    Wanted::new(
                        READY,
                        false,
                        "RollingOut",
                        format!("rolling out revision {revision}: {progress}"),
                    ),
                    Wanted::new(RECONCILING, true, "RollingOut", progress),
                    Wanted::new(STALLED, false, "RollingOut", ""),
                ]
            }
        }
    } else {
        vec![]
    };
    let mut wanted = wanted;
    wanted.push(Wanted::new(
        PAUSED,
        paused,
        if paused { "Paused" } else { "NotPaused" },
        if paused { "spec.rollout.paused is set: no node starts" } else { "" },
    ));
    status.conditions = conditions::merge(previous_conditions, &wanted, generation, now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosttask::rollout::{Limits, plan_once};
    use std::collections::BTreeMap;

    fn condition<'a>(s: &'a HostTaskStatus, kind: &str) -> (&'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == kind).unwrap_or_else(|| panic!("{kind}"));
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn kstatus_conditions_follow_the_rollout() {
        let now = Timestamp::now();
        let nodes: Vec<String> = (0..4).map(|i| format!("n{i}")).collect();
        let limits = Limits::new(2, 0);
        let d = plan_once(&nodes, &[], &BTreeMap::new(), limits);
        let s = status(None, Some(3), "abc", Some(&d), None, false, now);
        assert_eq!(condition(&s, "Reconciling"), ("True", "RollingOut"));
        assert_eq!(condition(&s, "Ready"), ("False", "RollingOut"));
        assert_eq!(condition(&s, "Stalled").0, "False");
        assert!(s.conditions.iter().all(|c| c.observed_generation == Some(3)));
        assert_eq!((s.nodes.running, s.nodes.pending), (2, 2));

        let blocked = Blocked { reason: "PodSecurityRejects", message: "label the namespace".into() };
        let s = status(Some(&s), Some(3), "abc", None, Some(&blocked), false, now);
        assert_eq!(condition(&s, "Stalled"), ("True", "PodSecurityRejects"));
        assert_eq!(condition(&s, "Ready").0, "False");
    }
}
