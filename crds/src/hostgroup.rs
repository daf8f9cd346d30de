//! `HostGroup`: a Windows local group provisioned on a set of nodes, with file-system grants.
//! The operator provisions it through one short-lived HostProcess setup pod per node.

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::format;
use crate::messages as msg;

/// A local group, its members and its file-system grants, on the matching Windows nodes.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hostprocess.dev",
    version = "v1alpha1",
    kind = "HostGroup",
    doc = "A HostGroup provisions a Windows local group, its members and file-system grants on a set of Windows nodes.",
    plural = "hostgroups",
    shortname = "hg",
    category = "hostprocess",
    status = "HostGroupStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Group", "type":"string", "jsonPath":".spec.groupName"}"#,
    printcolumn = r#"{"name":"Targeted", "type":"integer", "jsonPath":".status.nodes.targeted"}"#,
    printcolumn = r#"{"name":"Provisioned", "type":"integer", "jsonPath":".status.nodes.provisioned"}"#,
    printcolumn = r#"{"name":"Failed", "type":"integer", "jsonPath":".status.nodes.failed"}"#,
    printcolumn = r#"{"name":"Ready", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Next Window", "type":"string", "jsonPath":".status.nextWindow"}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HostGroupSpec {
    /// The Windows local group's name: 1 to 104 characters, none of
    /// `" / \ [ ] : ; | = , + * ? < > @`, not only dots and spaces. A HostTask that runs as
    /// this HostGroup uses it as its `runAsUserName`. Cannot be changed.
    #[schemars(schema_with = "group_name_schema")]
    #[x_kube(validation = Rule::new("self == oldSelf").message(msg::GROUP_NAME_IMMUTABLE))]
    pub group_name: String,

    /// The group's description (comment) on the host, up to 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "description_schema")]
    pub description: Option<String>,

    /// Which Windows nodes get the group, by node labels. Always ANDed with
    /// `kubernetes.io/os=windows`; empty means every Windows node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// Tolerations for the taints of the targeted nodes (the usual Windows taints are
    /// tolerated without being listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,

    /// File-system rights granted to the group, one entry per path (what
    /// `icacls PATH /grant GROUP:(OI)(CI)RX` expresses). Granted to the group, never to a user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(
        merge_strategy = ListMerge::Map(vec!["path".into()]),
        validation = Rule::new("self.all(g, self.exists_one(h, h.path.lowerAscii() == g.path.lowerAscii()))").message(msg::GRANT_PATHS_UNIQUE),
    )]
    pub grants: Vec<Grant>,

    /// Existing accounts to add to the group: `name` or `DOMAIN\name`. Members added here are
    /// removed again when they leave this list; members added by others are left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "members_schema")]
    pub members: Vec<String>,

    /// The namespaces whose HostTasks may run as this group (`runAs.hostGroup`). Default none:
    /// a group is offered to a namespace by the cluster administrator who owns the HostGroup,
    /// never taken by whoever writes a task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "namespaces_schema")]
    pub namespaces: Vec<String>,

    /// How a change reaches the nodes: in waves of at most `maxConcurrent` nodes, halting when
    /// more than `maxFailures` fail. Nodes keep serving the tasks that run as the group while
    /// they wait for their wave. A change of `description` only, or of `namespaces`,
    /// `nodeSelector` or `tolerations`, re-provisions nothing.
    #[serde(default)]
    pub rollout: GroupRollout,

    /// What happens on the nodes when the HostGroup is deleted. `Delete` (default): the grants
    /// are revoked, the members removed and the group deleted from every node (a group that
    /// existed before the operator created it is kept). `Retain`: everything stays.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn group_name_schema(_: &mut SchemaGenerator) -> Schema {
    format::GROUP_NAME.schema()
}

fn description_schema(_: &mut SchemaGenerator) -> Schema {
    format::DESCRIPTION.schema()
}

fn path_schema(_: &mut SchemaGenerator) -> Schema {
    format::WINDOWS_PATH.schema()
}

fn members_schema(_: &mut SchemaGenerator) -> Schema {
    let mut items = format::ACCOUNT_NAME.schema();
    items.remove("description");
    let schema = serde_json::json!({
        "type": "array",
        "maxItems": 128,
        "x-kubernetes-list-type": "set",
        "items": items,
        "x-kubernetes-validations": [{
            "rule": "self.all(m, self.exists_one(n, n.lowerAscii() == m.lowerAscii()))",
            "message": msg::MEMBERS_UNIQUE,
        }],
    });
    Schema::try_from(schema).unwrap_or_default()
}

fn namespaces_schema(_: &mut SchemaGenerator) -> Schema {
    let mut items = format::NAMESPACE_NAME.schema();
    items.remove("description");
    let schema = serde_json::json!({
        "type": "array",
        "maxItems": 64,
        "x-kubernetes-list-type": "set",
        "items": items,
    });
    Schema::try_from(schema).unwrap_or_default()
}

impl HostGroupSpec {
    /// Whether HostTasks in `namespace` may run as this group.
    pub fn offered_to(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == namespace)
    }
}

