//! `plan -f FILE`: what applying the file would do; nothing is applied. Each HostTask and
//! HostGroup in it goes through a server-side dry-run apply, so the API server's schema, CEL
//! rules and admission policies really run; what the operator would then do is worked out by its
//! own stages (`hostprocess_operator::preview`) from what the user may read of the cluster, and
//! what the user may not read is said, not guessed.

use std::fmt::Write as _;
use std::io::{Read, Write};

use hostprocess_crds::{HostGroup, HostTask, HostTaskGrant};
use hostprocess_operator::preview::{self, GroupPlan, Known, Settings, Step, TaskPlan};
use k8s_openapi::api::core::v1::{Namespace, Node};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::Value;

use crate::api::{Error, exit};
use crate::cli::{Output, PlanArgs};

/// The field manager of the dry-run applies (nothing is stored under it).
pub const PLAN_MANAGER: &str = "kubectl-hostprocess-plan";

/// Shown for the executor image unless `--executor-image` names it: only the operator knows it.
pub const EXECUTOR_IMAGE_UNKNOWN: &str = "<the operator's --executor-image>";

/// Why a read the plan needs gave nothing.
const FORBIDDEN: &str = "forbidden to you";

/// What planning one document gave.
#[derive(Debug, Serialize)]
#[serde(tag = "kind")]
pub enum Planned {
    HostTask(TaskPlan),
    HostGroup(GroupPlan),
    /// The API server refused the dry run (schema, CEL rules, admission policy, RBAC).
    #[serde(rename_all = "camelCase")]
    Refused {
        resource: String,
        refused_by_api_server: String,
    },
}

impl Planned {
    fn runs(&self) -> bool {
        match self {
            Planned::HostTask(plan) => plan.refused.is_none(),
            Planned::HostGroup(plan) => plan.refused.is_none(),
            Planned::Refused { .. } => false,
        }
    }
}

pub async fn plan(
    client: &kube::Client,
    namespace: &str,
    args: &PlanArgs,
    out: &mut impl Write,
) -> Result<i32, Error> {
    let documents = documents(&args.filename)?;
    let settings = Settings {
        executor_image: args.executor_image.clone().unwrap_or_else(|| EXECUTOR_IMAGE_UNKNOWN.into()),
        executor_version: env!("CARGO_PKG_VERSION").into(),
        group_namespace: args.hostgroup_namespace.clone(),
    };
    // Read once for every document of the file.
    let nodes = known(
        Api::<Node>::all(client.clone()).list(&ListParams::default()).await.map(|l| Some(l.items)),
        "listing nodes",
    )?;
    let mut planned = Vec::new();
    for document in documents {
        planned.push(plan_one(client, namespace, document, &settings, &nodes).await?);
    }
    match args.output {
        Output::Table => {
            for (i, plan) in planned.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                write!(out, "{}", text(plan))?;
            }
        }
        Output::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&planned).map_err(|e| Error::Api(e.to_string()))?
        )?,
        Output::Yaml => {
            for plan in &planned {
                let yaml = yaml_serde::to_string(plan).map_err(|e| Error::Api(e.to_string()))?;
                write!(out, "---\n{yaml}")?;
            }
        }
    }
    Ok(if planned.iter().all(Planned::runs) { exit::OK } else { exit::FAILED })
}

