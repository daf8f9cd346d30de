//! Runs the simulated cluster standalone: `cargo run -p hostprocess-sim -- --nodes 20`.
//! Prints the kubeconfig path and keeps running until Ctrl-C.

use std::process::ExitCode;

use clap::Parser;

/// A real Kubernetes API server (built from the upstream libraries) and etcd, with simulated
/// Windows nodes. It is a test harness: not a cluster to run workloads on.
#[derive(Debug, Parser)]
struct Args {
    /// How many simulated Windows nodes to register.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostprocess-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let binaries = hostprocess_sim::Binaries::locate()?;
    let cluster = hostprocess_sim::Cluster::start(&binaries).await?;
    let client = cluster.client().await?;
    let nodes = hostprocess_sim::add_windows_nodes(&client, args.nodes).await?;
    println!(
        "simulated cluster ready in {:.1}s with {} Windows nodes",
        cluster.startup.as_secs_f64(),
        nodes.len()
    );
    println!("kubeconfig: {}", cluster.kubeconfig_path.display());
    println!("try: KUBECONFIG={} kubectl get nodes", cluster.kubeconfig_path.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
