//! Who may run what, as the actors meet it on the real API server: a namespace admin (a client
//! certificate bound to the built-in `admin` role, into which `deploy/roles.yaml` aggregates
//! HostTask authoring) writes tasks; a cluster administrator enables namespaces with
//! HostTaskGrants and offers HostGroups. Each capability not granted is refused twice: by the
//! admission policy of `deploy/` before the task is stored, and — with the policy unbound, as on
//! a cluster without it — by the operator, with the same words, creating nothing.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

mod common;

use std::time::Duration;

use common::{Fixture, NS, is, no_scripts_or_pods};
use hostprocess_crds::{HostGroup, HostTask};
use hostprocess_sim::wait::until;
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

/// What the API server says before the message of the grants policy, and of the HostGroups one.
const GRANTS_DENIED: &str = "ValidatingAdmissionPolicy 'hostprocess-task-grants' with binding 'hostprocess-task-grants' denied request: ";
const GROUPS_DENIED: &str = "ValidatingAdmissionPolicy 'hostprocess-task-hostgroups' with binding 'hostprocess-task-hostgroups' denied request: ";

/// The policy's own words in the API server's refusal, after `prefix`.
fn policy_said<'a>(refused: &'a str, prefix: &str) -> &'a str {
    refused.split_once(prefix).unwrap_or_else(|| panic!("not refused by {prefix}: {refused}")).1
}

/// A privileged namespace for a team, enabled with this grant (or not enabled).
async fn team_namespace(fx: &Fixture, name: &str, grant: Option<Value>) {
    hostprocess_sim::create_namespace(
        &fx.sim.client,
        name,
        &[("pod-security.kubernetes.io/enforce", "privileged")],
    )
    .await
    .unwrap();
    if let Some(spec) = grant {
        common::grant(&fx.sim.client, name, spec).await;
    }
}

/// A client for `user`, an admin of `namespace` through the built-in `admin` role, once the
/// role aggregation gave that role the HostTask rules of `deploy/roles.yaml`.
async fn namespace_admin(fx: &Fixture, namespace: &str, user: &str) -> kube::Client {
    let client = common::user_with_role(fx, namespace, user, "admin").await;
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), namespace);
    until("the namespace admin may list HostTasks", Duration::from_secs(30), || async {
        tasks.list(&ListParams::default()).await.ok().map(|_| ())
    })
    .await
    .unwrap();
    client
}

fn task_object(namespace: &str, name: &str, spec: &Value) -> Value {
    json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

async fn apply_as(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    spec: &Value,
) -> Result<HostTask, kube::Error> {
    Api::<HostTask>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&task_object(namespace, name, spec)))
        .await
}

/// What the API server says when it refuses the task: dry runs until the admission policy (and
/// the grants it reads) are in force.
async fn refused_by_admission(client: &kube::Client, namespace: &str, name: &str, spec: &Value) -> String {
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), namespace);
    let dry_run = PatchParams { dry_run: true, ..PatchParams::apply("test").force() };
    let object = task_object(namespace, name, spec);
    let message = until("the admission policy refuses the task", Duration::from_secs(30), || async {
        match tasks.patch(name, &dry_run, &Patch::Apply(&object)).await {
            Err(kube::Error::Api(refused)) => Some((refused.code, refused.message)),
            _ => None,
        }
    })
    .await
    .unwrap();
    assert_eq!(message.0, 403, "{}", message.1);
    assert!(
        message.1.contains("ValidatingAdmissionPolicy"),
        "refused by a policy, not by RBAC: {}",
        message.1
    );
    // Really refused, not a dry-run quirk: the same apply is refused for real and nothing is stored.
    let err = apply_as(client, namespace, name, spec).await.unwrap_err();
    assert!(err.to_string().contains(&message.1), "{err}");
    assert!(tasks.get_opt(name).await.unwrap().is_none(), "the refused task never reached etcd");
    message.1
}

