//! HostTask → the objects that run it: a HostProcess DaemonSet and, for an inline script, a
//! ConfigMap per revision. Pure functions of the task and the rollout decision; no client.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use hostprocess_crds::{HostTask, Mode};
use hostprocess_protocol::{Command, ProbeArgs, RunArgs, digest};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ExecAction, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PodSpec, PodTemplateSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::hashing;
use crate::hostprocess_pod::{self, IMAGE_EXECUTOR, invocation, windows_tolerations};
use crate::labels;

/// Where the inline script is mounted in the container.
const SCRIPT_DIR: &str = r"C:\hostprocess\task";
const SCRIPT_FILE: &str = "script.ps1";
/// Where `node-executor install` puts the executor on the host (`%ProgramData%`), by version.
const INSTALLED_EXECUTOR_DIR: &str = r"C:\ProgramData\hostprocess-operator\bin";
/// Long enough for the executor to stop the payload's job and record the result.
const GRACE_SECONDS: i64 = 60;

/// What the builder needs besides the task.
#[derive(Debug, Clone)]
pub struct BuildInputs<'a> {
    /// The node-executor image, e.g. `registry.example/node-executor:0.1.0`.
    pub executor_image: &'a str,
    /// The executor's version (its directory on the host when copied there).
    pub executor_version: &'a str,
    pub revision: &'a str,
    /// `runAsUserName`: a built-in account or the HostGroup's local group name.
    pub run_as_user: &'a str,
    /// The node label that admits nodes (`admission::label_key`), for a pinned task: in `Once`
    /// mode the rollout admits nodes wave by wave, a task that runs as a HostGroup only where
    /// the group is provisioned. The DaemonSet requires it to carry the revision. `None`: every
    /// targeted node.
    pub admission_label: Option<&'a str>,
    /// Earlier revisions the admission label may still carry on nodes finishing them (see
    /// `Decided::transitional`).
    pub transitional: &'a [String],
    /// `Continuous` mode: how many nodes may be updating at once.
    pub max_unavailable: u32,
}

/// The `runAsUserName` of a built-in account; `None` for `HostGroup` (the group's name).
pub fn builtin_user(task: &HostTask) -> Option<&'static str> {
    task.spec.run_as.account.builtin_user_name()
}

/// The labels of everything made for `task`.
pub fn task_labels(task: &HostTask, revision: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = labels::managed("hostprocess-task");
    labels.insert(labels::TASK.to_string(), task.name_any());
    if let Some(revision) = revision {
        labels.insert(labels::REVISION.to_string(), revision.to_string());
    }
    labels
}