/// The HostTasks and HostGroups of the file (`-`: standard input); anything else is an error
/// that names the document.
fn documents(filename: &str) -> Result<Vec<Value>, Error> {
    let text = if filename == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(filename).map_err(|e| Error::Usage(format!("cannot read {filename}: {e}")))?
    };
    let mut found = Vec::new();
    for (i, document) in yaml_serde::Deserializer::from_str(&text).enumerate() {
        let value = <Value as serde::Deserialize>::deserialize(document)
            .map_err(|e| Error::Usage(format!("{filename}: document {} is not YAML: {e}", i + 1)))?;
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_default();
        let group = value["apiVersion"].as_str().unwrap_or_default().split('/').next().unwrap_or_default();
        if group != "hostprocess.dev" || !matches!(kind, "HostTask" | "HostGroup") {
            return Err(Error::Usage(format!(
                "{filename}: document {} is a {kind:?} of {:?}; plan takes HostTasks and HostGroups (apiVersion hostprocess.dev/…)",
                i + 1,
                value["apiVersion"].as_str().unwrap_or_default()
            )));
        }
        if value["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            return Err(Error::Usage(format!(
                "{filename}: document {} ({kind}) has no metadata.name",
                i + 1
            )));
        }
        found.push(value);
    }
    if found.is_empty() {
        return Err(Error::Usage(format!("{filename} holds no HostTask or HostGroup")));
    }
    Ok(found)
}

async fn plan_one(
    client: &kube::Client,
    namespace: &str,
    mut document: Value,
    settings: &Settings,
    nodes: &Known<Vec<Node>>,
) -> Result<Planned, Error> {
    let name = document["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let mut params = PatchParams::apply(PLAN_MANAGER).dry_run();
    // Who owns a field does not change what the object would be.
    params.force = true;
    let now = Timestamp::now();
    if document["kind"] == "HostGroup" {
        let groups: Api<HostGroup> = Api::all(client.clone());
        let group = match groups.patch(&name, &params, &Patch::Apply(&document)).await {
            Ok(group) => group,
            Err(error) => return refused(&format!("HostGroup {name}"), error),
        };
        let all =
            known(groups.list(&ListParams::default()).await.map(|l| Some(l.items)), "listing HostGroups")?;
        let setup = known(
            Api::<Namespace>::all(client.clone()).get_opt(&settings.group_namespace).await,
            "reading the setup namespace",
        )?;
        let inputs = preview::GroupInputs {
            group: &group,
            nodes,
            groups: &all,
            setup_namespace: &setup,
            settings,
            now,
        };
        return Ok(Planned::HostGroup(preview::group(&inputs)));
    }
    let namespace = match document["metadata"]["namespace"].as_str() {
        Some(ns) => ns.to_string(),
        None => {
            document["metadata"]["namespace"] = namespace.into();
            namespace.to_string()
        }
    };
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), &namespace);
    let task = match tasks.patch(&name, &params, &Patch::Apply(&document)).await {
        Ok(task) => task,
        Err(error) => return refused(&format!("HostTask {namespace}/{name}"), error),
    };
    let grant = known(
        Api::<HostTaskGrant>::all(client.clone()).get_opt(&namespace).await,
        "reading the HostTaskGrant",
    )?;
    let group = match task.spec.run_as.host_group.as_deref() {
        Some(group) => {
            known(Api::<HostGroup>::all(client.clone()).get_opt(group).await, "reading the HostGroup")?
        }
        None => Known::Read(None),
    };
    let ns = known(Api::<Namespace>::all(client.clone()).get_opt(&namespace).await, "reading the namespace")?;
    let inputs = preview::TaskInputs {
        task: &task,
        nodes,
        grant: &grant,
        group: &group,
        namespace: &ns,
        settings,
        now,
    };
    Ok(Planned::HostTask(preview::task(&inputs)))
}

/// What a read gave: a refusal is something the plan cannot tell (and says so); anything else
/// the API server answered stops the plan.
fn known<T>(result: Result<Option<T>, kube::Error>, what: &str) -> Result<Known<T>, Error> {
    match result {
        Ok(value) => Ok(Known::Read(value)),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(Known::Unreadable(FORBIDDEN.into())),
        Err(error) => Err(Error::api(what, error)),
    }
}

/// The API server refused the dry run: the plan of that document is its message. A cluster it
/// could not reach is an error.
fn refused(resource: &str, error: kube::Error) -> Result<Planned, Error> {
    match error {
        kube::Error::Api(status) if matches!(status.code, 400 | 403 | 404 | 409 | 422) => {
            Ok(Planned::Refused { resource: resource.to_string(), refused_by_api_server: status.message })
        }
        other => Err(Error::api(&format!("dry-run apply of {resource}"), other)),
    }
}

