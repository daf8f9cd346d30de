//! `reboot: IfRequired`: a node whose `Once` payload exited 3010 is cordoned, drained (through
//! the Eviction API, so PodDisruptionBudgets hold), rebooted by a HostProcess pod running
//! `node-executor reboot`, waited for (a new boot id and Ready), then uncordoned — only if the
//! operator cordoned it. The node keeps its `maxConcurrent` slot throughout.
//!
//! Where each node stands lives in the API, so a restarted operator resumes: the step in an
//! annotation on the node's task pod (the pod is per node and revision, as the reboot is), and
//! on the node which task cordoned it. `step` is the pure state machine, `pod` the reboot pod;
//! this module is the driver, one function per step.

pub(crate) mod pod;
pub(crate) mod step;

use hostprocess_crds::{DrainTimeoutAction, HostTask, units};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::error::Error;
use super::pods::Rebooting;
use crate::context::Context;
use crate::events::Note;
use crate::labels::{CORDONED_BY, REBOOT_STEP};
use crate::writes::ignore_not_found;
use crate::writes::reboots::Slot;
use step::Step;

/// A drain or reboot timeout the schema let through but that does not parse (never, in practice).
const DEFAULT_STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1800);

fn now() -> Timestamp {
    Timestamp::now()
}

/// How long one eviction may take before it counts as refused for now.
const EVICTION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Moves one node's reboot a step further, as far as it can go now.
pub async fn advance(ctx: &Context, task: &HostTask, pod: &Rebooting, revision: &str) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let Some(node) = nodes.get_opt(&pod.node).await.map_err(Error::Node)? else { return Ok(()) };
    let namespace = task.namespace().unwrap_or_default();
    let driver = Driver {
        ctx,
        task,
        pod,
        owner: cordon_owner(task),
        nodes,
        pods: Api::namespaced(ctx.client.clone(), &namespace),
    };
    tracing::debug!(node = %pod.node, step = ?pod.step, "reboot step");
    match &pod.step {
        Step::Required => driver.cordon(&node).await,
        Step::Draining { since: None } => driver.set_step(&Step::Draining { since: Some(now()) }).await,
        Step::Draining { since } => driver.drain(&node, revision, *since).await,
        Step::Rebooting { boot_id, .. } if step::is_back(&node, boot_id) => driver.uncordon(&node).await,
        Step::Rebooting { boot_id, since: None } => {
            driver.set_step(&Step::Rebooting { boot_id: boot_id.clone(), since: Some(now()) }).await
        }
        Step::Rebooting { since, .. } => driver.wait_for_new_boot(*since).await,
        Step::Done | Step::Failed { .. } => Ok(()),
    }
}

/// What a node's `CORDONED_BY` says when this task cordoned it: `namespace/name`.
fn cordon_owner(task: &HostTask) -> String {
    format!("{}/{}", task.namespace().unwrap_or_default(), task.name_any())
}

/// Takes this task's cordon back from every node where none of its reboots holds it any more:
/// the step was lost with its pod (a new revision replaced it, the node left the task), or the
/// task is going (`holding` empty). `holding`: nodes whose reboot is under way, or failed and
/// left cordoned on purpose. A node an administrator cordoned carries no annotation of ours and
/// is never touched. A reconcile reads the nodes from the cache (a cordon it has not seen yet is
/// taken back by a later one); a task that goes (`fresh`) lists their metadata from the API, since
/// nothing comes after it.
pub async fn release_cordons(
    ctx: &Context,
    task: &HostTask,
    holding: &std::collections::BTreeSet<&str>,
    fresh: bool,
) -> Result<(), Error> {
    let owner = cordon_owner(task);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let listed = if fresh {
        let list = nodes.list_metadata(&ListParams::default()).await.map_err(Error::Node)?;
        list.items.into_iter().map(std::sync::Arc::new).collect()
    } else {
        ctx.cache.nodes.state()
    };
    for node in listed {
        let name = node.name_any();
        if node.annotations().get(CORDONED_BY) != Some(&owner) || holding.contains(name.as_str()) {
            continue;
        }
        // Only while it still says we cordoned it: the resource version must be the one read.
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version(), "annotations": {CORDONED_BY: null}},
            "spec": {"unschedulable": null},
        });
        match nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue,
            Err(e) => return Err(Error::Node(e)),
        }
        ctx.writes.reboots.release(&name);
        let message = format!("{name}: uncordoned: the reboot it was cordoned for is no longer under way");
        ctx.events.publish(
            task,
            crate::events::ROLLOUT,
            Note::normal("CordonReleased", message).about(&name),
        );
    }
    Ok(())
}

/// One node's reboot, for one task.
struct Driver<'a> {
    ctx: &'a Context,
    task: &'a HostTask,
    pod: &'a Rebooting,
    /// `namespace/name` of the task: what the node's `CORDONED_BY` says when the task cordoned it.
    owner: String,
    nodes: Api<Node>,
    pods: Api<Pod>,
}

