//! What can go wrong starting or driving the simulated cluster.

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot build the control plane or the executor: {0}")]
    Build(String),
    #[error("cannot start {what}: {source}")]
    Spawn { what: &'static str, source: std::io::Error },
    #[error("{what} did not become ready within {seconds}s; its log: {log}")]
    NotReady { what: &'static str, seconds: u64, log: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("setting up the cluster: {0}")]
    Setup(String),
}
