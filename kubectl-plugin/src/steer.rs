//! `pause`, `resume`, `retry-failed` and `rerun`: each sets the spec fields the rollout has, by
//! server-side apply under a field manager of its own (`kubectl-hostprocess-pause`, …), so a
//! GitOps tool sees who changed what, and one command never takes back what another set. A field
//! another manager owns (a GitOps tool applying it from Git) is a conflict: the plugin says who
//! owns it and changes it only with `--force`.

use std::io::Write;

use hostprocess_crds::HostTask;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::api::{Error, exit};
use crate::cli::{SteerArgs, TokenArgs};

/// The field managers, one per field the plugin sets.
pub const PAUSE_MANAGER: &str = "kubectl-hostprocess-pause";
pub const PROMOTE_MANAGER: &str = "kubectl-hostprocess-promote";
pub const RERUN_MANAGER: &str = "kubectl-hostprocess-rerun";
pub const RETRY_MANAGER: &str = "kubectl-hostprocess-retry";

/// The token fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    RetryFailed,
    Rerun,
}

/// Applies `spec` (a part of the HostTask's spec) as `manager`.
async fn apply(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    manager: &str,
    spec: Value,
    force: bool,
) -> Result<HostTask, Error> {
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), namespace);
    // Only an existing task is steered: an apply would create one from this fragment.
    crate::api::get_task(&tasks, namespace, name).await?;
    let patch = json!({
        "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec,
    });
    let mut params = PatchParams::apply(manager);
    params.force = force;
    tasks.patch(name, &params, &Patch::Apply(&patch)).await.map_err(|e| match e {
        kube::Error::Api(status) if status.code == 409 => Error::Refused(format!(
            "HostTask {namespace}/{name}: {}; the field is set by another field manager (a GitOps tool applying it from Git?): change it there, or pass --force to take it over (the other manager sets it back at its next apply)",
            status.message
        )),
        kube::Error::Api(status) if status.code == 422 => {
            Error::Refused(format!("HostTask {namespace}/{name}: the API server refused the change: {}", status.message))
        }
        other => Error::api(&format!("changing HostTask {namespace}/{name}"), other),
    })
}

/// `pause` (and `resume`'s unpause).
pub async fn pause(
    client: &kube::Client,
    namespace: &str,
    args: &SteerArgs,
    paused: bool,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let spec = json!({"rollout": {"paused": paused}});
    apply(client, namespace, &args.name, PAUSE_MANAGER, spec, args.force).await?;
    let done = if paused { "paused: no node starts; nodes already running finish" } else { "unpaused" };
    writeln!(out, "HostTask {namespace}/{} {done}", args.name)?;
    Ok(exit::OK)
}

/// `resume`: unpaused, and when the canary stage waits for a promotion, the current revision
/// promoted (an approval names its revision, so it never carries over to a later one).
pub async fn resume(
    client: &kube::Client,
    namespace: &str,
    args: &SteerArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), namespace);
    let task = crate::api::get_task(&tasks, namespace, &args.name).await?;
    if task.spec.rollout.paused {
        pause(client, namespace, args, false, out).await?;
    }
    let waits_for_promotion = task.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "WaitingForPromotion")
    });
    let revision = task.status.as_ref().and_then(|s| s.revision.clone());
    match revision.filter(|_| waits_for_promotion) {
        Some(revision) => {
            let spec = json!({"rollout": {"canary": {"promoted": revision}}});
            apply(client, namespace, &args.name, PROMOTE_MANAGER, spec, args.force).await?;
            writeln!(
                out,
                "HostTask {namespace}/{}: revision {revision} promoted past its canary",
                args.name
            )?;
        }
        None if !task.spec.rollout.paused => {
            writeln!(
                out,
                "HostTask {namespace}/{} was neither paused nor waiting for a promotion",
                args.name
            )?;
        }
        None => {}
    }
    Ok(exit::OK)
}

/// `retry-failed` and `rerun`: a new token.
pub async fn token(
    client: &kube::Client,
    namespace: &str,
    args: &TokenArgs,
    which: Token,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let token = args
        .token
        .clone()
        .unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    let (field, manager, done) = match which {
        Token::RetryFailed => ("retryFailed", RETRY_MANAGER, "the nodes that failed run again"),
        Token::Rerun => ("rerun", RERUN_MANAGER, "every node runs the task again"),
    };
    let mut spec = serde_json::Map::new();
    spec.insert(field.into(), token.clone().into());
    apply(client, namespace, &args.name, manager, Value::Object(spec), args.force).await?;
    writeln!(out, "HostTask {namespace}/{}: spec.{field} set to {token}: {done}", args.name)?;
    Ok(exit::OK)
}
