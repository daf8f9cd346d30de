//! A simulated kubelet for one Windows node. It runs the containers of the pods bound to its
//! node as local processes — the real node-executor (its Linux platform) when the program is
//! `node-executor.exe` — and reports what a kubelet reports: phase, container states, exit
//! codes, restart counts per `restartPolicy` with back-off, readiness from exec probes,
//! termination messages. It stops containers when their pod is deleted, and the node can be
//! rebooted or lost.
//!
//! The node's disk is a directory (`root`): `C:\X\Y` is `<root>/X/Y`. Containers get the
//! containerd 1.6 layout — volumes under `$CONTAINER_SANDBOX_MOUNT_POINT` — because a Linux
//! process cannot be given `C:\…` mount paths; the executor resolves both layouts the same way.
//! Fields the real API server would have defaulted (restartPolicy, probe periods, termination
//! message policy, grace period) are read with the same defaults here.

mod config;
mod context;
mod env;
mod node;
mod pods;
mod power;
mod probes;
mod sandbox;
mod status;
mod supervisor;

use std::sync::{Arc, Mutex};

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{KubeletConfig, REBOOT_REQUEST};
pub use power::Power;

use node::run_node;
use power::reboot;

/// One running simulated kubelet; dropping it stops the node and kills its containers.
#[derive(Debug)]
pub struct Kubelet {
    pub config: Arc<KubeletConfig>,
    power: Arc<watch::Sender<Power>>,
    task: JoinHandle<()>,
    boots: Arc<Mutex<u32>>,
}

impl Kubelet {
    /// Registers nothing: the Node object must exist. Reports it Ready and runs its pods.
    pub fn start(client: Client, config: KubeletConfig) -> Self {
        let config = Arc::new(config);
        let (power, receiver) = watch::channel(Power::On);
        let power = Arc::new(power);
        let boots = Arc::new(Mutex::new(0));
        let task = tokio::spawn(run_node(client, config.clone(), power.clone(), receiver, boots.clone()));
        Kubelet { config, power, task, boots }
    }

    /// Reboots the node: NotReady, containers killed, back Ready after the configured downtime
    /// with its pods' containers restarted.
    pub fn reboot(&self) {
        reboot(&self.power, self.config.reboot_downtime);
    }

    /// The node stops answering: Ready=Unknown, its containers are gone.
    pub fn lose(&self) {
        self.power.send_replace(Power::Lost);
    }

    /// A lost node comes back.
    pub fn recover(&self) {
        self.power.send_replace(Power::On);
    }

    /// How many times the node has booted (1 after start).
    pub fn boots(&self) -> u32 {
        *self.boots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}
