//! `HostTask`: one administrative workload run on a set of Windows nodes through HostProcess
//! containers, rolled out in waves. The operator turns it into a HostProcess DaemonSet.

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::format;
use crate::messages as msg;

/// What to run on which Windows nodes, as whom, within which limits, and how to roll it out.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hostprocess.dev",
    version = "v1alpha1",
    kind = "HostTask",
    doc = "A HostTask runs one administrative payload on a set of Windows nodes through HostProcess containers, rolled out in waves.",
    plural = "hosttasks",
    shortname = "ht",
    category = "hostprocess",
    namespaced,
    status = "HostTaskStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Mode", "type":"string", "jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Revision", "type":"string", "jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Targeted", "type":"integer", "jsonPath":".status.nodes.targeted"}"#,
    printcolumn = r#"{"name":"Running", "type":"integer", "jsonPath":".status.nodes.running"}"#,
    printcolumn = r#"{"name":"Succeeded", "type":"integer", "jsonPath":".status.nodes.succeeded"}"#,
    printcolumn = r#"{"name":"Failed", "type":"integer", "jsonPath":".status.nodes.failed"}"#,
    printcolumn = r#"{"name":"Ready", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason", "type":"string", "priority":1, "jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Next Window", "type":"string", "jsonPath":".status.nextWindow"}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("has(self.command) != has(self.script)").message(msg::COMMAND_OR_SCRIPT),
    validation = Rule::new("!has(self.args) || has(self.command)").message(msg::ARGS_NEED_COMMAND),
    validation = Rule::new("self.mode == 'Once' || self.reboot == 'Never'").message(msg::REBOOT_ONLY_ONCE),
    validation = Rule::new("self.mode == 'Once' || !has(self.timeout)").message(msg::TIMEOUT_ONLY_ONCE),
    validation = Rule::new("self.mode == 'Once' || !has(self.rollout.schedule)").message(msg::SCHEDULE_ONLY_ONCE),
    validation = Rule::new("self.mode == 'Once' || !has(self.rollout.concurrencyGroup)").message(msg::CONCURRENCY_GROUP_ONLY_ONCE),
    validation = Rule::new("self.mode == 'Once' || !has(self.healthCheck)").message(msg::HEALTH_CHECK_ONLY_ONCE),
    validation = Rule::new("!has(self.rollout.concurrencyGroup) || has(self.timeout)").message(msg::CONCURRENCY_GROUP_TIMEOUT),
)]
#[serde(rename_all = "camelCase")]
pub struct HostTaskSpec {
    /// Which Windows nodes run the task, by node labels. Always ANDed with
    /// `kubernetes.io/os=windows`; empty means every Windows node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// Tolerations for the taints of the targeted nodes. The usual Windows taints
    /// (`os=windows`, `node.kubernetes.io/os=windows`) are tolerated without being listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,

    /// The container image that carries the payload's files. Defaults to the operator's
    /// node-executor image, which is enough for programs and scripts that use only what the
    /// host has (a HostProcess container sees the host's file system).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "image_schema")]
    pub image: Option<String>,

    /// The program to run, with fixed arguments: `[program, arg, ...]`. A path inside the
    /// image is resolved under `$CONTAINER_SANDBOX_MOUNT_POINT`; programs need the `.exe`
    /// extension. Exactly one of `command` and `script` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("size(self[0]) > 0").message(msg::COMMAND_EMPTY))]
    pub command: Option<Vec<String>>,

    /// More arguments for `command`. Passed as separate arguments, never through a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub args: Option<Vec<String>>,

    /// An inline PowerShell script. The operator delivers it to the node in a generated
    /// ConfigMap and runs it with `powershell.exe -NoProfile -NonInteractive -File`.
    /// Exactly one of `command` and `script` is set.
    /// At most 262144 characters and 1000000 bytes in UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 262144))]
    #[x_kube(validation = Rule::new("size(bytes(self)) <= 1000000").message(msg::SCRIPT_BYTES))]
    pub script: Option<String>,

