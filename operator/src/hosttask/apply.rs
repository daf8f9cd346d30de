//! Apply: what the decision asks of the API — the finalizer before the first label, the admission
//! labels (queued for the writers), the script ConfigMap, the DaemonSet, the pods of an older
//! revision on newly admitted nodes, the reboots — and the cleanup when the task goes.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use hostprocess_crds::{HostTask, Mode};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use super::decide::Decided;
use super::error::Error;
use super::reboot::{self, step};
use super::resolve::Resolved;
use super::rollout::NodeResult;
use super::{admission, build};
use crate::conditions::{self, READY, RECONCILING, STALLED, Wanted};
use crate::context::Context;
use crate::events::Note;
use crate::writes::own_writes::Known;
use crate::writes::{self, config_maps, ignore_not_found};
use crate::{finalizer, hashing, labels};

/// On a DaemonSet: a hash of what the operator applied, so the same content is not applied again.
const APPLIED_HASH: &str = "hostprocess.dev/applied-hash";
/// How many pods of an older revision a wave deletes at once.
const PARALLEL_DELETES: usize = 8;

/// Adds the finalizer before the first node is labelled (the labels must come off when the task
/// goes). `true`: it was added; the patch changes the task, whose next reconcile admits.
pub async fn finalizer_first(
    ctx: &Context,
    task: &HostTask,
    decided: &Decided,
) -> Result<Option<Action>, Error> {
    if decided.label_changes.admit.is_empty() || finalizer::has(task) {
        return Ok(None);
    }
    let api: Api<HostTask> = Api::namespaced(ctx.client.clone(), &task.namespace().unwrap_or_default());
    Ok(Some(after_finalizer_patch(finalizer::add(&api, task).await.map_err(Error::PatchFinalizer)?)))
}

/// What follows a finalizer patch: the patch itself reconciles the task again; a patch refused
/// because the task changed since it was read (most often the operator's own status write,
/// which reconciles no task) must not wait for a change that already happened.
fn after_finalizer_patch(patched: finalizer::Patched) -> Action {
    match patched {
        finalizer::Patched::Done => Action::await_change(),
        finalizer::Patched::Stale => Action::requeue(STALE_RETRY),
    }
}

/// How soon a reconcile whose finalizer patch was stale decides again.
const STALE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Carries out the decision; `daemon_set` is what should run (`None`: nothing may run yet).
pub async fn apply(
    ctx: &Context,
    task: &HostTask,
    resolved: &Resolved,
    decided: &Decided,
    daemon_set: Option<DaemonSet>,
) -> Result<(), Error> {
    let revision = &resolved.revision;
    // A task that targets no node creates nothing, not even its script.
    if !resolved.runs_revision && decided.decision.counts.targeted > 0 {
        apply_script(ctx, task, revision).await?;
    }
    match daemon_set {
        Some(ds) => apply_daemon_set(ctx, resolved.daemon_set.as_ref(), ds).await?,
        None if resolved.daemon_set.is_some() => delete_daemon_set(ctx, task).await?,
        None => {}
    }
    // The labels go to the writers, counted as written from now on: the next reconcile neither
    // admits these nodes again nor more than maxConcurrent beside them. The DaemonSet selects only
    // the nodes labelled for this revision, so it may exist first; a node is labelled only once
    // what runs there could be written (a namespace where the operator may not create labels none).
    ctx.writes.node_labels.submit(&resolved.admission_label, decided.label_changes.values(revision));
    // Only now: a pod deleted before the DaemonSet runs the new revision would come back as the
    // old one.
    if task.spec.mode == Mode::Once {
        // Not where an earlier revision's payload still runs: it finishes first.
        let finishing: BTreeSet<&str> = resolved
            .pods
            .results
            .iter()
            .filter(|(_, r)| matches!(r, NodeResult::Finishing))
            .map(|(node, _)| node.as_str())
            .collect();
        let outdated: Vec<(String, String)> = resolved
            .pods
            .outdated
            .iter()
            .filter(|(_, node)| !finishing.contains(node.as_str()))
            .cloned()
            .collect();
        replace_pods(ctx, task, &outdated, &decided.decision.admitted).await?;
        // Failed nodes admitted into a retry round: their pod is replaced by one of the round
        // (the DaemonSet applied above makes it).
        let retried: Vec<(String, String)> = decided
            .decision
            .retrying
            .iter()
            .filter_map(|node| Some((resolved.pods.retry.get(node)?.clone(), node.clone())))
            .collect();
        replace_pods(ctx, task, &retried, &decided.decision.retrying).await?;
    }
    // Reboots the payloads asked for, each as far as it can go now.
    for pod in &resolved.pods.rebooting {
        reboot::advance(ctx, task, pod, revision).await?;
    }
    // No cordon of this task outlives the reboot it was for.
    let holding: BTreeSet<&str> = resolved
        .pods
        .results
        .iter()
        .filter(|(_, result)| match result {
            // A cordon a failed reboot left stays until the node runs its retry round.
            NodeResult::Rebooting | NodeResult::RetryPending => true,
            NodeResult::Failed(f) => {
                matches!(f.reason.as_str(), step::REBOOT_FAILED | step::REBOOT_TIMED_OUT)
            }
            _ => false,
        })
        .map(|(node, _)| node.as_str())
        .collect();
    reboot::release_cordons(ctx, task, &holding, false).await
}

