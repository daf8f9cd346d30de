//! What the operator would do with a HostTask or a HostGroup, worked out before it is applied:
//! the controllers' own pure stages (authorize, validate, decide and build; the HostGroup plan)
//! run on what a user can read of the cluster. `kubectl hostprocess plan` shows it. Nothing
//! here reads or writes the API: the caller reads, and says what it could not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hostprocess_crds::schedule::Admission;
use hostprocess_crds::units::CountOrPercent;
use hostprocess_crds::{HostGroup, HostTask, HostTaskGrant, Mode};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::core::{PartialObjectMeta, PartialObjectMetaExt, Selector, SelectorExt};
use serde::Serialize;

use crate::conditions::Blocked;
use crate::hostgroup::build::Setup;
use crate::hostgroup::{plan as group_plan, record, validate as group_validate};
use crate::hosttask::pods::TaskPods;
use crate::hosttask::resolve::{Account, Resolved};
use crate::hosttask::rollout::{NodeResult, Phase};
use crate::hosttask::{admission, authorize, build, decide, resolve, validate};
use crate::state::cached_pod::cached_node;
use crate::state::targeting::windows_nodes_matching;
use crate::{hashing, labels};

/// Something the plan needs from the cluster: read (there or not), or not readable.
#[derive(Debug, Clone)]
pub enum Known<T> {
    Read(Option<T>),
    /// Why it could not be read, said for a person.
    Unreadable(String),
}

impl<T> Known<T> {
    fn read(&self) -> Option<Option<&T>> {
        match self {
            Known::Read(value) => Some(value.as_ref()),
            Known::Unreadable(_) => None,
        }
    }
}

/// The operator's settings, which the cluster does not tell a user.
#[derive(Debug, Clone)]
pub struct Settings {
    pub executor_image: String,
    pub executor_version: String,
    /// Where HostGroup setup pods run (`--hostgroup-namespace`).
    pub group_namespace: String,
}

/// What a plan of a HostTask reads.
#[derive(Debug, Clone)]
pub struct TaskInputs<'a> {
    /// The task as the API server would store it (a server-side dry run: defaults filled in).
    pub task: &'a HostTask,
    pub nodes: &'a Known<Vec<Node>>,
    /// The namespace's HostTaskGrant.
    pub grant: &'a Known<HostTaskGrant>,
    /// The HostGroup the task runs as (not read for a built-in account).
    pub group: &'a Known<HostGroup>,
    pub namespace: &'a Known<Namespace>,
    pub settings: &'a Settings,
    pub now: Timestamp,
}

/// Why the operator would not run it: the reason its status would give, and the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub reason: String,
    pub message: String,
}

impl From<Blocked> for Refusal {
    fn from(blocked: Blocked) -> Self {
        Refusal { reason: blocked.reason.to_string(), message: blocked.message }
    }
}

/// A targeted node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub name: String,
    /// Its value of the rollout's topology label ("" without).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub zone: String,
    pub ready: bool,
    /// `spec.unschedulable`: the payload still runs there (HostProcess pods of a DaemonSet do).
    pub cordoned: bool,
}

/// A node that is not targeted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub name: String,
    pub why: String,
}

/// A step of the rollout, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum Step {
    /// Nodes that start together, once the wave before has finished.
    #[serde(rename_all = "camelCase")]
    Wave { nodes: Vec<String>, canary: bool },
    /// Nothing starts until a maintenance window opens (`None`: none within a year).
    WaitForWindow { opens: Option<Timestamp> },
    /// The canary succeeded: the rest waits until the revision is promoted.
    WaitForPromotion,
    /// The canary succeeded: the rest starts after this long.
    Soak { duration: String },
    /// `rollout.paused`: nothing starts until it is resumed.
    Paused,
    /// `Continuous`: the agent runs on every targeted node at once; a new revision replaces at
    /// most this many at a time.
    #[serde(rename_all = "camelCase")]
    Everywhere { max_unavailable: u32 },
    /// These nodes wait until the task's HostGroup is provisioned there.
    WaitForHostGroup { nodes: Vec<String> },
}

