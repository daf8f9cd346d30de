//! HostTask reconciliation: resolve (nodes, pods, the DaemonSet so far) → validate → decide the
//! rollout → build → apply → status. Each stage is a function; only `apply_*` and `reconcile`
//! touch the API.

pub mod admission;
pub mod build;
pub mod pods;
pub mod reboot;
pub mod rollout;
pub mod status;
pub mod status_writes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hostprocess_crds::units::CountOrPercent;
use hostprocess_crds::{HostTask, Mode};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::cache::Known;
use crate::context::Context;
use crate::{finalizer, hashing, labels};
use rollout::{Decision, Limits, NodeResult, Phase};
use status::Blocked;

/// Longest task name whose DaemonSet name (`hostprocess-<name>`) is a valid label value.
const MAX_TASK_NAME: usize = 51;
const APPLIED_HASH: &str = "hostprocess.dev/applied-hash";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the DaemonSet: {0}")]
    GetDaemonSet(#[source] kube::Error),
    #[error("applying the DaemonSet: {0}")]
    ApplyDaemonSet(#[source] kube::Error),
    #[error("deleting the DaemonSet: {0}")]
    DeleteDaemonSet(#[source] kube::Error),
    #[error("deleting a pod of an older revision: {0}")]
    DeletePod(#[source] kube::Error),
    #[error("reading or applying the script ConfigMap: {0}")]
    ApplyConfigMap(#[source] kube::Error),
    #[error("reading or cordoning a node to reboot: {0}")]
    Node(#[source] kube::Error),
    #[error("draining a node to reboot: {0}")]
    Drain(#[source] kube::Error),
    #[error("the reboot pod: {0}")]
    RebootPod(#[source] kube::Error),
    #[error("recording a reboot step on the task pod: {0}")]
    PatchPod(#[source] kube::Error),
    #[error("reading a Secret or ConfigMap the task references (rollout.trackReferencedData): {0}")]
    ReadReferenced(#[source] kube::Error),
    #[error("labelling nodes admitted to the rollout: {0}")]
    Admit(#[source] Arc<kube::Error>),
    #[error("updating the finalizer: {0}")]
    PatchFinalizer(#[source] kube::Error),
    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::GetDaemonSet(_) => "get_daemonset",
            Error::ApplyDaemonSet(_) => "apply_daemonset",
            Error::DeleteDaemonSet(_) => "delete_daemonset",
            Error::ApplyConfigMap(_) => "apply_configmap",
            Error::DeletePod(_) => "delete_pod",
            Error::Node(_) => "node",
            Error::Drain(_) => "drain",
            Error::RebootPod(_) => "reboot_pod",
            Error::PatchPod(_) => "patch_pod",
            Error::ReadReferenced(_) => "read_referenced",
            Error::Admit(_) => "admit",
            Error::PatchFinalizer(_) => "patch_finalizer",
            Error::Serialize(_) => "serialize",
        }
    }
}

/// Whether `labels` match a label selector (matchLabels and matchExpressions).
pub fn selector_matches(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(selector) = selector else { return true };
    let labels_ok = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && expressions_ok
}

/// The Windows nodes the task targets, sorted by name.
pub fn targeted_nodes(task: &HostTask, nodes: &[Arc<PartialObjectMeta<Node>>]) -> Vec<String> {
    windows_nodes_matching(task.spec.node_selector.as_ref(), nodes)
}

/// The Windows nodes a selector matches, sorted by name.
pub fn windows_nodes_matching(
    selector: Option<&LabelSelector>,
    nodes: &[Arc<PartialObjectMeta<Node>>],
) -> Vec<String> {
    let mut names: Vec<String> = nodes
        .iter()
        .filter(|n| {
            let labels = n.labels();
            labels.get("kubernetes.io/os").map(String::as_str) == Some("windows")
                && selector_matches(selector, labels)
        })
        .map(|n| n.name_any())
        .collect();
    names.sort();
    names
}

/// What stops the task from running at all, if anything (checked before anything is applied).
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
    if let Some(level) = namespace.and_then(|ns| crate::labels::pod_security_refusal(ns.labels())) {
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

/// With `rollout.trackReferencedData`: a hash of the content of every Secret and ConfigMap the
/// task's `env` and `envFrom` name (a missing one counts as missing), which becomes part of the
/// revision. The content itself is never copied anywhere.
async fn referenced_data(ctx: &Context, task: &HostTask) -> Result<Option<String>, Error> {
    if !task.spec.rollout.track_referenced_data {
        return Ok(None);
    }
    let namespace = task.namespace().unwrap_or_default();
    let mut secrets = BTreeSet::new();
    let mut maps = BTreeSet::new();
    for from in task.spec.env.iter().filter_map(|e| e.value_from.as_ref()) {
        secrets.extend(from.secret_key_ref.as_ref().map(|r| r.name.clone()));
        maps.extend(from.config_map_key_ref.as_ref().map(|r| r.name.clone()));
    }
    for from in &task.spec.env_from {
        secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        maps.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
    }
    let mut parts = Vec::new();
    let secret_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    for name in secrets {
        let secret = secret_api.get_opt(&name).await.map_err(Error::ReadReferenced)?;
        let data = secret.map(|s| hashing::content_hash(&json!([s.data, s.string_data])));
        parts.push(json!({"secret": name, "data": data}));
    }
    let map_api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    for name in maps {
        let map = map_api.get_opt(&name).await.map_err(Error::ReadReferenced)?;
        let data = map.map(|m| hashing::content_hash(&json!([m.data, m.binary_data])));
        parts.push(json!({"configMap": name, "data": data}));
    }
    Ok(Some(hashing::content_hash(&json!(parts))))
}

/// The task's rollout limits resolved against the number of targeted nodes.
fn limits(task: &HostTask, targeted: usize) -> Limits {
    let total = u32::try_from(targeted).unwrap_or(u32::MAX);
    let rollout = &task.spec.rollout;
    let of = |value, fallback| CountOrPercent::parse(value).map_or(fallback, |c| c.of(total));
    Limits {
        max_concurrent: of(&rollout.max_concurrent, 1).max(1),
        max_failures: of(&rollout.max_failures, 0),
        paused: rollout.paused,
    }
}

fn decide(
    task: &HostTask,
    targeted: &[String],
    admitted: &[String],
    results: &BTreeMap<String, NodeResult>,
    limits: Limits,
    eligible: Option<&BTreeSet<String>>,
) -> Decision {
    match task.spec.mode {
        Mode::Once => rollout::plan_once_where(targeted, admitted, results, limits, eligible),
        Mode::Continuous => rollout::plan_continuous(targeted, results, limits.paused, eligible),
    }
}

/// Who the payload runs as, and for a HostGroup the nodes where its group is provisioned at
/// the current revision (the only nodes where the task may start).
struct Account {
    user: String,
    eligible: Option<BTreeSet<String>>,
}

fn account(ctx: &Context, task: &HostTask) -> Result<Account, Blocked> {
    if let Some(user) = build::builtin_user(task) {
        return Ok(Account { user: user.to_string(), eligible: None });
    }
    let name = task.spec.run_as.host_group.clone().unwrap_or_default();
    let Some(group) = ctx.groups.get(&ObjectRef::new(&name)) else {
        return Err(Blocked {
            reason: "HostGroupNotFound",
            message: format!(
                "spec.runAs.hostGroup names HostGroup {name:?}, which does not exist; create it (kubectl get hostgroups) — the task starts on each node once the group is provisioned there"
            ),
        });
    };
    if group.metadata.deletion_timestamp.is_some() {
        return Err(Blocked {
            reason: "HostGroupDeleting",
            message: format!("HostGroup {name:?} is being deleted; the task cannot start anywhere"),
        });
    }
    Ok(Account {
        user: group.spec.group_name.clone(),
        eligible: Some(crate::hostgroup::provisioned_nodes(ctx, &group)),
    })
}

fn apply_params() -> PatchParams {
    PatchParams::apply(labels::FIELD_MANAGER).force()
}

/// The task's DaemonSet: from the cache, or the operator's own last write when the cache is
/// behind it, or read from the API when the two cannot be ordered.
async fn daemon_set(
    ctx: &Context,
    api: &Api<DaemonSet>,
    namespace: &str,
    name: &str,
) -> Result<Option<DaemonSet>, Error> {
    let key = ObjectRef::new(name).within(namespace);
    match ctx.daemon_set_writes.resolve(&key, ctx.daemon_sets.get(&key)) {
        Known::Is(ds) => Ok(ds.map(|ds| (*ds).clone())),
        Known::Unsure => {
            let ds = api.get_opt(name).await.map_err(Error::GetDaemonSet)?;
            ctx.daemon_set_writes.wrote(key, ds.clone());
            Ok(ds)
        }
    }
}

/// Applies the DaemonSet unless the one in the API was applied from the same content.
async fn apply_daemon_set(
    ctx: &Context,
    api: &Api<DaemonSet>,
    existing: Option<&DaemonSet>,
    mut ds: DaemonSet,
) -> Result<bool, Error> {
    let hash = hashing::content_hash(&serde_json::to_value(&ds)?);
    if existing.and_then(|e| e.annotations().get(APPLIED_HASH)) == Some(&hash) {
        return Ok(false);
    }
    ds.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(APPLIED_HASH.into(), hash);
    let mut value = serde_json::to_value(&ds)?;
    value["apiVersion"] = json!("apps/v1");
    value["kind"] = json!("DaemonSet");
    let applied = api
        .patch(&ds.name_any(), &apply_params(), &Patch::Apply(&value))
        .await
        .map_err(Error::ApplyDaemonSet)?;
    ctx.daemon_set_writes.wrote(ObjectRef::from_obj(&applied), Some(applied));
    Ok(true)
}

/// The script ConfigMaps this process has applied or found, by task uid and ConfigMap name.
/// A revision's script is immutable: it is read or written once, not on every reconcile until
/// the DaemonSet runs that revision.
#[derive(Debug, Default)]
pub struct ScriptMaps(std::sync::Mutex<BTreeSet<(String, String)>>);

impl ScriptMaps {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(String, String)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a task's ConfigMaps (it is going, and they with it).
    pub fn forget(&self, uid: &str) {
        self.lock().retain(|(task, _)| task != uid);
    }
}

/// Writes the script ConfigMap of `revision` unless the DaemonSet runs it already or it exists.
async fn apply_script(
    ctx: &Context,
    task: &HostTask,
    revision: &str,
    runs_revision: bool,
) -> Result<(), Error> {
    let Some(cm) = build::script_config_map(task, revision).filter(|_| !runs_revision) else {
        return Ok(());
    };
    let key = (task.uid().unwrap_or_default(), cm.name_any());
    if ctx.script_maps.lock().contains(&key) {
        return Ok(());
    }
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &task.namespace().unwrap_or_default());
    if maps.get_opt(&cm.name_any()).await.map_err(Error::ApplyConfigMap)?.is_none() {
        let mut value = serde_json::to_value(&cm)?;
        value["apiVersion"] = json!("v1");
        value["kind"] = json!("ConfigMap");
        maps.patch(&cm.name_any(), &apply_params(), &Patch::Apply(&value))
            .await
            .map_err(Error::ApplyConfigMap)?;
    }
    ctx.script_maps.lock().insert(key);
    Ok(())
}

#[instrument(skip_all, fields(task = %task.name_any(), namespace = task.namespace().unwrap_or_default()))]
pub async fn reconcile(task: Arc<HostTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    let admission_label = admission::label_key(&task.uid().unwrap_or_default());
    if task.metadata.deletion_timestamp.is_some() {
        // The DaemonSet, its pods and the ConfigMaps go with the task (owner references); the
        // admission labels are taken off the nodes before the finalizer lets it go.
        ctx.metrics.task_nodes(&task.namespace().unwrap_or_default(), &task.name_any(), None);
        ctx.script_maps.forget(&task.uid().unwrap_or_default());
        ctx.statuses.forget(&task.uid().unwrap_or_default());
        if finalizer::has(&*task) {
            admission::release_all(&ctx.node_labels, &ctx.admissions, &admission_label, &ctx.nodes.state())
                .await
                .map_err(Error::Admit)?;
            let api: Api<HostTask> =
                Api::namespaced(ctx.client.clone(), &task.namespace().unwrap_or_default());
            finalizer::remove(&api, &*task).await.map_err(Error::PatchFinalizer)?;
        }
        return Ok(Action::await_change());
    }
    let namespace = task.namespace().unwrap_or_default();
    let name = task.name_any();
    let generation = task.metadata.generation;

    // Resolve.
    let ns = ctx.namespaces.get(&ObjectRef::new(&namespace));
    let referenced = referenced_data(&ctx, &task).await?;
    let revision = hashing::revision(&task.spec, referenced.as_deref());
    let sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let ds_name = labels::daemon_set_name(&name);
    let existing = daemon_set(&ctx, &sets, &namespace, &ds_name).await?;
    // Whole seconds: what the API keeps of a time, so a status read back equals the one written.
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
    // The newest status decided (written or still queued): times, conditions and events follow
    // on from it.
    let previous = ctx.statuses.current(&task);

    // Validate: bad input becomes a condition, never a retry storm.
    let account = account(&ctx, &task);
    if let Some(blocked) = blocked(&task, ns.as_deref()).or_else(|| account.as_ref().err().cloned()) {
        let status = status::status(
            previous.as_ref(),
            generation,
            &revision,
            None,
            Some(&blocked),
            task.spec.rollout.paused,
            now,
        );
        ctx.statuses.submit(&task, status);
        // A missing HostGroup may appear: the group watch triggers a reconcile, this is a net.
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    let Ok(account) = account else { return Ok(Action::await_change()) };

    // Decide. A pinned task runs only on the nodes labelled for it (see `admission`).
    let once = task.spec.mode == Mode::Once;
    let pinned = once || account.eligible.is_some();
    let nodes = ctx.nodes.state();
    ctx.admissions.settle(&admission_label, &nodes);
    let targeted = targeted_nodes(&task, &nodes);
    let runs_revision = existing
        .as_ref()
        .is_some_and(|ds| build::daemon_set_revision(ds).as_deref() == Some(revision.as_str()));
    let labelled = admission::current(&admission_label, &nodes, &ctx.admissions);
    let admitted = admission::admitted(&labelled, &revision, runs_revision);
    let pods::TaskPods { results, outdated, rebooting } = ctx.pods.task(&task, &revision);
    let limits = limits(&task, targeted.len());
    let decision = decide(&task, &targeted, &admitted, &results, limits, account.eligible.as_ref());

    // Apply: the finalizer before the first label.
    let label_changes =
        admission::changes(&labelled, pinned.then_some(decision.admitted.as_slice()), &revision);
    if !label_changes.admit.is_empty() && !finalizer::has(&*task) {
        finalizer::add(&Api::namespaced(ctx.client.clone(), &namespace), &*task)
            .await
            .map_err(Error::PatchFinalizer)?;
        // The patch changes the task: the next reconcile sees the finalizer and admits.
        return Ok(Action::await_change());
    }
    // The labels go to the writers, counted as written from now on: the next reconcile neither
    // admits these nodes again nor more than maxConcurrent beside them. The DaemonSet selects only
    // the nodes labelled for this revision, so the labels and the DaemonSet may land in any order.
    admission::submit(&ctx.node_labels, &ctx.admissions, &admission_label, &revision, &label_changes);
    apply_script(&ctx, &task, &revision, runs_revision).await?;
    if pinned && decision.admitted.is_empty() {
        // Nothing may run yet (paused from the start, no node targeted or eligible): no
        // DaemonSet, so labels left from an earlier rollout of this revision admit nothing.
        if existing.is_some() {
            crate::ignore_not_found(sets.delete(&ds_name, &DeleteParams::background()).await)
                .map_err(Error::DeleteDaemonSet)?;
            ctx.daemon_set_writes.wrote(ObjectRef::new(&ds_name).within(&namespace), None);
        }
    } else {
        let inputs = build::BuildInputs {
            executor_image: &ctx.config.executor_image,
            executor_version: &ctx.config.executor_version,
            revision: &revision,
            run_as_user: &account.user,
            admission_label: pinned.then_some(admission_label.as_str()),
            max_unavailable: limits.max_concurrent,
        };
        let ds = build::daemon_set(&task, &inputs);
        apply_daemon_set(&ctx, &sets, existing.as_ref(), ds).await?;
    }
    // Only now: a pod deleted before the DaemonSet runs the new revision would come back as the
    // old one.
    if once {
        replace_outdated_pods(&ctx, &task, &outdated, &decision.admitted).await?;
    }
    // Reboots the payloads asked for, each as far as it can go now.
    for pod in &rebooting {
        reboot::advance(&ctx, &task, pod, &revision).await?;
    }
    if !decision.starting.is_empty() {
        info!(nodes = decision.starting.len(), "wave starts");
        publish(
            &ctx,
            &task,
            EventType::Normal,
            "WaveStarted",
            format!("starting on {} nodes: {}", decision.starting.len(), short_list(&decision.starting)),
        );
    }

    // Status.
    let previous_phase_halted = previous
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True"));
    let previous_complete = previous.as_ref().is_some_and(|s| {
        s.revision.as_deref() == Some(revision.as_str())
            && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    });
    let new_status = status::status(
        previous.as_ref(),
        generation,
        &revision,
        Some(&decision),
        None,
        task.spec.rollout.paused,
        now,
    );
    if decision.phase == Phase::Halted && !previous_phase_halted {
        warn!(failed = decision.counts.failed, "rollout halted");
        publish(
            &ctx,
            &task,
            EventType::Warning,
            "RolloutHalted",
            format!("{} nodes failed, more than maxFailures allows", decision.counts.failed),
        );
    }
    if decision.phase == Phase::Complete && !previous_complete && decision.counts.targeted > 0 {
        publish(
            &ctx,
            &task,
            EventType::Normal,
            "RolloutComplete",
            format!(
                "revision {revision}: {} nodes succeeded, {} failed",
                decision.counts.succeeded, decision.counts.failed
            ),
        );
    }
    for failure in decision.failures.iter().filter(|f| {
        !previous.as_ref().is_some_and(|s| {
            s.revision.as_deref() == Some(revision.as_str()) && s.failures.iter().any(|p| p.node == f.node)
        })
    }) {
        publish(
            &ctx,
            &task,
            EventType::Warning,
            "NodeFailed",
            format!(
                "{}: {} (exit code {})",
                failure.node,
                failure.message,
                failure.exit_code.map_or("none".into(), |c| c.to_string())
            ),
        );
    }
    // The writers send it; a reconcile does not wait for the API server (see `status_writes`).
    ctx.statuses.submit(&task, new_status);
    ctx.metrics.task_nodes(&namespace, &name, Some(&decision.counts));
    Ok(match decision.phase {
        // Node status (boot id, Ready) is not watched: look again soon.
        _ if !rebooting.is_empty() => Action::requeue(Duration::from_secs(2)),
        Phase::Progressing => Action::requeue(Duration::from_secs(30)),
        _ => Action::requeue(Duration::from_secs(300)),
    })
}

/// `Once` DaemonSets use `OnDelete`: the operator replaces a pod of an older revision once its
/// node is admitted for the new one (the DaemonSet controller then creates the new pod).
async fn replace_outdated_pods(
    ctx: &Context,
    task: &HostTask,
    outdated: &[(String, String)],
    admitted: &[String],
) -> Result<(), Error> {
    use futures::{StreamExt, TryStreamExt};
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &task.namespace().unwrap_or_default());
    let replaced: Vec<String> = outdated
        .iter()
        .filter(|(_, node)| admitted.binary_search(node).is_ok())
        .map(|(pod, _)| pod.clone())
        .collect();
    // A wave's pods at once, a few in flight (as the node labels are written).
    futures::stream::iter(replaced)
        .map(|pod| {
            let pods = pods.clone();
            async move {
                crate::ignore_not_found(pods.delete(&pod, &DeleteParams::default()).await)
                    .map_err(Error::DeletePod)
            }
        })
        .buffer_unordered(admission::PARALLEL_WRITES)
        .try_collect()
        .await
}

fn short_list(nodes: &[String]) -> String {
    let shown: Vec<&str> = nodes.iter().take(10).map(String::as_str).collect();
    if nodes.len() > 10 {
        format!("{} and {} more", shown.join(", "), nodes.len() - 10)
    } else {
        shown.join(", ")
    }
}

pub(crate) fn publish(ctx: &Context, task: &HostTask, type_: EventType, reason: &str, note: String) {
    ctx.events.publish(task.object_ref(&()), type_, "Rollout", reason, note);
}
