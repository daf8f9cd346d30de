//! What `status` shows: the HostTask's rollout read from its status and its pods, a row per
//! node whose pod exists (nodes not admitted yet are counted, not listed: a namespace user may
//! not list nodes).

use std::time::Duration;

use hostprocess_crds::HostTask;
use hostprocess_crds::hosttask::NodeCounts;
use hostprocess_protocol::{Outcome, ResultLine, State};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::api::Error;

/// The label that names a pod's HostTask, and the one with its revision.
pub const TASK_LABEL: &str = "hostprocess.dev/task";
pub const REVISION_LABEL: &str = "hostprocess.dev/revision";
/// On a task pod: where its node's reboot stands.
const REBOOT_STEP: &str = "hostprocess.dev/reboot";

/// A HostTask's rollout at one moment.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct View {
    pub namespace: String,
    pub name: String,
    pub revision: Option<String>,
    /// The status describes the spec applied last.
    pub current: bool,
    pub nodes: NodeCounts,
    pub conditions: Vec<ConditionView>,
    pub rows: Vec<NodeRow>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConditionView {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// One node, as its pod tells it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeRow {
    pub node: String,
    pub revision: String,
    pub state: String,
    pub attempt: Option<u32>,
    pub exit_code: Option<i64>,
    pub started: Option<Timestamp>,
    /// Seconds from the first attempt's start to the last one's end (or to now, running).
    pub duration_seconds: Option<u64>,
    pub message: String,
}

impl View {
    /// Whether the rollout no longer moves by itself: complete, halted or stalled.
    pub fn settled(&self) -> bool {
        self.current && (self.holds("Ready") || self.holds("Stalled"))
    }

    /// Whether the rollout of the latest spec completed.
    pub fn complete(&self) -> bool {
        self.current && self.holds("Ready")
    }

    fn holds(&self, type_: &str) -> bool {
        self.conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
    }

    /// What a reader watching a log wants to see change: counts, conditions and each node's
    /// state (not the clock: durations grow every second).
    pub fn moved(&self, before: &View) -> bool {
        let same_row = |(a, b): (&NodeRow, &NodeRow)| {
            (&a.node, &a.revision, &a.state, a.attempt, a.exit_code)
                == (&b.node, &b.revision, &b.state, b.attempt, b.exit_code)
        };
        self.nodes != before.nodes
            || self.conditions != before.conditions
            || self.revision != before.revision
            || self.current != before.current
            || self.rows.len() != before.rows.len()
            || !self.rows.iter().zip(&before.rows).all(same_row)
    }
}

/// Reads the task and its pods.
pub async fn read(client: &kube::Client, namespace: &str, name: &str) -> Result<View, Error> {
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), namespace);
    let task = crate::api::get_task(&tasks, namespace, name).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{TASK_LABEL}={name}")))
        .await
        .map_err(|e| Error::api(&format!("listing the pods of HostTask {namespace}/{name}"), e))?;
    Ok(view(&task, &listed.items, Timestamp::now()))
}

