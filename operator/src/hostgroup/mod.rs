//! HostGroup reconciliation: resolve (nodes, setup pods) → validate → plan per node → build →
//! apply (create and delete setup pods) → status. With deletion policy `Delete` a finalizer
//! holds the HostGroup until cleanup pods removed the group from every node (bounded: nodes
//! that are gone are skipped, and after `CLEANUP_DEADLINE` the rest is reported and released).

pub mod build;
pub mod plan;
pub mod status;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use hostprocess_crds::{DeletionPolicy, HostGroup};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};

use crate::context::Context;
use crate::{finalizer, hashing, labels};
use build::{Setup, SetupInputs};
use plan::{Plan, SetupResult};
use status::Blocked;

/// How long deletion waits for nodes that exist but do not finish their cleanup.
pub const CLEANUP_DEADLINE: Duration = Duration::from_secs(600);
/// Longest HostGroup name usable as a label value.
const MAX_NAME: usize = 63;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying the spec ConfigMap: {0}")]
    ApplyConfigMap(#[source] kube::Error),
    #[error("creating a setup pod: {0}")]
    CreatePod(#[source] kube::Error),
    #[error("deleting a setup pod: {0}")]
    DeletePod(#[source] kube::Error),
    #[error("updating the finalizer: {0}")]
    PatchFinalizer(#[source] kube::Error),
    #[error("writing status: {0}")]
    PatchStatus(#[source] kube::Error),
    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ApplyConfigMap(_) => "apply_configmap",
            Error::CreatePod(_) => "create_pod",
            Error::DeletePod(_) => "delete_pod",
            Error::PatchFinalizer(_) => "patch_finalizer",
            Error::PatchStatus(_) => "patch_status",
            Error::Serialize(_) => "serialize",
        }
    }
}

/// The setup pods of `group` the operator sees, as the planner reads them.
fn setup_pods(ctx: &Context, group: &str) -> Vec<plan::SetupPod> {
    ctx.setup_pods
        .state()
        .iter()
        .filter(|p| p.label(labels::HOST_GROUP) == Some(group))
        .filter_map(|p| plan::observe(&p.to_pod()))
        .collect()
}

/// The nodes where `group`'s local group is in place at the HostGroup's current revision: a
/// HostTask running as the group may start there, and only there.
pub fn provisioned_nodes(ctx: &Context, group: &HostGroup) -> BTreeSet<String> {
    if group.metadata.deletion_timestamp.is_some() {
        return BTreeSet::new();
    }
    let revision = hashing::group_revision(&group.spec);
    setup_pods(ctx, &group.name_any())
        .into_iter()
        .filter(|p| {
            p.setup == Setup::Provision
                && p.revision.as_deref() == Some(revision.as_str())
                && p.result == SetupResult::Done
        })
        .map(|p| p.node)
        .collect()
}

fn blocked(group: &HostGroup, namespace: &str, ns: Option<&PartialObjectMeta<Namespace>>) -> Option<Blocked> {
    if group.name_any().len() > MAX_NAME {
        return Some(Blocked {
            reason: "InvalidName",
            message: format!(
                "the HostGroup's name is {} characters long; use at most {MAX_NAME} (its setup pods are labelled with it)",
                group.name_any().len()
            ),
        });
    }
    if let Err(errors) = group.spec.validate() {
        return Some(Blocked { reason: "InvalidSpec", message: errors.to_string() });
    }
    let Some(ns) = ns else {
        return Some(Blocked {
            reason: "NamespaceMissing",
            message: format!(
                "the setup pods run in namespace {namespace}, which does not exist; install the operator's namespaces (kubectl apply -k deploy/) or set --hostgroup-namespace"
            ),
        });
    };
    if let Some(level) = labels::pod_security_refusal(ns.labels()) {
        return Some(Blocked {
            reason: "PodSecurityRejects",
            message: format!(
                "namespace {namespace} enforces the Pod Security level {level:?}, which refuses the HostProcess setup pods; label it pod-security.kubernetes.io/enforce=privileged"
            ),
        });
    }
    None
}

#[instrument(skip_all, fields(hostgroup = %group.name_any()))]
pub async fn reconcile(group: Arc<HostGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = group.name_any();
    let generation = group.metadata.generation;
    let deleting = group.metadata.deletion_timestamp.is_some();
    let has_finalizer = finalizer::has(&*group);
    let policy = group.spec.deletion_policy;

    // The finalizer: present exactly while deletion has something to do.
    if deleting && !has_finalizer {
        return Ok(Action::await_change());
    }
    if deleting && policy == DeletionPolicy::Retain {
        publish(
            &ctx,
            &group,
            EventType::Normal,
            "Retained",
            "deletion policy Retain: the group stays on the nodes".into(),
        );
        remove_finalizer(&ctx, &group).await?;
        return Ok(Action::await_change());
    }
    if !deleting && (policy == DeletionPolicy::Delete) != has_finalizer {
        if has_finalizer {
            remove_finalizer(&ctx, &group).await?;
        } else {
            add_finalizer(&ctx, &group).await?;
        }
        // The patch is a change of the HostGroup: the next reconcile sees it.
        return Ok(Action::await_change());
    }

    // Resolve.
    let namespace = ctx.config.group_namespace.clone();
    let ns = ctx.namespaces.get(&ObjectRef::new(&namespace));
    let now = Timestamp::now();
    let revision = hashing::group_revision(&group.spec);

    // Validate.
    if let Some(blocked) = blocked(&group, &namespace, ns.as_deref()) {
        if deleting {
            // No setup pod can run: nothing can be cleaned, and deletion must not hang.
            let note = format!("cleanup impossible ({}); the group stays on the nodes", blocked.message);
            publish(&ctx, &group, EventType::Warning, "CleanupSkipped", note);
            remove_finalizer(&ctx, &group).await?;
            return Ok(Action::await_change());
        }
        let status = status::status(group.status.as_ref(), generation, None, Some(&blocked), false, now);
        write_status(&ctx, &group, status).await?;
        return Ok(Action::await_change());
    }

    // Plan.
    let nodes = ctx.nodes.state();
    let targeted = crate::hosttask::windows_nodes_matching(group.spec.node_selector.as_ref(), &nodes);
    let existing: BTreeSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    let pods = setup_pods(&ctx, &name);
    let plan = plan::plan(&plan::Inputs {
        targeted: &targeted,
        existing: &existing,
        pods: &pods,
        revision: &revision,
        deleting,
        policy,
    });

    // Build and apply.
    let inputs = SetupInputs {
        namespace: &namespace,
        executor_image: &ctx.config.executor_image,
        revision: &revision,
    };
    apply(&ctx, &group, &plan, &inputs).await?;
    events(&ctx, &group, &plan, &pods, deleting);

    if deleting {
        let since = group.metadata.deletion_timestamp.as_ref().map_or(now, |t| t.0);
        let overdue = now.duration_since(since).as_secs() > CLEANUP_DEADLINE.as_secs().cast_signed();
        if plan.clean() || overdue {
            if !plan.clean() {
                let stuck =
                    plan.cleaning.iter().filter(|(_, r)| **r != SetupResult::Done).map(|(n, _)| n.clone());
                let stuck: Vec<String> = stuck.collect();
                let note = format!(
                    "cleanup did not finish within {}s on {} nodes, released anyway; the group may remain there: {}",
                    CLEANUP_DEADLINE.as_secs(),
                    stuck.len(),
                    short_list(&stuck)
                );
                publish(&ctx, &group, EventType::Warning, "CleanupAbandoned", note);
            } else {
                info!(nodes = plan.cleaning.len(), "every node is clean");
            }
            remove_finalizer(&ctx, &group).await?;
            return Ok(Action::await_change());
        }
        let status = status::status(group.status.as_ref(), generation, Some(&plan), None, true, now);
        write_status(&ctx, &group, status).await?;
        return Ok(Action::requeue(Duration::from_secs(15)));
    }

    let status = status::status(group.status.as_ref(), generation, Some(&plan), None, false, now);
    let newly_ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
        && !group.status.as_ref().is_some_and(|s| {
            s.observed_generation == generation
                && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
        });
    if newly_ready && status.nodes.targeted > 0 {
        let note =
            format!("group {} provisioned on {} nodes", group.spec.group_name, status.nodes.provisioned);
        publish(&ctx, &group, EventType::Normal, "Provisioned", note);
    }
    write_status(&ctx, &group, status).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Creates the ConfigMap and pods the plan needs, then deletes what it supersedes (in this
/// order: a node's cleanup pod exists before the pods that show it needs one go).
async fn apply(ctx: &Context, group: &HostGroup, plan: &Plan, inputs: &SetupInputs<'_>) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), inputs.namespace);
    if plan.create.iter().any(|(_, s)| *s == Setup::Provision) {
        let cm = build::spec_config_map(group, inputs)?;
        let mut value = serde_json::to_value(&cm)?;
        value["apiVersion"] = json!("v1");
        value["kind"] = json!("ConfigMap");
        Api::<ConfigMap>::namespaced(ctx.client.clone(), inputs.namespace)
            .patch(&cm.name_any(), &PatchParams::apply(labels::FIELD_MANAGER).force(), &Patch::Apply(&value))
            .await
            .map_err(Error::ApplyConfigMap)?;
    }
    for (node, setup) in &plan.create {
        let pod = build::setup_pod(group, node, *setup, inputs);
        match pods
            .create(
                &PostParams { field_manager: Some(labels::FIELD_MANAGER.into()), ..PostParams::default() },
                &pod,
            )
            .await
        {
            Ok(_) => {}
            // Created by an earlier reconcile that the cache has not shown yet.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(Error::CreatePod(e)),
        }
    }
    for pod in &plan.delete {
        crate::ignore_not_found(pods.delete(pod, &DeleteParams::default()).await)
            .map_err(Error::DeletePod)?;
    }
    Ok(())
}

/// Events for what changed since the pods last said something: setups started, nodes failing.
fn events(ctx: &Context, group: &HostGroup, plan: &Plan, before: &[plan::SetupPod], deleting: bool) {
    let starting: Vec<String> = plan.create.iter().map(|(n, _)| n.clone()).collect();
    if !starting.is_empty() {
        let (reason, what) = if deleting {
            ("CleanupStarted", "removing the group from")
        } else {
            ("SetupStarted", "setting up")
        };
        let note = format!("{what} {} nodes: {}", starting.len(), short_list(&starting));
        publish(ctx, group, EventType::Normal, reason, note);
    }
    if !plan.gone.is_empty() {
        let note = format!("nodes gone, nothing to clean there: {}", short_list(&plan.gone));
        publish(ctx, group, EventType::Normal, "NodesGone", note);
    }
    let known_failed =
        |node: &str| group.status.as_ref().is_some_and(|s| s.failures.iter().any(|f| f.node == node));
    for (node, result) in plan.provisioning.iter().chain(plan.cleaning.iter()) {
        if let SetupResult::Failed { reason, message } = result
            && !known_failed(node)
            && before.iter().any(|p| p.node == *node)
        {
            publish(ctx, group, EventType::Warning, reason, format!("{node}: {message}"));
        }
    }
}

fn short_list(nodes: &[String]) -> String {
    let shown: Vec<&str> = nodes.iter().take(10).map(String::as_str).collect();
    if nodes.len() > 10 {
        format!("{} and {} more", shown.join(", "), nodes.len() - 10)
    } else {
        shown.join(", ")
    }
}

fn publish(ctx: &Context, group: &HostGroup, type_: EventType, reason: &str, note: String) {
    ctx.events.publish(group.object_ref(&()), type_, "Provision", reason, note);
}

async fn add_finalizer(ctx: &Context, group: &HostGroup) -> Result<(), Error> {
    finalizer::add(&Api::all(ctx.client.clone()), group).await.map_err(Error::PatchFinalizer)
}

async fn remove_finalizer(ctx: &Context, group: &HostGroup) -> Result<(), Error> {
    finalizer::remove(&Api::all(ctx.client.clone()), group).await.map_err(Error::PatchFinalizer)
}

async fn write_status(
    ctx: &Context,
    group: &HostGroup,
    status: hostprocess_crds::HostGroupStatus,
) -> Result<(), Error> {
    if group.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<HostGroup> = Api::all(ctx.client.clone());
    let patch = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostGroup", "status": status});
    match api
        .patch_status(
            &group.name_any(),
            &PatchParams::apply(labels::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::PatchStatus(e)),
    }
}
