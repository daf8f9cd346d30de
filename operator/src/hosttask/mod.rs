//! HostTask reconciliation, a pipeline with one stage per file:
//! `authorize` (whether a cluster administrator allowed it; nothing else is read before) →
//! `resolve` (read everything once) → `validate` (bad input becomes Stalled) → `decide` (the
//! rollout, label changes and Events; pure) → `build` (the DaemonSet; pure) → `apply` (the
//! writes) → `status` (pure; written behind the reconcile by `writes::task_status`).

pub(crate) mod admission;
pub(crate) mod apply;
pub(crate) mod authorize;
pub(crate) mod build;
pub(crate) mod decide;
pub(crate) mod error;
pub(crate) mod pods;
pub(crate) mod reboot;
pub(crate) mod resolve;
pub(crate) mod rollout;
pub(crate) mod status;
pub(crate) mod validate;

#[cfg(test)]
mod golden_tests;

use std::sync::Arc;
use std::time::Duration;

use hostprocess_crds::HostTask;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::{info, instrument, warn};

use crate::conditions::Blocked;
use crate::context::Context;
use crate::events::Note;
use crate::hashing;
use crate::state::targeting::windows_nodes_matching;
use crate::writes::config_maps::ConfigMapError;
use error::Error;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

#[instrument(skip_all, fields(task = %task.name_any(), namespace = task.namespace().unwrap_or_default()))]
pub(crate) async fn reconcile(task: Arc<HostTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    if task.metadata.deletion_timestamp.is_some() {
        return apply::finalize(&ctx, &task).await;
    }
    // The targeted nodes, read once: the grant's cap may need their number, the rollout their names.
    let targeted = windows_nodes_matching(task.spec.node_selector.as_ref(), &ctx.cache.nodes.state());
    if let Some(mut refused) = refusal(&ctx, &task, targeted.len()) {
        // Taken back or never given: whatever the task still runs stops.
        ctx.writes.exclusive.release(&task.namespace().unwrap_or_default(), &task.name_any());
        if let Err(error) = apply::withdraw(&ctx, &task).await {
            warn!(%error, "cannot stop what the task runs");
            refused.message.push_str(&format!("; what it runs could not be stopped: {error}"));
        }
        let revision = hashing::revision(&task.spec, None);
        report_blocked(&ctx, &task, &revision, &refused, resolve::now());
        // A grant or a HostGroup changing reconciles every task; nothing to poll.
        return Ok(Action::await_change());
    }
    let resolved = resolve::resolve(&ctx, &task, targeted).await?;
    let (generation, paused) = (task.metadata.generation, task.spec.rollout.paused);
    let (previous, revision, now) = (resolved.previous.as_ref(), &resolved.revision, resolved.now);
    let account = match validate::validate(&task, &resolved) {
        Ok(account) => account,
        Err(blocked) => {
            report_blocked(&ctx, &task, revision, &blocked, now);
            // A missing HostGroup may appear: the group watch triggers a reconcile, this is a net.
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };
    let decided = decide_in_group(&ctx, &task, &resolved, &account);
    if let Some(action) = apply::finalizer_first(&ctx, &task, &decided).await? {
        return Ok(action);
    }
    let daemon_set = decided
        .runs_anywhere()
        .then(|| build::daemon_set(&task, &build_inputs(&ctx, &resolved, &account, &decided)));
    match apply::apply(&ctx, &task, &resolved, &decided, daemon_set).await {
        Err(error) if error.forbidden() => {
            // Enabled by a grant, but the operator may not create there: the nodes it just
            // admitted are released (RoleBindings are not watched: it looks again in a while).
            let mut blocked = not_permitted(&task, &error);
            if let Err(error) = apply::withdraw(&ctx, &task).await {
                blocked.message.push_str(&format!("; what it runs could not be stopped: {error}"));
            }
            report_blocked(&ctx, &task, revision, &blocked, now);
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        Err(Error::ApplyConfigMap(error @ ConfigMapError::NotOurs { .. })) => {
            // Not written by the operator: refused, not overwritten. ConfigMaps are not watched.
            let blocked = Blocked { reason: "ForeignConfigMap", message: error.to_string() };
            report_blocked(&ctx, &task, revision, &blocked, now);
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        result => result?,
    }
    for note in decide::events(previous, revision, &decided.decision) {
        info!(reason = %note.reason, "{}", note.message);
        ctx.events.publish(&*task, crate::events::ROLLOUT, note);
    }
    let status = status::status(previous, generation, revision, Some(&decided.decision), None, paused, now);
    ctx.writes.task_status.submit(&task, status);
    let counts = &decided.decision.counts;
    let waiting = match decided.decision.phase {
        rollout::Phase::WaitingForWindow { .. } => counts.pending,
        _ => 0,
    };
    ctx.metrics.task_nodes(&task.namespace().unwrap_or_default(), &task.name_any(), Some(counts), waiting);
    Ok(decide::requeue(&decided, !resolved.pods.rebooting.is_empty(), now))
}

/// The decision, taken under the concurrency group's lock when the task names one: the nodes
/// another task of the group holds do not start, and the task holds its nodes in flight after.
fn decide_in_group(
    ctx: &Context,
    task: &HostTask,
    resolved: &resolve::Resolved,
    account: &resolve::Account,
) -> decide::Decided {
    let (namespace, name) = (task.namespace().unwrap_or_default(), task.name_any());
    let group = task
        .spec
        .rollout
        .concurrency_group
        .as_deref()
        .filter(|_| task.spec.mode == hostprocess_crds::Mode::Once);
    let Some(group) = group else {
        ctx.writes.exclusive.release(&namespace, &name);
        return decide::decide(task, resolved, account, &Default::default());
    };
    let cached = pods::in_flight_in_group(&ctx.cache.task_pods, group, task);
    ctx.writes.exclusive.decide(group, (&namespace, &name), cached, |busy| {
        let decided = decide::decide(task, resolved, account, busy);
        let holding = decided.in_flight(&resolved.pods.results);
        (decided, holding)
    })
}

/// Why a cluster administrator's grants do not let the task run, from the caches.
fn refusal(ctx: &Context, task: &HostTask, targeted: usize) -> Option<Blocked> {
    let grant = ctx.cache.grants.get(&ObjectRef::new(&task.namespace().unwrap_or_default()));
    let group = task.spec.run_as.host_group.as_ref().and_then(|g| ctx.cache.groups.get(&ObjectRef::new(g)));
    authorize::refusal(task, grant.as_deref(), group.as_deref(), targeted)
}

/// Writes the Stalled status of a task that cannot run, and a Warning Event the first time
/// for this reason.
fn report_blocked(ctx: &Context, task: &HostTask, revision: &str, blocked: &Blocked, now: Timestamp) {
    let previous = ctx.writes.task_status.current(task);
    let (generation, paused) = (task.metadata.generation, task.spec.rollout.paused);
    let shown_by = blocked.shown_by();
    let already = previous.as_ref().is_some_and(|p| {
        p.conditions.iter().any(|c| c.type_ == shown_by && c.status == "True" && c.reason == blocked.reason)
    });
    if !already {
        warn!(reason = blocked.reason, "{}", blocked.message);
        let note = if blocked.waits() {
            Note::normal(blocked.reason, blocked.message.clone())
        } else {
            Note::warning(blocked.reason, blocked.message.clone())
        };
        ctx.events.publish(task, crate::events::ROLLOUT, note);
    }
    let status = status::status(previous.as_ref(), generation, revision, None, Some(blocked), paused, now);
    ctx.writes.task_status.submit(task, status);
}

/// Why a task of an enabled namespace cannot run when RBAC refuses the operator there.
fn not_permitted(task: &HostTask, error: &Error) -> Blocked {
    let namespace = task.namespace().unwrap_or_default();
    Blocked {
        reason: "OperatorNotPermitted",
        message: format!(
            "the API server refused the operator in namespace {namespace} ({error}); a cluster administrator enables a namespace with its HostTaskGrant and a RoleBinding of ClusterRole {} to the operator's ServiceAccount (deploy/enable-hostprocess-tasks.yaml)",
            crate::permissions::TASK_NAMESPACE_ROLE
        ),
    }
}

/// The builder's inputs for this reconcile: the operator's settings, the revision, the account
/// and the rollout's limits.
fn build_inputs<'a>(
    ctx: &'a Context,
    resolved: &'a resolve::Resolved,
    account: &'a resolve::Account,
    decided: &'a decide::Decided,
) -> build::BuildInputs<'a> {
    build::BuildInputs {
        executor_image: &ctx.config.executor_image,
        executor_version: &ctx.config.executor_version,
        revision: &resolved.revision,
        run_as_user: &account.user,
        admission_label: decided.pinned.then_some(resolved.admission_label.as_str()),
        transitional: &decided.transitional,
        max_unavailable: decided.limits.max_concurrent,
    }
}

pub(crate) fn error_policy(task: Arc<HostTask>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed("hosttask", error.metric_label());
    warn!(task = %task.name_any(), step = error.metric_label(), %error, "reconcile failed");
    ctx.backoff.failed(&backoff_key(&task))
}

/// The task's key in the back-off of failed reconciles.
pub(crate) fn backoff_key(task: &HostTask) -> String {
    format!("hosttask/{}/{}", task.namespace().unwrap_or_default(), task.name_any())
}