/// The view of `task` from its `pods` at `now`. Pure.
pub fn view(task: &HostTask, pods: &[Pod], now: Timestamp) -> View {
    let status = task.status.clone().unwrap_or_default();
    let conditions = status
        .conditions
        .iter()
        .map(|c| ConditionView {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect();
    let mut rows: Vec<NodeRow> = pods.iter().filter_map(|pod| row(pod, now)).collect();
    rows.sort_by(|a, b| (&a.node, &a.revision).cmp(&(&b.node, &b.revision)));
    View {
        namespace: task.metadata.namespace.clone().unwrap_or_default(),
        name: task.metadata.name.clone().unwrap_or_default(),
        revision: status.revision.clone(),
        current: status.observed_generation.is_some()
            && status.observed_generation == task.metadata.generation,
        nodes: status.nodes.clone(),
        conditions,
        rows,
    }
}

/// How the executor's last word reads, from a container's current or last termination.
fn last_termination(status: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    fn terminated(
        state: &Option<k8s_openapi::api::core::v1::ContainerState>,
    ) -> Option<&ContainerStateTerminated> {
        state.as_ref()?.terminated.as_ref()
    }
    terminated(&status.state).or_else(|| terminated(&status.last_state))
}

/// The executor's result line and the payload's last output line before it, from the
/// termination message.
fn result_line(status: &ContainerStatus) -> (Option<ResultLine>, Option<String>) {
    let Some(message) = last_termination(status).and_then(|t| t.message.as_deref()) else {
        return (None, None);
    };
    let output = message
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("node-executor") && !l.starts_with('{'))
        .map(str::to_string);
    (ResultLine::parse_last(message), output)
}

fn row(pod: &Pod, now: Timestamp) -> Option<NodeRow> {
    let node = pod.spec.as_ref()?.node_name.clone()?;
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let status = pod.status.as_ref();
    let ready_condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready" && c.status == "True"));
    let ready = ready_condition.is_some();
    let task =
        status.and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.iter().find(|c| c.name == "task"));
    let (line, output) = task.map(result_line).unwrap_or_default();
    let record = line.as_ref().and_then(|l| match &l.outcome {
        Outcome::Ran(report) => Some(report.record.clone()),
        _ => None,
    });
    let step =
        pod.metadata.annotations.as_ref().and_then(|a| a.get(REBOOT_STEP)).cloned().unwrap_or_default();
    let waiting = task.and_then(|t| t.state.as_ref()?.waiting.as_ref()?.reason.clone());
    let running = task.is_some_and(|t| t.state.as_ref().is_some_and(|s| s.running.is_some()));
    let failed =
        record.as_ref().is_some_and(|r| r.state == State::Failed) || line.as_ref().is_some_and(|l| !l.ok);
    let state = if pod.metadata.deletion_timestamp.is_some() {
        "Stopping".to_string()
    } else if step.starts_with("draining") {
        "Draining".into()
    } else if step.starts_with("rebooting") {
        "Rebooting".into()
    } else if step.starts_with("failed") {
        step.split(':').nth(1).unwrap_or("RebootFailed").to_string()
    } else if failed {
        "Failed".into()
    } else if ready {
        "Succeeded".into()
    } else if let Some(reason) = waiting.filter(|r| r != "ContainerCreating" && r != "PodInitializing") {
        reason
    } else if running {
        match record.as_ref().map(|r| r.state) {
            Some(State::RebootRequired) => "RebootRequired".into(),
            Some(State::RebootInitiated) => "Restarting".into(),
            _ => "Running".into(),
        }
    } else {
        "Starting".into()
    };
    let attempts = record.as_ref().map(|r| r.attempts.clone()).unwrap_or_default();
    let parse = |t: &str| t.parse::<Timestamp>().ok();
    let started = attempts.first().and_then(|a| parse(&a.start_time)).or_else(|| {
        let running = task?.state.as_ref()?.running.as_ref()?;
        running.started_at.as_ref().map(|t| t.0)
    });
    let ended = attempts.last().and_then(|a| a.end_time.as_deref()).and_then(parse);
    // An executor that succeeded idles, ready, without a record in its status: it became ready
    // when the payload ended.
    let ready_since = ready_condition.and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0);
    let until = ended.or(ready_since.filter(|_| state == "Succeeded")).unwrap_or(now);
    let duration_seconds =
        started.and_then(|s| Duration::try_from(until.duration_since(s)).ok()).map(|d| d.as_secs());
    let exit_code = record.as_ref().and_then(|r| r.exit_code).or_else(|| {
        // A success exits 0 without a termination message: the container says the code.
        let terminated = last_termination(task?)?;
        (terminated.exit_code == 0 && state == "Succeeded").then_some(0)
    });
    let account = match (&line, attempts.last()) {
        _ if step.starts_with("failed") => step.splitn(3, ':').nth(2).unwrap_or_default().to_string(),
        (_, Some(last)) if !last.message.is_empty() => last.message.clone(),
        (_, Some(_)) if state == "Failed" => format!("exited with code {}", exit_code.unwrap_or_default()),
        (Some(line), _) => line.error().unwrap_or_default().to_string(),
        _ => String::new(),
    };
    let message = match output.filter(|_| state == "Failed") {
        Some(output) if !account.is_empty() => format!("{account}: {output}"),
        Some(output) => output,
        None => account,
    };
    Some(NodeRow {
        node,
        revision: labels.get(REVISION_LABEL).cloned().unwrap_or_default(),
        state,
        attempt: attempts.last().map(|a| a.number),
        exit_code,
        started,
        duration_seconds,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_node_that_succeeded_keeps_the_duration_it_took() {
        // The executor idles, ready, after its payload: no record in the pod's status.
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "labels": {REVISION_LABEL: "abc"}},
            "spec": {"nodeName": "win-001", "containers": []},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-02T10:00:05Z"}],
                "containerStatuses": [{"name": "task", "image": "x", "imageID": "", "ready": true,
                    "restartCount": 0, "state": {"running": {"startedAt": "2026-12-02T10:00:00Z"}}}],
            },
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let later = "2026-12-02T10:05:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        let row = row(&pod, later).unwrap_or_else(|| panic!("a row"));
        assert_eq!((row.state.as_str(), row.duration_seconds), ("Succeeded", Some(5)));
    }
}
