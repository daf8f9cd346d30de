//! The node itself: each boot reports the node and runs its pods until the power changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::watch;

use super::config::*;
use super::pods::*;
use super::power::*;

pub(super) async fn run_node(
    client: Client,
    config: Arc<KubeletConfig>,
    sender: Arc<watch::Sender<Power>>,
    mut power: watch::Receiver<Power>,
    boots: Arc<Mutex<u32>>,
) {
    loop {
        while *power.borrow_and_update() != Power::On {
            if power.changed().await.is_err() {
                return;
            }
        }
        let boot = {
            let mut boots = boots.lock().unwrap_or_else(|e| e.into_inner());
            *boots += 1;
            *boots
        };
        report_node(&client, &config, Power::On, boot).await;
        let state = run_pods(&client, &config, &sender, &mut power).await;
        report_node(&client, &config, state, boot).await;
    }
}

/// Writes the node's Ready condition (the real node lifecycle controller marks a silent node
/// Unknown after 40s; the simulation does it at once).
pub(super) async fn report_node(client: &Client, config: &KubeletConfig, power: Power, boot: u32) {
    let (status, reason, message) = match power {
        Power::On => ("True", "KubeletReady", "simulated kubelet is posting ready status"),
        Power::Rebooting => ("False", "KubeletNotReady", "the node is rebooting"),
        Power::Lost => ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
    };
    let now = Time(Timestamp::now());
    let patch = serde_json::json!({"status": {
        "conditions": [{"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "addresses": [{"type": "InternalIP", "address": config.node_ip}, {"type": "Hostname", "address": config.node}],
        "nodeInfo": {"bootID": format!("{}-boot-{boot}", config.node)},
    }});
    let nodes: Api<Node> = Api::all(client.clone());
    for _ in 0..50 {
        if nodes.patch_status(&config.node, &PatchParams::default(), &Patch::Strategic(&patch)).await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