    /// Environment variables for the payload. Values can come from Secrets and ConfigMaps by
    /// reference (`valueFrom`); the values are never copied into the HostTask.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,

    /// Secrets and ConfigMaps whose keys all become environment variables of the payload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub env_from: Vec<EnvFromSource>,

    /// The Windows account the payload runs as. Defaults to `LocalService` (least privilege).
    #[serde(default)]
    pub run_as: RunAs,

    /// Limits of the Windows job object the payload runs in (it includes every process the
    /// payload starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,

    /// For `Once`: how long the payload may run on a node before the whole job (every process
    /// it started) is killed and the attempt fails, like `30m` or `1h30m`. 1s to 168h.
    /// Unset: no timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "timeout_schema")]
    pub timeout: Option<String>,

    /// When a payload counts as finished: `AllProcesses` — when its main process has exited and
    /// every process it started has too (an installer that relaunches itself and exits is still
    /// installing), bounded by `timeout`; `MainProcess` — when the main process exits, and
    /// whatever it left running is killed with its job. Defaults to `AllProcesses` for `Once`
    /// and `MainProcess` for `Continuous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<WaitFor>,

    /// For `Once`: a program the executor runs on the node after the payload succeeded, to tell
    /// whether the change took (a hotfix is listed, a service answers). It runs as the payload
    /// does, in a job of the same limits; exit code 0 passes. After a payload that needs a
    /// restart (3010 with `reboot: IfRequired`, or 1641) it runs once the node is back. A node
    /// succeeds only when it passes; a failing or timed-out check fails the node
    /// (`HealthCheckFailed`, counted against `maxFailures`; `retryFailed` runs payload and check
    /// again). Part of the revision. Unset: the payload's exit code decides alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,

    /// How often a failed `Once` payload is tried again on the same node, and how long to wait.
    #[serde(default)]
    pub retries: Retries,

    /// `Once`: run to completion once per node per revision of the spec (patches,
    /// configuration). `Continuous`: keep running, restart on exit (agents).
    #[serde(default)]
    pub mode: Mode,

    /// How the task spreads over the targeted nodes.
    #[serde(default)]
    pub rollout: Rollout,

    /// What happens when a `Once` payload exits 3010 (ERROR_SUCCESS_REBOOT_REQUIRED).
    /// `Never`: record that the node needs a reboot. `IfRequired`: cordon, drain, reboot, wait
    /// for Ready and uncordon the node, counted against `rollout.maxConcurrent`.
    #[serde(default)]
    pub reboot: RebootPolicy,

    /// With `reboot: IfRequired`: how long a drain may be held up (by PodDisruptionBudgets) and
    /// what happens then.
    #[serde(default)]
    pub drain: Drain,

    /// With `reboot: IfRequired`: how long a node may take to come back Ready after its reboot
    /// was asked for, like `30m`; past it the node fails (`RebootTimedOut`), frees its
    /// `maxConcurrent` slot and stays cordoned for an administrator to look at. Default `30m`.
    #[serde(default = "default_step_timeout")]
    #[schemars(schema_with = "step_timeout_schema")]
    pub reboot_timeout: String,

    /// Run the unchanged task again: any new value (a date, a ticket number) is a new revision,
    /// so every targeted node runs it once more (`Continuous` agents restart), rolled out like any
    /// change. Unset or unchanged: nothing runs again. `kubectl hostprocess rerun` sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "rerun_schema")]
    pub rerun: Option<String>,

    /// Try the nodes where the current revision failed once more: any new value (a date, a
    /// ticket number) gives each node that had failed before it a new round of attempts
    /// (`retries.limit` + 1), admitted under the rollout's limits like any node; nodes that
    /// succeeded, run or have not started are never run again by it. Not part of the revision.
    /// `kubectl hostprocess retry-failed` sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "retry_failed_schema")]
    pub retry_failed: Option<String>,
}

