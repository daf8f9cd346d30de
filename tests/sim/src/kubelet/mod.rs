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
pub use power::{NodeControl, Power};

use node::run_node;

/// One running simulated kubelet; dropping it stops the node and kills its containers.
#[derive(Debug)]
pub struct Kubelet {
    pub config: Arc<KubeletConfig>,
    control: NodeControl,
    task: JoinHandle<()>,
}

impl Kubelet {
    /// Registers the node through `client` (the node's own credentials: `system:node:<name>`),
    /// reports it Ready, renews its Lease and runs its pods.
    pub fn start(client: Client, config: KubeletConfig) -> Self {
        let config = Arc::new(config);
        let (power, receiver) = watch::channel(Power::On);
        let control = NodeControl {
            power: Arc::new(power),
            runtime_ready: Arc::new(watch::channel(true).0),
            boots: Arc::new(Mutex::new(0)),
            images: Arc::default(),
            downtime: config.reboot_downtime,
        };
        let task = tokio::spawn(run_node(client, config.clone(), control.clone(), receiver));
        Kubelet { config, control, task }
    }

    /// The node's controls, to keep beyond a borrow of the kubelet.
    pub fn control(&self) -> NodeControl {
        self.control.clone()
    }

    /// Reboots the node: NotReady (graceful shutdown), containers killed, silent for the
    /// configured downtime, back Ready with a new boot id and its pods' containers restarted.
    pub fn reboot(&self) {
        self.control.reboot();
    }

    /// The node stops answering: no status, no Lease renewal (the node-lifecycle controller
    /// marks it unreachable after its grace period); its containers are gone.
    pub fn lose(&self) {
        self.control.lose();
    }

    /// Reimages the node (see `NodeControl::reimage`).
    pub fn reimage(&self) {
        self.control.reimage();
    }

    /// A lost node comes back.
    pub fn recover(&self) {
        self.control.recover();
    }

    /// How many times the node has booted (1 after start).
    pub fn boots(&self) -> u32 {
        self.control.boots()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}