fn owned_meta(task: &HostTask, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: task.namespace(),
        labels: Some(labels),
        owner_references: task.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The ConfigMap that delivers the inline script of one revision (immutable: a new revision
/// gets a new ConfigMap, so a pod never sees a script of another revision).
pub fn script_config_map(task: &HostTask, revision: &str) -> Option<ConfigMap> {
    let script = task.spec.script.as_ref()?;
    Some(ConfigMap {
        metadata: owned_meta(
            task,
            labels::script_config_map_name(&task.name_any(), revision),
            task_labels(task, Some(revision)),
        ),
        data: Some(BTreeMap::from([(SCRIPT_FILE.to_string(), script.clone())])),
        immutable: Some(true),
        ..ConfigMap::default()
    })
}

/// The retry round `spec.retryFailed` asks for, as the executor and the pod label carry it (a
/// hash: the token may hold characters neither allows). `None` for `Continuous` tasks.
pub fn retry_round(task: &HostTask) -> Option<String> {
    let token = task.spec.retry_failed.as_deref().filter(|_| task.spec.mode == Mode::Once)?;
    Some(hashing::short(token))
}

/// The executor's invocation for the task: `run` with its limits, then the payload.
fn run_command(task: &HostTask, revision: &str) -> Command {
    let spec = &task.spec;
    let limits = spec.limits.as_ref();
    let script = spec.script.as_ref().map(|_| PathBuf::from(format!(r"{SCRIPT_DIR}\{SCRIPT_FILE}")));
    // Each word stays one argument: nothing reaches a shell.
    let payload = spec.command.iter().flatten().chain(spec.args.iter().flatten());
    Command::Run(Box::new(RunArgs {
        task: format!("{}/{}", task.namespace().unwrap_or_default(), task.name_any()),
        task_uid: task.uid().unwrap_or_default(),
        revision: revision.into(),
        mode: spec.mode.into(),
        timeout: spec.timeout.clone(),
        memory: limits.and_then(|l| l.memory.clone()),
        cpu: limits.and_then(|l| l.cpu.clone()),
        processes: limits.and_then(|l| l.processes),
        retries: spec.retries.limit,
        backoff: spec.retries.backoff.clone(),
        wait_for: spec.effective_wait_for().into(),
        idle_after: spec.mode == Mode::Once,
        retry: retry_round(task),
        health_check: spec.health_check.iter().flat_map(|c| c.command.iter().map(OsString::from)).collect(),
        health_check_timeout: spec.health_check.as_ref().map(|c| c.timeout.clone()),
        health_check_after_restart: spec.health_check.is_some()
            && spec.reboot == hostprocess_crds::RebootPolicy::IfRequired,
        command: if script.is_some() { Vec::new() } else { payload.map(OsString::from).collect() },
        script_sha256: spec.script.as_ref().map(|s| digest::sha256_hex(s.as_bytes())),
        script,
    }))
}

/// Node affinity: every term of the task's selector (ANDed), and for a pinned task the admission
/// label with the revision.
fn affinity(
    selector: Option<&LabelSelector>,
    admission: Option<(&str, &str)>,
    transitional: &[String],
) -> Option<Affinity> {
    let mut expressions: Vec<NodeSelectorRequirement> = Vec::new();
    if let Some(selector) = selector {
        for (key, value) in selector.match_labels.iter().flatten() {
            expressions.push(NodeSelectorRequirement {
                key: key.clone(),
                operator: "In".into(),
                values: Some(vec![value.clone()]),
            });
        }
        for expression in selector.match_expressions.iter().flatten() {
            expressions.push(NodeSelectorRequirement {
                key: expression.key.clone(),
                operator: expression.operator.clone(),
                values: expression.values.clone().filter(|v| !v.is_empty()),
            });
        }
    }
    if let Some((label, revision)) = admission {
        let mut values = vec![revision.to_string()];
        values.extend(transitional.iter().cloned());
        expressions.push(NodeSelectorRequirement {
            key: label.into(),
            operator: "In".into(),
            values: Some(values),
        });
    }
    if expressions.is_empty() {
        return None;
    }
    Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(expressions),
                    match_fields: None,
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    })
}