/// Unbinds both admission policies, as on a cluster without them, and waits until the API server
/// admits what they refused.
async fn without_admission_policies(fx: &Fixture, client: &kube::Client, namespace: &str, spec: &Value) {
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(fx.sim.client.clone());
    for name in ["hostprocess-task-grants", "hostprocess-task-hostgroups"] {
        bindings.delete(name, &DeleteParams::default()).await.unwrap();
    }
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), namespace);
    let dry_run = PatchParams { dry_run: true, ..PatchParams::apply("test").force() };
    let object = task_object(namespace, "probe", spec);
    until("the API server admits without the policies", Duration::from_secs(30), || async {
        tasks.patch("probe", &dry_run, &Patch::Apply(&object)).await.ok().map(|_| ())
    })
    .await
    .unwrap();
}

/// The task's Stalled message once the operator judged its current generation Stalled for
/// `reason`.
async fn stalled(fx: &Fixture, namespace: &str, name: &str, reason: &str) -> String {
    let tasks: Api<HostTask> = Api::namespaced(fx.sim.client.clone(), namespace);
    let last = std::sync::Mutex::new(None);
    let found = until("the task is Stalled", Duration::from_secs(30), || async {
        let task = tasks.get(name).await.ok()?;
        let status = task.status.clone()?;
        *last.lock().unwrap() = Some(status.conditions.clone());
        let current = status.observed_generation == task.metadata.generation;
        let c = status.conditions.iter().find(|c| c.type_ == "Stalled" && c.status == "True")?;
        (current && c.reason == reason).then(|| c.message.clone())
    })
    .await;
    found.unwrap_or_else(|e| panic!("{e}: not Stalled for {reason}: {:?}", last.lock().unwrap()))
}

async fn ready(fx: &Fixture, namespace: &str, name: &str) -> HostTask {
    let tasks: Api<HostTask> = Api::namespaced(fx.sim.client.clone(), namespace);
    until("the task is Ready", Duration::from_secs(60), || async {
        let task = tasks.get(name).await.ok()?;
        let current = task.status.as_ref()?.observed_generation == task.metadata.generation;
        (current && is(&task, "Ready", "True")).then_some(task)
    })
    .await
    .unwrap()
}

/// Nothing of the task exists: no DaemonSet, no script ConfigMap, no pod, no admission label.
async fn nothing_runs(fx: &Fixture, namespace: &str, name: &str) {
    let client = &fx.sim.client;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    assert!(sets.get_opt(&format!("hostprocess-{name}")).await.unwrap().is_none(), "no DaemonSet");
    no_scripts_or_pods(client, namespace).await;
    let task = Api::<HostTask>::namespaced(client.clone(), namespace).get(name).await.unwrap();
    let key = hostprocess_operator::admission_label(task.metadata.uid.as_deref().unwrap());
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await.unwrap();
    assert!(nodes.items.iter().all(|n| !n.metadata.labels.clone().unwrap_or_default().contains_key(&key)));
}

/// The Warning Event the operator wrote about the task, with this reason.
async fn warning(fx: &Fixture, namespace: &str, name: &str, reason: &str) -> String {
    let events: Api<Event> = Api::namespaced(fx.sim.client.clone(), namespace);
    until("the Warning event", Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            let about = e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name);
            (about && e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
                .then(|| e.note.unwrap_or_default())
        })
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_task_in_a_namespace_that_is_not_enabled_does_nothing() {
    let fx = Fixture::start(2, "privileged").await;
    team_namespace(&fx, "team-x", None).await;
    let alice = namespace_admin(&fx, "team-x", "alice").await;
    let spec = json!({"script": "echo patched\n"});
    // No grant is the namespace's own, so the admission policy has nothing to refuse it by.
    apply_as(&alice, "team-x", "patch", &spec).await.expect("stored");

    let message = stalled(&fx, "team-x", "patch", "NamespaceNotEnabled").await;
    assert!(message.contains("no HostTaskGrant named team-x exists, so nothing runs"), "{message}");
    assert_eq!(warning(&fx, "team-x", "patch", "NamespaceNotEnabled").await, message);
    nothing_runs(&fx, "team-x", "patch").await;

    // The namespace admin cannot enable it: grants are cluster-scoped and not theirs to write.
    let grants: Api<hostprocess_crds::HostTaskGrant> = Api::all(alice.clone());
    let grant = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTaskGrant",
        "metadata": {"name": "team-x"}, "spec": {}});
    let err = grants.patch("team-x", &PatchParams::apply("test"), &Patch::Apply(&grant)).await.unwrap_err();
    assert!(matches!(&err, kube::Error::Api(e) if e.code == 403), "{err}");

    // A grant alone is half the step: the operator may not create anything there yet, and says so.
    let grant = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTaskGrant",
        "metadata": {"name": "team-x"}, "spec": {"maxConcurrent": 5}});
    let admin_grants: Api<hostprocess_crds::HostTaskGrant> = Api::all(fx.sim.client.clone());
    admin_grants.patch("team-x", &PatchParams::apply("test"), &Patch::Apply(&grant)).await.unwrap();
    let message = stalled(&fx, "team-x", "patch", "OperatorNotPermitted").await;
    assert!(message.contains("a RoleBinding of ClusterRole hostprocess-operator-tasks"), "{message}");
    nothing_runs(&fx, "team-x", "patch").await;

    // A cluster administrator enables it as documented: the same task runs on both nodes.
    common::grant(&fx.sim.client, "team-x", json!({})).await;
    let done = ready(&fx, "team-x", "patch").await;
    assert_eq!(done.status.unwrap().nodes.succeeded, 2);
}

