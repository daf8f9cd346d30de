//! hostprocess-operator: reconciles HostTasks into HostProcess DaemonSets rolled out in waves
//! across Windows nodes, and HostGroups into per-node setup pods. `run` wires the watches and the
//! two controllers; the decisions live in `hosttask::{build, rollout, status}` and
//! `hostgroup::{build, plan, status}`.

pub mod admin;
pub mod cache;
pub mod conditions;
pub mod context;
pub mod events;
pub mod finalizer;
pub mod hashing;
pub mod hostgroup;
pub mod hostprocess_pod;
pub mod hosttask;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod permissions;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hostprocess_crds::{HostGroup, HostTask};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use cache::CachedPod;
pub use context::{Config, Context};

/// What the operator shares with its admin server and how it runs alongside other replicas.
#[derive(Debug, Default)]
pub struct Runtime {
    pub health: Arc<admin::Health>,
    pub metrics: Arc<metrics::Metrics>,
    /// Act only while holding this lease (`None`: a single replica, always acting).
    pub leader: Option<leader::LeaderElection>,
}

/// How long a stopping operator waits for the reconciles it runs to finish.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a stopping operator waits for the statuses it decided to be written.
const STATUS_FLUSH: Duration = Duration::from_secs(5);

/// Why `run` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Shutdown,
    /// The lease was lost: the process should exit so it restarts as a standby.
    LostLease,
}

async fn reconcile_task(task: Arc<HostTask>, ctx: Arc<Context>) -> Result<Action, hosttask::Error> {
    let started = std::time::Instant::now();
    let result = hosttask::reconcile(task, ctx.clone()).await;
    ctx.metrics.reconciled("hosttask", started.elapsed());
    result
}

async fn reconcile_group(group: Arc<HostGroup>, ctx: Arc<Context>) -> Result<Action, hostgroup::Error> {
    let started = std::time::Instant::now();
    let result = hostgroup::reconcile(group, ctx.clone()).await;
    ctx.metrics.reconciled("hostgroup", started.elapsed());
    result
}

fn group_error_policy(group: Arc<HostGroup>, error: &hostgroup::Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed("hostgroup", error.metric_label());
    warn!(hostgroup = %group.name_any(), step = error.metric_label(), %error, "reconcile failed");
    Action::requeue(Duration::from_millis(5_000 + jitter(&group.name_any()) * 5))
}

/// 0..1000, stable per name: spreads retries so many failing objects do not retry in lockstep.
fn jitter(name: &str) -> u64 {
    u64::from(name.bytes().fold(0u8, |a, b| a.wrapping_add(b))) * 1000 / 256
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Waits until `ready` gives something, looking again each time `wake` is notified (registered
/// before each look, so a notification that comes meanwhile is not missed).
pub(crate) async fn when_notified<T>(wake: &tokio::sync::Notify, mut ready: impl FnMut() -> Option<T>) -> T {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(value) = ready() {
            return value;
        }
        notified.await;
    }
}

/// A call's outcome where an object that is gone already leaves nothing to do (a delete, a label
/// on a node that left): controller-runtime's `IgnoreNotFound`.
pub(crate) fn ignore_not_found<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.code != 404 => Err(kube::Error::Api(status)),
        Err(e) if !matches!(e, kube::Error::Api(_)) => Err(e),
        _ => Ok(()),
    }
}

/// A hash of what a HostTask reconcile acts on: all of the task but its status and the
/// bookkeeping every write changes (resourceVersion, managedFields).
fn acted_on(task: &HostTask) -> Option<u64> {
    let meta = &task.metadata;
    let mut hasher = std::hash::DefaultHasher::new();
    (&meta.uid, meta.generation, meta.deletion_timestamp.is_some(), &meta.finalizers).hash(&mut hasher);
    (&meta.labels, &meta.annotations).hash(&mut hasher);
    Some(hasher.finish())
}

fn error_policy(task: Arc<HostTask>, error: &hosttask::Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed("hosttask", error.metric_label());
    warn!(task = %task.name_any(), step = error.metric_label(), %error, "reconcile failed");
    Action::requeue(Duration::from_millis(5_000 + jitter(&task.name_any()) * 5))
}