/// A plan in words.
pub fn text(planned: &Planned) -> String {
    match planned {
        Planned::HostTask(plan) => task_text(plan),
        Planned::HostGroup(plan) => group_text(plan),
        Planned::Refused { resource, refused_by_api_server } => {
            format!(
                "{resource}: the API server refuses it (dry run, nothing applied):\n  {refused_by_api_server}\n"
            )
        }
    }
}

fn task_text(plan: &TaskPlan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "HostTask {}/{}: the API server accepts it (dry run, nothing applied)",
        plan.namespace, plan.name
    );
    let _ = match &plan.current_revision {
        Some(current) if *current == plan.revision => {
            writeln!(s, "Revision {}: the task runs it already; nothing runs again", plan.revision)
        }
        Some(current) => writeln!(
            s,
            "Revision {}: new (the task runs {current}); every targeted node runs it",
            plan.revision
        ),
        None => writeln!(s, "Revision {}: a new task", plan.revision),
    };
    if let Some(refused) = &plan.refused {
        let _ = writeln!(s, "Would not run: {}\n  {}", refused.reason, refused.message);
        unknown(&mut s, &plan.unknown);
        return s;
    }
    let _ = writeln!(s, "Runs as {}", plan.runs_as);
    targets(&mut s, plan.targeted.as_deref(), &plan.not_targeted);
    if plan.targeted.is_some() {
        let _ = writeln!(s, "\nRollout, as it goes when every node succeeds:");
        steps(&mut s, &plan.steps, &plan.name);
    }
    let _ = writeln!(s, "\nWould create:");
    for object in &plan.creates {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let what = match kind {
            "DaemonSet" => {
                let pod = &object["spec"]["template"]["spec"];
                let mut images: Vec<&str> = ["initContainers", "containers"]
                    .iter()
                    .filter_map(|list| pod[list].as_array())
                    .flatten()
                    .filter_map(|c| c["image"].as_str())
                    .collect();
                images.dedup();
                format!("a HostProcess pod on each admitted node (images {})", images.join(", "))
            }
            _ => "the script".to_string(),
        };
        let _ = writeln!(s, "  {kind} {}/{name}: {what}", plan.namespace);
    }
    unknown(&mut s, &plan.unknown);
    s
}

fn group_text(plan: &GroupPlan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "HostGroup {}: the API server accepts it (dry run, nothing applied)", plan.name);
    let _ = writeln!(s, "Windows group {}, revision {}", plan.group_name, plan.revision);
    let list = |items: &[String]| if items.is_empty() { "none".to_string() } else { items.join(", ") };
    let _ = writeln!(s, "  members: {}", list(&plan.members));
    let _ = writeln!(s, "  grants: {}", list(&plan.grants));
    let _ = writeln!(s, "  offered to namespaces: {}", list(&plan.namespaces));
    if let Some(refused) = &plan.refused {
        let _ = writeln!(s, "Would not be provisioned: {}\n  {}", refused.reason, refused.message);
        unknown(&mut s, &plan.unknown);
        return s;
    }
    targets(&mut s, plan.targeted.as_deref(), &plan.not_targeted);
    if !plan.provisioned.is_empty() {
        let _ = writeln!(
            s,
            "In place at this revision already (nothing runs there): {}",
            plan.provisioned.join(" ")
        );
    }
    if plan.targeted.is_some() {
        let _ = writeln!(s, "\nSetup pods, one per node, as it goes when every node succeeds:");
        steps(&mut s, &plan.steps, &plan.name);
    }
    unknown(&mut s, &plan.unknown);
    s
}

/// Nodes named on one line, at most.
const NAMED: usize = 10;

