//! The simulated garbage collector: ownerReferences as kube-controller-manager honours them, for
//! the dependent kinds the operator and the simulated controllers create (pods, DaemonSets,
//! ConfigMaps, Secrets, ControllerRevisions). Owners of any kind, custom resources included,
//! are resolved through discovery.
//!
//! - background: a dependent whose owners are all gone (or replaced by an object with another
//!   uid) is deleted;
//! - foreground: an owner with the `foregroundDeletion` finalizer has its dependents deleted,
//!   then the finalizer is removed so the owner goes;
//! - orphan: an owner with the `orphan` finalizer has the references to it removed from its
//!   dependents, then the finalizer is removed.
//!
//! It watches only those dependent kinds: an owner of another kind (a custom resource) deleted
//! in the foreground with no dependent at all is not seen, and keeps its finalizer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";
const TICK: Duration = Duration::from_millis(200);

/// One dependent, as the collector sees it.
#[derive(Debug, Clone)]
struct Dependent {
    resource: ApiResource,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
}

fn store_of<K>(client: &Client) -> (Store<K>, impl std::future::Future<Output = ()> + use<K>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(Api::<K>::all(client.clone()), watcher::Config::default()))
            .default_backoff()
            .for_each(|_| futures::future::ready(()));
    (reader, stream)
}

fn dependents<K>(store: &Store<K>) -> Vec<Dependent>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| !o.owner_references().is_empty() && o.meta().deletion_timestamp.is_none())
        .map(|o| Dependent {
            resource: ApiResource::erase::<K>(&()),
            namespace: o.namespace(),
            name: o.name_any(),
            owners: o.owner_references().to_vec(),
        })
        .collect()
}

/// Starts the collector; abort the handle to stop it.
pub fn spawn_garbage_collector(client: Client) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (pods, w1) = store_of::<Pod>(&client);
        let (sets, w2) = store_of::<DaemonSet>(&client);
        let (maps, w3) = store_of::<ConfigMap>(&client);
        let (secrets, w4) = store_of::<Secret>(&client);
        let (revisions, w5) = store_of::<ControllerRevision>(&client);
        let collect = async move {
            let mut kinds: HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)> = HashMap::new();
            let mut releasing: HashMap<String, Releasing> = HashMap::new();
            loop {
                let mut all = dependents(&pods);
                all.extend(dependents(&sets));
                all.extend(dependents(&maps));
                all.extend(dependents(&secrets));
                all.extend(dependents(&revisions));
                // A failed pass is retried on the next tick.
                add_watched_owners(&client, &sets, &mut releasing);
                let _ = collect_once(&client, &mut kinds, &mut releasing, &all).await;
                tokio::time::sleep(TICK).await;
            }
        };
        tokio::join!(w1, w2, w3, w4, w5, collect);
    })
}

/// DaemonSets being deleted in the foreground or with orphaning: served even with no pod left.
fn add_watched_owners(client: &Client, sets: &Store<DaemonSet>, releasing: &mut HashMap<String, Releasing>) {
    for set in sets.state() {
        let Ok(object) = serde_json::to_value(&*set).and_then(serde_json::from_value::<DynamicObject>) else {
            continue;
        };
        let (Some(finalizer), Some(uid)) = (served_finalizer(&object), set.uid()) else { continue };
        let resource = ApiResource::erase::<DaemonSet>(&());
        let api = Api::namespaced_with(client.clone(), &set.namespace().unwrap_or_default(), &resource);
        releasing.entry(uid).or_insert(Releasing { api, name: set.name_any(), finalizer });
    }
}

async fn resolve(
    client: &Client,
    kinds: &mut HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>,
    owner: &OwnerReference,
) -> Result<(ApiResource, ApiCapabilities), kube::Error> {
    let (group, version) = match owner.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), owner.api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &owner.kind);
    if let Some(found) = kinds.get(&gvk) {
        return Ok(found.clone());
    }
    let found = kube::discovery::pinned_kind(client, &gvk).await?;
    kinds.insert(gvk, found.clone());
    Ok(found)
}

fn owner_api(
    client: &Client,
    resource: &ApiResource,
    caps: &ApiCapabilities,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match (caps.scope.clone(), namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, resource),
        _ => Api::all_with(client.clone(), resource),
    }
}

fn dependent_api(client: &Client, d: &Dependent) -> Api<DynamicObject> {
    match &d.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &d.resource),
        None => Api::all_with(client.clone(), &d.resource),
    }
}

/// An owner being deleted with a finalizer the collector serves.
#[derive(Debug, Clone)]
struct Releasing {
    api: Api<DynamicObject>,
    name: String,
    finalizer: &'static str,
}

/// Deletion finalizers this collector serves, on an object being deleted.
fn served_finalizer(object: &DynamicObject) -> Option<&'static str> {
    object.metadata.deletion_timestamp.as_ref()?;
    let finalizers = object.finalizers();
    [FOREGROUND, ORPHAN].into_iter().find(|f| finalizers.iter().any(|g| g == f))
}

async fn collect_once(
    client: &Client,
    kinds: &mut HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>,
    releasing: &mut HashMap<String, Releasing>,
    all: &[Dependent],
) -> Result<(), kube::Error> {
    let mut owners: HashMap<String, Option<Arc<DynamicObject>>> = HashMap::new();
    for d in all {
        let mut alive = 0;
        for owner in &d.owners {
            let (resource, caps) = resolve(client, kinds, owner).await?;
            let api = owner_api(client, &resource, &caps, d.namespace.as_deref());
            let found = match owners.get(&owner.uid) {
                Some(found) => found.clone(),
                None => {
                    let found = api
                        .get_opt(&owner.name)
                        .await?
                        .filter(|o| o.uid().as_deref() == Some(owner.uid.as_str()))
                        .map(Arc::new);
                    owners.insert(owner.uid.clone(), found.clone());
                    found
                }
            };
            let Some(found) = found else { continue };
            alive += 1;
            match served_finalizer(&found) {
                Some(FOREGROUND) => delete(client, d).await?,
                Some(_) => {
                    let keep: Vec<&OwnerReference> = d.owners.iter().filter(|o| o.uid != owner.uid).collect();
                    let patch = serde_json::json!({"metadata": {"ownerReferences": keep}});
                    dependent_api(client, d)
                        .patch(&d.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                }
                None => continue,
            }
            let finalizer = served_finalizer(&found).unwrap_or(FOREGROUND);
            releasing.insert(
                owner.uid.clone(),
                Releasing { api: api.clone(), name: owner.name.clone(), finalizer },
            );
        }
        if alive == 0 {
            delete(client, d).await?;
        }
    }
    // Owners being deleted that no dependent refers to any more lose the finalizer.
    let done: Vec<String> = releasing
        .keys()
        .filter(|uid| !all.iter().any(|d| d.owners.iter().any(|o| &o.uid == *uid)))
        .cloned()
        .collect();
    for uid in done {
        if let Some(owner) = releasing.remove(&uid) {
            release(&owner).await?;
        }
    }
    Ok(())
}

/// Removes the served finalizer from an owner (gone already is fine).
async fn release(owner: &Releasing) -> Result<(), kube::Error> {
    let Some(object) = owner.api.get_opt(&owner.name).await? else { return Ok(()) };
    let finalizers: Vec<&String> = object.finalizers().iter().filter(|f| *f != owner.finalizer).collect();
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()}});
    match owner.api.patch(&owner.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn delete(client: &Client, d: &Dependent) -> Result<(), kube::Error> {
    match dependent_api(client, d).delete(&d.name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
