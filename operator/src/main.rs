//! The operator binary: flags, logging, then `hostprocess_operator::run` until SIGTERM/Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use hostprocess_crds::units::CountOrPercent;
use hostprocess_operator::{Config, Health, LeaderElection, Metrics, Runtime, Stopped, serve_admin};

/// Reconciles HostTask objects into HostProcess DaemonSets rolled out in waves across Windows
/// nodes, and HostGroup objects into per-node setup pods.
#[derive(Debug, Parser)]
#[command(name = "hostprocess-operator", version)]
struct Args {
    /// Watch HostTasks of this namespace only (default: all namespaces).
    #[arg(long, env = "HOSTPROCESS_NAMESPACE")]
    namespace: Option<String>,
    /// The namespace HostGroup setup pods run in (it must allow privileged pods).
    #[arg(long, env = "HOSTPROCESS_HOSTGROUP_NAMESPACE", default_value = Config::DEFAULT_GROUP_NAMESPACE)]
    hostgroup_namespace: String,
    /// How many HostTasks (and, apart, HostGroups) are reconciled at once.
    #[arg(long, env = "HOSTPROCESS_CONCURRENCY", default_value_t = Config::DEFAULT_CONCURRENCY,
        value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// The most Windows nodes in a reboot the operator started, across all tasks: a count like
    /// `3` or a percentage of the Windows nodes like `10%` (rounded up, at least 1).
    #[arg(long, env = "HOSTPROCESS_MAX_REBOOTING", default_value = "10%", value_parser = parse_count_or_percent)]
    max_rebooting: CountOrPercent,
    /// The node-executor image of the task pods, best by digest (`REGISTRY/node-executor@sha256:…`).
    /// Required: there is no published default.
    #[arg(long, env = "HOSTPROCESS_EXECUTOR_IMAGE")]
    executor_image: String,
    /// The executor's version (must match the image).
    #[arg(long, env = "HOSTPROCESS_EXECUTOR_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    executor_version: String,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(long, env = "HOSTPROCESS_ADMIN_ADDRESS", default_value = "0.0.0.0:8080")]
    admin_address: std::net::SocketAddr,
    /// Act only while holding a Lease (for more than one replica).
    #[arg(long, env = "HOSTPROCESS_LEADER_ELECT", default_value_t = false)]
    leader_elect: bool,
    /// The operator's own namespace, for its Lease and its revision key Secret (default: the
    /// service account's).
    #[arg(long, env = "HOSTPROCESS_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "HOSTPROCESS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// See Cargo.toml: memory the operator frees goes back to the system.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    if let Err(e) = Config::check_executor_image(&args.executor_image) {
        eprintln!("hostprocess-operator: {e}");
        return ExitCode::FAILURE;
    }
    if !args.executor_image.contains("@sha256:") {
        tracing::warn!(image = %args.executor_image, "the executor image is named by tag, which can be moved: name it by digest");
    }
    let client = match client().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("hostprocess-operator: cannot reach the Kubernetes API: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config {
        executor_image: args.executor_image,
        executor_version: args.executor_version,
        namespace: args.namespace,
        group_namespace: args.hostgroup_namespace,
        concurrency: args.concurrency,
        max_rebooting: args.max_rebooting,
        operator_namespace: args
            .leader_election_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string()),
    };
    let health = Arc::new(Health::default());
    let metrics = Metrics::new();
    let admin = match serve_admin(args.admin_address, health.clone(), metrics.clone()).await {
        Ok((address, task)) => {
            tracing::info!(%address, "serving /healthz, /readyz and /metrics");
            task
        }
        Err(e) => {
            eprintln!("hostprocess-operator: cannot serve on {}: {e}", args.admin_address);
            return ExitCode::FAILURE;
        }
    };
    let leader = args.leader_elect.then(|| {
        let namespace = config.operator_namespace.clone();
        // The pod's name (downward API) and a random suffix: unique among replicas and restarts.
        let identity = hostprocess_operator::leader_identity(std::env::var("POD_NAME").ok().as_deref());
        LeaderElection::new(client.clone(), &namespace, "hostprocess-operator", &identity)
    });
    let runtime = Runtime { health, metrics, leader };
    let stopped = hostprocess_operator::run(client, config, runtime, shutdown_signal()).await;
    admin.abort();
    match stopped {
        Stopped::Shutdown => ExitCode::SUCCESS,
        // Exit so the pod restarts as a standby: acting without the lease is never safe.
        Stopped::LostLease => {
            eprintln!("hostprocess-operator: lost the leader lease; exiting");
            ExitCode::FAILURE
        }
    }
}

/// A count like `3` or a percentage like `10%`, at least 1.
fn parse_count_or_percent(text: &str) -> Result<CountOrPercent, String> {
    let value = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(text.to_string());
    match CountOrPercent::parse(&value) {
        Some(v @ (CountOrPercent::Count(n) | CountOrPercent::Percent(n))) if n >= 1 => Ok(v),
        _ => Err(format!(
            "{text:?} is not a count of at least 1 or a percentage from 1% to 100%, like 3 or 10%"
        )),
    }
}

/// The API client, from the in-cluster service account or a kubeconfig. kube's default retry of
/// 429/503/504 inside the client is off: the controllers requeue failed reconciles with back-off
/// themselves, and an eviction refused by a PodDisruptionBudget (429) must come back at once
/// rather than hold a reconcile for minutes.
async fn client() -> Result<kube::Client, Box<dyn std::error::Error>> {
    let mut config = kube::Config::infer().await?;
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}

/// SIGTERM (a pod being stopped) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reboot_budget_is_a_count_or_a_percentage_of_at_least_one() {
        assert_eq!(parse_count_or_percent("3"), Ok(CountOrPercent::Count(3)));
        assert_eq!(parse_count_or_percent("10%"), Ok(CountOrPercent::Percent(10)));
        for bad in ["0", "0%", "101%", "ten", ""] {
            let refused = parse_count_or_percent(bad).unwrap_err();
            assert!(refused.contains("like 3 or 10%"), "{bad}: {refused}");
        }
        let args =
            Args::try_parse_from(["hostprocess-operator", "--executor-image", "registry.test/executor:1"])
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.max_rebooting, Config::DEFAULT_MAX_REBOOTING, "the flag's default is the library's");
    }
}