/// What the operator would do with a HostTask.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskPlan {
    pub namespace: String,
    pub name: String,
    pub revision: String,
    /// The revision the task runs now, when it exists already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// The Windows account or group the payload runs as.
    pub runs_as: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// `None`: the nodes could not be read.
    pub targeted: Option<Vec<Target>>,
    pub not_targeted: Vec<Skipped>,
    /// The rollout, as it goes when every node succeeds.
    pub steps: Vec<Step>,
    /// What the operator would create: the script's ConfigMap and the DaemonSet (whose pods the
    /// DaemonSet controller makes, one per admitted node).
    pub creates: Vec<serde_json::Value>,
    /// What the plan could not tell, and why.
    pub unknown: Vec<String>,
}

/// The plan of a HostTask.
pub fn task(inputs: &TaskInputs<'_>) -> TaskPlan {
    let task = inputs.task;
    let namespace = task.namespace().unwrap_or_default();
    let mut unknown = Vec::new();
    let nodes = nodes(inputs.nodes, &mut unknown);
    let (targeted, not_targeted) =
        target(task.spec.node_selector.as_ref(), nodes.as_ref(), &task.spec.rollout.zones.topology_key);
    let names: Vec<String> = targeted.iter().flatten().map(|t| t.name.clone()).collect();
    if task.spec.rollout.track_referenced_data {
        unknown.push("the revision also covers the content of the Secrets and ConfigMaps the task references, which only the operator hashes: the revision shown leaves it out".into());
    }
    let revision = hashing::revision(&task.spec, None);
    let group = match (task.spec.run_as.host_group.as_ref(), build::builtin_user(task)) {
        (Some(name), None) => match inputs.group.read() {
            Some(group) => Some(group),
            None => {
                unknown.push(format!("cannot read HostGroup {name} ({}): the account and where the group is provisioned are not known", why(inputs.group)));
                None
            }
        },
        _ => Some(None),
    };
    let mut refused = None;
    match inputs.grant.read() {
        Some(grant) => {
            let group = group.flatten();
            refused = authorize::refusal(task, grant, group, names.len()).map(Refusal::from);
        }
        None => unknown.push(format!(
            "cannot read HostTaskGrant {namespace} ({}): whether a cluster administrator enabled the namespace, and for what, is not known",
            why(inputs.grant)
        )),
    }
    let cached = nodes.as_ref().map_or(&[][..], |f| f.cached.as_slice());
    let account = match group {
        Some(group) => resolve::account_as(task, group, |group| {
            let records = record::Records::read(cached, group.uid().as_deref().unwrap_or_default());
            let revision = hashing::group_revision(&group.spec);
            records.in_place.into_iter().filter(|(_, r)| *r == revision).map(|(n, _)| n).collect()
        }),
        None => Ok(Account {
            user: format!(
                "the group of HostGroup {}",
                task.spec.run_as.host_group.as_deref().unwrap_or_default()
            ),
            eligible: None,
        }),
    };
    let namespace_meta = match inputs.namespace.read() {
        Some(ns) => ns.map(|ns| Arc::new(ns.metadata.clone().into_request_partial::<Namespace>())),
        None => {
            unknown.push(format!(
                "cannot read namespace {namespace} ({}): whether its Pod Security level admits HostProcess pods is not known",
                why(inputs.namespace)
            ));
            None
        }
    };
    let zones: BTreeMap<String, String> =
        targeted.iter().flatten().map(|t| (t.name.clone(), t.zone.clone())).collect();
    let resolved = |now, labelled, results| Resolved {
        namespace: namespace_meta.clone(),
        revision: revision.clone(),
        daemon_set: None,
        runs_revision: true,
        previous: None,
        now,
        account: account.clone(),
        admission_label: admission::label_key(&task.uid().unwrap_or_default()),
        labelled,
        targeted: names.clone(),
        zones: zones.clone(),
        pods: TaskPods { results, ..TaskPods::default() },
    };
    let first = resolved(inputs.now, BTreeMap::new(), BTreeMap::new());
    let account = match validate::validate(task, &first) {
        Ok(account) => Some(account),
        Err(blocked) => {
            refused = refused.or(Some(blocked.into()));
            None
        }
    };
    let mut plan = TaskPlan {
        namespace,
        name: task.name_any(),
        current_revision: task.status.as_ref().and_then(|s| s.revision.clone()),
        runs_as: account
            .as_ref()
            .map_or_else(|| first.account.clone().map(|a| a.user).unwrap_or_default(), |a| a.user.clone()),
        revision: revision.clone(),
        refused,
        targeted,
        not_targeted,
        steps: Vec::new(),
        creates: Vec::new(),
        unknown,
    };
    let Some(account) = account.filter(|_| plan.refused.is_none()) else { return plan };
    let decided = decide::decide(task, &first, &account, &BTreeSet::new());
    let settings = inputs.settings;
    let daemon_set = build::daemon_set(
        task,
        &build::BuildInputs {
            executor_image: &settings.executor_image,
            executor_version: &settings.executor_version,
            revision: &revision,
            run_as_user: &account.user,
            admission_label: decided.pinned.then_some(first.admission_label.as_str()),
            transitional: &[],
            max_unavailable: decided.limits.max_concurrent,
        },
    );
    plan.creates.extend(build::script_config_map(task, &revision).and_then(|m| serde_json::to_value(m).ok()));
    plan.creates.extend(serde_json::to_value(daemon_set).ok());
    plan.steps = match task.spec.mode {
        Mode::Continuous => {
            let mut steps = vec![Step::Everywhere { max_unavailable: decided.limits.max_concurrent }];
            steps.extend(
                decided
                    .decision
                    .waiting
                    .first()
                    .map(|_| Step::WaitForHostGroup { nodes: decided.decision.waiting.clone() }),
            );
            steps
        }
        Mode::Once => once_steps(task, &account, inputs.now, resolved),
    };
    plan
}

