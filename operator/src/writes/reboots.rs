//! The fleet-wide reboot budget: at most `--max-rebooting` nodes are in a reboot the operator
//! started (cordoned, drained, rebooting) at once, across every task, on top of each task's
//! `maxConcurrent` — so no single task, and no set of tasks, takes more of the fleet down than
//! a cluster administrator allowed.
//!
//! A node counts from the moment the operator claims it (before it cordons) until its reboot is
//! done. The node cache keeps each node's `hostprocess.dev/cordoned-by` annotation, so a
//! restarted operator counts the reboots in flight; claims not yet in the cache are the
//! operator's own writes, which win until the cache shows them. A reboot that failed leaves its
//! node cordoned and counted: nodes that do not come back stop further reboots.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;

use crate::labels::CORDONED_BY;

/// Whether a node may start its reboot now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// It may: the node counts against the budget until `release`.
    Granted,
    /// Not now: this many nodes are rebooting, the most the budget allows.
    Full { rebooting: usize },
}

#[derive(Debug, Default)]
pub struct RebootSlots {
    /// Nodes claimed whose annotation the cache may not show yet.
    claimed: Mutex<BTreeSet<String>>,
}

impl RebootSlots {
    /// Claims a slot for `node`, given the node cache and the budget (`cap` nodes).
    pub fn claim(&self, node: &str, nodes: &[Arc<PartialObjectMeta<Node>>], cap: usize) -> Slot {
        let mut claimed = self.claimed.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rebooting: BTreeSet<String> = nodes
            .iter()
            .filter(|n| n.annotations().contains_key(CORDONED_BY))
            .map(|n| n.name_any())
            .collect();
        rebooting.extend(claimed.iter().cloned());
        if rebooting.contains(node) {
            claimed.insert(node.to_string());
            return Slot::Granted;
        }
        if rebooting.len() >= cap {
            return Slot::Full { rebooting: rebooting.len() };
        }
        claimed.insert(node.to_string());
        Slot::Granted
    }

    /// The node's reboot is over (or never started): its claim goes. The cache stops counting it
    /// once its annotation is gone.
    pub fn release(&self, node: &str) {
        self.claimed.lock().unwrap_or_else(PoisonError::into_inner).remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cordoned_by: Option<&str>) -> Arc<PartialObjectMeta<Node>> {
        let mut n = PartialObjectMeta::<Node>::default();
        n.metadata.name = Some(name.into());
        n.metadata.annotations = cordoned_by.map(|t| [(CORDONED_BY.to_string(), t.to_string())].into());
        Arc::new(n)
    }

    #[test]
    fn reboots_in_the_cache_and_claims_not_yet_cached_share_one_budget() {
        let slots = RebootSlots::default();
        let nodes = vec![node("win-0", Some("ops/patch")), node("win-1", None), node("win-2", None)];
        assert_eq!(slots.claim("win-1", &nodes, 2), Slot::Granted, "one in the cache, one claimed");
        assert_eq!(slots.claim("win-2", &nodes, 2), Slot::Full { rebooting: 2 });
        assert_eq!(slots.claim("win-1", &nodes, 2), Slot::Granted, "a claim holds for its node");
        assert_eq!(slots.claim("win-0", &nodes, 2), Slot::Granted, "a node rebooting already goes on");
        slots.release("win-1");
        slots.release("win-0");
        // win-0's annotation is still cached (its reboot failed, or the cache is behind): counted.
        assert_eq!(slots.claim("win-2", &nodes, 2), Slot::Granted);
        assert_eq!(slots.claim("win-1", &nodes, 2), Slot::Full { rebooting: 2 });
    }
}
