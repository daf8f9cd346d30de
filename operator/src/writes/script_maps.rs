//! The script ConfigMaps this process has applied or found, by task uid and ConfigMap name. A
//! revision's script is immutable: it is read or written once, not on every reconcile until the
//! DaemonSet runs that revision.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub struct ScriptMaps(Mutex<BTreeSet<(String, String)>>);

impl ScriptMaps {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<(String, String)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `config_map` of task `uid` is known to be in the API.
    pub fn has(&self, uid: &str, config_map: &str) -> bool {
        self.lock().contains(&(uid.to_string(), config_map.to_string()))
    }

    /// Records that `config_map` of task `uid` is in the API.
    pub fn applied(&self, uid: &str, config_map: &str) {
        self.lock().insert((uid.to_string(), config_map.to_string()));
    }

    /// Forgets a task's ConfigMaps (it is going, and they with it).
    pub fn forget(&self, uid: &str) {
        self.lock().retain(|(task, _)| task != uid);
    }
}