/// The steps of a `Once` rollout in which every node succeeds: the decision taken again and
/// again, each wave's nodes counted as succeeded, each hold lifted as a user or the clock would.
fn once_steps(
    task: &HostTask,
    account: &Account,
    mut now: Timestamp,
    resolved: impl Fn(Timestamp, BTreeMap<String, String>, BTreeMap<String, NodeResult>) -> Resolved,
) -> Vec<Step> {
    let mut task = task.clone();
    let (mut labelled, mut results) = (BTreeMap::new(), BTreeMap::new());
    let mut steps = Vec::new();
    let targeted = resolved(now, BTreeMap::new(), BTreeMap::new()).targeted.len();
    // Each round starts a node or lifts a hold; a hold is lifted once.
    for _ in 0..targeted + 4 {
        let resolved = resolved(now, labelled.clone(), results.clone());
        let decided = decide::decide(&task, &resolved, account, &BTreeSet::new());
        let decision = decided.decision;
        if !decision.starting.is_empty() {
            let canary = decided.limits.canary.is_some_and(|c| !c.released);
            for node in &decision.starting {
                labelled.insert(node.clone(), resolved.revision.clone());
                results.insert(node.clone(), NodeResult::Succeeded { reboot_required: false });
            }
            steps.push(Step::Wave { nodes: decision.starting, canary });
            continue;
        }
        match decision.phase {
            Phase::Paused => {
                steps.push(Step::Paused);
                task.spec.rollout.paused = false;
            }
            Phase::CanaryHold { .. } => {
                let Some(canary) = task.spec.rollout.canary.as_mut() else { break };
                steps.push(match &canary.soak {
                    Some(soak) => Step::Soak { duration: soak.clone() },
                    None => Step::WaitForPromotion,
                });
                canary.promoted = Some(resolved.revision.clone());
            }
            Phase::WaitingForWindow { opens } => {
                steps.push(Step::WaitForWindow { opens });
                match opens {
                    Some(opens) => now = opens,
                    None => break,
                }
            }
            Phase::Progressing if !decision.waiting.is_empty() => {
                steps.push(Step::WaitForHostGroup { nodes: decision.waiting });
                break;
            }
            Phase::Progressing | Phase::Halted | Phase::Complete => break,
        }
    }
    steps
}