#[tokio::test]
async fn system_not_granted_is_refused_by_admission_and_by_the_operator_and_revoking_it_stops_the_agent() {
    let fx = Fixture::start(2, "privileged").await;
    team_namespace(&fx, "team-a", Some(json!({}))).await;
    let alice = namespace_admin(&fx, "team-a", "alice").await;
    let agent = json!({"script": "sleep 3600\n", "mode": "Continuous", "runAs": {"account": "System"},
        "rollout": {"maxConcurrent": "10%"}});

    let refused = refused_by_admission(&alice, "team-a", "agent", &agent).await;
    let said = policy_said(&refused, GRANTS_DENIED);
    assert!(
        said.starts_with("HostTaskGrant team-a does not allow runAs System (spec.accounts allows LocalService, NetworkService)"),
        "{said}"
    );

    // Without the policy the operator refuses it in the same words, and runs nothing.
    without_admission_policies(&fx, &alice, "team-a", &agent).await;
    apply_as(&alice, "team-a", "agent", &agent).await.expect("stored");
    assert_eq!(stalled(&fx, "team-a", "agent", "AccountNotGranted").await, said);
    nothing_runs(&fx, "team-a", "agent").await;

    // Granted: the agent runs as SYSTEM on every node.
    common::grant(&fx.sim.client, "team-a", json!({"accounts": ["LocalService", "System"]})).await;
    let sets: Api<DaemonSet> = Api::namespaced(fx.sim.client.clone(), "team-a");
    until("the agent runs on both nodes", Duration::from_secs(60), || async {
        let ds = sets.get_opt("hostprocess-agent").await.ok()??;
        (ds.status?.number_ready == 2).then_some(())
    })
    .await
    .unwrap();

    // Taken back: the agent stops everywhere and the task says why.
    common::grant(&fx.sim.client, "team-a", json!({"accounts": ["LocalService"]})).await;
    let message = stalled(&fx, "team-a", "agent", "AccountNotGranted").await;
    assert!(message.starts_with("HostTaskGrant team-a does not allow runAs System"), "{message}");
    until("the agent's DaemonSet is gone", Duration::from_secs(30), || async {
        sets.get_opt("hostprocess-agent").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_hostgroup_not_offered_to_the_namespace_is_refused() {
    let fx = Fixture::start(2, "privileged").await;
    team_namespace(&fx, "team-a", Some(json!({}))).await;
    let alice = namespace_admin(&fx, "team-a", "alice").await;
    // The cluster administrator's group, offered to the operator's task namespace only.
    let groups: Api<HostGroup> = Api::all(fx.sim.client.clone());
    let group = |namespaces: Value| {
        json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostGroup", "metadata": {"name": "app-operators"},
            "spec": {"groupName": "AppOperators", "namespaces": namespaces}})
    };
    let apply = PatchParams::apply("test").force();
    groups.patch("app-operators", &apply, &Patch::Apply(&group(json!([NS])))).await.unwrap();
    let task = json!({"script": "echo configured\n", "runAs": {"account": "HostGroup", "hostGroup": "app-operators"}});

    let refused = refused_by_admission(&alice, "team-a", "configure", &task).await;
    let said = policy_said(&refused, GROUPS_DENIED);
    assert!(said.starts_with("HostGroup app-operators is not offered to namespace team-a"), "{said}");

    without_admission_policies(&fx, &alice, "team-a", &task).await;
    apply_as(&alice, "team-a", "configure", &task).await.expect("stored");
    assert_eq!(stalled(&fx, "team-a", "configure", "HostGroupNotOffered").await, said);
    nothing_runs(&fx, "team-a", "configure").await;

    // Offered: the task runs as the group once it is provisioned.
    groups.patch("app-operators", &apply, &Patch::Apply(&group(json!([NS, "team-a"])))).await.unwrap();
    let done = ready(&fx, "team-a", "configure").await;
    assert_eq!(done.status.unwrap().nodes.succeeded, 2);
}

#[tokio::test]
async fn a_reboot_more_nodes_at_once_or_a_taint_not_granted_is_refused() {
    let fx = Fixture::start(2, "privileged").await;
    team_namespace(&fx, "team-a", Some(json!({"tolerations": [{"key": "patching", "operator": "Exists"}]})))
        .await;
    let alice = namespace_admin(&fx, "team-a", "alice").await;
    let cases = [
        (
            "reboot",
            json!({"script": "exit 3010\n", "reboot": "IfRequired"}),
            "RebootNotGranted",
            "HostTaskGrant team-a does not allow reboot: IfRequired",
        ),
        (
            "wide",
            json!({"script": "exit 0\n", "rollout": {"maxConcurrent": "50%"}}),
            "ConcurrencyNotGranted",
            "maxConcurrent 50% is above the cap 10% of HostTaskGrant team-a",
        ),
        (
            "tolerant",
            json!({"script": "exit 0\n", "tolerations": [{"key": "patching", "operator": "Exists"}, {"operator": "Exists"}]}),
            "TolerationNotGranted",
            "spec.tolerations has a toleration HostTaskGrant team-a does not allow (any key exists:any effect)",
        ),
    ];
    let mut said = Vec::new();
    for (name, spec, _, expected) in &cases {
        let refused = refused_by_admission(&alice, "team-a", name, spec).await;
        let message = policy_said(&refused, GRANTS_DENIED).to_string();
        assert!(message.starts_with(expected), "{name}: {message}");
        said.push(message);
    }
    // A toleration the grant covers is admitted.
    let covered = json!({"script": "exit 0\n", "tolerations": [{"key": "patching", "value": "now", "effect": "NoSchedule"}]});
    apply_as(&alice, "team-a", "covered", &covered).await.expect("a covered toleration is admitted");

    without_admission_policies(&fx, &alice, "team-a", &cases[0].1).await;
    for ((name, spec, reason, _), message) in cases.iter().zip(&said) {
        apply_as(&alice, "team-a", name, spec).await.expect("stored");
        assert_eq!(&stalled(&fx, "team-a", name, reason).await, message, "{name}");
        nothing_runs_for(&fx, "team-a", name).await;
    }
    ready(&fx, "team-a", "covered").await;
}

/// `nothing_runs`, for one task among others in the namespace.
async fn nothing_runs_for(fx: &Fixture, namespace: &str, name: &str) {
    let sets: Api<DaemonSet> = Api::namespaced(fx.sim.client.clone(), namespace);
    assert!(sets.get_opt(&format!("hostprocess-{name}")).await.unwrap().is_none(), "{name}: no DaemonSet");
    let pods: Api<Pod> = Api::namespaced(fx.sim.client.clone(), namespace);
    let selector = format!("hostprocess.dev/task={name}");
    let listed = pods.list(&ListParams::default().labels(&selector)).await.unwrap();
    assert!(listed.items.is_empty(), "{name}: no pod");
}
