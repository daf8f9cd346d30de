//! The pod workers: the pods bound to this node, each run by a worker until it is deleted
//! (stopped gracefully) or the power goes (killed at once).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::*;
use super::power::*;
use super::supervisor::*;

/// A pod being run; dropping it kills its containers at once (power off).
pub(super) struct PodWorker {
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: Option<JoinHandle<()>>,
}

impl Drop for PodWorker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Runs the node's pods until the power changes; returns the new power state.
pub(super) async fn run_pods(
    client: &Client,
    config: &Arc<KubeletConfig>,
    sender: &Arc<watch::Sender<Power>>,
    power: &mut watch::Receiver<Power>,
) -> Power {
    let api: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={}", config.node);
    let mut events = watcher(api, watcher::Config::default().fields(&selector)).default_backoff().boxed();
    let mut workers: HashMap<String, PodWorker> = HashMap::new();
    let mut stopping: Vec<JoinHandle<()>> = Vec::new();
    let mut listed: HashSet<String> = HashSet::new();
    // Pods being deleted: their containers are stopped, then the pod object is removed.
    let mut finalizing: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let reboot_request = config.test_store().join(REBOOT_REQUEST);
    loop {
        tokio::select! {
            changed = power.changed() => {
                let now = if changed.is_err() { Power::Lost } else { *power.borrow_and_update() };
                if now != Power::On {
                    // Power off: containers die with the node, no goodbye.
                    drop(workers);
                    for task in stopping {
                        task.abort();
                    }
                    return now;
                }
            }
            _ = tick.tick() => {
                stopping.retain(|t| !t.is_finished());
                if std::fs::remove_file(&reboot_request).is_ok() {
                    reboot(sender, config.reboot_downtime);
                }
            }
            event = events.next() => match event {
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitApply(pod))) => {
                    listed.insert(pod.uid().unwrap_or_default());
                    sync_pod(client, config, &mut workers, &mut stopping, &mut finalizing, pod);
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    let gone: Vec<String> = workers.keys().filter(|uid| !listed.contains(*uid)).cloned().collect();
                    for uid in gone {
                        stop_gracefully(&mut workers, &mut stopping, &uid);
                    }
                }
                Some(Ok(watcher::Event::Apply(pod))) => {
                    sync_pod(client, config, &mut workers, &mut stopping, &mut finalizing, pod);
                }
                Some(Ok(watcher::Event::Delete(pod))) => {
                    let uid = pod.uid().unwrap_or_default();
                    finalizing.remove(&uid);
                    stop_gracefully(&mut workers, &mut stopping, &uid);
                }
                Some(Err(_)) => {}
                None => return Power::Lost,
            }
        }
    }
}

pub(super) fn sync_pod(
    client: &Client,
    config: &Arc<KubeletConfig>,
    workers: &mut HashMap<String, PodWorker>,
    stopping: &mut Vec<JoinHandle<()>>,
    finalizing: &mut HashSet<String>,
    pod: Pod,
) {
    let uid = pod.uid().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        if finalizing.insert(uid.clone()) {
            stopping.push(finalize(client.clone(), workers.remove(&uid), &pod));
        }
        return;
    }
    if workers.contains_key(&uid) {
        return;
    }
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run_pod(client.clone(), config.clone(), pod, stopped));
    workers.insert(uid, PodWorker { stop, task: Some(task) });
}

pub(super) fn stop_gracefully(
    workers: &mut HashMap<String, PodWorker>,
    stopping: &mut Vec<JoinHandle<()>>,
    uid: &str,
) {
    if let Some(mut worker) = workers.remove(uid) {
        worker.stop.send_replace(true);
        if let Some(task) = worker.task.take() {
            stopping.push(task);
        }
    }
}

/// A pod being deleted, as a kubelet ends it: its containers stopped within their grace period,
/// then the pod object deleted for good (grace 0, this pod's uid only). Until then the API
/// server keeps it, Terminating.
fn finalize(client: Client, worker: Option<PodWorker>, pod: &Pod) -> JoinHandle<()> {
    let (namespace, name, uid) = (pod.namespace().unwrap_or_default(), pod.name_any(), pod.uid());
    tokio::spawn(async move {
        // Dropping this task (power off) drops the worker, which kills the containers.
        if let Some(mut worker) = worker {
            worker.stop.send_replace(true);
            if let Some(task) = worker.task.as_mut() {
                let _ = task.await;
            }
        }
        let pods: Api<Pod> = Api::namespaced(client, &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid, resource_version: None }),
            ..DeleteParams::default()
        };
        // Gone already (404) or replaced by a pod of the same name (409): nothing to do.
        let _ = pods.delete(&name, &params).await;
    })
}
