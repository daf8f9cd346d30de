//! The reboot pod: a SYSTEM HostProcess pod pinned to the node that runs `node-executor reboot`.

use hostprocess_crds::HostTask;
use hostprocess_protocol::{Command, ResultLine};
use k8s_openapi::api::core::v1::{Container, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::hostprocess_pod::IMAGE_EXECUTOR;
use crate::labels::{self, REBOOT_FOR};
use crate::{hashing, hostprocess_pod};

/// The reboot pod of `task` for `node` (one at a time per node and task).
pub fn name(task: &str, node: &str) -> String {
    format!("hostprocess-reboot-{task}-{}", hashing::short(node))
}

/// A HostProcess pod pinned to `node` that asks Windows to restart (SYSTEM holds the shutdown
/// privilege). It tolerates every taint: the node is cordoned by then.
pub fn build(task: &HostTask, node: &str, executor_image: &str, revision: &str) -> Pod {
    let task_name = task.name_any();
    let reason = format!(
        "hostprocess-operator: HostTask {}/{task_name} revision {revision} requires a reboot",
        task.namespace().unwrap_or_default()
    );
    Pod {
        metadata: ObjectMeta {
            name: Some(name(&task_name, node)),
            namespace: task.namespace(),
            labels: Some({
                let mut labels = labels::managed("hostprocess-reboot");
                labels.insert(REBOOT_FOR.to_string(), task_name.clone());
                labels
            }),
            owner_references: task.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(hostprocess_pod::pinned_system_spec(
            node,
            vec![Toleration { operator: Some("Exists".into()), ..Toleration::default() }],
            "Never",
            Container {
                name: "reboot".into(),
                image: Some(executor_image.into()),
                command: Some(hostprocess_pod::invocation(IMAGE_EXECUTOR, &Command::Reboot { reason })),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Container::default()
            },
            None,
        )),
        status: None,
    }
}

/// Why the reboot pod failed, if it did before the node rebooted.
pub fn failure(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let terminated = status.container_statuses.as_ref()?.first()?.state.as_ref()?.terminated.as_ref()?;
    if terminated.exit_code == 0 {
        return None;
    }
    let line = ResultLine::parse_last(terminated.message.as_deref().unwrap_or_default());
    let error = line.as_ref().and_then(ResultLine::error).map(str::to_string);
    Some(error.unwrap_or_else(|| format!("the reboot pod exited with code {}", terminated.exit_code)))
}
