//! Every API call the operator makes, as RBAC rules: `deploy/rbac.yaml` must grant exactly
//! these (a test compares them). Change both when the code starts or stops calling something.

/// (API group, resource, verbs) granted cluster-wide.
pub const CLUSTER: &[(&str, &str, &[&str])] = &[
    // Watched (the controller), read on every reconcile.
    ("hostprocess.dev", "hosttasks", &["get", "list", "watch"]),
    // Status by server-side apply.
    ("hostprocess.dev", "hosttasks/status", &["patch"]),
    // Read, watched (owned), applied (server-side apply creates, so `create` too), deleted
    // while nothing may run.
    ("apps", "daemonsets", &["get", "list", "watch", "create", "patch", "delete"]),
    // The script of a revision, by server-side apply.
    ("", "configmaps", &["create", "patch"]),
    // Results are read from pods; pods of an older revision are replaced (`OnDelete`).
    ("", "pods", &["list", "watch", "delete"]),
    // Targeting: metadata-only list and watch.
    ("", "nodes", &["list", "watch"]),
    // The Pod Security level of the task's namespace.
    ("", "namespaces", &["get"]),
    // kube-runtime's event recorder.
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// (API group, resource, verbs) granted in the operator's own namespace: leader election.
pub const OWN_NAMESPACE: &[(&str, &str, &[&str])] =
    &[("coordination.k8s.io", "leases", &["get", "create", "update"])];