/// `names`, the first `NAMED` of them and how many more.
fn named(names: &[String]) -> String {
    let mut said = names.iter().take(NAMED).cloned().collect::<Vec<_>>().join(" ");
    if names.len() > NAMED {
        let _ = write!(said, " and {} more", names.len() - NAMED);
    }
    said
}

fn targets(s: &mut String, targeted: Option<&[preview::Target]>, skipped: &[preview::Skipped]) {
    let Some(targeted) = targeted else { return };
    let names: Vec<String> = targeted.iter().map(|t| t.name.clone()).collect();
    let _ = writeln!(
        s,
        "\nTargets {} of {} nodes: {}",
        targeted.len(),
        targeted.len() + skipped.len(),
        named(&names)
    );
    let mut zones: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for node in targeted {
        *zones.entry(&node.zone).or_default() += 1;
    }
    if zones.keys().any(|z| !z.is_empty()) {
        let each: Vec<String> = zones
            .iter()
            .map(|(zone, n)| format!("{} ({n})", if zone.is_empty() { "none" } else { zone }))
            .collect();
        let _ = writeln!(s, "  zones: {}", each.join(", "));
    }
    for node in targeted {
        if !node.ready {
            let _ = writeln!(s, "  {} is not Ready: it holds its slot until it is back", node.name);
        }
        if node.cordoned {
            let _ = writeln!(s, "  {} is cordoned: the task runs there all the same", node.name);
        }
    }
    if !skipped.is_empty() {
        let _ = writeln!(s, "Not targeted:");
        let width = skipped.iter().take(NAMED).map(|n| n.name.len()).max().unwrap_or(0);
        for node in skipped.iter().take(NAMED) {
            let _ = writeln!(s, "  {:width$}  {}", node.name, node.why);
        }
        if skipped.len() > NAMED {
            let _ = writeln!(s, "  and {} more (-o yaml lists every node)", skipped.len() - NAMED);
        }
    }
}

fn steps(s: &mut String, steps: &[Step], name: &str) {
    if steps.is_empty() {
        let _ = writeln!(s, "  nothing starts");
    }
    let mut wave = 0;
    for step in steps {
        let _ = match step {
            Step::Wave { nodes, canary } => {
                wave += 1;
                let label = if *canary { format!("wave {wave} (canary)") } else { format!("wave {wave}") };
                let count =
                    if nodes.len() == 1 { "1 node".to_string() } else { format!("{} nodes", nodes.len()) };
                writeln!(s, "  {label:16} {count}: {}", named(nodes))
            }
            Step::WaitForWindow { opens: Some(opens) } => {
                writeln!(
                    s,
                    "  waits for the maintenance window, which opens {opens}; nodes start only while one is open"
                )
            }
            Step::WaitForWindow { opens: None } => {
                writeln!(s, "  waits: no maintenance window opens within a year")
            }
            Step::WaitForPromotion => writeln!(
                s,
                "  waits until the revision is promoted past its canary: kubectl hostprocess resume {name}"
            ),
            Step::Soak { duration } => {
                writeln!(s, "  soaks {duration} after the canary succeeded, then the rest starts")
            }
            Step::Paused => writeln!(s, "  paused: nothing starts until kubectl hostprocess resume {name}"),
            Step::Everywhere { max_unavailable } => writeln!(
                s,
                "  runs on every targeted node at once; a new revision replaces at most {max_unavailable} at a time"
            ),
            Step::WaitForHostGroup { nodes } => {
                writeln!(s, "  waits for the HostGroup to be provisioned on {}", named(nodes))
            }
        };
    }
}

fn unknown(s: &mut String, unknown: &[String]) {
    if unknown.is_empty() {
        return;
    }
    let _ = writeln!(s, "\nNot known:");
    for line in unknown {
        let _ = writeln!(s, "  - {line}");
    }
    if unknown.iter().any(|line| line.contains(FORBIDDEN)) {
        let _ =
            writeln!(s, "  (ClusterRole hostprocess-planner in deploy/roles.yaml allows what plan reads)");
    }
}
