//! The operator's watches, one function each. Every watch is label-selected or metadata-only
//! where it can be, so memory follows what the operator manages, not the size of the cluster.
//! Each function returns what the watch fills (a store or the pod index) and the future that
//! drives it; the triggers it feeds are passed in.

use std::future::Future;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use hostprocess_crds::{HostGroup, HostTask, HostTaskGrant};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use super::triggers::{
    self, Broadcast, GroupGeneration, NamespaceLabels, NodeTargeting, Pending, SetupSucceeded,
};
use crate::labels;
use crate::state::cached_pod::{self, CachedPod};
use crate::state::task_pods::{Changed, PodIndex};

/// An API for `K` in `namespace`, or in every namespace.
pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// HostTasks: every change is cached; only a change a reconcile acts on passes (`acted_on`).
pub(crate) fn tasks(
    client: &Client,
    namespace: Option<&str>,
) -> (Store<HostTask>, impl Stream<Item = Result<HostTask, watcher::Error>> + Send + 'static) {
    let (store, writer) = reflector::store();
    let changes = watcher(scoped::<HostTask>(client, namespace), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(triggers::acted_on, kube::runtime::PredicateConfig::default());
    (store, changes)
}

/// Task pods, into the pod index; each task whose pods changed as its rollout reads them is
/// sent on the returned stream.
pub(crate) fn task_pods(
    client: &Client,
    namespace: Option<&str>,
) -> (Arc<PodIndex>, impl Future<Output = ()> + Send + 'static, impl Stream<Item = Changed> + Send + 'static)
{
    let index = Arc::new(PodIndex::default());
    let selected = watcher::Config::default().labels(&labels::task_selector());
    let events = watcher(scoped::<CachedPod>(client, namespace), selected).default_backoff();
    let (changed, changes) = Pending::<Changed>::new();
    let follow = index.clone();
    let drive = async move {
        follow.follow(events, |task| changed.send(task)).await;
    };
    (index, drive, changes)
}

/// The tasks' DaemonSets (the operator's, by label), without their managed fields.
pub(crate) fn daemon_sets(
    client: &Client,
    namespace: Option<&str>,
) -> (Store<DaemonSet>, impl Future<Output = ()> + Send + 'static) {
    let (store, writer) = reflector::store();
    let selected = watcher::Config::default().labels(&labels::managed_selector());
    let drive = reflector::reflector(
        writer,
        watcher(scoped::<DaemonSet>(client, namespace), selected)
            .modify(|ds| ds.metadata.managed_fields = None),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|_| futures::future::ready(()));
    (store, drive)
}

/// HostGroup setup pods in `namespace`, packed (`strip_pod`). Every change is sent to the
/// HostGroup controller once the cache shows it; a success (or a succeeded pod going) tells the
/// tasks through `provisioning`.
pub(crate) fn setup_pods(
    client: &Client,
    namespace: &str,
    setup_changed: Pending<ObjectRef<HostGroup>>,
    provisioning: Broadcast,
) -> (Store<CachedPod>, impl Future<Output = ()> + Send + 'static) {
    let (store, writer) = reflector::store();
    let selected = watcher::Config::default().labels(&labels::setup_selector());
    let api = Api::<CachedPod>::namespaced(client.clone(), namespace);
    let mut succeeded = SetupSucceeded::default();
    let drive = reflector::reflector(writer, watcher(api, selected).modify(cached_pod::strip_pod))
        .default_backoff()
        .for_each(move |event| {
            if let Ok(event) = event {
                if let Some(group) = triggers::object_of(&event).and_then(|pod| pod.label(labels::HOST_GROUP))
                {
                    setup_changed.send(ObjectRef::new(group));
                }
                if succeeded.changed(&event) {
                    provisioning.send();
                }
            }
            futures::future::ready(())
        });
    (store, drive)
}

/// HostGroups: a new generation or a deletion tells the tasks through `provisioning`.
pub(crate) fn groups(
    client: &Client,
    provisioning: Broadcast,
) -> (Store<HostGroup>, impl Future<Output = ()> + Send + 'static) {
    let (store, writer) = reflector::store();
    let mut generations = GroupGeneration::default();
    let drive = reflector::reflector(
        writer,
        watcher(Api::<HostGroup>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .for_each(move |event| {
        if let Ok(event) = event
            && generations.changed(&event)
        {
            provisioning.send();
        }
        futures::future::ready(())
    });
    (store, drive)
}

/// HostTaskGrants (a few cluster-scoped objects): any change tells `changed`, since it may
/// enable, restrict or stop any task of its namespace.
pub(crate) fn grants(
    client: &Client,
    changed: Broadcast,
) -> (Store<HostTaskGrant>, impl Future<Output = ()> + Send + 'static) {
    let (store, writer) = reflector::store();
    let drive = reflector::reflector(
        writer,
        watcher(Api::<HostTaskGrant>::all(client.clone()), watcher::Config::default())
            .modify(|grant| grant.metadata.managed_fields = None),
    )
    .default_backoff()
    .for_each(move |event| {
        if matches!(
            event,
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone)
        ) {
            changed.send();
        }
        futures::future::ready(())
    });
    (store, drive)
}

/// Namespaces, metadata only (names and labels): a label change tells `changed`.
pub(crate) fn namespaces(
    client: &Client,
    changed: Broadcast,
) -> (Store<PartialObjectMeta<Namespace>>, impl Future<Output = ()> + Send + 'static) {
    let mut labels = NamespaceLabels::default();
    metadata(client, changed, cached_pod::names_and_labels, move |event| labels.changed(event))
}

/// Nodes, metadata only (names and labels): only an arrival, a departure or a label change that
/// targeting reads tells `changed`, not heartbeats.
pub(crate) fn nodes(
    client: &Client,
    changed: Broadcast,
) -> (Store<PartialObjectMeta<Node>>, impl Future<Output = ()> + Send + 'static) {
    // The whole Node is read, for its machine ID (a reimaged node has a new one); the cache keeps
    // its metadata and that ID only.
    let mut targeting = NodeTargeting::default();
    let (store, writer) = reflector::store();
    let api = Api::<Node>::all(client.clone());
    let events = watcher(api, watcher::Config::default())
        .map(|event| event.map(|event| cached_pod::map_event(event, cached_pod::cached_node)));
    let drive = reflector::reflector(writer, events).default_backoff().for_each(move |event| {
        if let Ok(event) = event
            && targeting.changed(&event)
        {
            changed.send();
        }
        futures::future::ready(())
    });
    (store, drive)
}

/// A cluster-scoped metadata-only watch of `K`, keeping what `keep` leaves; `changed` is told when
/// `matters` says an event matters.
fn metadata<K>(
    client: &Client,
    changed: Broadcast,
    keep: fn(&mut PartialObjectMeta<K>),
    mut matters: impl FnMut(&watcher::Event<PartialObjectMeta<K>>) -> bool + Send + 'static,
) -> (Store<PartialObjectMeta<K>>, impl Future<Output = ()> + Send + 'static)
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    PartialObjectMeta<K>:
        kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned + Clone + std::fmt::Debug,
{
    let (store, writer) = reflector::store();
    let api = Api::<PartialObjectMeta<K>>::all(client.clone());
    let drive = reflector::reflector(writer, watcher(api, watcher::Config::default()).modify(keep))
        .default_backoff()
        .for_each(move |event| {
            if let Ok(event) = event
                && matters(&event)
            {
                changed.send();
            }
            futures::future::ready(())
        });
    (store, drive)
}
