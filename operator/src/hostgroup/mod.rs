//! HostGroup reconciliation: finalizer → resolve (nodes, setup pods) → validate → plan per node
//! (pure) → build and apply (create and delete setup pods) → Events → status. With deletion
//! policy `Delete` a finalizer holds the HostGroup until cleanup pods removed the group from
//! every node (bounded: nodes that are gone are skipped, and after `CLEANUP_DEADLINE` the rest is
//! reported and released).

pub(crate) mod apply;
pub(crate) mod build;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod plan;
pub(crate) mod provisioned;
pub(crate) mod record;
pub(crate) mod status;
pub(crate) mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hostprocess_crds::HostGroup;
use hostprocess_crds::units::CountOrPercent;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, instrument, warn};

use crate::conditions::{Blocked, STALLED};
use crate::context::Context;
use crate::events::Note;
use crate::hashing;
use crate::names::name_list;
use crate::state::targeting::windows_nodes_matching;
use crate::writes::config_maps::ConfigMapError;
use apply::Finalizer;
use build::SetupInputs;
use error::Error;
use plan::{Plan, SetupResult};

/// How long deletion waits for nodes that exist but do not finish their cleanup.
pub const CLEANUP_DEADLINE: Duration = Duration::from_secs(600);

#[instrument(skip_all, fields(hostgroup = %group.name_any()))]
pub(crate) async fn reconcile(group: Arc<HostGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    if apply::finalizer(&ctx, &group).await? == Finalizer::Changed {
        return Ok(Action::await_change());
    }
    let deleting = group.metadata.deletion_timestamp.is_some();
    let (generation, now) = (group.metadata.generation, Timestamp::now());
    let namespace = ctx.config.group_namespace.clone();
    if let Some(blocked) = validate::blocked(
        &group,
        &ctx.cache.groups.state(),
        &namespace,
        ctx.cache.namespaces.get(&ObjectRef::new(&namespace)).as_deref(),
    ) {
        if deleting && blocked.reason == validate::GROUP_NAME_TAKEN {
            // It never provisioned anything: the group on the nodes is its owner's.
            apply::remove_finalizer(&ctx, &group).await?;
            return Ok(Action::await_change());
        }
        if deleting {
            // No setup pod can run: nothing can be cleaned, and deletion must not hang.
            let note = format!("cleanup impossible ({}); the group stays on the nodes", blocked.message);
            ctx.events.publish(&*group, crate::events::PROVISION, Note::warning("CleanupSkipped", note));
            apply::remove_finalizer(&ctx, &group).await?;
            return Ok(Action::await_change());
        }
        report_blocked(&ctx, &group, &blocked, now).await?;
        // Another HostGroup's deletion frees the name; HostGroups do not reconcile each other.
        return Ok(if blocked.reason == validate::GROUP_NAME_TAKEN {
            Action::requeue(Duration::from_secs(30))
        } else {
            Action::await_change()
        });
    }
    let revision = hashing::group_revision(&group.spec);
    let pods = provisioned::setup_pods(&ctx, &group.name_any());
    let records = record::Records::read(&ctx.cache.nodes.state(), group.uid().as_deref().unwrap_or_default());
    let plan = plan_nodes(&ctx, &group, &pods, &records, &revision, deleting, now);
    let inputs = SetupInputs {
        namespace: &namespace,
        executor_image: &ctx.config.executor_image,
        revision: &revision,
    };
    match apply::apply(&ctx, &group, &plan, &inputs).await {
        Err(Error::ApplyConfigMap(error @ ConfigMapError::NotOurs { .. })) => {
            // Not written by the operator: refused, not overwritten. ConfigMaps are not watched.
            let blocked = Blocked { reason: "ForeignConfigMap", message: error.to_string() };
            report_blocked(&ctx, &group, &blocked, now).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        result => result?,
    }
    for note in events::notes(&group, &plan, &pods, deleting) {
        ctx.events.publish(&*group, crate::events::PROVISION, note);
    }
    if deleting {
        return finish_deletion(&ctx, &group, &plan, now).await;
    }
    let status = status::status(group.status.as_ref(), generation, Some(&plan), None, false, now);
    if let Some(note) = provisioned_note(&group, &status) {
        ctx.events.publish(&*group, crate::events::PROVISION, note);
    }
    let waited = group.status.as_ref().and_then(|s| crate::conditions::ready_reason(&s.conditions))
        == Some(crate::conditions::WAITING_FOR_WINDOW);
    if let Some(opens) = plan.window_closed.filter(|_| !waited) {
        let note =
            Note::normal(crate::conditions::WAITING_FOR_WINDOW, crate::conditions::window_message(opens));
        ctx.events.publish(&*group, crate::events::PROVISION, note);
    }
    apply::status(&ctx, &group, status).await?;
    // A failure that may pass is tried again when due, nodes start when the window opens;
    // otherwise a periodic look.
    let due = [plan.next_retry, plan.window_closed.flatten()].into_iter().flatten().min();
    let wait = due.map_or(Duration::from_secs(300), |due| {
        Duration::from_secs(due.duration_since(now).as_secs().clamp(1, 300).unsigned_abs())
    });
    Ok(Action::requeue(wait))
}

/// Writes the Stalled status of a HostGroup that cannot be provisioned, and a Warning Event the
/// first time for this reason.
async fn report_blocked(
    ctx: &Context,
    group: &HostGroup,
    blocked: &Blocked,
    now: Timestamp,
) -> Result<(), Error> {
    let was = group.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| c.type_ == STALLED && c.status == "True" && c.reason == blocked.reason)
    });
    if !was {
        ctx.events.publish(group, crate::events::PROVISION, Note::warning(blocked.reason, &blocked.message));
    }
    let status =
        status::status(group.status.as_ref(), group.metadata.generation, None, Some(blocked), false, now);
    apply::status(ctx, group, status).await
}

