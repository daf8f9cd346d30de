//! The plugin's connection to the cluster, its errors and its exit codes.

use hostprocess_crds::HostTask;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::cli;

/// The plugin's exit codes.
pub mod exit {
    /// Done: the rollout completed, the change was applied, the view was shown.
    pub const OK: i32 = 0;
    /// `wait`: the rollout halted (more failures than `maxFailures`) or stalled.
    pub const FAILED: i32 = 1;
    /// The command line was wrong (clap's code).
    pub const USAGE: i32 = 2;
    /// `wait`: the timeout passed first.
    pub const TIMED_OUT: i32 = 3;
    /// The cluster could not be reached or refused a request.
    pub const ERROR: i32 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("cannot set up a client for the cluster: {0}")]
    Client(#[source] kube::Error),
    #[error("HostTask {namespace}/{name} not found (kubectl get ht -n {namespace} lists the tasks)")]
    NotFound { namespace: String, name: String },
    #[error("{0}")]
    Api(String),
    /// The command line or a file it names is wrong.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Refused(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl Error {
    /// The exit code an error ends the plugin with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            _ => exit::ERROR,
        }
    }

    /// What the API server said, in words that say what to do.
    pub fn api(what: &str, error: kube::Error) -> Error {
        match error {
            kube::Error::Api(status) if status.code == 403 => Error::Api(format!(
                "{what}: the API server refused it ({}); ask for a role that allows it (deploy/ has hostprocess-task-viewer and hostprocess-task-author)",
                status.message
            )),
            kube::Error::Api(status) => Error::Api(format!("{what}: {} ({})", status.message, status.reason)),
            other => Error::Api(format!("{what}: {other}")),
        }
    }
}

/// A client and namespace from the kubeconfig, context and namespace flags, as kubectl finds them.
pub async fn connect(cluster: &cli::Cluster) -> Result<(kube::Client, String), Error> {
    let options = KubeConfigOptions { context: cluster.context.clone(), ..KubeConfigOptions::default() };
    let config = match &cluster.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None => kube::Config::from_kubeconfig(&options).await?,
    };
    let namespace = cluster.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(Error::Client)?;
    Ok((client, namespace))
}

/// The HostTask, or a message that says it is not there.
pub async fn get_task(tasks: &Api<HostTask>, namespace: &str, name: &str) -> Result<HostTask, Error> {
    tasks
        .get_opt(name)
        .await
        .map_err(|e| Error::api(&format!("reading HostTask {namespace}/{name}"), e))?
        .ok_or_else(|| Error::NotFound { namespace: namespace.into(), name: name.into() })
}
