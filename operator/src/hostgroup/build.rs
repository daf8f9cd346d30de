//! HostGroup → the objects that put it on the nodes: the spec of one revision as a ConfigMap,
//! and one setup pod per node that runs `node-executor provision` (or `deprovision` to clean
//! up). Pure functions of the HostGroup and their inputs; no client.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hostprocess_crds::HostGroup;
use hostprocess_protocol::{Command, digest};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, Pod, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::hostprocess_pod::{self, IMAGE_EXECUTOR, invocation, windows_tolerations};
use crate::{hashing, labels};

/// Where the group's spec is mounted in the setup container.
const SPEC_DIR: &str = r"C:\hostprocess\group";
const SPEC_FILE: &str = "spec.json";

/// What a setup pod does on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Make the node match the HostGroup's spec of a revision.
    Provision,
    /// Undo what provisioning did (deletion with policy `Delete`, or the node left the selector).
    Cleanup,
}

impl Setup {
    pub fn label(self) -> &'static str {
        match self {
            Setup::Provision => "provision",
            Setup::Cleanup => "cleanup",
        }
    }

    pub fn from_label(value: &str) -> Option<Self> {
        match value {
            "provision" => Some(Setup::Provision),
            "cleanup" => Some(Setup::Cleanup),
            _ => None,
        }
    }
}

/// What the builders need besides the HostGroup.
#[derive(Debug, Clone)]
pub struct SetupInputs<'a> {
    /// The namespace the setup pods run in (it must allow privileged pods).
    pub namespace: &'a str,
    pub executor_image: &'a str,
    pub revision: &'a str,
}

fn group_labels(group: &HostGroup, setup: Option<Setup>, revision: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = labels::managed("hostprocess-setup");
    labels.insert(labels::HOST_GROUP.to_string(), group.name_any());
    if let Some(setup) = setup {
        labels.insert(labels::SETUP.to_string(), setup.label().to_string());
    }
    if let Some(revision) = revision {
        labels.insert(labels::REVISION.to_string(), revision.to_string());
    }
    labels
}

