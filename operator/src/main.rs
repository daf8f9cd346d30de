//! The operator binary: flags, logging, then `hostprocess_operator::run` until SIGTERM/Ctrl-C.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use hostprocess_operator::Config;

/// Reconciles HostTask objects into HostProcess DaemonSets rolled out in waves across Windows nodes.
#[derive(Debug, Parser)]
#[command(name = "hostprocess-operator", version)]
struct Args {
    /// Watch HostTasks of this namespace only (default: all namespaces).
    #[arg(long, env = "HOSTPROCESS_NAMESPACE")]
    namespace: Option<String>,
    /// The node-executor image of the task pods.
    #[arg(long, env = "HOSTPROCESS_EXECUTOR_IMAGE", default_value_t = Config::default_executor_image())]
    executor_image: String,
    /// The executor's version (must match the image).
    #[arg(long, env = "HOSTPROCESS_EXECUTOR_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    executor_version: String,
    /// Log format.
    #[arg(long, env = "HOSTPROCESS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

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
    let client = match kube::Client::try_default().await {
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
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    hostprocess_operator::run(client, config, shutdown).await;
    ExitCode::SUCCESS
}
