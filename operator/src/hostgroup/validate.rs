//! Validate: what stops a HostGroup from being provisioned at all — a name too long to label its
//! pods with, a spec the schema could not refuse, a Windows group another HostGroup manages, a
//! setup namespace that is missing or refuses HostProcess pods. Each becomes a Stalled condition.

use std::sync::Arc;

use hostprocess_crds::HostGroup;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;

use crate::conditions::Blocked;
use crate::labels;

/// Longest HostGroup name usable as a label value.
const MAX_NAME: usize = 63;

/// The reason of a HostGroup that names a Windows group another HostGroup manages.
pub const GROUP_NAME_TAKEN: &str = "GroupNameTaken";

/// The HostGroup that manages `group`'s Windows group: of all HostGroups naming it
/// (case-insensitively, as Windows compares), the oldest; by name among equals.
pub fn owner<'a>(group: &HostGroup, groups: &'a [Arc<HostGroup>]) -> Option<&'a Arc<HostGroup>> {
    let name = group.spec.group_name.to_lowercase();
    groups
        .iter()
        .filter(|g| g.spec.group_name.to_lowercase() == name)
        .min_by_key(|g| (g.metadata.creation_timestamp.clone().map(|t| t.0), g.name_any()))
}

pub fn blocked(
    group: &HostGroup,
    groups: &[Arc<HostGroup>],
    namespace: &str,
    ns: Option<&PartialObjectMeta<Namespace>>,
) -> Option<Blocked> {
    if group.name_any().len() > MAX_NAME {
        return Some(Blocked {
            reason: "InvalidName",
            message: format!(
                "the HostGroup's name is {} characters long; use at most {MAX_NAME} (its setup pods are labelled with it)",
                group.name_any().len()
            ),
        });
    }
    if let Err(errors) = group.spec.validate() {
        return Some(Blocked { reason: "InvalidSpec", message: errors.to_string() });
    }
    if let Some(Err(message)) = group.spec.rollout.schedule.as_ref().map(|s| s.compile()) {
        return Some(Blocked {
            reason: "InvalidSchedule",
            message: format!("spec.rollout.schedule: {message}"),
        });
    }
    if let Some(owner) = owner(group, groups).filter(|o| o.uid() != group.uid()) {
        return Some(Blocked {
            reason: GROUP_NAME_TAKEN,
            message: format!(
                "Windows group {} is managed by HostGroup {} (groupName {:?}); one HostGroup manages a group: change that one, or delete this one (nothing was done on the nodes for it)",
                group.spec.group_name,
                owner.name_any(),
                owner.spec.group_name
            ),
        });
    }
    let Some(ns) = ns else {
        return Some(Blocked {
            reason: "NamespaceMissing",
            message: format!(
                "the setup pods run in namespace {namespace}, which does not exist; install the operator's namespaces (kubectl apply -k deploy/) or set --hostgroup-namespace"
            ),
        });
    };
    if let Some(level) = labels::pod_security_refusal(ns.labels()) {
        return Some(Blocked {
            reason: "PodSecurityRejects",
            message: format!(
                "namespace {namespace} enforces the Pod Security level {level:?}, which refuses the HostProcess setup pods; label it pod-security.kubernetes.io/enforce=privileged"
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn group(name: &str, group_name: &str, created: &str) -> Arc<HostGroup> {
        let spec = serde_json::json!({"groupName": group_name});
        let mut g = HostGroup::new(name, serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}")));
        g.metadata.uid = Some(format!("uid-{name}"));
        g.metadata.creation_timestamp = Some(Time(created.parse().unwrap_or_else(|e| panic!("{e}"))));
        Arc::new(g)
    }

    #[test]
    fn the_oldest_hostgroup_naming_a_windows_group_owns_it_whatever_the_case() {
        let first = group("dup-grp", "DupGrp", "2026-01-01T00:00:00Z");
        let second = group("dupgrp", "dupgrp", "2026-01-02T00:00:00Z");
        let other = group("other", "Other", "2025-01-01T00:00:00Z");
        let all = vec![second.clone(), other.clone(), first.clone()];
        let namespace = PartialObjectMeta::<Namespace>::default();
        assert_eq!(owner(&second, &all).map(|o| o.name_any()).as_deref(), Some("dup-grp"));
        assert_eq!(blocked(&first, &all, "ns", Some(&namespace)), None, "the owner goes on");
        let refused = blocked(&second, &all, "ns", Some(&namespace)).unwrap_or_else(|| panic!("refused"));
        assert_eq!(refused.reason, GROUP_NAME_TAKEN);
        assert!(refused.message.contains("is managed by HostGroup dup-grp"), "{}", refused.message);
        assert_eq!(blocked(&other, &all, "ns", Some(&namespace)), None);
    }
}
