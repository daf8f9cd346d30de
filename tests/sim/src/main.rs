//! Runs the simulated cluster standalone, and drives its nodes from outside:
//!
//! ```text
//! cargo run -p hostprocess-sim -- up --nodes 20        # until SIGTERM or Ctrl-C
//! cargo run -p hostprocess-sim -- node win-001 lose    # reboot | lose | not-ready | recover
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostprocess_sim::control::{self, ControlServer};

/// A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
/// kube-scheduler, built from upstream) with simulated Windows nodes whose kubelets run pods as
/// local processes. It is a test harness: not a cluster to run workloads on.
#[derive(Debug, Parser)]
#[command(name = "hostprocess-sim")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts the cluster and keeps it running until SIGTERM or SIGINT, then stops every
    /// process it started.
    Up {
        /// How many simulated Windows nodes to start.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Also write `KUBECONFIG=…`, `KUBECTL=…` and `HOSTPROCESS_SIM_CONTROL=…` lines to this
        /// file once the cluster is ready (for scripts: `source` it, or wait for it to appear).
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Tells a node of a running cluster to reboot, get lost, turn NotReady or recover.
    Node {
        /// The node, e.g. win-001.
        name: String,
        /// reboot | lose | not-ready | recover
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(control::ACTIONS))]
        action: String,
        /// The cluster's control endpoint, as `up` printed it.
        #[arg(long, env = "HOSTPROCESS_SIM_CONTROL")]
        control: String,
    },
    /// Lists the nodes of a running cluster with their state and boot count.
    Nodes {
        #[arg(long, env = "HOSTPROCESS_SIM_CONTROL")]
        control: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Up { nodes, env_file } => up(nodes, env_file).await,
        Command::Node { name, action, control } => {
            control::request(&control, "POST", &format!("/nodes/{name}/{action}"))
                .await
                .map(|a| print!("{a}"))
        }
        Command::Nodes { control } => {
            control::request(&control, "GET", "/nodes").await.map(|a| print!("{a}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostprocess-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn up(nodes: usize, env_file: Option<PathBuf>) -> Result<(), hostprocess_sim::SimError> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed first: a signal during start-up stops what has started so far.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let options = hostprocess_sim::SimOptions { nodes, ..Default::default() };
    let start = hostprocess_sim::Simulation::start(options);
    let mut sim = tokio::select! {
        sim = start => sim?,
        _ = terminate.recv() => return Ok(()),
        _ = interrupt.recv() => return Ok(()),
    };
    let controls = sim.kubelets.iter().map(|k| (k.config.node.clone(), k.control())).collect();
    let server = ControlServer::start(controls).await?;
    let cluster = &sim.cluster;
    let kubeconfig = cluster.kubeconfig_path.display().to_string();
    let kubectl = cluster.binaries.kubectl.display().to_string();
    println!(
        "simulated cluster ready in {:.1}s: a real control plane (etcd, kube-apiserver, \
         kube-controller-manager, kube-scheduler) and {} simulated Windows nodes, each a kubelet \
         running the Linux build of node-executor",
        cluster.startup.as_secs_f64(),
        sim.kubelets.len()
    );
    let env = format!("KUBECONFIG={kubeconfig}\nKUBECTL={kubectl}\nHOSTPROCESS_SIM_CONTROL={}\n", server.url);
    print!("{env}");
    println!("try: KUBECONFIG={kubeconfig} {kubectl} get nodes");
    println!("     hostprocess-sim node win-000 reboot --control {}", server.url);
    if let Some(path) = env_file {
        // Written whole, then renamed: a script waiting for the file never reads half of it.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, &env)?;
        std::fs::rename(&partial, &path)?;
    }
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    eprintln!("hostprocess-sim: stopping");
    drop(server);
    sim.kubelets.clear();
    sim.cluster.stop(std::time::Duration::from_secs(10)).await;
    Ok(())
}
