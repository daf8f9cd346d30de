//! What the real API server grants the operator's ServiceAccount once `deploy/` is installed —
//! asked the way an administrator would, `kubectl auth can-i --list` — is exactly
//! `operator/src/permissions.rs`: nothing missing (a call would fail in a user's cluster),
//! nothing more (least privilege). What every authenticated identity may do (discovery, self
//! reviews) is read from a ServiceAccount with no binding and left out of the comparison.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

use std::collections::BTreeMap;
use std::path::Path;

use hostprocess_operator::permissions;
use hostprocess_sim::identity::Credentials;
use hostprocess_sim::{Binaries, Cluster, ClusterOptions, operator};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

/// (API group, resource with subresource) → verbs.
type Grants = BTreeMap<(String, String), Vec<String>>;

/// `kubectl auth can-i --list` in `namespace` as the kubeconfig's identity, resource rules only.
fn can_i_list(cluster: &Cluster, kubeconfig: &Path, namespace: &str) -> Grants {
    let out = std::process::Command::new(&cluster.binaries.kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["auth", "can-i", "--list", "--namespace", namespace])
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut grants = Grants::new();
    // `Resources  Non-Resource URLs  Resource Names  Verbs`; a resource is `name[.group][/sub]`.
    for line in String::from_utf8_lossy(&out.stdout).lines().skip(1) {
        if line.starts_with(' ') {
            continue; // a non-resource URL
        }
        let resource = line.split_whitespace().next().unwrap();
        let verbs = line[line.rfind('[').unwrap() + 1..line.rfind(']').unwrap()].split_whitespace();
        let (named, sub) = resource.split_once('/').map_or((resource, ""), |(n, s)| (n, s));
        let (name, group) = named.split_once('.').unwrap_or((named, ""));
        let resource = if sub.is_empty() { name.to_string() } else { format!("{name}/{sub}") };
        grants.entry((group.to_string(), resource)).or_default().extend(verbs.map(String::from));
    }
    for verbs in grants.values_mut() {
        verbs.sort();
        verbs.dedup();
    }
    grants
}

fn expected(tables: &[&[(&str, &str, &[&str])]]) -> Grants {
    let mut grants = Grants::new();
    for table in tables {
        for (group, resource, verbs) in *table {
            let entry = grants.entry((group.to_string(), resource.to_string())).or_default();
            entry.extend(verbs.iter().map(|v| v.to_string()));
            entry.sort();
        }
    }
    grants
}

/// `grants` without what the identity with no binding has too.
fn beyond(grants: Grants, baseline: &Grants) -> Grants {
    grants.into_iter().filter(|(key, verbs)| baseline.get(key) != Some(verbs)).collect()
}

/// A control plane with one file of `deploy/` applied, and the administrator's client.
async fn cluster_with(deploy_file: &str) -> (Cluster, kube::Client) {
    let binaries = Binaries::locate().expect("control plane");
    let cluster = Cluster::start(&binaries, &ClusterOptions::default()).await.expect("cluster");
    let admin = cluster.client().await.unwrap();
    let manifest = std::fs::read_to_string(operator::deploy_dir().join(deploy_file)).unwrap();
    operator::apply_manifests(&admin, &manifest, "test", |_| true).await.unwrap();
    (cluster, admin)
}

#[tokio::test]
async fn the_service_account_of_deploy_can_do_exactly_what_permissions_rs_lists() {
    // The CRDs first: RBAC rules for resources the server does not serve are not listed.
    let (cluster, admin) = cluster_with("crds.yaml").await;
    let operator_kubeconfig = operator::install_operator_identity(&cluster).await.unwrap();

    // A ServiceAccount nobody bound anything to: what any authenticated identity may do.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), operator::NAMESPACE);
    let nobody = serde_json::from_value(serde_json::json!({"metadata": {"name": "nobody"}})).unwrap();
    accounts.create(&PostParams::default(), &nobody).await.unwrap();
    let token = accounts
        .create_token_request("nobody", &PostParams::default(), &TokenRequest::default())
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let nobody_kubeconfig = cluster.kubeconfig_for("nobody", &Credentials::Token(token)).unwrap();

    // A namespace nobody enabled: the cluster-wide rules, which create nothing that runs and
    // read no Secret.
    let baseline = can_i_list(&cluster, &nobody_kubeconfig, "default");
    let granted = beyond(can_i_list(&cluster, &operator_kubeconfig, "default"), &baseline);
    assert_eq!(granted, expected(&[permissions::CLUSTER]), "cluster-wide grants differ from permissions.rs");
    for (resource, verb) in
        [("pods", "create"), ("daemonsets", "create"), ("configmaps", "create"), ("secrets", "get")]
    {
        let may = granted.iter().any(|((_, r), verbs)| r == resource && verbs.iter().any(|v| v == verb));
        assert!(!may, "the operator may {verb} {resource} in a namespace that is not enabled");
    }

    // The namespace the install enables: the task namespace's rules as well.
    hostprocess_sim::create_namespace(&admin, "hostprocess-tasks", &[]).await.unwrap();
    let enable =
        std::fs::read_to_string(operator::deploy_dir().join("enable-hostprocess-tasks.yaml")).unwrap();
    operator::apply_manifests(&admin, &enable, "test", |_| true).await.unwrap();
    let baseline = can_i_list(&cluster, &nobody_kubeconfig, "hostprocess-tasks");
    let granted = beyond(can_i_list(&cluster, &operator_kubeconfig, "hostprocess-tasks"), &baseline);
    assert_eq!(
        granted,
        expected(&[permissions::CLUSTER, permissions::TASK_NAMESPACE]),
        "grants in the enabled namespace differ from permissions.rs"
    );

    // Its own namespace: the Lease of leader election as well.
    let baseline = can_i_list(&cluster, &nobody_kubeconfig, operator::NAMESPACE);
    let granted = beyond(can_i_list(&cluster, &operator_kubeconfig, operator::NAMESPACE), &baseline);
    assert_eq!(
        granted,
        expected(&[permissions::CLUSTER, permissions::OWN_NAMESPACE]),
        "grants in {} differ from permissions.rs",
        operator::NAMESPACE
    );
}

