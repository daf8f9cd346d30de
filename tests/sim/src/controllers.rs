//! The simulated node-side controllers, run against the real API server: the DaemonSet
//! controller (around the pure decision in `daemonset.rs`). They stop when their task is aborted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::task::JoinHandle;

use crate::daemonset::{self, REVISION_LABEL};

/// How long a created pod may take to show up in the cache before it is created again (the real
/// controller's `ExpectationsTimeout`).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(5 * 60);

struct Ctx {
    client: Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    /// Pods created but not yet seen in the cache, per DaemonSet uid and node.
    expected: Mutex<HashMap<(String, String), Instant>>,
}

impl Ctx {
    fn expected(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Instant>> {
        self.expected.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),
}

/// The DaemonSets whose decision for a node changes when the node goes from `before` to `after`
/// (like the real controller's node handler: a heartbeat or a label no template reads wakes
/// nobody).
fn affected(
    sets: &Store<DaemonSet>,
    before: Option<&Node>,
    after: Option<&Node>,
) -> Vec<ObjectRef<DaemonSet>> {
    sets.state()
        .into_iter()
        .filter(|ds| {
            let Some(spec) = &ds.spec else { return false };
            let fits = |n: Option<&Node>| n.is_some_and(|n| daemonset::node_qualifies(&spec.template, n));
            fits(before) != fits(after)
        })
        .map(|ds| ObjectRef::from_obj(&*ds))
        .collect()
}

/// Starts the DaemonSet controller; abort the handle to stop it.
pub fn spawn_daemonset_controller(client: Client) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (nodes, node_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        let node_api: Api<Node> = Api::all(client.clone());
        let pod_api: Api<Pod> = Api::all(client.clone());
        let ctx = Arc::new(Ctx { client: client.clone(), nodes, pods, expected: Mutex::new(HashMap::new()) });
        let controller = Controller::new(Api::<DaemonSet>::all(client), watcher::Config::default());
        let sets = controller.store();
        // Nodes: one watch feeds the cache and wakes the DaemonSets a change concerns.
        let (wake, woken) = futures::channel::mpsc::unbounded::<ObjectRef<DaemonSet>>();
        let mut seen: HashMap<String, Node> = HashMap::new();
        let node_watch = reflector::reflector(node_writer, watcher(node_api, watcher::Config::default()))
            .default_backoff()
            .for_each(move |event| {
                let (before, after) = match event {
                    Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                        (seen.insert(node.name_any(), node.clone()), Some(node))
                    }
                    Ok(watcher::Event::Delete(node)) => (seen.remove(&node.name_any()), None),
                    _ => (None, None),
                };
                for ds in affected(&sets, before.as_ref(), after.as_ref()) {
                    let _ = wake.unbounded_send(ds);
                }
                futures::future::ready(())
            });
        // Pods: the cache, and a created pod that shows up meets its expectation.
        let watch_ctx = ctx.clone();
        let pod_watch =
            reflector::reflector(pod_writer, watcher(pod_api.clone(), watcher::Config::default()))
                .default_backoff()
                .for_each(move |event| {
                    if let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event {
                        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                        let mut expected = watch_ctx.expected();
                        for owner in pod.owner_references() {
                            expected.remove(&(owner.uid.clone(), node.clone()));
                        }
                    }
                    futures::future::ready(())
                });
        let run = controller
            .owns(pod_api, watcher::Config::default())
            .reconcile_on(woken)
            .run(reconcile, |_, _, _| Action::requeue(Duration::from_millis(500)), ctx)
            .for_each(|_| futures::future::ready(()));
        tokio::join!(node_watch, pod_watch, run);
    })
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    // Like the real controller: a DaemonSet being deleted gets no new pods.
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = ds.uid().unwrap_or_default();
    let namespace = ds.namespace().unwrap_or_default();
    let nodes = ctx.nodes.state();
    let owned: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|o| o.uid == uid && o.controller == Some(true)))
        .collect();
    let plan = daemonset::plan(&ds, &nodes, &owned);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(spec) = &ds.spec else { return Ok(Action::await_change()) };
    let revision = daemonset::revision_hash(&spec.template);
    for node in &plan.create_on {
        let key = (uid.clone(), node.clone());
        {
            let mut expected = ctx.expected();
            if expected.get(&key).is_some_and(|t| t.elapsed() < EXPECTATION_TIMEOUT) {
                continue;
            }
            expected.insert(key.clone(), Instant::now());
        }
        let mut pod = Pod {
            metadata: spec.template.metadata.clone().unwrap_or_default(),
            spec: spec.template.spec.clone(),
            status: None,
        };
        let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(REVISION_LABEL.into(), revision.clone());
        pod.metadata.generate_name = Some(format!("{}-", ds.name_any()));
        pod.metadata.namespace = Some(namespace.clone());
        pod.metadata.owner_references = ds.controller_owner_ref(&()).map(|o| vec![o]);
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(node.clone());
        }
        if let Err(e) = pods.create(&PostParams::default(), &pod).await {
            // No pod is coming: the next attempt need not wait for it.
            ctx.expected().remove(&key);
            return Err(e.into());
        }
    }
    for name in &plan.delete {
        match pods.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if ds.status.as_ref() != Some(&plan.status) {
        let sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &namespace);
        let status = serde_json::json!({"status": plan.status});
        sets.patch_status(&ds.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await?;
    }
    Ok(Action::requeue(Duration::from_secs(30)))
}
