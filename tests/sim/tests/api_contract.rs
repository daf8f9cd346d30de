//! Contract tests of the simulated cluster's control plane (upstream kube-apiserver,
//! kube-controller-manager and kube-scheduler): the API semantics the operator relies on,
//! through `kube::Client` and the kubectl built with them.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use hostprocess_crds::{HostGroup, HostTask};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;

async fn cluster() -> (hostprocess_sim::Cluster, kube::Client) {
    let binaries = hostprocess_sim::Binaries::locate().expect("control plane");
    let options = hostprocess_sim::ClusterOptions::default();
    let cluster = hostprocess_sim::Cluster::start(&binaries, &options).await.expect("cluster starts");
    let client = cluster.client().await.expect("client");
    (cluster, client)
}

async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in hostprocess_crds::crds() {
        let name = crd.metadata.name.clone().expect("name");
        crds.patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&crd))
            .await
            .expect("CRD applies");
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(20), established)
            .await
            .expect("in time")
            .expect("established");
    }
}

async fn namespace(client: &kube::Client, name: &str) {
    hostprocess_sim::create_namespace(client, name, &[]).await.expect("namespace");
}

fn task(name: &str, spec: serde_json::Value) -> HostTask {
    serde_json::from_value(json!({
        "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("task")
}

#[tokio::test]
async fn crds_are_served_with_cel_rules_defaults_and_status_subresource() {
    let (_cluster, client) = cluster().await;
    install_crds(&client).await;
    namespace(&client, "tasks").await;
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), "tasks");

    // CEL: exactly one of command or script, with the message that says what to fix.
    let both = task("both", json!({"command": ["C:\\a.exe"], "script": "exit 0"}));
    let err = tasks.create(&PostParams::default(), &both).await.expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("set exactly one of command (a program and its arguments) or script"),
        "{message}"
    );

    // An image with a leading space: the real server refuses the pod it would become, so the
    // HostTask is refused first, saying what to fix.
    let spaced = task(
        "spaced",
        json!({"script": "exit 0", "image": " mcr.microsoft.com/windows/nanoserver:ltsc2022"}),
    );
    let message = tasks.create(&PostParams::default(), &spaced).await.expect_err("refused").to_string();
    assert!(message.contains("image must be an image reference without spaces"), "{message}");
    // The server's RE2 refuses a no-break space as Rust's regex does (`\s` alone would not).
    let nbsp = task("nbsp", json!({"script": "exit 0", "image": "registry.example/tools:1\u{a0}"}));
    let message = tasks.create(&PostParams::default(), &nbsp).await.expect_err("refused").to_string();
    assert!(message.contains("image must be an image reference without spaces"), "{message}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "tasks");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "spaced"}, "spec": {"containers": [
        {"name": "c", "image": " mcr.microsoft.com/windows/nanoserver:ltsc2022"}]}}))
    .unwrap();
    let message = pods.create(&PostParams::default(), &pod).await.expect_err("refused").to_string();
    assert!(message.contains("must not have leading or trailing whitespace"), "{message}");

    // A path rule, evaluated by the server's CEL with the regex it compiled from our table.
    let groups: Api<HostGroup> = Api::all(client.clone());
    let bad: HostGroup = serde_json::from_value(json!({
        "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostGroup", "metadata": {"name": "bad"},
        "spec": {"groupName": "readers", "grants": [{"path": "C:\\a\\..\\Windows", "rights": "Read"}]},
    }))
    .expect("group");
    let err = groups.create(&PostParams::default(), &bad).await.expect_err("refused").to_string();
    assert!(err.contains("path must not contain . or .. segments"), "{err}");

    // What a HostGroup may not reach, as the server's RE2 judges it: case-insensitive names,
    // Unicode classes, look-alikes. The Rust checks say the same (crds/tests/cel_rules.rs).
    for (spec, expected) in [
        (json!({"groupName": "\u{410}dministrators"}), "groupName must be printable ASCII"),
        (
            json!({"groupName": "remote desktop USERS"}),
            "groupName must not name a built-in or well-known Windows group",
        ),
        (
            json!({"groupName": "ops", "members": ["bob\u{200B}"]}),
            "member must not contain invisible characters",
        ),
        (
            json!({"groupName": "ops", "members": ["bob\u{3000}"]}),
            "member must not contain invisible characters",
        ),
        (
            json!({"groupName": "ops", "members": [r"nt authority\SYSTEM"]}),
            "member must not be a built-in, well-known or broad account",
        ),
        (
            json!({"groupName": "ops", "members": [r"CONTOSO\Domain Users"]}),
            "member must not be a built-in, well-known or broad account",
        ),
        (
            json!({"groupName": "ops", "grants": [{"path": r"C:\", "rights": "Read"}]}),
            "path must not be a volume root",
        ),
        (
            json!({"groupName": "ops", "grants": [{"path": r"c:\WINDOWS\System32", "rights": "FullControl"}]}),
            "path must not be in the Windows or Program Files trees",
        ),
    ] {
        let group: HostGroup = serde_json::from_value(json!({
            "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostGroup", "metadata": {"name": "reach"}, "spec": spec,
        }))
        .expect("group");
        let err = groups.create(&PostParams::default(), &group).await.expect_err("refused").to_string();
        assert!(err.contains(expected), "{spec}: {err}");
    }

    // Defaults are applied by the server.
    let ok = tasks
        .create(&PostParams::default(), &task("ok", json!({"script": "exit 0"})))
        .await
        .expect("accepted");
    assert_eq!(
        ok.spec.rollout.max_concurrent,
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("10%".into())
    );
    assert_eq!(ok.spec.run_as.account, hostprocess_crds::Account::LocalService);
    assert_eq!(ok.metadata.generation, Some(1));

    // Status goes through the status subresource and does not bump the generation.
    let status = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
        "status": {"observedGeneration": 1, "revision": "abc", "nodes": {"targeted": 3, "pending": 3, "running": 0, "succeeded": 0, "failed": 0, "rebooting": 0}}});
    let after = tasks
        .patch_status("ok", &PatchParams::apply("operator").force(), &Patch::Apply(&status))
        .await
        .expect("status");
    assert_eq!(after.status.as_ref().and_then(|s| s.revision.as_deref()), Some("abc"));
    assert_eq!(after.metadata.generation, Some(1));

    // The immutable group name, enforced by a transition rule.
    let good: HostGroup = serde_json::from_value(json!({
        "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostGroup", "metadata": {"name": "readers"},
        "spec": {"groupName": "Readers"}}))
    .expect("group");
    groups.create(&PostParams::default(), &good).await.expect("created");
    let rename = json!({"apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostGroup", "spec": {"groupName": "Writers"}});
    let err = groups
        .patch("readers", &PatchParams::apply("test").force(), &Patch::Apply(&rename))
        .await
        .expect_err("immutable");
    assert!(err.to_string().contains("groupName cannot be changed"), "{err}");
}

#[tokio::test]
async fn server_side_apply_tracks_owners_and_reports_conflicts() {
    let (_cluster, client) = cluster().await;
    namespace(&client, "ssa").await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "ssa");
    let cm = |value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"key": value}});
    maps.patch("cm", &PatchParams::apply("operator"), &Patch::Apply(&cm("a"))).await.expect("first apply");
    let unchanged =
        maps.patch("cm", &PatchParams::apply("operator"), &Patch::Apply(&cm("a"))).await.expect("again");
    let rv = unchanged.metadata.resource_version.clone();
    let again =
        maps.patch("cm", &PatchParams::apply("operator"), &Patch::Apply(&cm("a"))).await.expect("idempotent");
    assert_eq!(again.metadata.resource_version, rv, "an identical apply writes nothing");
    let err = maps
        .patch("cm", &PatchParams::apply("someone-else"), &Patch::Apply(&cm("b")))
        .await
        .expect_err("conflict");
    assert!(err.to_string().contains("conflict"), "{err}");
    let managers: Vec<String> = again
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["operator"]);

    // A stale resourceVersion is refused.
    let mut stale = again.clone();
    stale.metadata.resource_version = Some("1".into());
    stale.metadata.managed_fields = None;
    let err = maps.replace("cm", &PostParams::default(), &stale).await.expect_err("stale");
    assert!(err.to_string().contains("the object has been modified"), "{err}");
}

