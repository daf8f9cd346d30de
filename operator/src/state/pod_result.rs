//! What a task pod says about its node, read from its container states and the executor's result
//! line in the termination message: running, succeeded (and whether a reboot is needed), or failed
//! with the executor's own account. Setup pods are read with the same helpers.

use hostprocess_crds::hosttask::NodeFailure;
use hostprocess_protocol::{Outcome, ResultLine, State};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};

/// A message in status is cut to this many bytes.
const MESSAGE_LIMIT: usize = 512;

/// What the pod of the current revision on a node says.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeResult {
    /// The node still runs an earlier revision's payload: the new revision waits there until it
    /// finished (never two revisions of a task at once on a node). Holds a slot.
    Finishing,
    /// Admitted; the payload's container has not started yet (no pod yet, pending, or in its
    /// init container). Withdrawn when the rollout halts.
    Starting,
    /// Admitted, not finished (running, retrying).
    Running,
    Succeeded {
        reboot_required: bool,
    },
    /// Succeeded and asked for a reboot that the operator is carrying out (`reboot:
    /// IfRequired`): cordoned, drained, rebooting. Holds a `maxConcurrent` slot.
    Rebooting,
    /// Boxed: results are kept per pod, and most are not failures.
    Failed(Box<NodeFailure>),
    /// Failed before the retry round `spec.retryFailed` asks for: pending again, run when the
    /// rollout admits it (its pod is replaced by one of the round).
    RetryPending,
}

/// A message cut to what status holds (512 bytes, on a character boundary).
pub fn shorten(text: &str) -> String {
    if text.len() <= MESSAGE_LIMIT {
        return text.to_string();
    }
    let mut end = MESSAGE_LIMIT - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// The payload's last words: the last line of its output before the result line, skipping the
/// executor's own progress lines.
fn last_output_line(message: &str) -> Option<&str> {
    message
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("node-executor") && !l.starts_with('{'))
}

/// How a container last ended: its current state if terminated, else its last state.
pub fn last_terminated(status: &ContainerStatus) -> Option<ContainerStateTerminated> {
    status
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .or_else(|| status.last_state.as_ref().and_then(|s| s.terminated.clone()))
}

/// How a container ended, from its current or last terminated state.
fn failure_of(node: &str, status: &ContainerStatus) -> Option<NodeFailure> {
    let terminated = last_terminated(status)?;
    if terminated.exit_code == 0 {
        return None;
    }
    let message = terminated.message.clone().unwrap_or_default();
    let failure = match ResultLine::parse_last(&message) {
        // The executor's own account: state, exit code, the last attempt's outcome.
        Some(ResultLine { outcome: Outcome::Ran(report), .. }) if report.record.state == State::Failed => {
            let record = report.record;
            let last = record.attempts.last();
            let code = record.exit_code.unwrap_or(i64::from(terminated.exit_code));
            let account = last
                .map(|a| a.message.as_str())
                .filter(|m| !m.is_empty())
                .map_or_else(|| format!("exited with code {code}"), str::to_string);
            let message = match last_output_line(&message) {
                Some(output) => format!("{account}: {output}"),
                None => account,
            };
            NodeFailure {
                node: node.to_string(),
                exit_code: Some(code),
                reason: last.and_then(|a| a.outcome).map_or("Failed", |o| o.name()).to_string(),
                message: shorten(&message),
                // Numbered: a shortened result line keeps only the last attempt.
                attempts: last.map_or(0, |a| a.number),
            }
        }
        // A success that exits once (a reboot is needed): not a failure.
        Some(line) if line.ok => return None,
        Some(line) => NodeFailure {
            node: node.to_string(),
            exit_code: Some(i64::from(terminated.exit_code)),
            reason: "ExecutorError".into(),
            message: shorten(line.error().unwrap_or("the node-executor refused the task")),
            attempts: 0,
        },
        // No account from the executor: the container was stopped from outside (the node
        // rebooted or crashed, the runtime killed it). Restarted, its executor reads its record
        // and says what happened; only a container that cannot start or that the kubelet has
        // stopped restarting has failed.
        None if !stays_down(status, &terminated) => return None,
        None => NodeFailure {
            node: node.to_string(),
            exit_code: Some(i64::from(terminated.exit_code)),
            reason: terminated.reason.clone().unwrap_or_else(|| "Error".into()),
            message: shorten(if message.is_empty() { "the container failed" } else { &message }),
            attempts: 0,
        },
    };
    Some(failure)
}

/// Whether a container that ended without the executor's account stays down: it could not
/// start, or the kubelet backs off from restarting it.
fn stays_down(status: &ContainerStatus, terminated: &ContainerStateTerminated) -> bool {
    const WAITING: [&str; 7] = [
        "CrashLoopBackOff",
        "CreateContainerError",
        "CreateContainerConfigError",
        "RunContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
    ];
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref());
    let cannot_start = matches!(terminated.reason.as_deref(), Some("StartError" | "ContainerCannotRun"));
    cannot_start || waiting.is_some_and(|reason| WAITING.contains(&reason))
}

