//! The ConfigMaps that carry what runs on a node — a task's script, a HostGroup's spec — are
//! never trusted by name. Their names are predictable (the revision is a hash of the spec), so
//! whoever may create ConfigMaps in the namespace could create one first, or delete the
//! operator's and create their own. A ConfigMap found under the name is used only if the
//! operator's object controls it and its content is exactly what the operator would write;
//! anything else is refused, not overwritten (it is a sign of a mistake or an attack, and an
//! administrator should look). The executor checks the content again on the node, against the
//! SHA-256 in the pod spec (`hostprocess_protocol::digest`), which catches a swap after this check.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;

use super::apply;

/// Why a ConfigMap could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(
        "ConfigMap {namespace}/{name} exists but {why}; the operator runs nothing it did not write: a cluster administrator should find out who created it, then delete it (kubectl -n {namespace} delete configmap {name}) and the operator writes its own"
    )]
    NotOurs { namespace: String, name: String, why: &'static str },
}

/// Writes `wanted` unless a ConfigMap of its name exists; an existing one must be controlled by
/// the same owner and carry the same content.
pub async fn ensure(api: &Api<ConfigMap>, wanted: &ConfigMap) -> Result<(), ConfigMapError> {
    let name = wanted.name_any();
    match api.get_opt(&name).await? {
        None => {
            apply(api, wanted).await?;
            Ok(())
        }
        Some(found) => match foreign(&found, wanted) {
            None => Ok(()),
            Some(why) => {
                Err(ConfigMapError::NotOurs { namespace: found.namespace().unwrap_or_default(), name, why })
            }
        },
    }
}

/// Why `found` is not the ConfigMap the operator would write as `wanted`, or `None`.
fn foreign(found: &ConfigMap, wanted: &ConfigMap) -> Option<&'static str> {
    let controller = |cm: &ConfigMap| {
        cm.owner_references().iter().find(|o| o.controller == Some(true)).map(|o| o.uid.clone())
    };
    if controller(wanted).is_none() || controller(found) != controller(wanted) {
        return Some("is not controlled by the object it belongs to");
    }
    let no_binary = found.binary_data.as_ref().is_none_or(|b| b.is_empty());
    if found.data != wanted.data || !no_binary {
        return Some("its content is not what the operator wrote");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;

    fn map(owner: Option<(&str, bool)>, script: &str) -> ConfigMap {
        let mut cm = ConfigMap {
            data: Some(BTreeMap::from([("script.ps1".to_string(), script.to_string())])),
            ..ConfigMap::default()
        };
        cm.metadata.owner_references = owner.map(|(uid, controller)| {
            vec![OwnerReference {
                uid: uid.into(),
                controller: Some(controller),
                kind: "HostTask".into(),
                name: "patch".into(),
                api_version: "hostprocess.dev/v1alpha1".into(),
                ..OwnerReference::default()
            }]
        });
        cm
    }

    #[test]
    fn only_the_owners_own_content_is_used() {
        let wanted = map(Some(("task-1", true)), "exit 0");
        assert_eq!(foreign(&map(Some(("task-1", true)), "exit 0"), &wanted), None);
        let not_owned = foreign(&map(None, "exit 0"), &wanted);
        assert_eq!(not_owned, Some("is not controlled by the object it belongs to"));
        assert!(foreign(&map(Some(("task-2", true)), "exit 0"), &wanted).is_some(), "another owner");
        assert!(foreign(&map(Some(("task-1", false)), "exit 0"), &wanted).is_some(), "not as controller");
        assert_eq!(
            foreign(&map(Some(("task-1", true)), "Invoke-Evil"), &wanted),
            Some("its content is not what the operator wrote")
        );
        let mut extra = map(Some(("task-1", true)), "exit 0");
        extra.binary_data = Some(BTreeMap::from([("x".into(), k8s_openapi::ByteString(vec![1]))]));
        assert!(foreign(&extra, &wanted).is_some(), "binary data beside the script");
    }
}