#[tokio::test]
async fn pods_select_by_node_and_watches_deliver_events() {
    let (_cluster, client) = cluster().await;
    namespace(&client, "w").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "w");
    let mut watch = pods.watch(&WatchParams::default(), "0").await.expect("watch").boxed();
    for (name, node) in [("a", "win-000"), ("b", "win-001")] {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}}))
        .expect("pod");
        pods.create(&PostParams::default(), &pod).await.expect("pod");
    }
    let on_node = pods.list(&ListParams::default().fields("spec.nodeName=win-001")).await.expect("list");
    let names: Vec<_> = on_node.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, ["b"]);
    let mut added = vec![];
    while added.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), watch.try_next())
            .await
            .expect("event in time")
            .expect("ok")
        {
            Some(WatchEvent::Added(pod)) => added.push(pod.metadata.name.unwrap_or_default()),
            Some(_) => {}
            None => panic!("watch ended"),
        }
    }
    assert_eq!(added, ["a", "b"]);
    // A pod bound to a node stays, Terminating, until that node's kubelet has stopped it and
    // deletes it for good (no kubelet runs in this test: nobody does).
    pods.delete("a", &Default::default()).await.expect("delete");
    let terminating = pods.get_opt("a").await.expect("get").expect("still there");
    assert!(terminating.metadata.deletion_timestamp.is_some());
}

