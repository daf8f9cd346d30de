//! Whether the node is up: on, rebooting (back after a downtime) or lost.

use std::sync::Arc;
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
