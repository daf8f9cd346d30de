//! Which Windows nodes a selector targets: the node cache read through a label selector that is
//! always ANDed with `kubernetes.io/os=windows`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::core::{Expression, PartialObjectMeta, Selector, SelectorExt};

/// The node label every targeted node carries.
const OS_LABEL: &str = "kubernetes.io/os";

/// The Windows nodes `selector` matches, sorted by name. A selector the API server would refuse
/// (an unknown operator, `In` without values) matches nothing.
pub fn windows_nodes_matching(
    selector: Option<&LabelSelector>,
    nodes: &[Arc<PartialObjectMeta<Node>>],
) -> Vec<String> {
    let Ok(mut selector) = selector.cloned().map_or(Ok(Selector::default()), Selector::try_from) else {
        return Vec::new();
    };
    selector.extend([Expression::Equal(OS_LABEL.into(), "windows".into())]);
    let mut names: Vec<String> =
        nodes.iter().filter(|n| selector.matches(n.labels())).map(|n| n.name_any()).collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value) -> Arc<PartialObjectMeta<Node>> {
        let mut node = PartialObjectMeta::<Node>::default();
        node.metadata.name = Some(name.into());
        node.metadata.labels = serde_json::from_value(labels).unwrap_or_else(|e| panic!("labels: {e}"));
        Arc::new(node)
    }

    fn selector(value: serde_json::Value) -> LabelSelector {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("selector: {e}"))
    }

    #[test]
    fn only_windows_nodes_that_the_selector_matches_are_targeted() {
        let nodes = [
            node("win-b", json!({"kubernetes.io/os": "windows", "pool": "patch"})),
            node("win-a", json!({"kubernetes.io/os": "windows", "pool": "patch", "ring": "canary"})),
            node("win-c", json!({"kubernetes.io/os": "windows", "pool": "agents"})),
            node("lin-a", json!({"kubernetes.io/os": "linux", "pool": "patch"})),
        ];
        assert_eq!(windows_nodes_matching(None, &nodes), ["win-a", "win-b", "win-c"], "sorted");
        let pool = selector(json!({"matchLabels": {"pool": "patch"}}));
        assert_eq!(windows_nodes_matching(Some(&pool), &nodes), ["win-a", "win-b"]);
        let not_canary = selector(json!({"matchLabels": {"pool": "patch"},
            "matchExpressions": [{"key": "ring", "operator": "DoesNotExist"}]}));
        assert_eq!(windows_nodes_matching(Some(&not_canary), &nodes), ["win-b"]);
        let not_in = selector(
            json!({"matchExpressions": [{"key": "ring", "operator": "NotIn", "values": ["canary"]}]}),
        );
        assert_eq!(windows_nodes_matching(Some(&not_in), &nodes), ["win-b", "win-c"], "no label is not in");
        let invalid = selector(json!({"matchExpressions": [{"key": "pool", "operator": "Near"}]}));
        assert!(windows_nodes_matching(Some(&invalid), &nodes).is_empty());
    }
}
