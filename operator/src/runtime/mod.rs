//! The wiring: the watches that fill the caches, the triggers that decide what reconciles, the
//! two controllers, the writers behind them, the lease and the stop. Nothing here decides a
//! rollout; `run` starts everything and stops it in order.

pub(crate) mod admin;
pub(crate) mod leader;
pub(crate) mod shutdown;
pub(crate) mod triggers;
pub(crate) mod watches;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use hostprocess_crds::HostGroup;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use tracing::{info, warn};

use crate::context::{Config, Context};
use crate::events::Events;
use crate::metrics::Metrics;
use crate::state::Caches;
use crate::writes::Writes;
use crate::{hostgroup, hosttask, labels};
use shutdown::{STATUS_FLUSH, Stop};
use triggers::Broadcast;

/// What the operator shares with its admin server and how it runs alongside other replicas.
#[derive(Debug, Default)]
pub struct Runtime {
    pub health: Arc<admin::Health>,
    pub metrics: Arc<Metrics>,
    /// Act only while holding this lease (`None`: a single replica, always acting).
    pub leader: Option<leader::LeaderElection>,
}

/// Why `run` returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    Shutdown,
    /// The lease was lost: the process should exit so it restarts as a standby.
    LostLease,
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
    // With a lease, every write passes the leader's fence: none leaves after its renew deadline.
    let client = match &runtime.leader {
        Some(leader) => leader.fence().guard(client),
        None => client,
    };
    let namespace = config.namespace.clone();
    let (mut nodes_changed, mut namespaces_changed, mut provisioning, mut grants_changed) =
        (Broadcast::default(), Broadcast::default(), Broadcast::default(), Broadcast::default());
    let task_triggers = futures::stream::select_all([
        nodes_changed.subscribe(),
        namespaces_changed.subscribe(),
        provisioning.subscribe(),
        grants_changed.subscribe(),
    ]);
    let group_triggers = futures::stream::select(nodes_changed.subscribe(), namespaces_changed.subscribe());
    let (setup_changed, setup_changes) = triggers::Pending::<ObjectRef<HostGroup>>::new();

    let (task_store, task_changes) = watches::tasks(&client, namespace.as_deref());
    let (task_pods, drive_task_pods, pod_changes) = watches::task_pods(&client, namespace.as_deref());
    let (daemon_sets, drive_daemon_sets) = watches::daemon_sets(&client, namespace.as_deref());
    let (setup_pods, drive_setup_pods) =
        watches::setup_pods(&client, &config.group_namespace, setup_changed, provisioning.clone());
    let (groups, drive_groups) = watches::groups(&client, provisioning);
    let (grants, drive_grants) = watches::grants(&client, grants_changed);
    let (namespaces, drive_namespaces) = watches::namespaces(&client, namespaces_changed);
    let (nodes, drive_nodes) = watches::nodes(&client, nodes_changed);
    let cache = Caches { daemon_sets, task_pods, setup_pods, grants, groups, namespaces, nodes };

    let reporter =
        Reporter { controller: "hostprocess-operator".into(), instance: std::env::var("POD_NAME").ok() };
    let (events, write_events) =
        Events::new(Recorder::new(client.clone(), reporter), runtime.metrics.clone());
    let metrics = runtime.metrics.clone();
    let ctx = Arc::new(Context {
        client: client.clone(),
        config,
        cache,
        writes: Writes::default(),
        events,
        metrics,
        backoff: Default::default(),
        revision_key: Default::default(),
    });

    let reads = Arc::downgrade(&ctx);
    ctx.metrics.count_pending_writes_with(Box::new(move || {
        reads.upgrade().map(|ctx| ctx.pending_writes()).unwrap_or_default()
    }));

    // A refused label write: the tasks decide again (the writer waits first, as a failed
    // reconcile would).
    let (refused, refused_writes) = triggers::Pending::<()>::new();
    let write_node_labels =
        ctx.writes.node_labels.run_writers(client.clone(), &ctx.metrics, || refused.send(()));
    let write_statuses = ctx.writes.task_status.run_writers(client.clone(), &ctx.metrics);
    tokio::pin!(write_statuses);

    let stop = Stop::new();
    let concurrency = controller::Config::default().concurrency(ctx.config.concurrency);
    let task_controller = Controller::for_stream(task_changes, task_store)
        .with_config(concurrency.clone())
        .owns(
            watches::scoped::<DaemonSet>(&client, namespace.as_deref()),
            kube::runtime::watcher::Config::default().labels(&labels::managed_selector()),
        )
        .reconcile_on(triggers::paced(pod_changes, {
            let ctx = ctx.clone();
            move |task| {
                triggers::pace(
                    ctx.cache.task_pods.count(task.namespace.as_deref().unwrap_or_default(), &task.name),
                )
            }
        }))
        // Nodes another task of its concurrency group let go.
        .reconcile_on(ctx.writes.exclusive.woken())
        .reconcile_all_on(futures::stream::select(task_triggers, refused_writes))
        .graceful_shutdown_on(stop.stopped());
    let group_controller = Controller::new(Api::<HostGroup>::all(client.clone()), Default::default())
        .with_config(concurrency)
        .reconcile_on(setup_changes)
        .reconcile_all_on(group_triggers)
        .graceful_shutdown_on(stop.stopped());
    let controllers = async {
        let tasks = task_controller.run(reconcile_task, hosttask::error_policy, ctx.clone());
        let groups = group_controller.run(reconcile_group, hostgroup::error_policy, ctx.clone());
        futures::future::join(drain(tasks), drain(groups)).await;
    };

    let lost_lease = AtomicBool::new(false);
    let act = acting(&ctx.cache, &runtime, &stop, &lost_lease, controllers);
    let signal_shutdown = async {
        shutdown.await;
        info!("stopping: the controllers finish the reconciles they run");
        stop.stop();
        futures::future::pending::<()>().await;
    };
    tokio::select! {
        () = drive_task_pods => {}
        () = drive_daemon_sets => {}
        () = drive_setup_pods => {}
        () = drive_groups => {}
        () = drive_grants => {}
        () = drive_namespaces => {}
        () = drive_nodes => {}
        () = write_events => {}
        () = write_node_labels => {}
        () = &mut write_statuses => {}
        () = act => {}
        () = signal_shutdown => {}
    }
    if lost_lease.load(Ordering::SeqCst) {
        return Stopped::LostLease;
    }
    info!("controllers stopped");
    // Still the leader: the statuses decided last are written before the lease goes (a while at
    // most; a restarted operator decides them again anyway).
    let flushed = tokio::time::timeout(STATUS_FLUSH, async {
        tokio::select! {
            () = &mut write_statuses => {}
            () = ctx.writes.task_status.idle() => {}
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

/// Waits until the caches hold what the cluster holds and the lease is held, then runs the
/// controllers until they stop, the lease is lost (`lost_lease` set: returns at once) or the stop
/// deadline passes.
/// A standby (or an operator still filling its caches) told to stop has nothing to finish.
async fn acting(
    cache: &Caches,
    runtime: &Runtime,
    stop: &Stop,
    lost_lease: &AtomicBool,
    controllers: impl Future<Output = ()>,
) {
    let able_to_act = async {
        if !cache_ready(cache).await {
            warn!("the caches were dropped before they were ready");
            return false;
        }
        // Ready means able to act: a standby with synced caches can take over at once.
        runtime.health.set_ready(true);
        if let Some(leader) = &runtime.leader {
            info!("caches ready; waiting for the lease");
            leader.acquire().await;
        }
        true
    };
    let acting = tokio::select! {
        acting = able_to_act => acting,
        () = stop.stopped() => false,
    };
    if !acting {
        return;
    }
    info!("caches ready; reconciling HostTasks and HostGroups");
    let renewing = async {
        match &runtime.leader {
            // The lease is gone (and the fence closed): nothing is left to finish, since no
            // write would pass; the controllers are dropped now.
            Some(leader) => {
                leader.hold().await;
                lost_lease.store(true, Ordering::SeqCst);
                stop.stop();
            }
            None => futures::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = controllers => {}
        () = renewing => {}
        () = stop.deadline() => {}
    }
}

/// Runs a controller's results to the end; a failed reconcile was logged by its error policy.
async fn drain<T, E: std::fmt::Display>(results: impl futures::Stream<Item = Result<T, E>>) {
    results
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile error");
            }
            futures::future::ready(())
        })
        .await;
}

/// Whether every cache listed once (`false`: a store was dropped first).
async fn cache_ready(cache: &Caches) -> bool {
    let ((), s, gr, g, n, ns, d) = futures::join!(
        cache.task_pods.wait_until_ready(),
        cache.setup_pods.wait_until_ready(),
        cache.grants.wait_until_ready(),
        cache.groups.wait_until_ready(),
        cache.nodes.wait_until_ready(),
        cache.namespaces.wait_until_ready(),
        cache.daemon_sets.wait_until_ready()
    );
    s.is_ok() && gr.is_ok() && g.is_ok() && n.is_ok() && ns.is_ok() && d.is_ok()
}

async fn reconcile_task(
    task: Arc<hostprocess_crds::HostTask>,
    ctx: Arc<Context>,
) -> Result<Action, hosttask::error::Error> {
    let key = hosttask::backoff_key(&task);
    timed(&ctx, "hosttask", &key, hosttask::reconcile(task, ctx.clone())).await
}

async fn reconcile_group(
    group: Arc<HostGroup>,
    ctx: Arc<Context>,
) -> Result<Action, hostgroup::error::Error> {
    let key = hostgroup::backoff_key(&group);
    timed(&ctx, "hostgroup", &key, hostgroup::reconcile(group, ctx.clone())).await
}

/// Runs a reconcile, records how long it took, and forgets the object's failures once it worked.
async fn timed<T, E>(
    ctx: &Context,
    resource: &str,
    key: &str,
    reconcile: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = reconcile.await;
    ctx.metrics.reconciled(resource, started.elapsed());
    if result.is_ok() {
        ctx.backoff.succeeded(key);
    }
    result
}
