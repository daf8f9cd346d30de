//! How the operator writes what it owns: server-side apply under one field manager, and the
//! rule that a call on an object that is gone already has nothing left to do.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::labels::FIELD_MANAGER;

/// Server-side apply of `object` under the operator's field manager, taking ownership of every
/// field it sets (`force`): the one way the operator creates or updates what it owns.
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let mut value = serde_json::to_value(object).map_err(kube::Error::SerdeError)?;
    value["apiVersion"] = json!(K::api_version(&()));
    value["kind"] = json!(K::kind(&()));
    api.patch(&object.name_any(), &params(), &Patch::Apply(&value)).await
}

/// Server-side apply of the status of object `name` (the status subresource).
pub async fn apply_status<K>(api: &Api<K>, name: &str, status: &impl Serialize) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug,
{
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    api.patch_status(name, &params(), &Patch::Apply(&patch)).await
}

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// A call's outcome where an object that is gone already leaves nothing to do (a delete, a label
/// on a node that left): controller-runtime's `IgnoreNotFound`.
pub fn ignore_not_found<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.code != 404 => Err(kube::Error::Api(status)),
        Err(e) if !matches!(e, kube::Error::Api(_)) => Err(e),
        _ => Ok(()),
    }
}