/// What a plan of a HostGroup reads.
#[derive(Debug, Clone)]
pub struct GroupInputs<'a> {
    /// The HostGroup as the API server would store it (a server-side dry run).
    pub group: &'a HostGroup,
    pub nodes: &'a Known<Vec<Node>>,
    /// Every HostGroup (one manages a Windows group).
    pub groups: &'a Known<Vec<HostGroup>>,
    /// The namespace setup pods run in (`Settings::group_namespace`).
    pub setup_namespace: &'a Known<Namespace>,
    pub settings: &'a Settings,
    pub now: Timestamp,
}

/// What the operator would do with a HostGroup.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupPlan {
    pub name: String,
    pub group_name: String,
    pub members: Vec<String>,
    /// Each grant in words: the path, the rights, where they apply.
    pub grants: Vec<String>,
    /// The namespaces whose tasks may run as the group.
    pub namespaces: Vec<String>,
    pub revision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    pub targeted: Option<Vec<Target>>,
    pub not_targeted: Vec<Skipped>,
    /// Targeted nodes where this revision is in place already: nothing runs there.
    pub provisioned: Vec<String>,
    /// The setup pods' waves (namespace `Settings::group_namespace`, one pod per node).
    pub steps: Vec<Step>,
    pub unknown: Vec<String>,
}

