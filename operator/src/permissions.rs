//! Every API call the operator makes, as RBAC rules: `deploy/rbac.yaml` must grant exactly
//! these (a test compares them). Change both when the code starts or stops calling something.

/// (API group, resource, verbs) granted cluster-wide.
pub const CLUSTER: &[(&str, &str, &[&str])] = &[
    // Watched (the controller); the finalizer that takes the admission labels off the nodes is
    // added and removed by JSON patch.
    ("hostprocess.dev", "hosttasks", &["get", "list", "watch", "patch"]),
    // Status by server-side apply.
    ("hostprocess.dev", "hosttasks/status", &["patch"]),
    // Watched (the controller); the cleanup finalizer is added and removed by JSON patch.
    ("hostprocess.dev", "hostgroups", &["get", "list", "watch", "patch"]),
    ("hostprocess.dev", "hostgroups/status", &["patch"]),
    // Which namespaces are enabled, and what their tasks may do: watched, never written.
    ("hostprocess.dev", "hosttaskgrants", &["get", "list", "watch"]),
    // Owner references with blockOwnerDeletion on what the operator creates need this where the
    // OwnerReferencesPermissionEnforcement admission plugin runs (e.g. OpenShift).
    ("hostprocess.dev", "hosttasks/finalizers", &["update"]),
    ("hostprocess.dev", "hostgroups/finalizers", &["update"]),
    // The tasks' DaemonSets: read and watched (owned) in every namespace, label-selected;
    // written only where a namespace is enabled (`TASK_NAMESPACE`).
    ("apps", "daemonsets", &["get", "list", "watch"]),
    // Results are read from pods (a label-selected watch); a drain lists the pods on a node in
    // every namespace and evicts them (PodDisruptionBudgets hold).
    ("", "pods", &["get", "list", "watch"]),
    ("", "pods/eviction", &["create"]),
    // Targeting: metadata-only list and watch; admission labels (`admitted.hostprocess.dev/*`)
    // by merge patch; a reboot reads a node's boot id and cordons.
    ("", "nodes", &["get", "list", "watch", "patch"]),
    // The Pod Security level of the task's (or the setup pods') namespace: metadata-only watch.
    ("", "namespaces", &["list", "watch"]),
    // kube-runtime's event recorder.
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// (API group, resource, verbs) granted in each enabled namespace, by a RoleBinding of the
/// ClusterRole `hostprocess-operator-tasks` (`deploy/enable-hostprocess-tasks.yaml`): what the
/// operator creates there, and the Secrets its tasks reference. Nowhere else.
pub const TASK_NAMESPACE: &[(&str, &str, &[&str])] = &[
    // Applied (server-side apply creates, so `create` too), deleted while nothing may run.
    ("apps", "daemonsets", &["create", "patch", "delete"]),
    // The script of a task revision (looked up first: written once), the spec of a HostGroup
    // revision, and the ConfigMaps `rollout.trackReferencedData` reads by name.
    ("", "configmaps", &["get", "create", "patch"]),
    // Pods of an older revision are replaced (`OnDelete`); HostGroup setup pods and reboot pods
    // are created and deleted; a reboot's step is an annotation on the task pod.
    ("", "pods", &["create", "patch", "delete"]),
    // `rollout.trackReferencedData`: the Secrets a task names, read by name (never listed).
    ("", "secrets", &["get"]),
];

/// The ClusterRole that `TASK_NAMESPACE` is, bound in each enabled namespace.
pub const TASK_NAMESPACE_ROLE: &str = "hostprocess-operator-tasks";

/// (API group, resource, verbs) granted in the operator's own namespace: leader election, and the
/// revision key Secret (`writes::revision_key`), read and created once.
pub const OWN_NAMESPACE: &[(&str, &str, &[&str])] =
    &[("coordination.k8s.io", "leases", &["get", "create", "update"]), ("", "secrets", &["get", "create"])];
