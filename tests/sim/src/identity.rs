//! Who a client of the simulated cluster is: a client certificate (the administrator, the
//! control-plane components, each node) or a bearer token (a ServiceAccount's), written as a
//! kubeconfig so that kubectl, the operator's binary and `kube::Client` all read the same file.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::SimError;
use crate::pki::CertFiles;

/// How a client proves who it is.
#[derive(Debug, Clone)]
pub enum Credentials {
    Certificate(CertFiles),
    Token(String),
    /// Nothing: a plain-HTTP proxy in front of the API server adds the credentials.
    None,
}

/// A kubeconfig for `server`: trusting `ca` (none for plain HTTP), as `credentials`.
pub fn kubeconfig(server: &str, ca: Option<&Path>, credentials: &Credentials, namespace: &str) -> String {
    let cluster = match ca {
        Some(ca) => format!("    server: {server}\n    certificate-authority: {}\n", ca.display()),
        None => format!("    server: {server}\n"),
    };
    let user = match credentials {
        Credentials::Certificate(files) => format!(
            "    client-certificate: {}\n    client-key: {}\n",
            files.cert.display(),
            files.key.display()
        ),
        Credentials::Token(token) => format!("    token: {token}\n"),
        Credentials::None => "    {}\n".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n{cluster}users:\n- name: user\n  \
         user:\n{user}contexts:\n- name: sim\n  context:\n    cluster: sim\n    user: user\n    namespace: \
         {namespace}\ncurrent-context: sim\n"
    )
}

/// Writes `kubeconfig(…)` to `path`, readable by its owner alone (it may hold a token).
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: Option<&Path>,
    credentials: &Credentials,
) -> Result<PathBuf, SimError> {
    crate::pki::write_private(path, &kubeconfig(server, ca, credentials, "default"))?;
    Ok(path.to_path_buf())
}

/// The client configuration a kubeconfig file describes.
pub async fn config_from_kubeconfig(path: &Path) -> Result<kube::Config, SimError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| SimError::Kubeconfig(e.to_string()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| SimError::Kubeconfig(e.to_string()))?;
    // As the operator's binary configures it: a 429 (an eviction a PodDisruptionBudget refuses)
    // comes back at once instead of being retried inside the client for minutes.
    config.default_retry = false;
    Ok(config)
}

/// A kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, SimError> {
    let config = config_from_kubeconfig(path).await?;
    kube::Client::try_from(config).map_err(|e| SimError::Kubeconfig(e.to_string()))
}
