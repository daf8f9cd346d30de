//! The operator's identity on the simulated cluster: the ServiceAccount, ClusterRole and
//! bindings of `deploy/`, applied as a cluster administrator installs them, and a token of that
//! ServiceAccount — so the operator under test has exactly the permissions `deploy/` grants.

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};

use crate::cluster::Cluster;
use crate::error::SimError;
use crate::identity::Credentials;

/// The operator's namespace and ServiceAccount, as `deploy/` names them.
pub const NAMESPACE: &str = "hostprocess-system";
pub const SERVICE_ACCOUNT: &str = "hostprocess-operator";

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Applies every document of a multi-document YAML manifest that `keep` accepts, by
/// server-side apply as `manager`; returns `Kind/name` of each.
pub async fn apply_manifests(
    client: &kube::Client,
    yaml: &str,
    manager: &str,
    keep: impl Fn(&DynamicObject) -> bool,
) -> Result<Vec<String>, SimError> {
    use serde::Deserialize;
    let mut applied = Vec::new();
    for document in yaml_serde::Deserializer::from_str(yaml) {
        let value = yaml_serde::Value::deserialize(document)
            .map_err(|e| SimError::Setup(format!("reading a manifest: {e}")))?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            yaml_serde::from_value(value).map_err(|e| SimError::Setup(format!("reading a manifest: {e}")))?;
        if !keep(&object) {
            continue;
        }
        let types = object.types.clone().ok_or_else(|| SimError::Setup("a manifest has no kind".into()))?;
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| SimError::Setup(e.to_string()))?;
        let (resource, capabilities) =
            pinned_kind(client, &gvk).await.map_err(|e| SimError::Setup(format!("{}: {e}", types.kind)))?;
        let name = object.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = match (&capabilities.scope, object.metadata.namespace.as_deref()) {
            (Scope::Namespaced, Some(namespace)) => {
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &PatchParams::apply(manager).force(), &Patch::Apply(&object))
            .await
            .map_err(|e| SimError::Setup(format!("applying {} {name}: {e}", types.kind)))?;
        applied.push(format!("{}/{name}", types.kind));
    }
    Ok(applied)
}

/// Installs the operator's namespace, ServiceAccount and RBAC from `deploy/` and writes a
/// kubeconfig that authenticates as that ServiceAccount (a token valid for two days).
pub async fn install_operator_identity(cluster: &Cluster) -> Result<PathBuf, SimError> {
    let admin = cluster.client().await?;
    let deploy = deploy_dir();
    let namespaces = std::fs::read_to_string(deploy.join("namespaces.yaml"))?;
    // Only the operator's own namespace: the tests make the task namespace with the Pod
    // Security level each of them needs.
    apply_manifests(&admin, &namespaces, "hostprocess-sim", |o| {
        o.metadata.name.as_deref() == Some(NAMESPACE)
    })
    .await?;
    let rbac = std::fs::read_to_string(deploy.join("rbac.yaml"))?;
    apply_manifests(&admin, &rbac, "hostprocess-sim", |_| true).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(admin, NAMESPACE);
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(2 * 24 * 3600), ..TokenRequestSpec::default() },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .map_err(|e| SimError::Setup(format!("a token for the operator's ServiceAccount: {e}")))?
        .status
        .map(|s| s.token)
        .ok_or_else(|| SimError::Setup("the TokenRequest came back without a token".into()))?;
    cluster.kubeconfig_for("operator", &Credentials::Token(token))
}