impl Driver<'_> {
    /// Cordons the node and records it, unless another task is rebooting it (its turn first) or
    /// an administrator cordoned it (drained, but never uncordoned by the operator).
    async fn cordon(&self, node: &Node) -> Result<(), Error> {
        if let Slot::Full { rebooting } = self.claim() {
            tracing::debug!(node = %self.pod.node, rebooting, "the fleet-wide reboot budget is spent; waiting");
            return Ok(());
        }
        let cordoned_by = node.annotations().get(CORDONED_BY);
        let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        match (cordoned_by, unschedulable) {
            (Some(other), _) if *other != self.owner => return Ok(()),
            (None, true) => {}
            _ => {
                let patch = json!({
                    "metadata": {"resourceVersion": node.resource_version(), "annotations": {CORDONED_BY: self.owner}},
                    "spec": {"unschedulable": true},
                });
                match self.nodes.patch(&self.pod.node, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => {}
                    // Changed meanwhile (another task may have cordoned it): decide again later.
                    Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
                    Err(e) => {
                        self.ctx.writes.reboots.release(&self.pod.node);
                        return Err(Error::Node(e));
                    }
                }
            }
        }
        let since = now();
        self.set_step(&Step::Draining { since: Some(since) }).await?;
        let gives_up =
            Step::deadline(Some(since), self.drain_timeout()).map(|t| t.to_string()).unwrap_or_default();
        let message = format!(
            "{}: cordoned, draining before the reboot the payload asked for (the drain gives up at {gives_up})",
            self.pod.node
        );
        self.publish(Note::normal("NodeDraining", message));
        Ok(())
    }

    fn drain_timeout(&self) -> std::time::Duration {
        units::parse_duration(&self.task.spec.drain.timeout).unwrap_or(DEFAULT_STEP_TIMEOUT)
    }

    fn reboot_timeout(&self) -> std::time::Duration {
        units::parse_duration(&self.task.spec.reboot_timeout).unwrap_or(DEFAULT_STEP_TIMEOUT)
    }

    /// Ends this node's reboot as failed: its slot and the fleet-wide reboot budget are freed.
    async fn fail(&self, reason: &str, message: String) -> Result<(), Error> {
        self.set_step(&Step::Failed { reason: reason.into(), message: message.clone() }).await?;
        match reason {
            step::DRAIN_TIMED_OUT => self.ctx.metrics.reboot_step_timed_out("drain"),
            step::REBOOT_TIMED_OUT => self.ctx.metrics.reboot_step_timed_out("reboot"),
            _ => {}
        }
        self.ctx.writes.reboots.release(&self.pod.node);
        self.publish(Note::warning(reason, format!("{}: {message}", self.pod.node)));
        Ok(())
    }

    /// Takes back this task's cordon (never an administrator's).
    async fn uncordon_if_ours(&self, node: &Node) -> Result<(), Error> {
        if node.annotations().get(CORDONED_BY) == Some(&self.owner) {
            let patch =
                json!({"metadata": {"annotations": {CORDONED_BY: null}}, "spec": {"unschedulable": null}});
            self.nodes
                .patch(&self.pod.node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(Error::Node)?;
        }
        Ok(())
    }

    /// Evicts what runs on the node; once nothing is left, starts the reboot. Past the drain's
    /// deadline, fails the node (uncordoned, not rebooted) or deletes what is left (`Force`).
    async fn drain(&self, node: &Node, revision: &str, since: Option<Timestamp>) -> Result<(), Error> {
        let expired = Step::deadline(since, self.drain_timeout()).is_some_and(|deadline| deadline <= now());
        let on_node = Api::<Pod>::all(self.ctx.client.clone())
            .list(&ListParams::default().fields(&format!("spec.nodeName={}", self.pod.node)))
            .await
            .map_err(Error::Drain)?;
        let mut blocked = Vec::new();
        let mut remaining = 0;
        for victim in step::evictable(&on_node.items, self.task.spec.drain.skip_pods.as_ref()) {
            remaining += 1;
            if victim.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let victim_name = format!("{}/{}", victim.namespace().unwrap_or_default(), victim.name_any());
            let api: Api<Pod> =
                Api::namespaced(self.ctx.client.clone(), &victim.namespace().unwrap_or_default());
            // A client that retries 429 itself would hold this reconcile: bound the wait.
            let evicted =
                tokio::time::timeout(EVICTION_WAIT, api.evict(&victim.name_any(), &EvictParams::default()))
                    .await;
            match evicted {
                Err(_elapsed) => blocked.push(victim_name),
                Ok(Ok(_)) => {}
                Ok(Err(kube::Error::Api(s))) if s.code == 404 => remaining -= 1,
                // A PodDisruptionBudget does not allow it now: try again later.
                Ok(Err(kube::Error::Api(s))) if s.code == 429 => blocked.push(victim_name),
                Ok(Err(e)) => return Err(Error::Drain(e)),
            }
        }
        if expired && !blocked.is_empty() {
            let timeout = self.task.spec.drain.timeout.clone();
            if self.task.spec.drain.on_timeout == DrainTimeoutAction::Force {
                for victim in &blocked {
                    let (namespace, name) = victim.split_once('/').unwrap_or_default();
                    let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), namespace);
                    ignore_not_found(api.delete(name, &DeleteParams::default()).await)
                        .map_err(Error::Drain)?;
                }
                let message = format!(
                    "{}: the drain did not finish within {timeout}; deleted {} despite their PodDisruptionBudget (drain.onTimeout: Force)",
                    self.pod.node,
                    blocked.join(", ")
                );
                self.publish(Note::warning("DrainForced", message));
                self.ctx.metrics.reboot_step_timed_out("drain");
                return Ok(());
            }
            self.uncordon_if_ours(node).await?;
            let message = format!(
                "the drain did not finish within {timeout}: a PodDisruptionBudget kept {}; uncordoned and not rebooted (set drain.onTimeout: Force to evict regardless)",
                blocked.join(", ")
            );
            return self.fail(step::DRAIN_TIMED_OUT, message).await;
        }
        if !blocked.is_empty() {
            let message = format!(
                "{}: a PodDisruptionBudget does not allow evicting {} yet",
                self.pod.node,
                blocked.join(", ")
            );
            self.publish(Note::warning("EvictionBlocked", message));
        }
        if remaining > 0 {
            return Ok(());
        }
        self.start(node, revision).await
    }

    /// Creates the reboot pod and records the boot the node had before it.
    async fn start(&self, node: &Node, revision: &str) -> Result<(), Error> {
        let reboot = pod::build(self.task, &self.pod.node, &self.ctx.config.executor_image, revision);
        match self.pods.create(&PostParams::default(), &reboot).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(Error::RebootPod(e)),
        }
        let since = now();
        self.set_step(&Step::Rebooting { boot_id: step::boot_id(node), since: Some(since) }).await?;
        let deadline =
            Step::deadline(Some(since), self.reboot_timeout()).map(|t| t.to_string()).unwrap_or_default();
        let message =
            format!("{}: drained, rebooting (it must be back and Ready by {deadline})", self.pod.node);
        self.publish(Note::normal("NodeRebooting", message));
        Ok(())
    }

    /// The node is not back yet: the reboot pod may say why it never will be, or its deadline
    /// has passed (the node fails and frees its slot; it stays cordoned: it is not back).
    async fn wait_for_new_boot(&self, since: Option<Timestamp>) -> Result<(), Error> {
        let reboot_pod = pod::name(&self.task.name_any(), &self.pod.node);
        let reboot_pod = self.pods.get_opt(&reboot_pod).await.map_err(Error::RebootPod)?;
        if let Some(message) = reboot_pod.as_ref().and_then(pod::failure) {
            return self.fail(step::REBOOT_FAILED, format!("{message}; the node stays cordoned")).await;
        }
        if Step::deadline(since, self.reboot_timeout()).is_some_and(|deadline| deadline <= now()) {
            let message = format!(
                "not back and Ready within {} of the reboot; it stays cordoned for an administrator to look at",
                self.task.spec.reboot_timeout
            );
            return self.fail(step::REBOOT_TIMED_OUT, message).await;
        }
        Ok(())
    }

    /// The node is back: uncordoned if this task cordoned it, the reboot pod deleted.
    async fn uncordon(&self, node: &Node) -> Result<(), Error> {
        self.uncordon_if_ours(node).await?;
        let reboot_pod = pod::name(&self.task.name_any(), &self.pod.node);
        ignore_not_found(self.pods.delete(&reboot_pod, &DeleteParams::default()).await)
            .map_err(Error::RebootPod)?;
        self.set_step(&Step::Done).await?;
        self.ctx.writes.reboots.release(&self.pod.node);
        self.publish(Note::normal(
            "NodeRebooted",
            format!("{}: back after the reboot and Ready", self.pod.node),
        ));
        Ok(())
    }

    /// A slot in the fleet-wide reboot budget (`--max-rebooting` of the Windows nodes).
    fn claim(&self) -> Slot {
        let nodes = self.ctx.cache.nodes.state();
        let windows = crate::state::targeting::windows_nodes_matching(None, &nodes).len();
        let cap = self.ctx.config.max_rebooting.of(u32::try_from(windows).unwrap_or(u32::MAX)).max(1);
        self.ctx.writes.reboots.claim(&self.pod.node, &nodes, cap as usize)
    }

    async fn set_step(&self, step: &Step) -> Result<(), Error> {
        let patch = json!({"metadata": {"annotations": {REBOOT_STEP: step.annotation()}}});
        self.pods
            .patch(&self.pod.pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::PatchPod)?;
        Ok(())
    }

    /// An Event about this node's reboot.
    fn publish(&self, note: Note) {
        self.ctx.events.publish(self.task, crate::events::ROLLOUT, note.about(&self.pod.node));
    }
}