/// The plan of a HostGroup.
pub fn group(inputs: &GroupInputs<'_>) -> GroupPlan {
    let group = inputs.group;
    let mut unknown = Vec::new();
    let nodes = nodes(inputs.nodes, &mut unknown);
    let (targeted, not_targeted) = target(group.spec.node_selector.as_ref(), nodes.as_ref(), "");
    let setup_namespace = &inputs.settings.group_namespace;
    let groups: Vec<Arc<HostGroup>> = match inputs.groups {
        Known::Read(groups) => groups.iter().flatten().cloned().map(Arc::new).collect(),
        Known::Unreadable(why) => {
            unknown.push(format!(
                "cannot list HostGroups ({why}): whether another HostGroup manages Windows group {} is not known",
                group.spec.group_name
            ));
            Vec::new()
        }
    };
    let namespace = match inputs.setup_namespace.read() {
        Some(ns) => ns.map(|ns| ns.metadata.clone().into_request_partial::<Namespace>()),
        None => {
            unknown.push(format!(
                "cannot read namespace {setup_namespace} ({}): whether it admits the setup pods is not known",
                why(inputs.setup_namespace)
            ));
            Some(PartialObjectMeta::default())
        }
    };
    let revision = hashing::group_revision(&group.spec);
    let refused =
        group_validate::blocked(group, &groups, setup_namespace, namespace.as_ref()).map(Refusal::from);
    let cached = nodes.as_ref().map_or(&[][..], |f| f.cached.as_slice());
    let mut records = record::Records::read(cached, group.uid().as_deref().unwrap_or_default());
    let names: Vec<String> = targeted.iter().flatten().map(|t| t.name.clone()).collect();
    let provisioned = names.iter().filter(|n| records.in_place.get(*n) == Some(&revision)).cloned().collect();
    let mut steps = Vec::new();
    if refused.is_none() {
        let existing: BTreeSet<String> = cached.iter().map(|n| n.name_any()).collect();
        let not_ready: BTreeSet<String> =
            targeted.iter().flatten().filter(|t| !t.ready).map(|t| t.name.clone()).collect();
        let machines: BTreeMap<String, String> =
            cached.iter().map(|n| (n.name_any(), hashing::short(record::machine_id(n)))).collect();
        let total = u32::try_from(names.len()).unwrap_or(u32::MAX);
        let limit = |value, fallback| {
            CountOrPercent::parse(value)
                .map_or(fallback, |v| usize::try_from(v.of(total)).unwrap_or(usize::MAX))
        };
        let schedule = group.spec.rollout.schedule.as_ref().and_then(|s| s.compile().ok());
        let mut now = inputs.now;
        for _ in 0..names.len() + 2 {
            let plan = group_plan::plan(&group_plan::Inputs {
                targeted: &names,
                existing: &existing,
                not_ready: &not_ready,
                pods: &[],
                records: &records,
                machines: &machines,
                revision: &revision,
                deleting: false,
                policy: group.spec.deletion_policy,
                max_concurrent: limit(&group.spec.rollout.max_concurrent, 1).max(1),
                max_failures: limit(&group.spec.rollout.max_failures, 0),
                window: schedule.as_ref().map_or(Admission::Open, |s| s.at(now)),
                now,
            });
            let wave: Vec<String> = plan
                .create
                .into_iter()
                .filter(|(_, setup)| *setup == Setup::Provision)
                .map(|(n, _)| n)
                .collect();
            if !wave.is_empty() {
                for node in &wave {
                    records.in_place.insert(node.clone(), revision.clone());
                }
                steps.push(Step::Wave { nodes: wave, canary: false });
                continue;
            }
            match plan.window_closed {
                Some(opens) => {
                    steps.push(Step::WaitForWindow { opens });
                    match opens {
                        Some(opens) => now = opens,
                        None => break,
                    }
                }
                None => break,
            }
        }
    }
    GroupPlan {
        name: group.name_any(),
        group_name: group.spec.group_name.clone(),
        members: group.spec.members.clone(),
        grants: group
            .spec
            .grants
            .iter()
            .map(|g| format!("{}: {:?}, {:?}", g.path, g.rights, g.applies_to))
            .collect(),
        namespaces: group.spec.namespaces.clone(),
        revision,
        refused,
        targeted,
        not_targeted,
        provisioned,
        steps,
        unknown,
    }
}

fn why<T>(known: &Known<T>) -> &str {
    match known {
        Known::Unreadable(why) => why,
        Known::Read(_) => "",
    }
}

/// The nodes as read, and as the operator's cache keeps them.
struct Fleet {
    nodes: Vec<Node>,
    cached: Vec<Arc<PartialObjectMeta<Node>>>,
}

fn nodes(known: &Known<Vec<Node>>, unknown: &mut Vec<String>) -> Option<Fleet> {
    match known {
        Known::Read(nodes) => {
            let nodes = nodes.clone().unwrap_or_default();
            let cached = nodes.iter().cloned().map(|n| Arc::new(cached_node(n))).collect();
            Some(Fleet { nodes, cached })
        }
        Known::Unreadable(why) => {
            unknown
                .push(format!("cannot list nodes ({why}): the targeted nodes and the waves are not known"));
            None
        }
    }
}

