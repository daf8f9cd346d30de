//! deploy/: every manifest parses into its Kubernetes type, the RBAC grants exactly what the
//! code uses (operator/src/permissions.rs), and the Deployment matches the operator's defaults
//! and runs locked down.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

use std::path::Path;

use hostprocess_crds::{BuiltinAccount, HostTaskGrant, RebootPolicy};
use hostprocess_operator::{Config, permissions};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// Every document of every file the kustomization lists.
fn rendered() -> Vec<Value> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let kustomization: Value =
        yaml_serde::from_str(&std::fs::read_to_string(deploy.join("kustomization.yaml")).unwrap()).unwrap();
    let mut docs = Vec::new();
    for file in kustomization["resources"].as_array().unwrap() {
        let text = std::fs::read_to_string(deploy.join(file.as_str().unwrap())).unwrap();
        for doc in text.split("\n---") {
            let value: Value = yaml_serde::from_str(doc).unwrap();
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

fn rules(table: &[(&str, &str, &[&str])]) -> Vec<PolicyRule> {
    table
        .iter()
        .map(|(group, resource, verbs)| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(vec![resource.to_string()]),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

#[test]
fn every_manifest_parses_into_its_type_and_rbac_matches_the_code() {
    let docs = rendered();
    let mut kinds = Vec::new();
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap().to_string();
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let parsed = match kind.as_str() {
            "CustomResourceDefinition" => {
                serde_json::from_value::<CustomResourceDefinition>(doc.clone()).map(|_| ())
            }
            "Namespace" => serde_json::from_value::<Namespace>(doc.clone()).map(|_| ()),
            "ServiceAccount" => serde_json::from_value::<ServiceAccount>(doc.clone()).map(|_| ()),
            "RoleBinding" => {
                let binding: RoleBinding = serde_json::from_value(doc.clone()).unwrap();
                let role = &binding.role_ref.name;
                assert!(
                    role == permissions::TASK_NAMESPACE_ROLE
                        || binding.metadata.namespace.as_deref() == Some("hostprocess-system"),
                    "{name} binds {role} outside the operator's namespace"
                );
                Ok(())
            }
            "ClusterRoleBinding" => {
                let binding: ClusterRoleBinding = serde_json::from_value(doc.clone()).unwrap();
                assert_ne!(binding.role_ref.name, permissions::TASK_NAMESPACE_ROLE, "bound cluster-wide");
                Ok(())
            }
            "Service" => serde_json::from_value::<Service>(doc.clone()).map(|_| ()),
            "Deployment" => serde_json::from_value::<Deployment>(doc.clone()).map(|_| ()),
            "ValidatingAdmissionPolicy" => {
                serde_json::from_value::<ValidatingAdmissionPolicy>(doc.clone()).map(|_| ())
            }
            "ValidatingAdmissionPolicyBinding" => {
                serde_json::from_value::<ValidatingAdmissionPolicyBinding>(doc.clone()).map(|_| ())
            }
            "HostTaskGrant" => serde_json::from_value::<HostTaskGrant>(doc.clone()).map(|_| ()),
            "ClusterRole" if name == "hostprocess-operator" => {
                let role: ClusterRole = serde_json::from_value(doc.clone()).unwrap();
                assert_eq!(role.rules.unwrap(), rules(permissions::CLUSTER), "deploy/rbac.yaml ClusterRole");
                Ok(())
            }
            "ClusterRole" if name == permissions::TASK_NAMESPACE_ROLE => {
                let role: ClusterRole = serde_json::from_value(doc.clone()).unwrap();
                assert_eq!(
                    role.rules.unwrap(),
                    rules(permissions::TASK_NAMESPACE),
                    "deploy/rbac.yaml {name}"
                );
                Ok(())
            }
            // The users' roles (deploy/roles.yaml): none may touch the grants but to read them.
            "ClusterRole" => {
                let role: ClusterRole = serde_json::from_value(doc.clone()).unwrap();
                for rule in role.rules.unwrap() {
                    let grants = rule.resources.unwrap_or_default().contains(&"hosttaskgrants".to_string());
                    let writes = rule.verbs.iter().any(|v| !["get", "list", "watch"].contains(&v.as_str()));
                    assert!(!(grants && writes), "{name} may write HostTaskGrants");
                }
                Ok(())
            }
            "Role" => {
                let role: Role = serde_json::from_value(doc.clone()).unwrap();
                assert_eq!(role.rules.unwrap(), rules(permissions::OWN_NAMESPACE), "deploy/rbac.yaml Role");
                Ok(())
            }
            other => panic!("deploy/ has a {other} the test does not know: add it here"),
        };
        parsed.unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
        kinds.push(kind);
    }
    for expected in [
        "CustomResourceDefinition",
        "Namespace",
        "ClusterRole",
        "Role",
        "Deployment",
        "Service",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "HostTaskGrant",
    ] {
        assert!(kinds.iter().any(|k| k == expected), "deploy/ lacks a {expected}");
    }
}

#[test]
fn the_deployment_runs_the_default_images_locked_down_with_two_replicas() {
    let doc = rendered().into_iter().find(|d| d["kind"] == "Deployment").unwrap();
    let deployment: Deployment = serde_json::from_value(doc).unwrap();
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.node_selector.unwrap()["kubernetes.io/os"], "linux");
    assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
    let container = &pod.containers[0];
    // Until images are published, placeholders nobody can own or pull from (registry.invalid):
    // an install that forgot to set them fails at the image pull, never runs someone else's.
    assert_eq!(
        container.image.as_deref(),
        Some(
            format!("registry.invalid/set-your-registry/hostprocess-operator:{}", env!("CARGO_PKG_VERSION"))
                .as_str()
        )
    );
    let env = container.env.clone().unwrap();
    let executor = env.iter().find(|e| e.name == "HOSTPROCESS_EXECUTOR_IMAGE").unwrap();
    let placeholder = executor.value.as_deref().unwrap();
    assert_eq!(
        placeholder,
        format!("registry.invalid/set-your-registry/node-executor:{}", env!("CARGO_PKG_VERSION"))
    );
    // The operator refuses to start with it, saying what to set.
    let refused = Config::check_executor_image(placeholder).unwrap_err();
    assert!(refused.contains("HOSTPROCESS_EXECUTOR_IMAGE"), "{refused}");
    assert!(Config::check_executor_image("a b").is_err(), "not a reference");
    let pinned = format!("registry.example/node-executor@sha256:{}", "0".repeat(64));
    assert_eq!(Config::check_executor_image(&pinned), Ok(()));
    assert!(container.args.clone().unwrap().contains(&"--leader-elect".to_string()));
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
    assert!(container.resources.as_ref().and_then(|r| r.limits.as_ref()).is_some());
}

#[test]
fn the_install_binds_each_admission_policy_and_enables_only_the_task_namespace() {
    let docs = rendered();
    let named = |kind: &str| -> Vec<String> {
        docs.iter()
            .filter(|d| d["kind"] == kind)
            .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let policies = named("ValidatingAdmissionPolicy");
    assert_eq!(
        policies,
        ["hostprocess-task-grants", "hostprocess-task-hostgroups", "hostprocess-hostgroup-owner"]
    );
    for doc in docs.iter().filter(|d| d["kind"] == "ValidatingAdmissionPolicyBinding") {
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(doc.clone()).unwrap();
        let spec = binding.spec.unwrap();
        assert!(policies.contains(&spec.policy_name.clone().unwrap()), "{spec:?}");
        assert_eq!(spec.validation_actions, Some(vec!["Deny".to_string()]), "enforced, not audited");
    }
    assert_eq!(named("ValidatingAdmissionPolicyBinding"), policies, "every policy is bound");
    let grant = docs.iter().find(|d| d["kind"] == "HostTaskGrant").unwrap();
    let grant: HostTaskGrant = serde_json::from_value(grant.clone()).unwrap();
    assert_eq!(named("HostTaskGrant"), [Config::DEFAULT_GROUP_NAMESPACE]);
    let bound: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" && d["roleRef"]["name"] == permissions::TASK_NAMESPACE_ROLE)
        .map(|d| d["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(
        bound,
        [Config::DEFAULT_GROUP_NAMESPACE],
        "the operator may create only where a grant enables"
    );
    assert!(!grant.spec.accounts.contains(&BuiltinAccount::System), "System is not granted by default");
    assert_eq!(grant.spec.reboot, RebootPolicy::Never, "reboots are not granted by default");
}

#[test]
fn the_dockerfiles_build_what_the_manifests_and_pods_run() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images");
    let read = |name: &str| std::fs::read_to_string(images.join(name)).unwrap();
    let last_from = |text: &str| text.lines().rfind(|l| l.starts_with("FROM ")).unwrap().to_string();

    let operator = read("operator.Dockerfile");
    assert!(last_from(&operator).starts_with("FROM gcr.io/distroless/"), "a small, shell-less runtime image");
    // The Deployment runs as this user with a read-only root: the image must agree.
    let doc = rendered().into_iter().find(|d| d["kind"] == "Deployment").unwrap();
    let deployment: Deployment = serde_json::from_value(doc).unwrap();
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let user = pod.security_context.unwrap().run_as_user.unwrap();
    assert!(
        operator.contains(&format!("USER {user}:{user}")),
        "the image's user is the Deployment's ({user})"
    );
    assert!(operator.contains("-p hostprocess-operator --bin hostprocess-operator"));

    let executor = read("node-executor.Dockerfile");
    assert_eq!(
        last_from(&executor),
        "FROM mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.0"
    );
    // Pods start the executor by this name at the image root (hosttask/build.rs, hostgroup/build.rs).
    assert!(executor.contains("/release/node-executor.exe /node-executor.exe"));
    let golden = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/patch-rollout.yaml"),
    )
    .unwrap();
    assert!(golden.contains("- node-executor.exe"), "the pods run the file the image carries");
    // The build commands tag the names the Deployment's placeholders stand for.
    assert!(executor.contains(&format!("-t REGISTRY/node-executor:{}", env!("CARGO_PKG_VERSION"))));
    assert!(operator.contains(&format!("-t REGISTRY/hostprocess-operator:{}", env!("CARGO_PKG_VERSION"))));
    // Nothing is built from the build context's leftovers.
    let ignored =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dockerignore")).unwrap();
    for path in ["target", ".git"] {
        assert!(
            ignored.lines().any(|l| l.trim_start_matches('/') == path),
            ".dockerignore leaves out {path}"
        );
    }
}
