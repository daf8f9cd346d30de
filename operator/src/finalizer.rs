//! The operator's finalizer on HostGroups and HostTasks: added and removed by JSON patch with a
//! `test`, so a patch built from a stale object fails instead of dropping someone else's
//! finalizer.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Held while deletion still has work on the nodes: a HostGroup (policy `Delete`) until its
/// cleanup pods ran, a HostTask until its admission labels are off the nodes.
pub const FINALIZER: &str = "hostprocess.dev/cleanup";

/// What a finalizer patch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Patched {
    /// Applied, or nothing to do (the object is gone).
    Done,
    /// Refused: the object changed since it was read (a status write, a spec change). Nothing
    /// was changed; the caller decides again on the newer object, which it may not be told about
    /// (a status write reconciles no HostTask).
    Stale,
}

/// Whether `object` carries the finalizer.
pub fn has<K: ResourceExt>(object: &K) -> bool {
    object.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer, provided `object` is still the version in the API.
pub async fn add<K>(api: &Api<K>, object: &K) -> Result<Patched, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let test = json!({"op": "test", "path": "/metadata/resourceVersion", "value": object.resource_version()});
    let add = if object.finalizers().is_empty() {
        json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
    } else {
        json!({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER})
    };
    patch(api, object, json!([test, add])).await
}

/// Removes the finalizer, provided it is still where `object` has it.
pub async fn remove<K>(api: &Api<K>, object: &K) -> Result<Patched, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let Some(index) = object.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(Patched::Done);
    };
    let path = format!("/metadata/finalizers/{index}");
    patch(
        api,
        object,
        json!([{"op": "test", "path": path, "value": FINALIZER}, {"op": "remove", "path": path}]),
    )
    .await
}

async fn patch<K>(api: &Api<K>, object: &K, patch: serde_json::Value) -> Result<Patched, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    match api.patch(&object.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => Ok(Patched::Done),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Patched::Done),
        // A failed `test`: changed since it was read.
        Err(kube::Error::Api(status)) if status.code == 422 || status.code == 409 => Ok(Patched::Stale),
        Err(e) => Err(e),
    }
}