/// The task is being deleted: the DaemonSet, its pods and the ConfigMaps go with it (owner
/// references); the admission labels are taken off the nodes before the finalizer lets it go.
pub async fn finalize(ctx: &Context, task: &HostTask) -> Result<Action, Error> {
    let (namespace, uid) = (task.namespace().unwrap_or_default(), task.uid().unwrap_or_default());
    ctx.metrics.task_nodes(&namespace, &task.name_any(), None, 0);
    ctx.writes.script_maps.forget(&uid);
    ctx.writes.task_status.forget(&uid);
    ctx.writes.exclusive.release(&namespace, &task.name_any());
    if finalizer::has(task) {
        let nodes = ctx.cache.nodes.state();
        let api: Api<HostTask> = Api::namespaced(ctx.client.clone(), &namespace);
        if let Err(error) =
            admission::release_all(&ctx.writes.node_labels, &admission::label_key(&uid), &nodes).await
        {
            report_deletion_blocked(ctx, &api, task, &error.to_string()).await;
            return Err(Error::Admit(error));
        }
        // Its reboots are abandoned: every cordon it set is taken back (an administrator's stays).
        if let Err(error) = reboot::release_cordons(ctx, task, &BTreeSet::new(), true).await {
            report_deletion_blocked(ctx, &api, task, &error.to_string()).await;
            return Err(error);
        }
        return Ok(after_finalizer_patch(
            finalizer::remove(&api, task).await.map_err(Error::PatchFinalizer)?,
        ));
    }
    Ok(Action::await_change())
}

/// Says in the task's conditions (and a Warning Event, once) why its deletion cannot finish:
/// its admission label could not be taken off every node, so the finalizer stays. The operator
/// tries again with back-off; a status that cannot be written either is only logged.
async fn report_deletion_blocked(ctx: &Context, api: &Api<HostTask>, task: &HostTask, error: &str) {
    const REASON: &str = "DeletionBlocked";
    let message = format!(
        "the deletion waits: the task's admission label could not be taken off every node ({error}); the operator tries again with back-off — check that its ClusterRole may patch nodes and that the API server answers"
    );
    let mut status = task.status.clone().unwrap_or_default();
    let told =
        status.conditions.iter().any(|c| c.type_ == RECONCILING && c.status == "True" && c.reason == REASON);
    if !told {
        ctx.events.publish(task, crate::events::ROLLOUT, Note::warning(REASON, message.clone()));
    }
    let wanted = [
        Wanted::new(READY, false, REASON, message.clone()),
        Wanted::new(RECONCILING, true, REASON, message),
        Wanted::new(STALLED, false, REASON, ""),
    ];
    status.conditions =
        conditions::merge(&status.conditions, &wanted, task.metadata.generation, Timestamp::now());
    if let Err(e) = writes::apply_status(api, &task.name_any(), &status).await {
        tracing::warn!(error = %e, "cannot say why the deletion waits");
    }
}

