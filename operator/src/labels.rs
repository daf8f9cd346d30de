//! Names, labels and the field manager of everything the operator creates, in one place so
//! the watches (label selectors) and the builders agree.

/// The server-side apply field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "hostprocess-operator";

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "hostprocess-operator";
pub const NAME: &str = "app.kubernetes.io/name";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const VERSION: &str = "app.kubernetes.io/version";
/// The HostTask a DaemonSet, ConfigMap or pod belongs to (its name; the namespace is the object's).
pub const TASK: &str = "hostprocess.dev/task";
/// The task revision a pod template runs.
pub const REVISION: &str = "hostprocess.dev/revision";

/// The prefix of the node labels that admit nodes into a pinned task's DaemonSet
/// (`admitted.hostprocess.dev/<task uid>=<revision>`, see `hosttask::admission`).
pub const ADMITTED_PREFIX: &str = "admitted.hostprocess.dev";

/// Whether a node label key is one of the operator's admission labels (they change with
/// rollouts; targeting never reads them).
pub fn is_admission_label(key: &str) -> bool {
    key.strip_prefix(ADMITTED_PREFIX).is_some_and(|rest| rest.starts_with('/'))
}

/// On a task pod: the retry round (`spec.retryFailed`, hashed) its template was made for. A
/// failed pod of another round is run again when the rollout admits it.
pub const RETRY: &str = "hostprocess.dev/retry";

/// On a task pod: the task's `rollout.concurrencyGroup`, so a restarted operator sees which
/// nodes run a task of the group.
pub const CONCURRENCY_GROUP: &str = "hostprocess.dev/concurrency-group";

/// On a task pod: where its node's reboot stands (`hosttask::reboot::step`).
pub const REBOOT_STEP: &str = "hostprocess.dev/reboot";

/// On a node: the task (`namespace/name`) that cordoned it, so only that task uncordons it.
pub const CORDONED_BY: &str = "hostprocess.dev/cordoned-by";
/// On a reboot pod: the task it reboots a node for.
pub const REBOOT_FOR: &str = "hostprocess.dev/reboot-for";

/// On a node, one per HostGroup: the record that the group is in place there (its revision,
/// the node's machine ID then, when), keyed by the HostGroup's uid (`hostgroup::record`).
pub const PROVISIONED_PREFIX: &str = "provisioned.hostprocess.dev/";
/// Only in the operator's node cache, never written: the node's `status.nodeInfo.machineID`
/// (a reimaged node has a new one).
pub const CACHED_MACHINE_ID: &str = "hostprocess.dev/machine-id";
/// Only in the operator's node cache, never written: the status of the node's `Ready` condition
/// (`True`, `False`, `Unknown`), to say why a node's cleanup waits.
pub const CACHED_READY: &str = "hostprocess.dev/ready";

/// The HostGroup a setup pod or its spec ConfigMap belongs to (its name).
pub const HOST_GROUP: &str = "hostprocess.dev/hostgroup";
/// On a provision pod: a short hash of the machine ID of the installation it provisions (a
/// reimaged node needs a new pod for the same revision).
pub const MACHINE: &str = "hostprocess.dev/machine";
/// What a setup pod does: `provision` or `cleanup`.
pub const SETUP: &str = "hostprocess.dev/setup";

/// The Pod Security admission label whose level must be `privileged` where HostProcess pods run.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

/// The Pod Security level a namespace enforces when it refuses HostProcess pods (any level but
/// `privileged`); `None` when it allows them.
pub fn pod_security_refusal(labels: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    labels.get(POD_SECURITY_ENFORCE).map(String::as_str).filter(|level| *level != "privileged")
}

/// The labels every object the operator makes carries; `component` names what it is
/// (`hostprocess-task`, `hostprocess-setup`, `hostprocess-reboot`).
pub fn managed(component: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
        (NAME.to_string(), component.to_string()),
        (PART_OF.to_string(), "hostprocess-operator".to_string()),
    ])
}

/// The label selector of everything the operator manages: what its watches select.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE}")
}

/// What the HostTask watches select: the task pods.
pub fn task_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE},{TASK}")
}

/// What the HostGroup watches select: the setup pods.
pub fn setup_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_VALUE},{HOST_GROUP}")
}

/// The name of a task's DaemonSet (and of its pods' prefix).
pub fn daemon_set_name(task: &str) -> String {
    format!("hostprocess-{task}")
}

/// The name of the ConfigMap that carries a task's inline script for one revision.
pub fn script_config_map_name(task: &str, revision: &str) -> String {
    format!("hostprocess-{task}-script-{revision}")
}