#[tokio::test]
async fn kubectl_applies_examples_and_shows_the_printer_columns() {
    let (cluster, client) = cluster().await;
    let kubectl_with_warnings = |args: &[&str]| {
        let out = std::process::Command::new(&cluster.binaries.kubectl)
            .env("KUBECONFIG", &cluster.kubeconfig_path)
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let kubectl = |args: &[&str]| kubectl_with_warnings(args).0;
    // The server's version is the upstream release the control plane was built from.
    let version = kubectl(&["version"]);
    assert!(version.contains("Server Version: v1."), "{version}");
    // The install as documented: the CRDs, then deploy/ (namespaces, RBAC, the operator's
    // Deployment and Service, the admission policies, the grant: the rendered set applies
    // cleanly); the examples then apply as they are.
    let deploy = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
    let (_, warnings) =
        kubectl_with_warnings(&["apply", "--server-side", "-f", &format!("{deploy}/crds.yaml")]);
    // The real server warns about schema formats it does not know (`uint32` did): none.
    assert!(!warnings.contains("Warning"), "{warnings}");
    kubectl(&["wait", "--for=condition=Established", "crd", "--all"]);
    let (_, warnings) = kubectl_with_warnings(&["apply", "--server-side", "-k", deploy]);
    assert!(!warnings.contains("Warning"), "{warnings}");
    let installed = kubectl(&[
        "get",
        "-n",
        "hostprocess-system",
        "deployment/hostprocess-operator",
        "service/hostprocess-operator-metrics",
        "serviceaccount/hostprocess-operator",
        "role/hostprocess-operator-leader-election",
        "clusterrole/hostprocess-operator",
        "clusterrolebinding/hostprocess-operator",
        "-o",
        "name",
    ]);
    assert_eq!(installed.lines().count(), 6, "{installed}");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let tasks_ns = namespaces.get("hostprocess-tasks").await.expect("namespace");
    let labels = tasks_ns.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("pod-security.kubernetes.io/enforce").map(String::as_str), Some("privileged"));
    // patch-rollout.yaml widens the grant and then applies a task that needs it: the admission
    // policy sees a changed grant a moment later, so the first apply may refuse that task.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let applied = hostprocess_sim::wait::until("the examples apply", Duration::from_secs(20), || async {
        let out = std::process::Command::new(&cluster.binaries.kubectl)
            .env("KUBECONFIG", &cluster.kubeconfig_path)
            .args(["apply", "--server-side", "-f", examples])
            .output()
            .expect("kubectl runs");
        out.status.success().then_some(())
    })
    .await;
    applied.expect("the examples apply once the policy sees the widened grant");
    let table = kubectl(&["get", "ht", "-n", "hostprocess-tasks"]);
    for column in [
        "NAME",
        "MODE",
        "REVISION",
        "TARGETED",
        "SUCCEEDED",
        "FAILED",
        "READY",
        "AGE",
        "kb5034439",
        "metrics-agent",
    ] {
        assert!(table.contains(column), "{column} missing from\n{table}");
    }
    // The real server publishes a new CRD's OpenAPI schema a moment after it is Established:
    // until then `kubectl explain` cannot find the resource.
    let explain =
        hostprocess_sim::wait::until("the HostTask schema in OpenAPI", Duration::from_secs(30), || async {
            let out = std::process::Command::new(&cluster.binaries.kubectl)
                .env("KUBECONFIG", &cluster.kubeconfig_path)
                .args(["explain", "hosttask.spec.rollout.maxConcurrent"])
                .output()
                .ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .await
        .expect("kubectl explain finds the HostTask schema");
    assert!(
        explain.contains("(rounded up)") && explain.contains("first wave, not only on updates"),
        "{explain}"
    );
}

#[tokio::test]
async fn evictions_honour_pod_disruption_budgets() {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use kube::api::EvictParams;
    let (_cluster, client) = cluster().await;
    namespace(&client, "apps").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "apps");
    for name in ["web-1", "web-2"] {
        let pod = json!({"metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]}});
        pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
        // What a kubelet reports for a running, ready pod.
        let status =
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    }
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "apps");
    let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}});
    budgets.create(&PostParams::default(), &serde_json::from_value(pdb).unwrap()).await.unwrap();

    // The real disruption controller computes the budget's status first; until then the
    // eviction API answers that the budget is still being processed (also a 429).
    let refused = hostprocess_sim::wait::until("the budget to refuse", Duration::from_secs(20), || async {
        match pods.evict("web-1", &EvictParams::default()).await {
            Err(kube::Error::Api(status)) if status.message.contains("would violate") => Some(status),
            Err(kube::Error::Api(status)) if status.code == 429 => None,
            other => panic!("{other:?}"),
        }
    })
    .await
    .expect("the budget needs both pods");
    assert_eq!(refused.code, 429);
    assert!(pods.get_opt("web-1").await.unwrap().is_some());

    budgets
        .patch("web", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"minAvailable": 1}})))
        .await
        .unwrap();
    hostprocess_sim::wait::until("one disruption allowed", Duration::from_secs(20), || async {
        pods.evict("web-1", &EvictParams::default()).await.ok()
    })
    .await
    .expect("one disruption is allowed now");
    let gone = pods.get_opt("web-1").await.unwrap();
    assert!(gone.is_none_or(|p| p.metadata.deletion_timestamp.is_some()), "evicted");
}
