//! Authorize: whether a cluster administrator allowed this task at all, checked before anything
//! else is read or written (not even a referenced Secret is read for a task that may not run).
//!
//! A namespace is enabled by a HostTaskGrant named after it; the grant lists the capabilities
//! its tasks may use, and a HostGroup lists the namespaces that may run as it. The admission
//! policy in `deploy/policy` refuses the same tasks before they reach etcd where it is
//! installed; this check holds where it is not.

use hostprocess_crds::{Account, HostGroup, HostTask, HostTaskGrant};
use kube::ResourceExt;

use crate::conditions::Blocked;

/// Why `task` may not run, given its namespace's grant, the HostGroup it runs as (when it
/// exists) and how many nodes it targets; `None` when it may.
pub fn refusal(
    task: &HostTask,
    grant: Option<&HostTaskGrant>,
    group: Option<&HostGroup>,
    targeted: usize,
) -> Option<Blocked> {
    let namespace = task.namespace().unwrap_or_default();
    let Some(grant) = grant else {
        return Some(Blocked {
            reason: "NamespaceNotEnabled",
            message: format!(
                "namespace {namespace} is not enabled for HostTasks: no HostTaskGrant named {namespace} exists, so nothing runs; a HostTask runs code on Windows nodes, so only a cluster administrator enables a namespace (docs/operations.md, \"Enabling a namespace\")"
            ),
        });
    };
    if task.spec.run_as.account == Account::HostGroup
        && let Some(group) = group
        && !group.spec.offered_to(&namespace)
    {
        return Some(Blocked {
            reason: "HostGroupNotOffered",
            message: format!(
                "HostGroup {} is not offered to namespace {namespace}; a cluster administrator can add {namespace} to spec.namespaces of the HostGroup, or the task can run as an account HostTaskGrant {namespace} allows",
                group.name_any()
            ),
        });
    }
    let targeted = u32::try_from(targeted).unwrap_or(u32::MAX);
    let refused = grant.spec.refusal(&grant.name_any(), &task.spec, targeted)?;
    Some(Blocked { reason: refused.reason, message: refused.message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(spec: serde_json::Value) -> HostTask {
        let mut task = HostTask::new("patch", serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}")));
        task.metadata.namespace = Some("ops".into());
        task
    }

    fn grant(name: &str, spec: serde_json::Value) -> HostTaskGrant {
        HostTaskGrant::new(name, serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}")))
    }

    fn group(namespaces: &[&str]) -> HostGroup {
        let spec = json!({"groupName": "AppLogReaders", "namespaces": namespaces});
        HostGroup::new("log-readers", serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}")))
    }

    fn reason(
        task: &HostTask,
        grant: Option<&HostTaskGrant>,
        group: Option<&HostGroup>,
    ) -> Option<&'static str> {
        refusal(task, grant, group, 10).map(|b| b.reason)
    }

    #[test]
    fn nothing_runs_in_a_namespace_without_its_grant() {
        let plain = task(json!({"script": "exit 0"}));
        let refused = refusal(&plain, None, None, 10).unwrap_or_else(|| panic!("refused"));
        assert_eq!(refused.reason, "NamespaceNotEnabled");
        assert!(refused.message.contains("no HostTaskGrant named ops exists"), "{}", refused.message);
        assert_eq!(reason(&plain, Some(&grant("ops", json!({}))), None), None);
    }

    #[test]
    fn a_host_group_runs_only_in_the_namespaces_it_is_offered_to() {
        let as_group =
            task(json!({"script": "exit 0", "runAs": {"account": "HostGroup", "hostGroup": "log-readers"}}));
        let enabled = grant("ops", json!({}));
        assert_eq!(reason(&as_group, Some(&enabled), Some(&group(&["other"]))), Some("HostGroupNotOffered"));
        assert_eq!(reason(&as_group, Some(&enabled), Some(&group(&["other", "ops"]))), None);
        // A HostGroup that does not exist yet is waited for elsewhere, not refused here.
        assert_eq!(reason(&as_group, Some(&enabled), None), None);
    }

    #[test]
    fn the_grants_refusal_becomes_the_tasks() {
        let system = task(json!({"script": "exit 0", "runAs": {"account": "System"}}));
        assert_eq!(reason(&system, Some(&grant("ops", json!({}))), None), Some("AccountNotGranted"));
        let allowed = grant("ops", json!({"accounts": ["System"]}));
        assert_eq!(reason(&system, Some(&allowed), None), None);
    }
}
