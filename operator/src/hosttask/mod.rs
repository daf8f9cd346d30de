//! HostTask reconciliation, a pipeline with one stage per file:
//! `resolve` (read everything once) → `validate` (bad input becomes Stalled) → `decide` (the
//! rollout, label changes and Events; pure) → `build` (the DaemonSet; pure) → `apply` (the
//! writes) → `status` (pure; written behind the reconcile by `writes::task_status`).

pub(crate) mod admission;
pub(crate) mod apply;
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

use crate::context::Context;
use error::Error;

#[instrument(skip_all, fields(task = %task.name_any(), namespace = task.namespace().unwrap_or_default()))]
pub(crate) async fn reconcile(task: Arc<HostTask>, ctx: Arc<Context>) -> Result<Action, Error> {
    if task.metadata.deletion_timestamp.is_some() {
        return apply::finalize(&ctx, &task).await;
    }
    let resolved = resolve::resolve(&ctx, &task).await?;
    let (generation, paused) = (task.metadata.generation, task.spec.rollout.paused);
    let (previous, revision, now) = (resolved.previous.as_ref(), &resolved.revision, resolved.now);
    let account = match validate::validate(&task, &resolved) {
        Ok(account) => account,
        Err(blocked) => {
            let status = status::status(previous, generation, revision, None, Some(&blocked), paused, now);
            ctx.writes.task_status.submit(&task, status);
            // A missing HostGroup may appear: the group watch triggers a reconcile, this is a net.
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };
    let decided = decide::decide(&task, &resolved, &account);
    if apply::finalizer_first(&ctx, &task, &decided).await? {
        return Ok(Action::await_change());
    }
    let daemon_set = decided
        .runs_anywhere()
        .then(|| build::daemon_set(&task, &build_inputs(&ctx, &resolved, &account, &decided)));
    apply::apply(&ctx, &task, &resolved, &decided, daemon_set).await?;
    for note in decide::events(previous, revision, &decided.decision) {
        info!(reason = %note.reason, "{}", note.message);
        ctx.events.publish(&*task, crate::events::ROLLOUT, note);
    }
    let status = status::status(previous, generation, revision, Some(&decided.decision), None, paused, now);
    ctx.writes.task_status.submit(&task, status);
    let counts = &decided.decision.counts;
    ctx.metrics.task_nodes(&task.namespace().unwrap_or_default(), &task.name_any(), Some(counts));
    Ok(decide::requeue(&decided, !resolved.pods.rebooting.is_empty()))
}

/// The builder's inputs for this reconcile: the operator's settings, the revision, the account
/// and the rollout's limits.
fn build_inputs<'a>(
    ctx: &'a Context,
    resolved: &'a resolve::Resolved,
    account: &'a resolve::Account,
    decided: &decide::Decided,
) -> build::BuildInputs<'a> {
    build::BuildInputs {
        executor_image: &ctx.config.executor_image,
        executor_version: &ctx.config.executor_version,
        revision: &resolved.revision,
        run_as_user: &account.user,
        admission_label: decided.pinned.then_some(resolved.admission_label.as_str()),
        max_unavailable: decided.limits.max_concurrent,
    }
}

pub(crate) fn error_policy(task: Arc<HostTask>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed("hosttask", error.metric_label());
    warn!(task = %task.name_any(), step = error.metric_label(), %error, "reconcile failed");
    crate::retry::after_error(&task.name_any())
}
