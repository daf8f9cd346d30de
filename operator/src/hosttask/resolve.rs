//! Resolve: everything a HostTask reconcile reads, gathered once — the revision (with the content
//! of referenced data when the task tracks it), the DaemonSet so far, the status decided last,
//! the account and where it may run, the targeted nodes, their admission labels and the pods.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hostprocess_crds::{HostGroup, HostTask, HostTaskStatus};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::error::Error;
use super::pods::{self, TaskPods};
use super::{admission, build};
use crate::conditions::Blocked;
use crate::context::Context;
use crate::hostgroup::provisioned;
use crate::writes::own_writes::Known;
use crate::writes::revision_key;
use crate::{hashing, labels};

/// What a HostTask reconcile reads.
#[derive(Debug)]
pub struct Resolved {
    /// The task's namespace (metadata: its Pod Security labels).
    pub namespace: Option<Arc<PartialObjectMeta<Namespace>>>,
    pub revision: String,
    /// The DaemonSet as the operator last knows it.
    pub daemon_set: Option<DaemonSet>,
    /// Whether that DaemonSet runs `revision` already.
    pub runs_revision: bool,
    /// The newest status decided (written or still queued): times, conditions and events follow
    /// on from it.
    pub previous: Option<HostTaskStatus>,
    /// Whole seconds: what the API keeps of a time, so a status read back equals the one written.
    pub now: Timestamp,
    /// Who the payload runs as, or why it cannot run.
    pub account: Result<Account, Blocked>,
    /// The task's admission label key and its value on every node.
    pub admission_label: String,
    pub labelled: BTreeMap<String, String>,
    /// The Windows nodes the task targets, sorted.
    pub targeted: Vec<String>,
    /// The zone of each targeted node: its value of `rollout.zones.topologyKey` ("" without).
    pub zones: BTreeMap<String, String>,
    pub pods: TaskPods,
}

/// Who the payload runs as, and for a HostGroup the nodes where its group is provisioned at
/// the current revision (the only nodes where the task may start).
#[derive(Debug, Clone)]
pub struct Account {
    pub user: String,
    pub eligible: Option<BTreeSet<String>>,
}

/// `targeted`: the Windows nodes the task targets, sorted (read by the reconcile before).
pub async fn resolve(ctx: &Context, task: &HostTask, targeted: Vec<String>) -> Result<Resolved, Error> {
    let namespace = task.namespace().unwrap_or_default();
    let referenced = referenced_data(ctx, task).await?;
    let revision = hashing::revision(&task.spec, referenced.as_deref());
    let daemon_set = daemon_set(ctx, &namespace, &labels::daemon_set_name(&task.name_any())).await?;
    let runs_revision = daemon_set
        .as_ref()
        .is_some_and(|ds| build::daemon_set_revision(ds).as_deref() == Some(revision.as_str()));
    let admission_label = admission::label_key(&task.uid().unwrap_or_default());
    let nodes = ctx.cache.nodes.state();
    let node_labels = &ctx.writes.node_labels;
    node_labels.settle(&admission_label, &nodes);
    let zones = zones_of(&targeted, &nodes, &task.spec.rollout.zones.topology_key);
    Ok(Resolved {
        namespace: ctx.cache.namespaces.get(&ObjectRef::new(&namespace)),
        runs_revision,
        daemon_set,
        previous: ctx.writes.task_status.current(task),
        now: now(),
        account: account(ctx, task),
        labelled: node_labels.current(&admission_label, &nodes),
        admission_label,
        targeted,
        zones,
        pods: pods::read(&ctx.cache.task_pods, task, &revision, now()),
        revision,
    })
}

/// Each targeted node's value of the topology label; a node without one is left out (it is in
/// zone `""`). Without zone labels, as on most clusters, this reads one label per node and
/// nothing more.
fn zones_of(
    targeted: &[String],
    nodes: &[Arc<PartialObjectMeta<Node>>],
    key: &str,
) -> BTreeMap<String, String> {
    nodes
        .iter()
        .filter_map(|n| Some((n, n.labels().get(key).filter(|zone| !zone.is_empty())?)))
        .map(|(n, zone)| (n.name_any(), zone.clone()))
        .filter(|(name, _)| targeted.binary_search(name).is_ok())
        .collect()
}

/// Now, in whole seconds: what the API keeps of a time, so a status read back equals the one
/// written.
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

/// With `rollout.trackReferencedData`: a hash of the content of every Secret and ConfigMap the
/// task's `env` and `envFrom` name (a missing one counts as missing), which becomes part of the
/// revision. The hash is keyed with the operator's revision key, so the published revision is no
/// oracle for guessing a Secret; the content itself is never copied anywhere. Only tasks that
/// passed `authorize` get here.
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
        let data = secret.map(|s| json!([s.data, s.string_data]));
        parts.push(json!({"secret": name, "data": data}));
    }
    let map_api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    for name in maps {
        let map = map_api.get_opt(&name).await.map_err(Error::ReadReferenced)?;
        let data = map.map(|m| json!([m.data, m.binary_data]));
        parts.push(json!({"configMap": name, "data": data}));
    }
    let key = ctx
        .revision_key
        .get_or_try_init(|| revision_key::get_or_create(&ctx.client, &ctx.config.operator_namespace))
        .await
        .map_err(Error::RevisionKey)?;
    Ok(Some(hashing::keyed(key, &json!(parts))))
}

/// The task's DaemonSet: from the cache, or the operator's own last write when the cache is
/// behind it, or read from the API when the two cannot be ordered.
async fn daemon_set(ctx: &Context, namespace: &str, name: &str) -> Result<Option<DaemonSet>, Error> {
    let key = ObjectRef::new(name).within(namespace);
    match ctx.writes.daemon_sets.resolve(&key, ctx.cache.daemon_sets.get(&key)) {
        Known::Is(ds) => Ok(ds.map(|ds| (*ds).clone())),
        Known::Unsure => {
            let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), namespace);
            let ds = api.get_opt(name).await.map_err(Error::GetDaemonSet)?;
            ctx.writes.daemon_sets.wrote(key, ds.clone());
            Ok(ds)
        }
    }
}

fn account(ctx: &Context, task: &HostTask) -> Result<Account, Blocked> {
    let name = task.spec.run_as.host_group.clone().unwrap_or_default();
    let group = ctx.cache.groups.get(&ObjectRef::new(&name));
    account_as(task, group.as_deref(), |group| provisioned::nodes(ctx, group))
}

/// Who the task runs as, given the HostGroup it names (`None`: it does not exist);
/// `provisioned` tells where that group is in place.
pub fn account_as(
    task: &HostTask,
    group: Option<&HostGroup>,
    provisioned: impl FnOnce(&HostGroup) -> BTreeSet<String>,
) -> Result<Account, Blocked> {
    if let Some(user) = build::builtin_user(task) {
        return Ok(Account { user: user.to_string(), eligible: None });
    }
    let name = task.spec.run_as.host_group.clone().unwrap_or_default();
    let Some(group) = group else {
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
    Ok(Account { user: group.spec.group_name.clone(), eligible: Some(provisioned(group)) })
}