fn concurrency_group_schema(_: &mut SchemaGenerator) -> Schema {
    format::CONCURRENCY_GROUP.schema()
}

fn retry_failed_schema(_: &mut SchemaGenerator) -> Schema {
    format::RETRY_TOKEN.schema()
}

fn rerun_schema(_: &mut SchemaGenerator) -> Schema {
    format::RERUN_TOKEN.schema()
}

fn timeout_schema(_: &mut SchemaGenerator) -> Schema {
    format::TIMEOUT.schema()
}

fn backoff_schema(_: &mut SchemaGenerator) -> Schema {
    format::BACKOFF.schema()
}

fn image_schema(_: &mut SchemaGenerator) -> Schema {
    format::IMAGE.schema()
}

fn memory_schema(_: &mut SchemaGenerator) -> Schema {
    format::MEMORY.schema()
}

fn cpu_schema(_: &mut SchemaGenerator) -> Schema {
    format::CPU.schema()
}

fn host_group_ref_schema(_: &mut SchemaGenerator) -> Schema {
    format::OBJECT_NAME.schema()
}

/// A check the executor runs after the payload (`spec.healthCheck`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// The program and its arguments: `[program, arg, ...]`, like
    /// `[powershell.exe, -NoProfile, -Command, "if (-not (Get-HotFix KB5034439)) { exit 1 }"]`.
    /// Resolved like `command`; never run through a shell of ours.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("size(self[0]) > 0").message(msg::HEALTH_CHECK_EMPTY))]
    pub command: Vec<String>,

    /// How long the check may run before it is killed and counts as failed, like `2m`. 1s to
    /// 1h. Default `5m`.
    #[serde(default = "default_health_timeout")]
    #[schemars(schema_with = "health_timeout_schema")]
    pub timeout: String,
}

fn default_health_timeout() -> String {
    "5m".into()
}

fn health_timeout_schema(_: &mut SchemaGenerator) -> Schema {
    format::HEALTH_CHECK_TIMEOUT.schema()
}

/// The Windows account a payload runs as.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("(self.account == 'HostGroup') == has(self.hostGroup)").message(msg::HOST_GROUP_REF))]
#[serde(rename_all = "camelCase")]
pub struct RunAs {
    /// `LocalService` (default), `NetworkService`, `System`, or `HostGroup`: an ephemeral user
    /// in the local group of the HostGroup named by `hostGroup` (needs containerd 1.7+; the
    /// task starts on a node only once that group is provisioned there).
    #[serde(default)]
    pub account: Account,

    /// The name of the HostGroup (`kubectl get hg`) whose group the payload runs in. Set
    /// exactly when `account` is `HostGroup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "host_group_ref_schema")]
    pub host_group: Option<String>,
}

/// A built-in service account, or a HostGroup's local group.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Account {
    /// `NT AUTHORITY\Local service`: least privilege, no network credentials.
    #[default]
    LocalService,
    /// `NT AUTHORITY\NetworkService`: the computer's credentials on the network.
    NetworkService,
    /// `NT AUTHORITY\SYSTEM`: full control of the host.
    System,
    /// An ephemeral user in the local group of a HostGroup.
    HostGroup,
}

impl Account {
    /// The `runAsUserName` of a built-in account; `None` for `HostGroup`, whose name comes
    /// from the HostGroup object.
    pub fn builtin_user_name(self) -> Option<&'static str> {
        match self {
            Account::LocalService => Some(r"NT AUTHORITY\Local service"),
            Account::NetworkService => Some(r"NT AUTHORITY\NetworkService"),
            Account::System => Some(r"NT AUTHORITY\SYSTEM"),
            Account::HostGroup => None,
        }
    }
}

