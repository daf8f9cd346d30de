//! Whether the node is up: on, rebooting (back after a downtime) or lost.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// Whether the node is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    On,
    /// Rebooting: NotReady, every container killed; back on after the downtime.
    Rebooting,
    /// Unreachable: the node stops reporting (Ready=Unknown), its containers are gone.
    Lost,
}

pub(super) fn reboot(power: &Arc<watch::Sender<Power>>, downtime: Duration) {
    if *power.borrow() != Power::On {
        return;
    }
    power.send_replace(Power::Rebooting);
    let power = power.clone();
    tokio::spawn(async move {
        tokio::time::sleep(downtime).await;
        if *power.borrow() == Power::Rebooting {
            power.send_replace(Power::On);
        }
    });
}

/// What can be done to a running node from outside: a cheap handle, shared with the
/// simulated cluster's control surface.
#[derive(Debug, Clone)]
pub struct NodeControl {
    pub(super) power: Arc<watch::Sender<Power>>,
    pub(super) runtime_ready: Arc<watch::Sender<bool>>,
    pub(super) boots: Arc<Mutex<u32>>,
    /// How many times the node was reimaged, and whether a reimage waits for the power-off.
    pub(super) images: Arc<Mutex<(u32, bool)>>,
    pub(super) downtime: Duration,
}

impl NodeControl {
    pub fn reboot(&self) {
        reboot(&self.power, self.downtime);
    }

    pub fn lose(&self) {
        self.power.send_replace(Power::Lost);
    }

    /// Reimages the node: a reboot after which the node keeps its name but has a new machine ID,
    /// and its local accounts and groups, ACLs and the executor's records are gone (a fresh
    /// installation). Pods bound to it are started again, as after a reboot.
    pub fn reimage(&self) {
        self.images.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.reboot();
    }

    /// The machine ID the node reports: its name until its first reimage.
    pub fn machine_id(&self, node: &str) -> String {
        match self.images.lock().unwrap_or_else(|e| e.into_inner()).0 {
            0 => node.to_string(),
            n => format!("{node}-image-{n}"),
        }
    }

    /// A reimage asked for takes place: called at boot, every container of the earlier boot
    /// gone.
    pub(super) fn finish_reimage(&self, config: &super::config::KubeletConfig) {
        let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        if images.1 {
            for dir in [config.test_store(), config.state_dir()] {
                let _ = std::fs::remove_dir_all(dir);
            }
            *images = (images.0 + 1, false);
        }
    }

    /// Back on: a lost node answers again, a NotReady one is Ready again.
    pub fn recover(&self) {
        self.runtime_ready.send_replace(true);
        if *self.power.borrow() == Power::Lost {
            self.power.send_replace(Power::On);
        }
    }

    /// The node stays up and keeps its Lease, but its kubelet reports NotReady (a container
    /// runtime that stopped answering); containers that run keep running.
    pub fn set_not_ready(&self) {
        self.runtime_ready.send_replace(false);
    }

    pub fn boots(&self) -> u32 {
        *self.boots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the node is doing now, in a word: `ready`, `not-ready`, `rebooting` or `lost`.
    pub fn state(&self) -> &'static str {
        match *self.power.borrow() {
            Power::On if *self.runtime_ready.borrow() => "ready",
            Power::On => "not-ready",
            Power::Rebooting => "rebooting",
            Power::Lost => "lost",
        }
    }
}
