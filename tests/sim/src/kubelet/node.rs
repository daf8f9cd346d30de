//! The node itself: each boot registers the node (once), posts its status with a new boot id,
//! renews its Lease and runs its pods until the power changes. A rebooting node says NotReady
//! first (graceful node shutdown); a lost one just falls silent, and the real node-lifecycle
//! controller marks it unreachable when its Lease runs out.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;

use super::config::*;
use super::pods::*;
use super::power::*;
use crate::nodes::{self, Readiness};

pub(super) async fn run_node(
    client: Client,
    config: Arc<KubeletConfig>,
    control: NodeControl,
    mut power: watch::Receiver<Power>,
) {
    let uid = retry("registering the node", || nodes::register(&client, &config.node)).await;
    loop {
        while *power.borrow_and_update() != Power::On {
            if power.changed().await.is_err() {
                return;
            }
        }
        // A reimage asked for takes place before the new installation boots, once every
        // container of the old one is long gone.
        control.finish_reimage(&config);
        let boot = {
            let mut boots = control.boots.lock().unwrap_or_else(|e| e.into_inner());
            *boots += 1;
            *boots
        };
        // What the executor's test platform reads as the host's boot time.
        let store = config.test_store();
        if std::fs::create_dir_all(&store).is_ok() {
            let now = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            let _ = std::fs::write(store.join(BOOTED_AT), now);
        }
        let boot_id = format!("{}-boot-{boot}", config.node);
        let machine_id = control.machine_id(&config.node);
        let heartbeat = {
            let (client, config, uid, boot_id, machine_id) =
                (client.clone(), config.clone(), uid.clone(), boot_id.clone(), machine_id.clone());
            let mut runtime_ready = control.runtime_ready.subscribe();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(config.lease_renewal);
                let mut posted = None;
                loop {
                    let readiness = if *runtime_ready.borrow_and_update() {
                        Readiness::Ready
                    } else {
                        Readiness::RuntimeDown
                    };
                    if posted != Some(readiness) {
                        retry("posting the node status", || {
                            nodes::post_status(
                                &client,
                                &config.node,
                                &config.node_ip,
                                (&machine_id, &boot_id),
                                readiness,
                            )
                        })
                        .await;
                        posted = Some(readiness);
                    }
                    let _ = nodes::renew_lease(&client, &config.node, &uid).await;
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = runtime_ready.changed() => {}
                    }
                }
            })
        };
        let state = run_pods(&client, &config, &control.power, &mut power).await;
        heartbeat.abort();
        if state == Power::Rebooting {
            let status = (machine_id.as_str(), boot_id.as_str());
            let _ =
                nodes::post_status(&client, &config.node, &config.node_ip, status, Readiness::ShuttingDown)
                    .await;
        }
    }
}

/// Calls `write` until it succeeds, as a kubelet keeps trying to reach its API server.
async fn retry<T, F, Fut>(what: &str, mut write: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut logged = false;
    loop {
        match write().await {
            Ok(value) => return value,
            Err(e) => {
                if !logged {
                    eprintln!("simulated kubelet: {what}: {e} (retrying)");
                    logged = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
