//! Validate: what stops a task from running at all, checked before anything is applied. Bad input
//! the schema could not catch becomes a Stalled condition, never a retry storm.

use hostprocess_crds::HostTask;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;

use super::resolve::{Account, Resolved};
use crate::conditions::Blocked;
use crate::labels;

/// Longest task name whose DaemonSet name (`hostprocess-<name>`) is a valid label value.
const MAX_TASK_NAME: usize = 51;

/// The account the task runs as, or why it cannot run.
pub fn validate(task: &HostTask, resolved: &Resolved) -> Result<Account, Blocked> {
    match blocked(task, resolved.namespace.as_deref()) {
        Some(blocked) => Err(blocked),
        None => resolved.account.clone(),
    }
}

fn blocked(task: &HostTask, namespace: Option<&PartialObjectMeta<Namespace>>) -> Option<Blocked> {
    if task.name_any().len() > MAX_TASK_NAME {
        return Some(Blocked {
            reason: "InvalidName",
            message: format!(
                "the task's name is {} characters long; use at most {MAX_TASK_NAME} (its DaemonSet is named hostprocess-<name>)",
                task.name_any().len()
            ),
        });
    }
    if let Err(errors) = task.spec.validate() {
        return Some(Blocked { reason: "InvalidSpec", message: errors.to_string() });
    }
    if let Some(Err(message)) = task.spec.rollout.schedule.as_ref().map(|s| s.compile()) {
        return Some(Blocked {
            reason: "InvalidSchedule",
            message: format!("spec.rollout.schedule: {message}"),
        });
    }
    if let Some(level) = namespace.and_then(|ns| labels::pod_security_refusal(ns.labels())) {
        return Some(Blocked {
            reason: "PodSecurityRejects",
            message: format!(
                "namespace {} enforces the Pod Security level {level:?}, which refuses HostProcess pods; run the task in a namespace labelled pod-security.kubernetes.io/enforce=privileged (the operator's install creates hostprocess-tasks)",
                task.namespace().unwrap_or_default()
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(name: &str, spec: serde_json::Value) -> HostTask {
        let mut task =
            HostTask::new(name, serde_json::from_value(spec).unwrap_or_else(|e| panic!("spec: {e}")));
        task.metadata.namespace = Some("ops".into());
        task
    }

    fn namespace(level: &str) -> PartialObjectMeta<Namespace> {
        let mut ns = PartialObjectMeta::<Namespace>::default();
        ns.metadata.labels = Some([(labels::POD_SECURITY_ENFORCE.to_string(), level.to_string())].into());
        ns
    }

    #[test]
    fn a_schedule_in_an_unknown_time_zone_blocks_the_task_and_says_what_to_fix() {
        let spec = json!({"script": "exit 0", "rollout": {"schedule": {"timeZone": "Europe/Atlantis"}}});
        let blocked = blocked(&task("patch", spec), None).unwrap_or_else(|| panic!("blocked"));
        assert_eq!(blocked.reason, "InvalidSchedule");
        assert!(
            blocked.message.contains("timeZone \"Europe/Atlantis\" is not a time zone"),
            "{}",
            blocked.message
        );
    }

    #[test]
    fn a_name_too_long_or_a_namespace_that_refuses_hostprocess_pods_blocks_the_task() {
        let long = task(&"p".repeat(52), json!({"script": "exit 0"}));
        assert_eq!(blocked(&long, None).map(|b| b.reason), Some("InvalidName"));
        let ok = task("patch", json!({"script": "exit 0"}));
        assert_eq!(blocked(&ok, Some(&namespace("privileged"))), None);
        let refused = blocked(&ok, Some(&namespace("baseline"))).unwrap_or_else(|| panic!("blocked"));
        assert_eq!(refused.reason, "PodSecurityRejects");
        assert!(
            refused.message.contains("pod-security.kubernetes.io/enforce=privileged"),
            "{}",
            refused.message
        );
    }
}
