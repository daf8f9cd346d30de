//! Validate: what stops a HostGroup from being provisioned at all — a name too long to label its
//! pods with, a spec the schema could not refuse, a setup namespace that is missing or refuses
//! HostProcess pods. Each becomes a Stalled condition.

use hostprocess_crds::HostGroup;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;

use crate::conditions::Blocked;
use crate::labels;

/// Longest HostGroup name usable as a label value.
const MAX_NAME: usize = 63;

pub fn blocked(
    group: &HostGroup,
    namespace: &str,
    ns: Option<&PartialObjectMeta<Namespace>>,
) -> Option<Blocked> {
    if group.name_any().len() > MAX_NAME {
        return Some(Blocked {
            reason: "InvalidName",
            message: format!(
                "the HostGroup's name is {} characters long; use at most {MAX_NAME} (its setup pods are labelled with it)",
                group.name_any().len()
            ),
        });
    }
    if let Err(errors) = group.spec.validate() {
        return Some(Blocked { reason: "InvalidSpec", message: errors.to_string() });
    }
    let Some(ns) = ns else {
        return Some(Blocked {
            reason: "NamespaceMissing",
            message: format!(
                "the setup pods run in namespace {namespace}, which does not exist; install the operator's namespaces (kubectl apply -k deploy/) or set --hostgroup-namespace"
            ),
        });
    };
    if let Some(level) = labels::pod_security_refusal(ns.labels()) {
        return Some(Blocked {
            reason: "PodSecurityRejects",
            message: format!(
                "namespace {namespace} enforces the Pod Security level {level:?}, which refuses the HostProcess setup pods; label it pod-security.kubernetes.io/enforce=privileged"
            ),
        });
    }
    None
}