/// Limits of the payload's Windows job object. They nest inside the container's own job,
/// so they can only be stricter than the pod's.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Memory of all the payload's processes together, like `512Mi` or `4Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "memory_schema")]
    pub memory: Option<String>,

    /// CPU of the payload, like `500m` or `2` (cores); enforced as a hard CPU rate cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "cpu_schema")]
    pub cpu: Option<String>,

    /// How many processes the payload may have alive at once (1 to 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub processes: Option<u32>,
}

/// Retries of a failed `Once` payload on the same node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    /// How many more attempts after the first failure (0 to 10). Default 2.
    #[serde(default = "default_retry_limit")]
    #[schemars(range(min = 0, max = 10))]
    pub limit: u32,

    /// The wait before the first retry, doubled for each further one and capped at 10m.
    /// Default `30s`.
    #[serde(default = "default_backoff")]
    #[schemars(schema_with = "backoff_schema")]
    pub backoff: String,
}

fn default_retry_limit() -> u32 {
    2
}

fn default_backoff() -> String {
    "30s".to_string()
}

impl Default for Retries {
    fn default() -> Self {
        Retries { limit: default_retry_limit(), backoff: default_backoff() }
    }
}

/// When a payload counts as finished.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// When the main process and every process it started have exited.
    AllProcesses,
    /// When the main process exits; what it left running is killed.
    MainProcess,
}

impl HostTaskSpec {
    /// `waitFor`, or its default for the mode.
    pub fn effective_wait_for(&self) -> WaitFor {
        self.wait_for.unwrap_or(match self.mode {
            Mode::Once => WaitFor::AllProcesses,
            Mode::Continuous => WaitFor::MainProcess,
        })
    }
}

/// Whether the payload runs once per node per revision or keeps running.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Run to completion once per node per revision of the spec.
    #[default]
    Once,
    /// Keep the payload running; restart it when it exits.
    Continuous,
}

/// The canary stage of a rollout.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// How many nodes run each revision first: a count like `1` or a percentage of the targeted
    /// nodes like `"5%"` (rounded up), the first in rollout order (zones in turn).
    #[x_kube(validation = Rule::new(MAX_CONCURRENT_RULE).message(msg::CANARY_NODES))]
    pub nodes: IntOrString,

    /// How long to watch the canary nodes after the last of them succeeded before the rest of
    /// the fleet starts, like `30m`. Unset: wait until `promoted` names the revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "soak_schema")]
    pub soak: Option<String>,

    /// The revision (`status.revision`) promoted past its canary by hand, so a later revision
    /// never goes past its canary on an earlier approval. `kubectl hostprocess resume` sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<String>,
}

fn soak_schema(_: &mut SchemaGenerator) -> Schema {
    format::SOAK.schema()
}

/// How a node is drained before its reboot.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Drain {
    /// How long evictions may be refused before the drain gives up, like `30m`. Default `30m`.
    #[serde(default = "default_step_timeout")]
    #[schemars(schema_with = "step_timeout_schema")]
    pub timeout: String,

    /// When the drain times out. `Fail` (the default): the node fails (`DrainTimedOut`), is
    /// uncordoned without a reboot and frees its slot. `Force`: the pods left are deleted,
    /// ignoring their PodDisruptionBudgets, and the reboot goes on.
    #[serde(default)]
    pub on_timeout: DrainTimeoutAction,

    /// Pods the drain leaves on the node, by label (a node-local cache, a monitoring agent that
    /// should see the reboot). DaemonSet pods and mirror pods are always left. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_pods: Option<LabelSelector>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain { timeout: default_step_timeout(), on_timeout: DrainTimeoutAction::Fail, skip_pods: None }
    }
}

/// What a drain that timed out does.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DrainTimeoutAction {
    #[default]
    Fail,
    Force,
}

fn default_step_timeout() -> String {
    "30m".into()
}

fn step_timeout_schema(_: &mut SchemaGenerator) -> Schema {
    format::STEP_TIMEOUT.schema()
}