/// Runs the HostTask and HostGroup controllers until `shutdown` completes (or the lease is lost).
/// `client` should have kube's default 429 retry off (`Config::default_retry = false`, as the
/// binary sets it), else an eviction a PodDisruptionBudget refuses holds a reconcile.
pub async fn run(
    client: Client,
    config: Config,
    runtime: Runtime,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Stopped {
    let namespace = config.namespace.clone();
    let task_pods_selected = watcher::Config::default().labels(&labels::task_selector());
    let setup_pods_selected = watcher::Config::default().labels(&labels::setup_selector());
    let setup_api = Api::<CachedPod>::namespaced(client.clone(), &config.group_namespace);

    // Caches: task pods (what the rollout reads of them), setup pods (their statuses are the
    // results), DaemonSets, nodes (metadata only) and HostGroups (a task running as one needs it).
    let pods = Arc::new(hosttask::pods::PodIndex::default());
    let pod_events =
        watcher(scoped::<CachedPod>(&client, namespace.as_deref()), task_pods_selected).default_backoff();
    let (pod_changed, pod_changes) = futures::channel::mpsc::unbounded::<hosttask::pods::Changed>();
    let (daemon_sets, daemon_set_writer) = reflector::store();
    let daemon_set_stream = reflector::reflector(
        daemon_set_writer,
        watcher(
            scoped::<DaemonSet>(&client, namespace.as_deref()),
            watcher::Config::default().labels(&labels::managed_selector()),
        )
        .modify(|ds| ds.metadata.managed_fields = None),
    )
    .default_backoff()
    .touched_objects();
    let (setup_pods, setup_writer) = reflector::store();
    let setup_stream =
        reflector::reflector(setup_writer, watcher(setup_api, setup_pods_selected).modify(cache::strip_pod))
            .default_backoff()
            .touched_objects();
    let (groups, group_writer) = reflector::store();
    let group_stream = reflector::reflector(
        group_writer,
        watcher(Api::<HostGroup>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    // Namespaces (metadata only): a Pod Security label change re-evaluates blocked tasks.
    let (namespaces, namespace_writer) = reflector::store();
    let (namespace_tx, namespace_changes) = futures::channel::mpsc::unbounded::<()>();
    let (group_namespace_tx, group_namespace_changes) = futures::channel::mpsc::unbounded::<()>();
    let mut namespace_labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let drive_namespaces = reflector::reflector(
        namespace_writer,
        watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), watcher::Config::default())
            .modify(cache::names_and_labels),
    )
    .default_backoff()
    .touched_objects()
    .for_each(move |ns| {
        if let Ok(ns) = ns {
            let labels = ns.labels().clone();
            if namespace_labels.insert(ns.name_any(), labels.clone()).is_some_and(|before| before != labels) {
                let _ = namespace_tx.unbounded_send(());
                let _ = group_namespace_tx.unbounded_send(());
            }
        }
        futures::future::ready(())
    });
    let (nodes, node_writer) = reflector::store();
    let node_events = reflector::reflector(
        node_writer,
        watcher(Api::<PartialObjectMeta<Node>>::all(client.clone()), watcher::Config::default())
            .modify(cache::names_and_labels),
    )
    .default_backoff();
    // Only a node's arrival, departure or label change matters to targeting, not heartbeats.
    // The node stream is driven on its own (the caches must fill before the controllers start)
    // and tells both controllers through channels.
    let (node_tx, node_changes) = futures::channel::mpsc::unbounded::<()>();
    let (group_node_tx, group_node_changes) = futures::channel::mpsc::unbounded::<()>();
    // Per node, a hash of the labels targeting reads (a copy of them all would double the
    // node cache); the operator's own admission labels change with every wave and are left out.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let drive_nodes = node_events.for_each(move |event| {
        let changed = match event {
            Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                let mut hasher = std::hash::DefaultHasher::new();
                node.labels()
                    .iter()
                    .filter(|(key, _)| !labels::is_admission_label(key))
                    .for_each(|l| l.hash(&mut hasher));
                let targeting = hasher.finish();
                seen.insert(node.name_any(), targeting) != Some(targeting)
            }
            Ok(watcher::Event::Delete(node)) => seen.remove(&node.name_any()).is_some(),
            Ok(watcher::Event::InitDone) => true,
            _ => false,
        };
        if changed {
            let _ = node_tx.unbounded_send(());
            let _ = group_node_tx.unbounded_send(());
        }
        futures::future::ready(())
    });
    // The setup pods' one watch tells the HostGroup controller of every change, once the cache
    // shows it (a second watch of its own could deliver it first: the reconcile would read the pod
    // as it was, then wait minutes for the next change). Tasks that run as a HostGroup start where
    // it is provisioned: it tells the task controller when a setup pod succeeds or goes, or a
    // HostGroup changes.
    let (setup_changed, setup_changes) = futures::channel::mpsc::unbounded::<ObjectRef<HostGroup>>();
    let (provisioning_tx, provisioning_changes) = futures::channel::mpsc::unbounded::<()>();
    let mut succeeded: HashMap<String, bool> = HashMap::new();
    let tx = provisioning_tx.clone();
    let drive_setup_pods = setup_stream.for_each(move |pod| {
        if let Ok(pod) = pod {
            if let Some(group) = pod.label(labels::HOST_GROUP) {
                let _ = setup_changed.unbounded_send(ObjectRef::new(group));
            }
            let done = pod.phase() == Some("Succeeded") && pod.metadata.deletion_timestamp.is_none();
            if succeeded.insert(pod.uid().unwrap_or_default(), done).unwrap_or(false) != done {
                let _ = tx.unbounded_send(());
            }
        }
        futures::future::ready(())
    });
    let mut generations: HashMap<String, (Option<i64>, bool)> = HashMap::new();
    let drive_groups = group_stream.for_each(move |group| {
        if let Ok(group) = group {
            let now = (group.metadata.generation, group.metadata.deletion_timestamp.is_some());
            if generations.insert(group.name_any(), now) != Some(now) {
                let _ = provisioning_tx.unbounded_send(());
            }
        }
        futures::future::ready(())
    });

    let reporter =
        Reporter { controller: "hostprocess-operator".into(), instance: std::env::var("POD_NAME").ok() };
    let (events, write_events) =
        events::Events::new(Recorder::new(client.clone(), reporter), runtime.metrics.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        config,
        daemon_sets: daemon_sets.clone(),
        daemon_set_writes: cache::OwnWrites::default(),
        pods: pods.clone(),
        setup_pods: setup_pods.clone(),
        groups: groups.clone(),
        namespaces: namespaces.clone(),
        nodes: nodes.clone(),
        admissions: hosttask::admission::Written::default(),
        node_labels: hosttask::admission::Queue::default(),
        statuses: hosttask::status_writes::StatusWrites::default(),
        script_maps: hosttask::ScriptMaps::default(),
        events,
        metrics: runtime.metrics.clone(),
    });
    // A refused label write: the tasks decide again (the writer waits first, as a failed
    // reconcile would).
    let (refused_tx, refused_writes) = futures::channel::mpsc::unbounded::<()>();
    let write_node_labels = {
        let (client, ctx) = (client.clone(), ctx.clone());
        async move {
            let refused = || {
                let _ = refused_tx.unbounded_send(());
            };
            hosttask::admission::run_writers(client, &ctx.node_labels, &ctx.admissions, &ctx.metrics, refused)
                .await
        }
    };
    let write_statuses = {
        let (client, ctx) = (client.clone(), ctx.clone());
        async move { hosttask::status_writes::run_writers(client, &ctx.statuses, &ctx.metrics).await }
    };
    tokio::pin!(write_statuses);
    let flushing = ctx.clone();
    // The controllers stop when told to: on shutdown, or when the lease is lost. Everything
    // below runs inside this future (no detached task), so dropping it stops it all.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let lost_lease = std::sync::atomic::AtomicBool::new(false);
    // The tasks: every change is cached; a change of the status alone (the operator's own writes)
    // reconciles nothing.
    let (task_store, task_writer) = reflector::store();
    let task_changes = watcher(scoped::<HostTask>(&client, namespace.as_deref()), watcher::Config::default())
        .default_backoff()
        .reflect(task_writer)
        .applied_objects()
        .predicate_filter(acted_on, kube::runtime::PredicateConfig::default());
    // The DaemonSets: the cache above (read by reconciles) and the controller's own watch (a
    // change of a task's DaemonSet reconciles the task); two watches of a few small objects.
    let concurrency = controller::Config::default().concurrency(ctx.config.concurrency);
    let task_controller = Controller::for_stream(task_changes, task_store)
        .with_config(concurrency.clone())
        .owns(
            scoped::<DaemonSet>(&client, namespace.as_deref()),
            watcher::Config::default().labels(&labels::managed_selector()),
        )
        // The pod index's one watch says which tasks' pods changed as the rollout reads them.
        .reconcile_on(hosttask::pods::paced(pod_changes, hosttask::pods::PACE))
        .reconcile_all_on(futures::stream::select(
            futures::stream::select(node_changes, provisioning_changes),
            futures::stream::select(namespace_changes, refused_writes),
        ))
        .graceful_shutdown_on(stopped(stop_rx.clone()));
    let group_controller = Controller::new(Api::<HostGroup>::all(client.clone()), watcher::Config::default())
        .with_config(concurrency)
        .reconcile_on(setup_changes)
        .reconcile_all_on(futures::stream::select(group_node_changes, group_namespace_changes))
        .graceful_shutdown_on(stopped(stop_rx.clone()));

    // Decide nothing before the caches hold what the cluster holds.
    let drive_pods = pods.follow(pod_events, |task| {
        let _ = pod_changed.unbounded_send(task);
    });
    let drive_daemon_sets = daemon_set_stream.for_each(|_| futures::future::ready(()));
    let health = runtime.health.clone();
    let leader = runtime.leader.clone();
    let run = async {
        let able_to_act = async {
            let ((), s, g, n, ns, d) = futures::join!(
                pods.wait_until_ready(),
                setup_pods.wait_until_ready(),
                groups.wait_until_ready(),
                nodes.wait_until_ready(),
                namespaces.wait_until_ready(),
                daemon_sets.wait_until_ready()
            );
            if s.is_err() || g.is_err() || n.is_err() || ns.is_err() || d.is_err() {
                warn!("the caches were dropped before they were ready");
                return false;
            }
            // Ready means able to act: a standby with synced caches can take over at once.
            health.set_ready(true);
            if let Some(leader) = &leader {
                info!("caches ready; waiting for the lease");
                leader.acquire().await;
            }
            true
        };
        // A standby (or an operator still filling its caches) told to stop has nothing to finish.
        let acting = tokio::select! {
            acting = able_to_act => acting,
            () = stopped(stop_rx.clone()) => false,
        };
        if !acting {
            return;
        }
        info!("caches ready; reconciling HostTasks and HostGroups");
        let tasks = task_controller.run(reconcile_task, error_policy, ctx.clone()).for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile error");
            }
            futures::future::ready(())
        });
        let groups = group_controller.run(reconcile_group, group_error_policy, ctx).for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile error");
            }
            futures::future::ready(())
        });
        let reconciling = futures::future::join(tasks, groups);
        let renewing = async {
            if let Some(leader) = &leader {
                leader.hold().await;
                lost_lease.store(true, std::sync::atomic::Ordering::SeqCst);
                stop_tx.send_replace(true);
            }
            // Keep waiting: the controller finishes its reconciles, then `reconciling` ends.
            futures::future::pending::<()>().await;
        };
        // A controller told to stop before its own watch has listed never stops (kube-runtime
        // 5.0's runner waits for its store, whose watch the stop has ended): the reconciles get
        // a while to finish, then the controllers are dropped.
        let deadline = async {
            stopped(stop_rx).await;
            tokio::time::sleep(STOP_GRACE).await;
            warn!(grace = ?STOP_GRACE, "the controllers did not stop in time; stopping them");
        };
        tokio::select! {
            _ = reconciling => {}
            _ = renewing => {}
            _ = deadline => {}
        }
    };
    let signal_shutdown = async {
        shutdown.await;
        info!("stopping: the controllers finish the reconciles they run");
        stop_tx.send_replace(true);
        futures::future::pending::<()>().await;
    };
    tokio::select! {
        _ = drive_pods => {}
        _ = drive_daemon_sets => {}
        _ = drive_setup_pods => {}
        _ = drive_groups => {}
        _ = drive_namespaces => {}
        _ = drive_nodes => {}
        _ = write_events => {}
        _ = write_node_labels => {}
        _ = &mut write_statuses => {}
        _ = run => {}
        _ = signal_shutdown => {}
    }
    if lost_lease.load(std::sync::atomic::Ordering::SeqCst) {
        return Stopped::LostLease;
    }
    info!("controllers stopped");
    // Still the leader: the statuses decided last are written before the lease goes (a while at
    // most; a restarted operator decides them again anyway).
    let flushed = tokio::time::timeout(STATUS_FLUSH, async {
        tokio::select! {
            _ = &mut write_statuses => {}
            _ = flushing.statuses.idle() => {}
        }
    });
    if flushed.await.is_err() {
        warn!("stopping with HostTask statuses not yet written");
    }
    // A clean stop hands the lease over at once instead of after its duration.
    if let Some(leader) = &runtime.leader
        && let Err(e) = leader.release().await
    {
        warn!(error = %e, "cannot release the lease");
    }
    Stopped::Shutdown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_write_reconciles_nothing_but_a_spec_finalizer_or_deletion_does() {
        let mut task: HostTask = serde_json::from_value(serde_json::json!({
            "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
            "metadata": {"name": "patch", "namespace": "ops", "uid": "u", "generation": 1,
                "resourceVersion": "10"},
            "spec": {"script": "exit 0"}}))
        .unwrap_or_else(|e| panic!("task: {e}"));
        let first = acted_on(&task);
        task.status =
            Some(hostprocess_crds::HostTaskStatus { observed_generation: Some(1), ..Default::default() });
        task.metadata.resource_version = Some("11".into());
        assert_eq!(acted_on(&task), first, "the operator's own status write");
        task.metadata.generation = Some(2);
        let spec_changed = acted_on(&task);
        assert_ne!(spec_changed, first, "a spec change");
        task.metadata.finalizers = Some(vec![finalizer::FINALIZER.into()]);
        let finalized = acted_on(&task);
        assert_ne!(finalized, spec_changed, "the finalizer the operator adds before the first label");
        task.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        assert_ne!(acted_on(&task), finalized, "deletion");
    }
}