/// What a pod of the current revision says about its node, or `None` when it is not bound.
pub fn observe(pod: &Pod) -> Option<(String, NodeResult)> {
    let node = pod.spec.as_ref()?.node_name.clone()?;
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let task =
        status.and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.iter().find(|c| c.name == "task"));
    if ready {
        let reboot_required = task
            .and_then(|t| t.last_state.as_ref()?.terminated.as_ref()?.message.clone())
            .and_then(|m| ResultLine::parse_last(&m))
            .is_some_and(|line| line.asks_for_reboot());
        return Some((node, NodeResult::Succeeded { reboot_required }));
    }
    // The executor's install step failing keeps the payload from starting at all.
    let init_failure =
        status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten().find_map(|c| {
            failure_of(&node, c)
                .filter(|_| c.restart_count >= 1 || c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
        });
    if let Some(failure) = init_failure {
        return Some((node, NodeResult::Failed(Box::new(failure))));
    }
    if let Some(failure) = task.and_then(|t| failure_of(&node, t)) {
        return Some((node, NodeResult::Failed(Box::new(failure))));
    }
    // The container that ran the payload exits once with its result (`--idle-after`): a success
    // shows there before the restarted container's readiness probe says so.
    if let Some(reboot_required) = task.and_then(completion_of) {
        return Some((node, NodeResult::Succeeded { reboot_required }));
    }
    let started = task.is_some_and(|t| {
        t.restart_count > 0
            || t.last_state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some())
            || t.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some())
    });
    Some((node, if started { NodeResult::Running } else { NodeResult::Starting }))
}

/// A success the container reported by exiting: `Some(reboot required)`.
fn completion_of(status: &ContainerStatus) -> Option<bool> {
    let terminated = last_terminated(status)?;
    if terminated.exit_code == 0 {
        return Some(false);
    }
    let line = ResultLine::parse_last(terminated.message.as_deref().unwrap_or_default())?;
    // A payload that restarted the node itself (1641) is done once its executor, back after
    // the restart, says so by being ready: until then the node is running it.
    let restarting = line.run().is_some_and(|r| r.record.state == State::RebootInitiated);
    (line.ok && line.asks_for_reboot() && !restarting).then_some(true)
}

/// Result lines as the executor prints them, for tests: built from the protocol types.
#[cfg(test)]
pub(crate) mod lines {
    use hostprocess_protocol::{Attempt, AttemptOutcome, Outcome, Record, ResultLine, RunReport, State};