/// Owned by the (cluster-scoped) HostGroup, so they go with it.
fn owned_meta(
    group: &HostGroup,
    namespace: &str,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        owner_references: group.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The ConfigMap carrying one spec file (immutable, named after a digest of its content: the
/// description can change within a revision).
pub fn spec_config_map_name(group: &str, spec_sha256: &str) -> String {
    format!("hostgroup-{group}-{}", &spec_sha256[..10.min(spec_sha256.len())])
}

/// The setup pod of one node: `provision` pods are per revision and installation (`machine`, a
/// short hash of the machine ID), a node has one `cleanup` pod.
pub fn setup_pod_name(group: &str, node: &str, setup: Setup, revision: &str, machine: &str) -> String {
    let node = hashing::short(node);
    match setup {
        Setup::Provision => format!("hostgroup-{group}-{node}-{revision}-{machine}"),
        Setup::Cleanup => format!("hostgroup-{group}-{node}-cleanup"),
    }
}

/// The spec file the executor applies, as the `provision` subcommand reads it: what goes on the
/// node, not where (the selector, tolerations and namespaces are the operator's).
fn spec_text(group: &HostGroup) -> Result<String, serde_json::Error> {
    let spec = &group.spec;
    let on_the_node = serde_json::json!({
        "groupName": spec.group_name, "description": spec.description,
        "members": spec.members, "grants": spec.grants,
    });
    serde_json::to_string_pretty(&on_the_node)
}

/// The spec the executor applies, in the ConfigMap its setup pods mount.
pub fn spec_config_map(group: &HostGroup, inputs: &SetupInputs<'_>) -> Result<ConfigMap, serde_json::Error> {
    let spec = spec_text(group)?;
    Ok(ConfigMap {
        metadata: owned_meta(
            group,
            inputs.namespace,
            spec_config_map_name(&group.name_any(), &digest::sha256_hex(spec.as_bytes())),
            group_labels(group, None, Some(inputs.revision)),
        ),
        data: Some(BTreeMap::from([(SPEC_FILE.to_string(), spec)])),
        immutable: Some(true),
        ..ConfigMap::default()
    })
}

/// A HostProcess pod pinned to `node`, running as SYSTEM (creating groups and changing ACLs
/// needs it), run once: the plan decides whether a failure is tried again.
/// `machine`: a short hash of the node's machine ID (`hashing::short`).
pub fn setup_pod(
    group: &HostGroup,
    node: &str,
    machine: &str,
    setup: Setup,
    inputs: &SetupInputs<'_>,
) -> Pod {
    let name = group.name_any();
    // A spec that cannot be written has no ConfigMap either: the digest of nothing then refuses
    // whatever is found.
    let spec_sha256 = digest::sha256_hex(spec_text(group).unwrap_or_default().as_bytes());
    // The executor records what it does for this HostGroup under its uid.
    let owner = group.uid().unwrap_or_default();
    let (args, volumes, mounts) = match setup {
        Setup::Provision => (
            Command::Provision {
                spec: PathBuf::from(format!(r"{SPEC_DIR}\{SPEC_FILE}")),
                spec_sha256: spec_sha256.clone(),
                owner: owner.clone(),
            },
            Some(vec![Volume {
                name: "spec".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: spec_config_map_name(&name, &spec_sha256),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            }]),
            Some(vec![VolumeMount {
                name: "spec".into(),
                mount_path: SPEC_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]),
        ),
        // Group names are validated (no separators, no quotes); the word stays one argument.
        Setup::Cleanup => {
            (Command::Deprovision { group: group.spec.group_name.clone(), owner: owner.clone() }, None, None)
        }
    };
    let command = invocation(IMAGE_EXECUTOR, &args);
    let mut tolerations = windows_tolerations();
    tolerations.extend(group.spec.tolerations.iter().cloned());
    let revision = (setup == Setup::Provision).then_some(inputs.revision);
    let mut labels = group_labels(group, Some(setup), revision);
    if setup == Setup::Provision {
        labels.insert(labels::MACHINE.to_string(), machine.to_string());
    }
    let container = Container {
        name: "setup".into(),
        image: Some(inputs.executor_image.into()),
        command: Some(command),
        volume_mounts: mounts,
        // The executor's last line is its JSON result: the reason of a failure.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    Pod {
        metadata: owned_meta(
            group,
            inputs.namespace,
            setup_pod_name(&name, node, setup, inputs.revision, machine),
            labels,
        ),
        spec: Some(PodSpec {
            termination_grace_period_seconds: Some(30),
            // Not restarted by the kubelet: the operator tries a failure that may pass again
            // with a new pod, and leaves one that lasts (plan::RETRY_AFTER).
            ..hostprocess_pod::pinned_system_spec(node, tolerations, "Never", container, volumes)
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostprocess_pod::SYSTEM;
    use hostprocess_crds::HostGroupSpec;
    use serde_json::json;

    /// The executor's own parser on a container's command (the program first).
    fn executor_command(command: Option<&[String]>) -> Command {
        let command = command.unwrap_or_default();
        assert_eq!(command.first().map(String::as_str), Some(IMAGE_EXECUTOR));
        let parsed = hostprocess_protocol::Cli::parse_args(&command[1..]).unwrap_or_else(|e| panic!("{e}"));
        parsed.command
    }

    fn group() -> HostGroup {
        let spec: HostGroupSpec = serde_json::from_value(json!({
            "groupName": "AppOperators",
            "grants": [{"path": "C:\\ProgramData\\App", "rights": "Modify"}],
        }))
        .unwrap_or_else(|e| panic!("spec: {e}"));
        let mut group = HostGroup::new("app-operators", spec);
        group.metadata.uid = Some("0b7c".into());
        group
    }

    #[test]
    fn a_setup_pod_is_a_system_hostprocess_pod_pinned_to_its_node() {
        let inputs = SetupInputs { namespace: "hostprocess-tasks", executor_image: "img:1", revision: "abc" };
        let pod = setup_pod(&group(), "win-007", "m1", Setup::Provision, &inputs);
        let spec = pod.spec.as_ref().unwrap_or_else(|| panic!("spec"));
        assert_eq!(spec.node_name.as_deref(), Some("win-007"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"), "the operator decides what is retried");
        assert_eq!(spec.host_network, Some(true));
        let windows = spec.security_context.as_ref().and_then(|s| s.windows_options.as_ref());
        assert_eq!(windows.and_then(|w| w.host_process), Some(true));
        assert_eq!(windows.and_then(|w| w.run_as_user_name.as_deref()), Some(SYSTEM));
        let provision = PathBuf::from(r"C:\hostprocess\group\spec.json");
        let map = spec_config_map(&group(), &inputs).unwrap_or_else(|e| panic!("{e}"));
        let file = map.data.as_ref().and_then(|d| d.get(SPEC_FILE)).unwrap_or_else(|| panic!("spec file"));
        assert_eq!(
            executor_command(spec.containers[0].command.as_deref()),
            Command::Provision {
                spec: provision,
                spec_sha256: digest::sha256_hex(file.as_bytes()),
                owner: "0b7c".into()
            },
            "the pod names the digest of exactly what the ConfigMap carries"
        );
        let owner = &pod.metadata.owner_references.as_ref().unwrap_or_else(|| panic!("owner"))[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("HostGroup", Some(true)));
        assert_eq!(pod.labels().get(labels::REVISION).map(String::as_str), Some("abc"));

        let cleanup = setup_pod(&group(), "win-007", "m1", Setup::Cleanup, &inputs);
        let command = cleanup.spec.and_then(|s| s.containers[0].command.clone());
        assert_eq!(
            executor_command(command.as_deref()),
            Command::Deprovision { group: "AppOperators".into(), owner: "0b7c".into() }
        );
        assert!(cleanup.metadata.name.unwrap_or_default().ends_with("-cleanup"));
    }
}