/// How a rollout spreads over zones.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ZoneSpread {
    /// The node label whose values are the zones. Default `topology.kubernetes.io/zone`.
    #[serde(default = "default_topology_key")]
    #[schemars(schema_with = "label_key_schema")]
    pub topology_key: String,

    /// How many nodes of one zone may run (or reboot for) the task at once: a count like `2` or
    /// a percentage of the zone's targeted nodes like `"34%"` (rounded up). Unset: only
    /// `maxConcurrent` limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(MAX_CONCURRENT_RULE).message(msg::MAX_CONCURRENT_PER_ZONE))]
    pub max_concurrent_per_zone: Option<IntOrString>,
}

impl Default for ZoneSpread {
    fn default() -> Self {
        ZoneSpread { topology_key: default_topology_key(), max_concurrent_per_zone: None }
    }
}

fn default_topology_key() -> String {
    "topology.kubernetes.io/zone".into()
}

fn label_key_schema(_: &mut SchemaGenerator) -> Schema {
    format::LABEL_KEY.schema()
}

/// How strictly `rollout.maxFailures` holds.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureBudget {
    /// Up to `maxConcurrent` nodes in flight; payloads already running when the budget runs
    /// out finish (and may fail).
    #[default]
    Eager,
    /// No more nodes in flight than the budget can still absorb: at most `maxFailures + 1`
    /// nodes ever fail.
    Strict,
}

/// What to do when a `Once` payload asks for a reboot (exit code 3010).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RebootPolicy {
    /// Record that the node needs a reboot; do not reboot it.
    #[default]
    Never,
    /// Cordon, drain, reboot, wait for Ready, uncordon.
    IfRequired,
}

/// How a task spreads over its nodes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// How many targeted nodes may run (or reboot for) the task at once: a count like `5` or
    /// a percentage of the targeted nodes like `"10%"` (rounded up). Honoured from the very
    /// first wave, not only on updates. Default `"10%"`.
    #[serde(default = "default_max_concurrent")]
    #[x_kube(validation = Rule::new(MAX_CONCURRENT_RULE).message(msg::MAX_CONCURRENT))]
    pub max_concurrent: IntOrString,

    /// How many nodes may fail (after their retries) before the rollout halts: a count or a
    /// percentage of the targeted nodes (rounded up). When more fail, no further node starts
    /// and the `Stalled` condition says so. Default `0`: halt at the first failure.
    #[serde(default = "default_max_failures")]
    #[x_kube(validation = Rule::new(MAX_FAILURES_RULE).message(msg::MAX_FAILURES))]
    pub max_failures: IntOrString,

    /// How strictly `maxFailures` holds. `Eager` (the default) keeps up to `maxConcurrent`
    /// nodes in flight: when the budget runs out, nothing new is admitted, nodes admitted whose
    /// payload has not started are withdrawn, but payloads already running finish, so up to
    /// `maxConcurrent - 1` more nodes can fail. `Strict` keeps no more nodes in flight than the
    /// budget can still absorb (`maxFailures + 1 - failed`), so at most `maxFailures + 1` nodes
    /// ever run a failing payload, at the cost of speed.
    #[serde(default)]
    pub failure_budget: FailureBudget,

    /// Stop starting nodes at once; nodes already running finish. Default false.
    #[serde(default)]
    pub paused: bool,

    /// A first stage: these nodes run the revision before any other; once every one of them
    /// succeeded the rollout goes on after `soak`, or, without a soak, when `promoted` names the
    /// revision. Unset: no canary stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,

    /// How waves spread over zones: nodes are taken from each zone in turn (by a topology
    /// label, default `topology.kubernetes.io/zone`), so no zone is patched or rebooted all at
    /// once, with an optional cap per zone. Nodes without the label form a zone of their own.
    #[serde(default)]
    pub zones: ZoneSpread,

    /// Tasks that must not overlap on a node: of all the `Once` tasks (in every namespace) that
    /// name the same group, at most one runs on a node at a time — its payload, its retries and
    /// the reboot it asks for; the others wait for the node (their nodes elsewhere go on). Two
    /// Windows Installer packages at once fail with 1618, so tasks that install share a group
    /// such as `windows-installer`. A task in a group needs a `timeout`, so no task holds a node
    /// for ever. Unset: the task runs beside any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "concurrency_group_schema")]
    pub concurrency_group: Option<String>,

    /// When nodes may start: weekly maintenance windows and blackout dates in a time zone.
    /// Outside them the rollout waits (`Ready` is False with reason
    /// `WaitingForMaintenanceWindow` and `status.nextWindow` says when it opens); nodes already
    /// running finish. Unset: any time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::Schedule>,

    /// Make the content of the Secrets and ConfigMaps referenced by `env` and `envFrom` part
    /// of the revision, so that changing them rolls the task out again. Default false: a
    /// rotating Secret never silently re-runs a task across the fleet.
    #[serde(default)]
    pub track_referenced_data: bool,
}

