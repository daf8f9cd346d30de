//! Where a HostGroup's local group is in place: the one thing the HostTask controller asks of
//! the HostGroup controller (a task that runs as the group starts only there).

use std::collections::BTreeSet;

use hostprocess_crds::HostGroup;
use kube::ResourceExt;

use super::build::Setup;
use super::plan::{self, SetupPod, SetupResult};
use super::record::Records;
use crate::context::Context;
use crate::labels;

/// The setup pods of HostGroup `group` in the cache, as the planner reads them.
pub(crate) fn setup_pods(ctx: &Context, group: &str) -> Vec<SetupPod> {
    ctx.cache
        .setup_pods
        .state()
        .iter()
        .filter(|p| p.label(labels::HOST_GROUP) == Some(group))
        .filter_map(|p| plan::observe(&p.to_pod()))
        .collect()
}

/// The nodes where `group`'s local group is in place, at any revision: its record holds for the
/// node's machine, or (not yet recorded) a provision pod succeeded on a node without a record.
/// A node waiting for a new revision's wave keeps serving the tasks that run as the group; a
/// reimaged node does not, until it is provisioned again.
pub(crate) fn nodes(ctx: &Context, group: &HostGroup) -> BTreeSet<String> {
    if group.metadata.deletion_timestamp.is_some() {
        return BTreeSet::new();
    }
    let records = Records::read(&ctx.cache.nodes.state(), group.uid().as_deref().unwrap_or_default());
    let unrecorded = setup_pods(ctx, &group.name_any())
        .into_iter()
        .filter(|p| p.setup == Setup::Provision && p.result == SetupResult::Done)
        .filter(|p| !records.recorded.contains(&p.node))
        .map(|p| p.node);
    records.in_place.into_keys().chain(unrecorded).collect()
}
