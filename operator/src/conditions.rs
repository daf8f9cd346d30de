//! kstatus conditions (Ready, Reconciling, Stalled, Paused) with `observedGeneration` on each,
//! keeping `lastTransitionTime` when a condition's status did not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const PAUSED: &str = "Paused";

/// The reason of a rollout (a HostTask's or a HostGroup's) waiting outside its maintenance windows.
pub const WAITING_FOR_WINDOW: &str = "WaitingForMaintenanceWindow";

/// The reason of the `Ready` condition among `conditions`, if there is one.
pub fn ready_reason(conditions: &[Condition]) -> Option<&str> {
    conditions.iter().find(|c| c.type_ == READY).map(|c| c.reason.as_str())
}

/// What a rollout waiting for its window says.
pub fn window_message(opens: Option<Timestamp>) -> String {
    match opens {
        Some(opens) => format!("outside the maintenance windows: nodes start again at {opens}"),
        None => "outside the maintenance windows, and none opens within a year: check spec.rollout.schedule"
            .into(),
    }
}

/// Why an object cannot be acted on at all (bad input the schema could not catch, a namespace
/// that refuses HostProcess pods): Stalled, with this reason and message. A wait for something
/// another object will provide (a HostGroup not created yet) is progress instead: Reconciling,
/// not Stalled, so that GitOps tools wait rather than fail a sync that creates both.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    pub reason: &'static str,
    pub message: String,
}

/// Reasons that wait for another object rather than for a fix.
pub const WAITING_REASONS: &[&str] = &["HostGroupNotFound"];

impl Blocked {
    /// Whether this is a wait for another object (Reconciling) rather than a block (Stalled).
    pub fn waits(&self) -> bool {
        WAITING_REASONS.contains(&self.reason)
    }

    /// The conditions it stands for.
    pub fn conditions(&self) -> Vec<Wanted> {
        let waits = self.waits();
        vec![
            Wanted::new(READY, false, self.reason, self.message.clone()),
            Wanted::new(RECONCILING, waits, self.reason, if waits { self.message.as_str() } else { "" }),
            Wanted::new(STALLED, !waits, self.reason, if waits { "" } else { self.message.as_str() }),
        ]
    }

    /// The condition that shows it (`Reconciling` or `Stalled`).
    pub fn shown_by(&self) -> &'static str {
        if self.waits() { RECONCILING } else { STALLED }
    }
}

/// One condition as the operator wants it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Wanted {
    pub fn new(type_: &'static str, status: bool, reason: &str, message: impl Into<String>) -> Self {
        Wanted { type_, status, reason: reason.to_string(), message: message.into() }
    }
}

/// The conditions to write: `wanted`, with the transition times of `previous` kept where the
/// status is the same. `now` is passed in so the result is a pure function of its inputs.
pub fn merge(
    previous: &[Condition],
    wanted: &[Wanted],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" };
            let since = previous
                .iter()
                .find(|c| c.type_ == w.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: w.type_.to_string(),
                status: status.to_string(),
                reason: w.reason.clone(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_times_move_only_when_the_status_changes() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap_or_default();
        let t1: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap_or_default();
        let first = merge(&[], &[Wanted::new(READY, false, "RollingOut", "1 of 3")], Some(1), t0);
        let same = merge(&first, &[Wanted::new(READY, false, "RollingOut", "2 of 3")], Some(2), t1);
        assert_eq!(same[0].last_transition_time, Time(t0));
        assert_eq!((same[0].message.as_str(), same[0].observed_generation), ("2 of 3", Some(2)));
        let flipped = merge(&same, &[Wanted::new(READY, true, "Complete", "3 of 3")], Some(2), t1);
        assert_eq!((flipped[0].status.as_str(), &flipped[0].last_transition_time), ("True", &Time(t1)));
    }
}
