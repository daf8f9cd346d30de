//! The durable record of where a HostGroup is in place: on each node, one annotation per
//! HostGroup, `provisioned.hostprocess.dev/<HostGroup uid>`, holding the revision provisioned,
//! the node's machine ID at the time and when. The operator writes it once a provision pod
//! succeeded and removes it once a cleanup pod did; setup pods are then only the work, never the
//! record, so garbage-collected pods change nothing.
//!
//! A record holds only for the machine it names: a reimaged node (same name, new machine ID) is
//! not in place, so it is provisioned again before any task runs as the group there.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::labels;

/// What one node's record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The HostGroup revision in place.
    pub revision: String,
    /// The node's `status.nodeInfo.machineID` when it was provisioned.
    #[serde(rename = "machineID")]
    pub machine_id: String,
    /// When the provision pod's success was recorded.
    pub at: Timestamp,
}

/// The annotation of the HostGroup with this uid.
pub fn key(uid: &str) -> String {
    format!("{}{uid}", labels::PROVISIONED_PREFIX)
}

/// A node's machine ID as the cache keeps it.
pub fn machine_id<K>(node: &PartialObjectMeta<K>) -> &str {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(labels::CACHED_MACHINE_ID))
        .map_or("", String::as_str)
}

/// The records of one HostGroup across the nodes in the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// Nodes where the group is in place, with the revision: records for the machine the node
    /// is now.
    pub in_place: BTreeMap<String, String>,
    /// Every node with a record, of this machine or an earlier one: each may hold something to
    /// clean up.
    pub recorded: BTreeSet<String>,
}

impl Records {
    pub fn read(nodes: &[std::sync::Arc<PartialObjectMeta<Node>>], uid: &str) -> Self {
        let key = key(uid);
        let mut records = Records::default();
        for node in nodes {
            let Some(value) = node.metadata.annotations.as_ref().and_then(|a| a.get(&key)) else { continue };
            let name = node.name_any();
            records.recorded.insert(name.clone());
            // An unreadable record is not a record of anything in place.
            if let Ok(record) = serde_json::from_str::<Record>(value)
                && record.machine_id == machine_id(node)
            {
                records.in_place.insert(name, record.revision);
            }
        }
        records
    }
}

/// Writes (or, with `None`, removes) the record of HostGroup `uid` on `node`. A node that is gone
/// has nothing to record.
pub async fn write(
    client: &Client,
    node: &str,
    uid: &str,
    record: Option<&Record>,
) -> Result<(), kube::Error> {
    let value = match record {
        Some(record) => {
            serde_json::Value::String(serde_json::to_string(record).map_err(kube::Error::SerdeError)?)
        }
        None => serde_json::Value::Null,
    };
    let patch = serde_json::json!({"metadata": {"annotations": {key(uid): value}}});
    let api: Api<Node> = Api::all(client.clone());
    match api.patch(node, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::PartialObjectMetaExt;
    use std::sync::Arc;

    fn node(name: &str, machine: &str, record: Option<&str>) -> Arc<PartialObjectMeta<Node>> {
        let mut annotations = BTreeMap::from([(labels::CACHED_MACHINE_ID.to_string(), machine.to_string())]);
        if let Some(record) = record {
            annotations.insert(key("uid-1"), record.to_string());
        }
        let meta = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            annotations: Some(annotations),
            ..Default::default()
        };
        Arc::new(meta.into_request_partial::<Node>())
    }

    #[test]
    fn a_record_holds_only_for_the_machine_it_names() {
        let record = |machine: &str| {
            serde_json::to_string(&Record {
                revision: "r1".into(),
                machine_id: machine.into(),
                at: Timestamp::UNIX_EPOCH,
            })
            .unwrap_or_default()
        };
        let nodes = [
            node("a", "m-a", Some(&record("m-a"))),
            node("b", "m-b2", Some(&record("m-b"))),
            node("c", "m-c", None),
            node("d", "m-d", Some("not json")),
        ];
        let records = Records::read(&nodes, "uid-1");
        assert_eq!(records.in_place, BTreeMap::from([("a".to_string(), "r1".to_string())]));
        assert_eq!(records.recorded, BTreeSet::from(["a".into(), "b".into(), "d".into()]), "b was reimaged");
        assert_eq!(Records::read(&nodes, "uid-2"), Records::default(), "keyed by the HostGroup's uid");
    }
}
