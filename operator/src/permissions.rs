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
    // Owner references with blockOwnerDeletion on what the operator creates need this where the
    // OwnerReferencesPermissionEnforcement admission plugin runs (e.g. OpenShift).
    ("hostprocess.dev", "hosttasks/finalizers", &["update"]),
    ("hostprocess.dev", "hostgroups/finalizers", &["update"]),
    // Read, watched (owned), applied (server-side apply creates, so `create` too), deleted
    // while nothing may run.
    ("apps", "daemonsets", &["get", "list", "watch", "create", "patch", "delete"]),
    // The script of a task revision (looked up first: written once) and the spec of a
    // HostGroup revision, by server-side apply.
    ("", "configmaps", &["get", "create", "patch"]),
    // Results are read from pods; pods of an older revision are replaced (`OnDelete`);
    // HostGroup setup pods and reboot pods are created and deleted; a reboot's step is an
    // annotation on the task pod; a drain lists the pods on a node.
    ("", "pods", &["get", "list", "watch", "create", "patch", "delete"]),
    // A drain evicts (PodDisruptionBudgets hold).
    ("", "pods/eviction", &["create"]),
    // `rollout.trackReferencedData`: the Secrets a task names, read by name (never listed).
    ("", "secrets", &["get"]),
    // Targeting: metadata-only list and watch; admission labels (`admitted.hostprocess.dev/*`)
    // by merge patch; a reboot reads a node's boot id and cordons.
    ("", "nodes", &["get", "list", "watch", "patch"]),
    // The Pod Security level of the task's (or the setup pods') namespace: metadata-only watch.
    ("", "namespaces", &["list", "watch"]),
    // kube-runtime's event recorder.
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// (API group, resource, verbs) granted in the operator's own namespace: leader election.
pub const OWN_NAMESPACE: &[(&str, &str, &[&str])] =
    &[("coordination.k8s.io", "leases", &["get", "create", "update"])];