pub(crate) fn error_policy(group: Arc<HostGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed("hostgroup", error.metric_label());
    warn!(hostgroup = %group.name_any(), step = error.metric_label(), %error, "reconcile failed");
    ctx.backoff.failed(&backoff_key(&group))
}

/// The HostGroup's key in the back-off of failed reconciles.
pub(crate) fn backoff_key(group: &HostGroup) -> String {
    format!("hostgroup/{}", group.name_any())
}

/// The plan for every node, from the node cache, the records and the group's setup pods.
fn plan_nodes(
    ctx: &Context,
    group: &HostGroup,
    pods: &[plan::SetupPod],
    records: &record::Records,
    revision: &str,
    deleting: bool,
    now: Timestamp,
) -> Plan {
    let nodes = ctx.cache.nodes.state();
    let targeted = windows_nodes_matching(group.spec.node_selector.as_ref(), &nodes);
    let existing: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    let not_ready: BTreeSet<String> = nodes
        .iter()
        .filter(|n| n.annotations().get(crate::labels::CACHED_READY).is_some_and(|r| r != "True"))
        .map(|n| n.name_any())
        .collect();
    let machines: BTreeMap<String, String> =
        nodes.iter().map(|n| (n.name_any(), hashing::short(record::machine_id(n)))).collect();
    let total = u32::try_from(targeted.len()).unwrap_or(u32::MAX);
    // Validated by the API server; a value it let through and the operator cannot read is 1 / 0.
    let limit = |value, fallback| {
        CountOrPercent::parse(value).map_or(fallback, |v| usize::try_from(v.of(total)).unwrap_or(usize::MAX))
    };
    plan::plan(&plan::Inputs {
        targeted: &targeted,
        existing: &existing,
        not_ready: &not_ready,
        pods,
        records,
        machines: &machines,
        revision,
        deleting,
        policy: group.spec.deletion_policy,
        max_concurrent: limit(&group.spec.rollout.max_concurrent, 1).max(1),
        max_failures: limit(&group.spec.rollout.max_failures, 0),
        // Validation refused a schedule that does not compile: here it does.
        window: match group.spec.rollout.schedule.as_ref().map(|s| s.compile()) {
            Some(Ok(schedule)) => schedule.at(now),
            _ => hostprocess_crds::schedule::Admission::Open,
        },
        now,
    })
}

/// `Provisioned`, once per generation, when the group becomes Ready on at least one node.
fn provisioned_note(group: &HostGroup, status: &hostprocess_crds::HostGroupStatus) -> Option<Note> {
    let ready = |conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
        conditions.iter().any(|c| c.type_ == crate::conditions::READY && c.status == "True")
    };
    let was_ready = group
        .status
        .as_ref()
        .is_some_and(|s| s.observed_generation == group.metadata.generation && ready(&s.conditions));
    (ready(&status.conditions) && !was_ready && status.nodes.targeted > 0).then(|| {
        let message =
            format!("group {} provisioned on {} nodes", group.spec.group_name, status.nodes.provisioned);
        Note::normal("Provisioned", message)
    })
}

/// Deletion: released once every node is clean, or after `CLEANUP_DEADLINE` with the nodes left
/// named; until then the status says where the cleanup stands.
async fn finish_deletion(
    ctx: &Context,
    group: &HostGroup,
    plan: &Plan,
    now: Timestamp,
) -> Result<Action, Error> {
    let since = group.metadata.deletion_timestamp.as_ref().map_or(now, |t| t.0);
    let overdue = now.duration_since(since).as_secs() > CLEANUP_DEADLINE.as_secs().cast_signed();
    if plan.clean() {
        info!(nodes = plan.cleaning.len(), "every node is clean");
    } else if overdue {
        let stuck: Vec<&String> =
            plan.cleaning.iter().filter(|(_, r)| **r != SetupResult::Done).map(|(n, _)| n).collect();
        let note = format!(
            "cleanup did not finish within {}s on {} nodes, released anyway; the group may remain there: {}",
            CLEANUP_DEADLINE.as_secs(),
            stuck.len(),
            name_list(&stuck, 10)
        );
        ctx.events.publish(group, crate::events::PROVISION, Note::warning("CleanupAbandoned", note));
    } else {
        let status =
            status::status(group.status.as_ref(), group.metadata.generation, Some(plan), None, true, now);
        apply::status(ctx, group, status).await?;
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    apply::remove_finalizer(ctx, group).await?;
    Ok(Action::await_change())
}