/// How a HostGroup's change spreads over its nodes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupRollout {
    /// How many targeted nodes may be provisioned at once: a count like `5` or a percentage of
    /// the targeted nodes like `"25%"` (rounded up). Default `"25%"`.
    #[serde(default = "default_group_max_concurrent")]
    #[x_kube(validation = Rule::new(crate::hosttask::MAX_CONCURRENT_RULE).message(msg::MAX_CONCURRENT))]
    pub max_concurrent: IntOrString,

    /// How many nodes may fail to provision before no further node starts: a count or a
    /// percentage of the targeted nodes (rounded up). Default `0`: halt at the first failure.
    #[serde(default = "default_group_max_failures")]
    #[x_kube(validation = Rule::new(crate::hosttask::MAX_FAILURES_RULE).message(msg::MAX_FAILURES))]
    pub max_failures: IntOrString,

    /// When nodes may be provisioned: weekly maintenance windows and blackout dates in a time
    /// zone, as a HostTask's `rollout.schedule`. Outside them no node starts (`Ready` is False
    /// with reason `WaitingForMaintenanceWindow`, `status.nextWindow` says when one opens);
    /// nodes already provisioning finish, and cleanup of nodes the group leaves is not held back.
    /// Unset: any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::Schedule>,
}

fn default_group_max_concurrent() -> IntOrString {
    IntOrString::String("25%".to_string())
}

fn default_group_max_failures() -> IntOrString {
    IntOrString::Int(0)
}

impl Default for GroupRollout {
    fn default() -> Self {
        GroupRollout {
            max_concurrent: default_group_max_concurrent(),
            max_failures: default_group_max_failures(),
            schedule: None,
        }
    }
}

/// Rights on one path for the group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// An absolute local path with a drive letter, like `C:\ProgramData\MyApp`. No UNC,
    /// device or relative paths, no `.`/`..` segments, wildcards or streams.
    #[schemars(schema_with = "path_schema")]
    pub path: String,

    /// `Read` (R), `ReadAndExecute` (RX), `Write` (W), `Modify` (M) or `FullControl` (F).
    pub rights: Rights,

    /// Which objects under the path the grant covers, as in the Windows security dialog.
    /// Default `ThisFolderSubfoldersAndFiles` (`(OI)(CI)`).
    #[serde(default)]
    pub applies_to: AppliesTo,
}

/// File-system rights, as icacls names them.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rights {
    /// Read data, attributes and permissions (icacls `R`).
    Read,
    /// Read and run programs (icacls `RX`).
    ReadAndExecute,
    /// Create files and folders, write data and attributes (icacls `W`).
    Write,
    /// Read, write, run and delete (icacls `M`).
    Modify,
    /// Everything, including changing permissions and taking ownership (icacls `F`).
    FullControl,
}

impl Rights {
    /// The right as `icacls` spells it.
    pub fn icacls(self) -> &'static str {
        match self {
            Rights::Read => "R",
            Rights::ReadAndExecute => "RX",
            Rights::Write => "W",
            Rights::Modify => "M",
            Rights::FullControl => "F",
        }
    }
}

impl AppliesTo {
    /// The inheritance flags as `icacls` spells them (`(OI)(CI)`; empty for this folder only).
    pub fn icacls(self) -> &'static str {
        match self {
            AppliesTo::ThisFolderOnly => "",
            AppliesTo::ThisFolderSubfoldersAndFiles => "(OI)(CI)",
            AppliesTo::ThisFolderAndSubfolders => "(CI)",
            AppliesTo::ThisFolderAndFiles => "(OI)",
            AppliesTo::SubfoldersAndFilesOnly => "(OI)(CI)(IO)",
            AppliesTo::SubfoldersOnly => "(CI)(IO)",
            AppliesTo::FilesOnly => "(OI)(IO)",
        }
    }
}

/// Which objects a grant covers (its inheritance flags).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppliesTo {
    /// The path itself only (no inheritance).
    ThisFolderOnly,
    /// The folder, its subfolders and files: `(OI)(CI)`.
    #[default]
    ThisFolderSubfoldersAndFiles,
    /// The folder and its subfolders: `(CI)`.
    ThisFolderAndSubfolders,
    /// The folder and its files: `(OI)`.
    ThisFolderAndFiles,
    /// Subfolders and files, not the folder itself: `(OI)(CI)(IO)`.
    SubfoldersAndFilesOnly,
    /// Subfolders only: `(CI)(IO)`.
    SubfoldersOnly,
    /// Files only: `(OI)(IO)`.
    FilesOnly,
}

/// What deleting the HostGroup does on the nodes.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Revoke the grants, remove the members and delete the group on every node first.
    #[default]
    Delete,
    /// Leave the group, members and grants on the nodes.
    Retain,
}

/// What the operator observed of the group's provisioning.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostGroupStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `Reconciling`, `Stalled`, each with the generation it was computed for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// How many targeted nodes are in each state for the current generation.
    #[serde(default)]
    pub nodes: GroupNodeCounts,

    /// The failing nodes with the reason; at most 20 (see `nodes.failed` for the total).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub failures: Vec<GroupNodeFailure>,

    /// When the next maintenance window opens, while the rollout waits for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// Node counts of a HostGroup.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupNodeCounts {
    /// Windows nodes that match the selector.
    pub targeted: u32,
    /// Nodes where the group, members and grants of the current generation are in place.
    pub provisioned: u32,
    /// Nodes whose setup has not finished yet.
    pub pending: u32,
    /// Nodes whose setup failed.
    pub failed: u32,
}

/// One node where provisioning failed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupNodeFailure {
    /// The node's name.
    pub node: String,
    /// A machine-readable reason, e.g. `GrantFailed`.
    pub reason: String,
    /// A human-readable account, shortened to 512 characters.
    #[schemars(length(max = 512))]
    pub message: String,
}
