//! The operator's own writes of objects it also watches (its DaemonSets), kept until its cache
//! shows them — the rule `writes` states once, for a whole object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

/// The operator's own writes of objects it also watches, kept until its cache shows them: a
/// reconcile that runs before the watch delivered the last write reads that write, not the older
/// cached object — without a GET per reconcile.
#[derive(Debug)]
pub struct OwnWrites<K: Resource<DynamicType = ()>>(Mutex<HashMap<ObjectRef<K>, Option<Arc<K>>>>);

impl<K: Resource<DynamicType = ()>> Default for OwnWrites<K> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

/// What is known of an object: the newer of the cache and the operator's last write, or
/// `Unsure` when they cannot be ordered (then read it from the API).
#[derive(Debug, Clone, PartialEq)]
pub enum Known<K> {
    Is(Option<Arc<K>>),
    Unsure,
}

/// An object's resourceVersion as a number (etcd's revision), to order two versions of it.
pub fn resource_version<K: Resource>(object: &K) -> Option<u64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}

impl<K: Resource<DynamicType = ()> + Clone> OwnWrites<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<K>, Option<Arc<K>>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a write: the object the API returned, or `None` after deleting it.
    pub fn wrote(&self, key: ObjectRef<K>, object: Option<K>) {
        self.lock().insert(key, object.map(Arc::new));
    }

    /// The object as the operator must see it, given what its cache holds.
    pub fn resolve(&self, key: &ObjectRef<K>, cached: Option<Arc<K>>) -> Known<K> {
        let mut writes = self.lock();
        let Some(written) = writes.get(key) else { return Known::Is(cached) };
        match (written, cached) {
            // Deleted, and the cache agrees.
            (None, None) => {
                writes.remove(key);
                Known::Is(None)
            }
            (Some(w), Some(c)) => match (resource_version(&**w), resource_version(&*c)) {
                (Some(w_rv), Some(c_rv)) if c_rv >= w_rv => {
                    writes.remove(key);
                    Known::Is(Some(c))
                }
                (Some(_), Some(_)) => Known::Is(Some(w.clone())),
                _ => Known::Unsure,
            },
            // Written but not cached (created and not delivered yet, or deleted since by
            // someone else), or deleted but still cached: only the API can tell.
            (Some(_), None) | (None, Some(_)) => Known::Unsure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;

    fn ds(rv: &str) -> Arc<DaemonSet> {
        let mut ds = DaemonSet::default();
        ds.metadata.name = Some("hostprocess-patch".into());
        ds.metadata.namespace = Some("ns".into());
        ds.metadata.resource_version = Some(rv.into());
        Arc::new(ds)
    }

    #[test]
    fn own_writes_win_until_the_cache_catches_up() {
        let writes = OwnWrites::<DaemonSet>::default();
        let key = ObjectRef::new("hostprocess-patch").within("ns");
        assert_eq!(
            writes.resolve(&key, Some(ds("5"))),
            Known::Is(Some(ds("5"))),
            "nothing written: the cache"
        );
        writes.wrote(key.clone(), Some((*ds("9")).clone()));
        assert_eq!(writes.resolve(&key, Some(ds("5"))), Known::Is(Some(ds("9"))), "the cache is behind");
        assert_eq!(writes.resolve(&key, None), Known::Unsure, "created, or deleted since: ask the API");
        assert_eq!(writes.resolve(&key, Some(ds("12"))), Known::Is(Some(ds("12"))), "caught up");
        assert_eq!(writes.resolve(&key, Some(ds("5"))), Known::Is(Some(ds("5"))), "and forgotten");
        writes.wrote(key.clone(), None);
        assert_eq!(writes.resolve(&key, Some(ds("12"))), Known::Unsure, "deleted, still cached");
        assert_eq!(writes.resolve(&key, None), Known::Is(None));
    }
}
