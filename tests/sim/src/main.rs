//! Runs the simulated cluster standalone: `cargo run -p hostprocess-sim -- --nodes 20`.
//! Prints the kubeconfig path and keeps running until Ctrl-C.

use std::process::ExitCode;

use clap::Parser;

/// A real Kubernetes API server (built from the upstream libraries) and etcd, with simulated
/// Windows nodes whose kubelets run pods as local processes. It is a test harness: not a
/// cluster to run workloads on.
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
    let options = hostprocess_sim::SimOptions { nodes: args.nodes, ..Default::default() };
    let sim = hostprocess_sim::Simulation::start(options).await?;
    let cluster = &sim.cluster;
    println!(
        "simulated cluster ready in {:.1}s with {} Windows nodes (a kubelet each, running the \
         Linux build of node-executor), a DaemonSet controller and a garbage collector",
        cluster.startup.as_secs_f64(),
        sim.kubelets.len()
    );
    println!("kubeconfig: {}", cluster.kubeconfig_path.display());
    println!("try: KUBECONFIG={} kubectl get nodes", cluster.kubeconfig_path.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