/// The real API server's validation (Windows HostProcess rules, DaemonSet and ConfigMap
/// validation, Pod Security `privileged` admission) accepts what the operator builds for each
/// example — the golden files, created with a server-side dry run. (Setup pods and reboot pods
/// are created for real by the HostGroup and reboot tests.)
#[tokio::test]
async fn the_api_server_accepts_what_the_operator_builds_for_every_example() {
    let (_cluster, admin) = cluster_with("namespaces.yaml").await;
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut checked = 0;
    for example in ["patch-rollout.yaml", "log-readers.yaml", "host-agent.yaml"] {
        let text = std::fs::read_to_string(golden.join(example)).unwrap();
        for document in text.split("\n---").filter(|d| !d.trim().is_empty()) {
            let object: kube::api::DynamicObject = yaml_serde::from_str(document).unwrap();
            let kind = object.types.as_ref().unwrap().kind.clone();
            let resource = match kind.as_str() {
                "DaemonSet" => kube::api::ApiResource::erase::<k8s_openapi::api::apps::v1::DaemonSet>(&()),
                "ConfigMap" => kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
                other => panic!("{example}: unexpected kind {other}"),
            };
            let api: Api<kube::api::DynamicObject> =
                Api::namespaced_with(admin.clone(), object.metadata.namespace.as_deref().unwrap(), &resource);
            let params = PostParams { dry_run: true, ..PostParams::default() };
            if let Err(e) = api.create(&params, &object).await {
                panic!("{example}: the API server refuses the {kind}: {e}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 5, "two ConfigMaps and three DaemonSets");
}

/// `kubectl` as the cluster administrator, in the repository's root; its stdout.
fn kubectl(cluster: &Cluster, args: &[&str]) -> String {
    let out = std::process::Command::new(&cluster.binaries.kubectl)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig_path)
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The install as `docs/operations.md` gives it — the CRDs, then `kubectl apply -k deploy/` —
/// succeeds on a real API server and leaves the admission policies bound and only
/// `hostprocess-tasks` enabled, with neither System nor reboots.
#[tokio::test]
async fn the_documented_install_applies_with_its_policies_and_one_grant() {
    let binaries = Binaries::locate().expect("control plane");
    let cluster = Cluster::start(&binaries, &ClusterOptions::default()).await.expect("cluster");
    let rendered = kubectl(&cluster, &["kustomize", "deploy/"]);
    for kind in [
        "kind: ValidatingAdmissionPolicy\n",
        "kind: ValidatingAdmissionPolicyBinding\n",
        "kind: HostTaskGrant\n",
    ] {
        assert!(rendered.contains(kind), "kubectl kustomize deploy/ lacks {kind}");
    }
    kubectl(&cluster, &["apply", "--server-side", "-f", "deploy/crds.yaml"]);
    kubectl(&cluster, &["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
    kubectl(&cluster, &["apply", "-k", "deploy/"]);

    let bindings = kubectl(&cluster, &["get", "validatingadmissionpolicybindings", "-o", "name"]);
    assert_eq!(
        bindings.lines().collect::<Vec<_>>(),
        [
            "validatingadmissionpolicybinding.admissionregistration.k8s.io/hostprocess-hostgroup-owner",
            "validatingadmissionpolicybinding.admissionregistration.k8s.io/hostprocess-task-grants",
            "validatingadmissionpolicybinding.admissionregistration.k8s.io/hostprocess-task-hostgroups"
        ]
    );
    let grants = kubectl(
        &cluster,
        &[
            "get",
            "hosttaskgrants",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.accounts} {.spec.reboot}{\"\\n\"}{end}",
        ],
    );
    assert_eq!(grants.trim(), r#"hostprocess-tasks ["LocalService","NetworkService"] Never"#);
    // The policies type-check against the CRDs they read: the API server's checker reports a
    // misspelt field or a type error as a warning in the status.
    for policy in ["hostprocess-task-grants", "hostprocess-task-hostgroups", "hostprocess-hostgroup-owner"] {
        let status = hostprocess_sim::wait::until(
            "the policy is type-checked",
            std::time::Duration::from_secs(30),
            || async {
                let status = kubectl(
                    &cluster,
                    &["get", "validatingadmissionpolicy", policy, "-o", "jsonpath={.status}"],
                );
                status.contains("typeChecking").then_some(status)
            },
        )
        .await
        .unwrap();
        assert!(!status.contains("expressionWarnings"), "{policy}: {status}");
    }
}