/// `maxConcurrent`: a count of at least 1, or 1% to 100%.
pub const MAX_CONCURRENT_RULE: &str = "string(self).matches('^([1-9][0-9]*|([1-9][0-9]?|100)%)$')";
/// `maxFailures`: a count of at least 0, or 0% to 100%.
pub const MAX_FAILURES_RULE: &str = "string(self).matches('^([0-9]+|([1-9]?[0-9]|100)%)$')";

fn default_max_concurrent() -> IntOrString {
    IntOrString::String("10%".to_string())
}

fn default_max_failures() -> IntOrString {
    IntOrString::Int(0)
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            max_concurrent: default_max_concurrent(),
            max_failures: default_max_failures(),
            failure_budget: FailureBudget::Eager,
            paused: false,
            canary: None,
            zones: ZoneSpread::default(),
            concurrency_group: None,
            schedule: None,
            track_referenced_data: false,
        }
    }
}

/// What the operator observed of the task's rollout.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostTaskStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// A short hash of what the task runs (the spec, and referenced data when
    /// `rollout.trackReferencedData` is set). A new revision rolls out again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,

    /// `Ready`, `Reconciling` (a rollout is progressing), `Stalled` (halted; the message says
    /// why) and `Paused`, each with the generation it was computed for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// How many targeted nodes are in each state for the current revision.
    #[serde(default)]
    pub nodes: NodeCounts,

    /// The failing nodes with exit code and message, sorted by node; at most 20 (see
    /// `nodes.failed` for the total).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub failures: Vec<NodeFailure>,

    /// When the rollout of the current revision started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When every targeted node finished the current revision (`Once` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// While the rollout waits outside its maintenance windows: when the next one opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<Time>,

    /// When every canary node of the current revision had succeeded (the soak starts then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_completion_time: Option<Time>,
}

/// Node counts of a rollout.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounts {
    /// Windows nodes that match the selector.
    pub targeted: u32,
    /// Targeted nodes that have not started the current revision yet.
    pub pending: u32,
    /// Nodes running the payload now.
    pub running: u32,
    /// Nodes where the payload succeeded (`Once`) or is running and ready (`Continuous`).
    pub succeeded: u32,
    /// Nodes where the payload failed after its retries.
    pub failed: u32,
    /// Nodes being rebooted for the task.
    pub rebooting: u32,
    /// Nodes whose payload asked for a reboot that `reboot: Never` did not perform.
    #[serde(default)]
    pub reboot_required: u32,
}

/// One failing node.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeFailure {
    /// The node's name.
    pub node: String,
    /// The payload's exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// What went wrong, e.g. `TimedOut` or `ExitCode`.
    pub reason: String,
    /// A human-readable account, shortened to 512 characters.
    #[schemars(length(max = 512))]
    pub message: String,
    /// Attempts made on this node.
    #[serde(default)]
    pub attempts: u32,
}
