//! Apply: the finalizer (present exactly while deletion has work on the nodes), the spec
//! ConfigMap and setup pods the plan asks for, the status.

use hostprocess_crds::{DeletionPolicy, HostGroup, HostGroupStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};

use super::build::{self, Setup, SetupInputs};
use super::error::Error;
use super::plan::Plan;
use super::record::{self, Record};
use crate::context::Context;
use crate::events::Note;
use crate::writes::{self, config_maps, ignore_not_found};
use crate::{finalizer, labels};
use kube::runtime::reflector::ObjectRef;

/// What the finalizer asks of this reconcile.
#[derive(Debug, PartialEq, Eq)]
pub enum Finalizer {
    /// In place as it should be: go on.
    Settled,
    /// Added, removed, or the deletion released: the patch is a change the next reconcile sees.
    Changed,
}

/// Keeps the finalizer present exactly while deletion has something to do: policy `Delete`
/// until the nodes are clean; policy `Retain` never (a deletion is released at once).
pub async fn finalizer(ctx: &Context, group: &HostGroup) -> Result<Finalizer, Error> {
    let deleting = group.metadata.deletion_timestamp.is_some();
    let has = finalizer::has(group);
    let delete = group.spec.deletion_policy == DeletionPolicy::Delete;
    match (deleting, has, delete) {
        (true, false, _) => Ok(Finalizer::Changed),
        (true, true, false) => {
            let note = Note::normal("Retained", "deletion policy Retain: the group stays on the nodes");
            ctx.events.publish(group, crate::events::PROVISION, note);
            remove_finalizer(ctx, group).await?;
            Ok(Finalizer::Changed)
        }
        (false, true, false) => {
            remove_finalizer(ctx, group).await?;
            Ok(Finalizer::Changed)
        }
        (false, false, true) => {
            // Stale or not, the group changed: every change of a HostGroup reconciles it.
            let _: finalizer::Patched =
                finalizer::add(&Api::all(ctx.client.clone()), group).await.map_err(Error::PatchFinalizer)?;
            Ok(Finalizer::Changed)
        }
        _ => Ok(Finalizer::Settled),
    }
}

/// Removes the finalizer; refused as stale, the change that made it stale reconciles the group
/// again (every change of a HostGroup does).
pub async fn remove_finalizer(ctx: &Context, group: &HostGroup) -> Result<(), Error> {
    let _: finalizer::Patched =
        finalizer::remove(&Api::all(ctx.client.clone()), group).await.map_err(Error::PatchFinalizer)?;
    Ok(())
}

/// Creates the ConfigMap and pods the plan needs, then deletes what it supersedes (in this
/// order: a node's cleanup pod exists before the pods that show it needs one go).
pub async fn apply(
    ctx: &Context,
    group: &HostGroup,
    plan: &Plan,
    inputs: &SetupInputs<'_>,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), inputs.namespace);
    if plan.create.iter().any(|(_, s)| *s == Setup::Provision) {
        let cm = build::spec_config_map(group, inputs)
            .map_err(|e| Error::ApplyConfigMap(kube::Error::SerdeError(e).into()))?;
        let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), inputs.namespace);
        config_maps::ensure(&maps, &cm).await.map_err(Error::ApplyConfigMap)?;
    }
    let create = PostParams { field_manager: Some(labels::FIELD_MANAGER.into()), ..PostParams::default() };
    for (node, setup) in &plan.create {
        let machine = ctx.cache.nodes.get(&ObjectRef::new(node)).map(|n| record::machine_id(&n).to_string());
        let machine = crate::hashing::short(&machine.unwrap_or_default());
        match pods.create(&create, &build::setup_pod(group, node, &machine, *setup, inputs)).await {
            Ok(_) => {}
            // Created by an earlier reconcile that the cache has not shown yet.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(Error::CreatePod(e)),
        }
    }
    write_records(ctx, group, plan).await?;
    for pod in &plan.delete {
        ignore_not_found(pods.delete(pod, &DeleteParams::default()).await).map_err(Error::DeletePod)?;
    }
    Ok(())
}

/// Records the successes the plan found (with each node's machine ID now) and removes the records
/// of clean nodes, before any pod that showed them goes.
async fn write_records(ctx: &Context, group: &HostGroup, plan: &Plan) -> Result<(), Error> {
    let uid = group.uid().unwrap_or_default();
    let now = k8s_openapi::jiff::Timestamp::now();
    for (node, revision) in &plan.record {
        let Some(cached) = ctx.cache.nodes.get(&ObjectRef::new(node)) else { continue };
        let entry = Record {
            revision: revision.clone(),
            machine_id: record::machine_id(&cached).to_string(),
            at: now,
        };
        record::write(&ctx.client, node, &uid, Some(&entry)).await.map_err(Error::WriteRecord)?;
    }
    for node in &plan.forget {
        record::write(&ctx.client, node, &uid, None).await.map_err(Error::WriteRecord)?;
    }
    Ok(())
}

/// Writes `status` unless it is the one in the cache already.
pub async fn status(ctx: &Context, group: &HostGroup, status: HostGroupStatus) -> Result<(), Error> {
    if group.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<HostGroup> = Api::all(ctx.client.clone());
    match writes::apply_status(&api, &group.name_any(), &status).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::PatchStatus(e)),
    }
}