/// The HostProcess DaemonSet of a task.
pub fn daemon_set(task: &HostTask, inputs: &BuildInputs<'_>) -> DaemonSet {
    let spec = &task.spec;
    let name = labels::daemon_set_name(&task.name_any());
    let mut pod_labels = task_labels(task, Some(inputs.revision));
    if let Some(round) = retry_round(task) {
        pod_labels.insert(labels::RETRY.to_string(), round);
    }
    if let Some(group) = &spec.rollout.concurrency_group {
        pod_labels.insert(labels::CONCURRENCY_GROUP.to_string(), group.clone());
    }
    let selector_labels = BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGED_BY_VALUE.to_string()),
        (labels::TASK.to_string(), task.name_any()),
    ]);

    // An init container, as SYSTEM, gets the node ready: the state directory the
    // administrators' alone, the task's folder writable by a task that runs as another
    // account, and — when the payload comes in its own image — the executor copied onto the
    // host, into a directory per version.
    let account = (inputs.run_as_user != hostprocess_pod::SYSTEM).then(|| inputs.run_as_user.to_string());
    let install = spec.image.is_some();
    let init_containers = (install || account.is_some()).then(|| {
        let prepare = Command::Prepare { task_uid: task.uid().unwrap_or_default(), account, install };
        vec![Container {
            name: "prepare".into(),
            image: Some(inputs.executor_image.into()),
            command: Some(invocation(IMAGE_EXECUTOR, &prepare)),
            security_context: Some(hostprocess_pod::system_container_context()),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            ..Container::default()
        }]
    });
    let executor = match &spec.image {
        Some(_) => format!(r"{INSTALLED_EXECUTOR_DIR}\{}\node-executor.exe", inputs.executor_version),
        None => IMAGE_EXECUTOR.to_string(),
    };
    let command = invocation(&executor, &run_command(task, inputs.revision));
    let probe = ProbeArgs { task_uid: task.uid().unwrap_or_default(), revision: inputs.revision.into() };
    let probe_command = invocation(&executor, &Command::Probe(probe));
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if spec.script.is_some() {
        volumes.push(Volume {
            name: "script".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: labels::script_config_map_name(&task.name_any(), inputs.revision),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "script".into(),
            mount_path: SCRIPT_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let container = Container {
        name: "task".into(),
        image: Some(spec.image.clone().unwrap_or_else(|| inputs.executor_image.into())),
        command: Some(command),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        env_from: (!spec.env_from.is_empty()).then(|| spec.env_from.clone()),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        readiness_probe: Some(Probe {
            exec: Some(ExecAction { command: Some(probe_command) }),
            period_seconds: Some(5),
            timeout_seconds: Some(5),
            success_threshold: Some(1),
            failure_threshold: Some(1),
            ..Probe::default()
        }),
        // The executor's last log line is its JSON result: it becomes the termination message.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    let mut tolerations = windows_tolerations();
    tolerations.extend(spec.tolerations.iter().cloned());
    let pod = PodSpec {
        node_selector: Some(BTreeMap::from([("kubernetes.io/os".to_string(), "windows".to_string())])),
        affinity: affinity(
            spec.node_selector.as_ref(),
            inputs.admission_label.map(|l| (l, inputs.revision)),
            inputs.transitional,
        ),
        tolerations: Some(tolerations),
        // A DaemonSet pod must restart: the executor idles after a `Once` payload instead.
        restart_policy: Some("Always".into()),
        termination_grace_period_seconds: Some(GRACE_SECONDS),
        init_containers,
        containers: vec![container],
        volumes: (!volumes.is_empty()).then_some(volumes),
        ..hostprocess_pod::spec(inputs.run_as_user)
    };
    let update_strategy = match spec.mode {
        // Nodes start by admission (the affinity above), never by the DaemonSet controller's
        // own rolling update.
        Mode::Once => DaemonSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None },
        Mode::Continuous => DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable: Some(IntOrString::Int(
                    i32::try_from(inputs.max_unavailable.max(1)).unwrap_or(1),
                )),
                max_surge: Some(IntOrString::Int(0)),
            }),
        },
    };
    let mut ds_labels = task_labels(task, Some(inputs.revision));
    ds_labels.insert(labels::VERSION.to_string(), inputs.executor_version.to_string());
    DaemonSet {
        metadata: owned_meta(task, name, ds_labels),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector { match_labels: Some(selector_labels), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..ObjectMeta::default() }),
                spec: Some(pod),
            },
            update_strategy: Some(update_strategy),
            ..DaemonSetSpec::default()
        }),
        status: None,
    }
}

/// The revision a DaemonSet runs (its pod template's label).
pub fn daemon_set_revision(ds: &DaemonSet) -> Option<String> {
    ds.spec.as_ref()?.template.metadata.as_ref()?.labels.as_ref()?.get(labels::REVISION).cloned()
}