/// Stops whatever the task runs without letting it go: its DaemonSet (and with it every pod,
/// a payload in flight included) and its admission labels. For a task whose grant was taken
/// back; the finalizer stays for the deletion.
pub async fn withdraw(ctx: &Context, task: &HostTask) -> Result<(), Error> {
    let (namespace, uid) = (task.namespace().unwrap_or_default(), task.uid().unwrap_or_default());
    let key = ObjectRef::new(&labels::daemon_set_name(&task.name_any())).within(&namespace);
    if !matches!(ctx.writes.daemon_sets.resolve(&key, ctx.cache.daemon_sets.get(&key)), Known::Is(None)) {
        delete_daemon_set(ctx, task).await?;
    }
    let nodes = ctx.cache.nodes.state();
    admission::release_all(&ctx.writes.node_labels, &admission::label_key(&uid), &nodes)
        .await
        .map_err(Error::Admit)
}

/// Writes the script ConfigMap of the revision unless it exists (it is immutable: looked up or
/// written once per process).
async fn apply_script(ctx: &Context, task: &HostTask, revision: &str) -> Result<(), Error> {
    let Some(cm) = build::script_config_map(task, revision) else { return Ok(()) };
    let (uid, name) = (task.uid().unwrap_or_default(), cm.name_any());
    if ctx.writes.script_maps.has(&uid, &name) {
        return Ok(());
    }
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &task.namespace().unwrap_or_default());
    config_maps::ensure(&maps, &cm).await.map_err(Error::ApplyConfigMap)?;
    ctx.writes.script_maps.applied(&uid, &name);
    Ok(())
}

/// Applies the DaemonSet unless the one in the API was applied from the same content.
async fn apply_daemon_set(
    ctx: &Context,
    existing: Option<&DaemonSet>,
    mut ds: DaemonSet,
) -> Result<(), Error> {
    let content = serde_json::to_value(&ds).map_err(|e| Error::ApplyDaemonSet(kube::Error::SerdeError(e)))?;
    let hash = hashing::content_hash(&content);
    if existing.and_then(|e| e.annotations().get(APPLIED_HASH)) == Some(&hash) {
        return Ok(());
    }
    ds.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(APPLIED_HASH.into(), hash);
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ds.namespace().unwrap_or_default());
    let applied = writes::apply(&api, &ds).await.map_err(Error::ApplyDaemonSet)?;
    ctx.writes.daemon_sets.wrote(ObjectRef::from_obj(&applied), Some(applied));
    Ok(())
}

async fn delete_daemon_set(ctx: &Context, task: &HostTask) -> Result<(), Error> {
    let namespace = task.namespace().unwrap_or_default();
    let name = labels::daemon_set_name(&task.name_any());
    let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &namespace);
    ignore_not_found(api.delete(&name, &DeleteParams::background()).await).map_err(Error::DeleteDaemonSet)?;
    ctx.writes.daemon_sets.wrote(ObjectRef::new(&name).within(&namespace), None);
    Ok(())
}

/// `Once` DaemonSets use `OnDelete`: the operator replaces a pod (of an older revision, or of an
/// earlier retry round) once its node is admitted (`on`, sorted) for the new one; the DaemonSet
/// controller then creates the new pod.
async fn replace_pods(
    ctx: &Context,
    task: &HostTask,
    outdated: &[(String, String)],
    admitted: &[String],
) -> Result<(), Error> {
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
                ignore_not_found(pods.delete(&pod, &DeleteParams::default()).await).map_err(Error::DeletePod)
            }
        })
        .buffer_unordered(PARALLEL_DELETES)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_finalizer_patch_decides_again_soon_instead_of_waiting_for_a_change() {
        assert_eq!(after_finalizer_patch(finalizer::Patched::Done), Action::await_change());
        assert_eq!(after_finalizer_patch(finalizer::Patched::Stale), Action::requeue(STALE_RETRY));
    }
}
