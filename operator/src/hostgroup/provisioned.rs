//! Where a HostGroup's local group is in place: the one thing the HostTask controller asks of
//! the HostGroup controller (a task that runs as the group starts only there).

use std::collections::BTreeSet;

use hostprocess_crds::HostGroup;
use kube::ResourceExt;

use super::build::Setup;
use super::plan::{self, SetupPod, SetupResult};
use crate::context::Context;
use crate::{hashing, labels};

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

/// The nodes where `group`'s local group is in place at the HostGroup's current revision.
pub(crate) fn nodes(ctx: &Context, group: &HostGroup) -> BTreeSet<String> {
    if group.metadata.deletion_timestamp.is_some() {
        return BTreeSet::new();
    }
    let revision = hashing::group_revision(&group.spec);
    setup_pods(ctx, &group.name_any())
        .into_iter()
        .filter(|p| {
            p.setup == Setup::Provision
                && p.revision.as_deref() == Some(revision.as_str())
                && p.result == SetupResult::Done
        })
        .map(|p| p.node)
        .collect()
}