/// The targeted nodes (sorted, with their zone under `topology_key`) and why each other node is
/// not, or `None` without the nodes.
fn target(
    selector: Option<&LabelSelector>,
    fleet: Option<&Fleet>,
    topology_key: &str,
) -> (Option<Vec<Target>>, Vec<Skipped>) {
    let Some(fleet) = fleet else { return (None, Vec::new()) };
    let names: BTreeSet<String> = windows_nodes_matching(selector, &fleet.cached).into_iter().collect();
    let mut targeted = Vec::new();
    let mut skipped = Vec::new();
    for (node, meta) in fleet.nodes.iter().zip(&fleet.cached) {
        let name = node.name_any();
        if names.contains(&name) {
            targeted.push(Target {
                zone: node.labels().get(topology_key).cloned().unwrap_or_default(),
                ready: meta.annotations().get(labels::CACHED_READY).is_some_and(|r| r == "True"),
                cordoned: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
                name,
            });
        } else {
            skipped.push(Skipped { why: not_matched(selector, node.labels()), name });
        }
    }
    targeted.sort_by(|a, b| a.name.cmp(&b.name));
    skipped.sort_by(|a, b| a.name.cmp(&b.name));
    (Some(targeted), skipped)
}

/// Why a node with `node_labels` is not targeted: not Windows, or the first requirement of the
/// selector it does not meet.
fn not_matched(selector: Option<&LabelSelector>, node_labels: &BTreeMap<String, String>) -> String {
    match node_labels.get("kubernetes.io/os") {
        Some(os) if os == "windows" => {}
        Some(os) => return format!("not a Windows node (kubernetes.io/os={os})"),
        None => return "not a Windows node (no kubernetes.io/os label)".into(),
    }
    let Some(selector) = selector else { return "does not match".into() };
    let mut requirements: Vec<(String, LabelSelector)> = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        let one = LabelSelector {
            match_labels: Some([(key.clone(), value.clone())].into()),
            ..LabelSelector::default()
        };
        requirements.push((format!("{key}={value}"), one));
    }
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.as_ref().map(|v| format!(" [{}]", v.join(", "))).unwrap_or_default();
        let said = format!("{} {}{values}", expression.key, expression.operator);
        let one =
            LabelSelector { match_expressions: Some(vec![expression.clone()]), ..LabelSelector::default() };
        requirements.push((said, one));
    }
    for (said, one) in requirements {
        let matches = Selector::try_from(one).is_ok_and(|s| s.matches(node_labels));
        if !matches {
            return format!("spec.nodeSelector: not {said}");
        }
    }
    "does not match spec.nodeSelector".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn fleet() -> Known<Vec<Node>> {
        let zone = "topology.kubernetes.io/zone";
        Known::Read(Some(vec![
            node("win-a1", json!({"kubernetes.io/os": "windows", zone: "a", "pool": "patch"})),
            node("win-a2", json!({"kubernetes.io/os": "windows", zone: "a", "pool": "patch"})),
            node("win-a3", json!({"kubernetes.io/os": "windows", zone: "a", "pool": "patch"})),
            node("win-b1", json!({"kubernetes.io/os": "windows", zone: "b", "pool": "patch"})),
            node("win-b2", json!({"kubernetes.io/os": "windows", zone: "b", "pool": "agents"})),
            node("lin-1", json!({"kubernetes.io/os": "linux", "pool": "patch"})),
        ]))
    }

    fn settings() -> Settings {
        Settings {
            executor_image: "registry.example/node-executor:1".into(),
            executor_version: "1".into(),
            group_namespace: "hostprocess-system".into(),
        }
    }

    fn plan(spec: serde_json::Value, grant: Known<HostTaskGrant>) -> TaskPlan {
        let mut task = HostTask::new("patch", serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}")));
        task.metadata.namespace = Some("ops".into());
        task.metadata.uid = Some("uid-1".into());
        let now = "2026-12-02T10:00:00Z".parse().unwrap_or_else(|e| panic!("{e}"));
        task_with(&task, &fleet(), &grant, now)
    }

    fn task_with(
        task: &HostTask,
        nodes: &Known<Vec<Node>>,
        grant: &Known<HostTaskGrant>,
        now: Timestamp,
    ) -> TaskPlan {
        super::task(&TaskInputs {
            task,
            nodes,
            grant,
            group: &Known::Read(None),
            namespace: &Known::Read(None),
            settings: &settings(),
            now,
        })
    }

    fn enabled() -> Known<HostTaskGrant> {
        let grant = HostTaskGrant::new(
            "ops",
            serde_json::from_value(json!({"maxConcurrent": "100%"})).unwrap_or_else(|e| panic!("{e}")),
        );
        Known::Read(Some(grant))
    }

    fn wave(nodes: &[&str], canary: bool) -> Step {
        Step::Wave { nodes: nodes.iter().map(|n| (*n).to_string()).collect(), canary }
    }

    #[test]
    fn a_plan_shows_the_canary_the_soak_and_waves_spread_over_zones() {
        let spec = json!({"script": "exit 0", "nodeSelector": {"matchLabels": {"pool": "patch"}},
            "rollout": {"maxConcurrent": 2, "paused": true, "canary": {"nodes": 1, "soak": "1h"}}});
        let plan = plan(spec, enabled());
        assert_eq!(plan.refused, None);
        let targeted: Vec<&str> = plan.targeted.iter().flatten().map(|t| t.name.as_str()).collect();
        assert_eq!(targeted, ["win-a1", "win-a2", "win-a3", "win-b1"]);
        let skipped: Vec<(&str, &str)> =
            plan.not_targeted.iter().map(|s| (s.name.as_str(), s.why.as_str())).collect();
        assert_eq!(
            skipped,
            [
                ("lin-1", "not a Windows node (kubernetes.io/os=linux)"),
                ("win-b2", "spec.nodeSelector: not pool=patch")
            ]
        );
        assert_eq!(
            plan.steps,
            [
                Step::Paused,
                wave(&["win-a1"], true),
                Step::Soak { duration: "1h".into() },
                wave(&["win-b1", "win-a2"], false),
                wave(&["win-a3"], false),
            ]
        );
        let kinds: Vec<&str> = plan.creates.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(kinds, ["ConfigMap", "DaemonSet"]);
        assert_eq!(plan.creates[1]["metadata"]["name"], "hostprocess-patch");
    }

    #[test]
    fn a_plan_waits_for_the_window_and_says_when_it_opens() {
        let spec = json!({"script": "exit 0", "rollout": {"maxConcurrent": "50%", "schedule": {
            "timeZone": "UTC", "windows": [{"days": ["Saturday"], "start": "22:00", "end": "23:00"}]}}});
        let plan = plan(spec, enabled());
        let opens = "2026-12-05T22:00:00Z".parse().ok();
        assert_eq!(plan.steps[0], Step::WaitForWindow { opens });
        assert_eq!(
            plan.steps[1..],
            [wave(&["win-a1", "win-b1", "win-a2"], false), wave(&["win-b2", "win-a3"], false)]
        );
    }

    #[test]
    fn a_refused_task_creates_nothing_and_says_why() {
        let plan = plan(json!({"script": "exit 0"}), Known::Read(None));
        assert_eq!(plan.refused.as_ref().map(|r| r.reason.as_str()), Some("NamespaceNotEnabled"));
        assert!(plan.steps.is_empty() && plan.creates.is_empty());
        let unreadable = plan_unreadable();
        assert_eq!(unreadable.refused, None);
        assert_eq!(unreadable.targeted, None);
        assert_eq!(unreadable.unknown.len(), 2, "{:?}", unreadable.unknown);
        assert!(
            unreadable.unknown[0].starts_with("cannot list nodes (forbidden)"),
            "{:?}",
            unreadable.unknown
        );
    }

    fn plan_unreadable() -> TaskPlan {
        let mut task = HostTask::new(
            "patch",
            serde_json::from_value(json!({"script": "exit 0"})).unwrap_or_else(|e| panic!("{e}")),
        );
        task.metadata.namespace = Some("ops".into());
        let forbidden = || "forbidden".to_string();
        task_with(
            &task,
            &Known::Unreadable(forbidden()),
            &Known::Unreadable(forbidden()),
            Timestamp::UNIX_EPOCH,
        )
    }
}