    /// `run`'s line for a record in `state`, the attempts ending as given (outcome, message).
    pub fn ran(state: State, exit_code: i64, attempts: &[(AttemptOutcome, &str)]) -> String {
        let attempts = attempts
            .iter()
            .enumerate()
            .map(|(i, (outcome, message))| Attempt {
                number: u32::try_from(i + 1).unwrap_or(u32::MAX),
                start_time: "2026-12-01T00:00:00Z".into(),
                end_time: None,
                pid: None,
                exit_code: Some(exit_code),
                outcome: Some(*outcome),
                timed_out: *outcome == AttemptOutcome::TimedOut,
                stats: None,
                message: message.to_string(),
            })
            .collect();
        let record = Record {
            task: "ops/patch".into(),
            task_uid: "u-1".into(),
            revision: "r1".into(),
            mode: hostprocess_crds::Mode::Once,
            state,
            exit_code: Some(exit_code),
            attempts,
            retry: None,
            retry_after: 0,
            rebooted_at: None,
            health_check: None,
        };
        let report = RunReport { skipped: false, record_path: "/state/tasks/u-1/r1.json".into(), record };
        let line =
            ResultLine { ok: state.is_success(), command: "run".into(), outcome: Outcome::Ran(report) };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// A refusal of `command`.
    pub fn refused(command: &str, error: &str) -> String {
        serde_json::to_string(&ResultLine::refused(command, error)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostprocess_protocol::AttemptOutcome;
    use serde_json::{Value, json};

    fn pod(status: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"nodeName": "win-007",
            "containers": [{"name": "task"}]}, "status": status}))
        .unwrap_or_else(|e| panic!("pod: {e}"))
    }

    #[test]
    fn pods_say_running_succeeded_or_failed_with_the_executors_account() {
        let running = pod(json!({"phase": "Running", "containerStatuses": [{"name": "task", "ready": false,
            "restartCount": 0, "image": "x", "imageID": "", "state": {"running": {}}}]}));
        assert_eq!(observe(&running), Some(("win-007".into(), NodeResult::Running)));
        // Bound, in its init container: the payload has not started.
        let init = pod(json!({"phase": "Pending", "containerStatuses": [{"name": "task", "ready": false,
            "restartCount": 0, "image": "x", "imageID": "", "state": {"waiting": {"reason": "PodInitializing"}}}]}));
        assert_eq!(observe(&init), Some(("win-007".into(), NodeResult::Starting)));

        let attempts =
            [(AttemptOutcome::ExitCode, "exited with 3017"), (AttemptOutcome::TimedOut, "killed after 1h")];
        let result = lines::ran(State::Failed, 3017, &attempts);
        let failed = pod(json!({"phase": "Running", "containerStatuses": [{"name": "task", "ready": false,
            "restartCount": 1, "image": "x", "imageID": "", "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 193, "message": format!("payload output\n{result}")}}}]}));
        let Some((_, NodeResult::Failed(f))) = observe(&failed) else { panic!("failed") };
        assert_eq!((f.exit_code, f.reason.as_str(), f.attempts), (Some(3017), "TimedOut", 2));
        assert_eq!(f.message, "killed after 1h: payload output");

        let reboot = lines::ran(State::RebootRequired, 3010, &[(AttemptOutcome::RebootRequired, "")]);
        let ready = pod(json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "task", "ready": true, "restartCount": 1, "image": "x", "imageID": "",
                "lastState": {"terminated": {"exitCode": 194, "message": reboot}}}]}));
        assert_eq!(
            observe(&ready),
            Some(("win-007".into(), NodeResult::Succeeded { reboot_required: true }))
        );

        let cannot_start = pod(
            json!({"phase": "Running", "containerStatuses": [{"name": "task", "ready": false,
            "restartCount": 2, "image": "x", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 128, "reason": "StartError", "message": "executable file not found"}}}]}),
        );
        let Some((_, NodeResult::Failed(f))) = observe(&cannot_start) else { panic!("failed") };
        assert_eq!((f.exit_code, f.reason.as_str()), (Some(128), "StartError"));

        let refused = lines::refused("run", "retries must be between 0 and 10");
        let refusing = pod(json!({"phase": "Running", "containerStatuses": [{"name": "task", "ready": false,
            "restartCount": 1, "image": "x", "imageID": "", "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 125, "message": refused}}}]}));
        let Some((_, NodeResult::Failed(f))) = observe(&refusing) else { panic!("failed") };
        assert_eq!(
            (f.reason.as_str(), f.message.as_str()),
            ("ExecutorError", "retries must be between 0 and 10")
        );
    }

    #[test]
    fn a_container_stopped_from_outside_is_running_again_not_failed() {
        // The node rebooted: the container was killed without a word from the executor, and
        // runs again; the restarted executor's record says what happened.
        let restarted =
            pod(json!({"phase": "Running", "containerStatuses": [{"name": "task", "ready": false,
            "restartCount": 1, "image": "x", "imageID": "", "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 255, "reason": "Unknown"}}}]}));
        assert_eq!(observe(&restarted), Some(("win-007".into(), NodeResult::Running)));
        // Ended, and not restarted yet: on its way back.
        let ended = pod(json!({"phase": "Running", "containerStatuses": [{"name": "task", "ready": false,
            "restartCount": 1, "image": "x", "imageID": "",
            "state": {"terminated": {"exitCode": 255, "reason": "Unknown"}}}]}));
        assert_eq!(observe(&ended), Some(("win-007".into(), NodeResult::Running)));
        // Down and staying down: failed.
        let down = pod(json!({"phase": "Running", "containerStatuses": [{"name": "task", "ready": false,
            "restartCount": 3, "image": "x", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 255, "reason": "Unknown"}}}]}));
        assert!(matches!(observe(&down), Some((_, NodeResult::Failed(_)))));
    }

    #[test]
    fn a_payload_that_restarts_the_node_itself_runs_until_its_executor_is_ready_again() {
        let started = lines::ran(State::RebootInitiated, 1641, &[(AttemptOutcome::RebootInitiated, "")]);
        let exited = pod(json!({"phase": "Running", "containerStatuses": [{"name": "task", "ready": false,
            "restartCount": 1, "image": "x", "imageID": "", "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1641, "message": started}}}]}));
        assert_eq!(observe(&exited), Some(("win-007".into(), NodeResult::Running)));
        let asked = lines::ran(State::RebootRequired, 3010, &[(AttemptOutcome::RebootRequired, "")]);
        let asks = pod(json!({"phase": "Running", "containerStatuses": [{"name": "task", "ready": false,
            "restartCount": 1, "image": "x", "imageID": "", "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 3010, "message": asked}}}]}));
        assert_eq!(observe(&asks), Some(("win-007".into(), NodeResult::Succeeded { reboot_required: true })));
    }
}
