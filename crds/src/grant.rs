//! `HostTaskGrant`: a cluster administrator's consent that HostTasks may run in one namespace,
//! and which of the dangerous capabilities they may use there. Without a grant named after its
//! namespace a HostTask does nothing; with one, anything the grant does not list is refused.
//!
//! The same verdict is reached twice: by the admission policy in `deploy/policy` (CEL, before
//! the task reaches etcd) and by `HostTaskGrantSpec::refusal` in the operator (so a cluster
//! without that policy is just as safe). `operator/tests/grants.rs` compares the two on a real
//! API server.

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hosttask::{Account, HostTaskSpec, MAX_CONCURRENT_RULE, RebootPolicy};
use crate::messages as msg;
use crate::units::CountOrPercent;

/// What HostTasks in the namespace named like this object may do. Cluster-scoped: only those
/// who may manage cluster-wide objects (cluster administrators) can enable a namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "hostprocess.dev",
    version = "v1alpha1",
    kind = "HostTaskGrant",
    doc = "A HostTaskGrant enables HostTasks in the namespace it is named after and lists what they may do there: which built-in accounts, reboots, how many nodes at once, which taints. Whoever may create HostTasks in that namespace can run code on the Windows nodes.",
    plural = "hosttaskgrants",
    shortname = "htg",
    category = "hostprocess",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Accounts", "type":"string", "jsonPath":".spec.accounts"}"#,
    printcolumn = r#"{"name":"Reboot", "type":"string", "jsonPath":".spec.reboot"}"#,
    printcolumn = r#"{"name":"MaxConcurrent", "type":"string", "jsonPath":".spec.maxConcurrent"}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HostTaskGrantSpec {
    /// The built-in accounts tasks may run as: `LocalService`, `NetworkService`, `System`.
    /// Default `[LocalService, NetworkService]`. Both hold SeImpersonatePrivilege, so even
    /// they are no wall against a determined payload; `System` is full control of every
    /// targeted node. Running as a HostGroup is offered by the HostGroup (`spec.namespaces`).
    #[serde(default = "default_accounts")]
    #[schemars(length(max = 3))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub accounts: Vec<BuiltinAccount>,

    /// The most a task may ask for after its payload exits 3010: `Never` (default; the need is
    /// recorded) or `IfRequired` (the operator cordons, drains other workloads off, and reboots
    /// the node).
    #[serde(default)]
    pub reboot: RebootPolicy,

    /// The most nodes one task may run on (or reboot) at once: a count like `5` or a percentage
    /// of its targeted nodes like `"10%"`. A task whose `rollout.maxConcurrent` is higher is
    /// refused. Default `"10%"`.
    #[serde(default = "default_max_concurrent")]
    #[x_kube(validation = Rule::new(MAX_CONCURRENT_RULE).message(msg::MAX_CONCURRENT))]
    pub max_concurrent: IntOrString,

    /// Tolerations tasks may carry beyond the usual Windows ones (which every task has). A task
    /// toleration is allowed when one listed here covers it: same key (an empty key with
    /// `operator: Exists` covers every key), `Exists` or the same value, and no effect or the
    /// same effect. Default none: tasks run only on nodes without other taints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
}

/// An account a grant may allow (a HostGroup is offered by the HostGroup itself).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BuiltinAccount {
    LocalService,
    NetworkService,
    System,
}

impl BuiltinAccount {
    fn of(account: Account) -> Option<Self> {
        match account {
            Account::LocalService => Some(BuiltinAccount::LocalService),
            Account::NetworkService => Some(BuiltinAccount::NetworkService),
            Account::System => Some(BuiltinAccount::System),
            Account::HostGroup => None,
        }
    }
}

fn default_accounts() -> Vec<BuiltinAccount> {
    vec![BuiltinAccount::LocalService, BuiltinAccount::NetworkService]
}

fn default_max_concurrent() -> IntOrString {
    IntOrString::String("10%".to_string())
}

impl Default for HostTaskGrantSpec {
    fn default() -> Self {
        HostTaskGrantSpec {
            accounts: default_accounts(),
            reboot: RebootPolicy::Never,
            max_concurrent: default_max_concurrent(),
            tolerations: Vec::new(),
        }
    }
}

/// Which capability a task asks for that its namespace's grant does not give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `AccountNotGranted`, `RebootNotGranted`, `ConcurrencyNotGranted` or
    /// `TolerationNotGranted`.
    pub reason: &'static str,
    /// What is missing, and who can grant it.
    pub message: String,
}

impl HostTaskGrantSpec {
    /// Why `task` may not run under this grant (named `grant`), or `None`. `targeted` is the
    /// number of nodes the task targets, for a cap and a `maxConcurrent` of different kinds (a
    /// count against a percentage); of the same kind they are compared as written, as the
    /// admission policy compares them.
    pub fn refusal(&self, grant: &str, task: &HostTaskSpec, targeted: u32) -> Option<Refusal> {
        let edit =
            format!("a cluster administrator can change that with `kubectl edit hosttaskgrant {grant}`");
        if let Some(account) = BuiltinAccount::of(task.run_as.account)
            && !self.accounts.contains(&account)
        {
            return Some(Refusal {
                reason: "AccountNotGranted",
                message: format!(
                    "HostTaskGrant {grant} does not allow runAs {account:?} (spec.accounts allows {}); run the task as an allowed account, or {edit}",
                    self.accounts.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if task.reboot == RebootPolicy::IfRequired && self.reboot != RebootPolicy::IfRequired {
            return Some(Refusal {
                reason: "RebootNotGranted",
                message: format!(
                    "HostTaskGrant {grant} does not allow reboot: IfRequired (its spec.reboot is Never); set the task's reboot to Never (a needed reboot is then recorded, not performed), or {edit}"
                ),
            });
        }
        if let Some(message) = self.above_cap(task, targeted) {
            return Some(Refusal {
                reason: "ConcurrencyNotGranted",
                message: format!(
                    "{message} of HostTaskGrant {grant}; lower the task's maxConcurrent, or {edit}"
                ),
            });
        }
        if let Some(t) = task.tolerations.iter().find(|t| !self.covers(t)) {
            return Some(Refusal {
                reason: "TolerationNotGranted",
                message: format!(
                    "spec.tolerations has a toleration HostTaskGrant {grant} does not allow ({}); remove it, or {edit}",
                    describe(t)
                ),
            });
        }
        None
    }

    /// How the task's `maxConcurrent` exceeds the cap, or `None`.
    fn above_cap(&self, task: &HostTaskSpec, targeted: u32) -> Option<String> {
        let wanted = CountOrPercent::parse(&task.rollout.max_concurrent)?;
        let Some(cap) = CountOrPercent::parse(&self.max_concurrent) else {
            return Some(format!(
                "spec.maxConcurrent {:?} is not a count or a percentage",
                self.max_concurrent
            ));
        };
        let (show_wanted, show_cap) = (show(&task.rollout.max_concurrent), show(&self.max_concurrent));
        match (wanted, cap) {
            (CountOrPercent::Count(w), CountOrPercent::Count(c))
            | (CountOrPercent::Percent(w), CountOrPercent::Percent(c)) => {
                (w > c).then(|| format!("maxConcurrent {show_wanted} is above the cap {show_cap}"))
            }
            _ => (wanted.of(targeted) > cap.of(targeted)).then(|| {
                format!(
                    "maxConcurrent {show_wanted} ({} of {targeted} targeted nodes) is above the cap {show_cap} ({} nodes)",
                    wanted.of(targeted),
                    cap.of(targeted)
                )
            }),
        }
    }

    /// Whether one of the grant's tolerations covers `t`.
    pub fn covers(&self, t: &Toleration) -> bool {
        self.tolerations.iter().any(|g| toleration_covers(g, t))
    }
}

/// Whether toleration `g` (of a grant) covers `t` (of a task): everything `t` tolerates, `g`
/// tolerates too. The admission policy's CEL says the same.
fn toleration_covers(g: &Toleration, t: &Toleration) -> bool {
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    let exists = |o: &Option<String>| o.as_deref() == Some("Exists");
    let effect = text(&g.effect).is_empty() || text(&t.effect) == text(&g.effect);
    let key = if text(&g.key).is_empty() {
        exists(&g.operator)
    } else {
        text(&t.key) == text(&g.key)
            && (exists(&g.operator) || (!exists(&t.operator) && text(&t.value) == text(&g.value)))
    };
    effect && key
}

fn describe(t: &Toleration) -> String {
    let key = t.key.clone().unwrap_or_default();
    let key = if key.is_empty() { "any key".to_string() } else { key };
    let value = match (t.operator.as_deref(), &t.value) {
        (Some("Exists"), _) => " exists".to_string(),
        (_, Some(v)) => format!("={v}"),
        (_, None) => String::new(),
    };
    let effect = t.effect.clone().filter(|e| !e.is_empty()).unwrap_or_else(|| "any effect".into());
    format!("{key}{value}:{effect}")
}

fn show(value: &IntOrString) -> String {
    match value {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(spec: serde_json::Value) -> HostTaskSpec {
        let mut base = json!({"script": "exit 0"});
        json_patch::merge(&mut base, &spec);
        serde_json::from_value(base).unwrap_or_else(|e| panic!("spec: {e}"))
    }

    fn grant(spec: serde_json::Value) -> HostTaskGrantSpec {
        serde_json::from_value(spec).unwrap_or_else(|e| panic!("grant: {e}"))
    }

    fn toleration(value: serde_json::Value) -> Toleration {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("toleration: {e}"))
    }

    fn reason(grant: &HostTaskGrantSpec, task: &HostTaskSpec, targeted: u32) -> Option<&'static str> {
        grant.refusal("ops", task, targeted).map(|r| r.reason)
    }

    #[test]
    fn the_default_grant_allows_the_service_accounts_without_reboots_at_ten_percent() {
        let default = grant(json!({}));
        assert_eq!(default, HostTaskGrantSpec::default());
        assert_eq!(reason(&default, &task(json!({})), 10), None);
        assert_eq!(reason(&default, &task(json!({"runAs": {"account": "NetworkService"}})), 10), None);
        let system = default.refusal("ops", &task(json!({"runAs": {"account": "System"}})), 10);
        let system = system.unwrap_or_else(|| panic!("System is refused"));
        assert_eq!(system.reason, "AccountNotGranted");
        assert!(system.message.contains("kubectl edit hosttaskgrant ops"), "{}", system.message);
        assert_eq!(reason(&default, &task(json!({"reboot": "IfRequired"})), 10), Some("RebootNotGranted"));
        assert_eq!(
            reason(&default, &task(json!({"rollout": {"maxConcurrent": "20%"}})), 10),
            Some("ConcurrencyNotGranted")
        );
    }

    #[test]
    fn a_host_group_account_is_not_the_grants_to_give() {
        let none = grant(json!({"accounts": []}));
        let as_group = task(json!({"runAs": {"account": "HostGroup", "hostGroup": "log-readers"}}));
        assert_eq!(reason(&none, &as_group, 3), None);
        assert_eq!(reason(&none, &task(json!({})), 3), Some("AccountNotGranted"));
    }

    #[test]
    fn the_cap_compares_like_kinds_as_written_and_mixed_kinds_by_nodes() {
        let cap = |c: serde_json::Value| grant(json!({"maxConcurrent": c}));
        let wanting = |w: serde_json::Value| task(json!({"rollout": {"maxConcurrent": w}}));
        assert_eq!(reason(&cap(json!(5)), &wanting(json!(5)), 100), None);
        assert_eq!(reason(&cap(json!(5)), &wanting(json!(6)), 100), Some("ConcurrencyNotGranted"));
        // 15% and 10% of 5 nodes are both 1 node, but as written 15% is above 10%.
        assert_eq!(reason(&cap(json!("10%")), &wanting(json!("15%")), 5), Some("ConcurrencyNotGranted"));
        // Mixed: 3 nodes against 10% of 40 (4 nodes) is within; of 20 (2 nodes) it is not.
        assert_eq!(reason(&cap(json!("10%")), &wanting(json!(3)), 40), None);
        let refused = cap(json!("10%")).refusal("ops", &wanting(json!(3)), 20);
        let message = refused.map(|r| r.message).unwrap_or_default();
        assert!(message.contains("(3 of 20 targeted nodes) is above the cap 10% (2 nodes)"), "{message}");
    }

    #[test]
    fn a_toleration_is_allowed_only_when_a_granted_one_covers_it() {
        let g = grant(json!({"tolerations": [
            {"key": "patching", "operator": "Exists"},
            {"key": "pool", "value": "gpu", "effect": "NoSchedule"},
        ]}));
        let covered = |t: serde_json::Value| g.covers(&toleration(t));
        assert!(covered(json!({"key": "patching", "operator": "Exists", "effect": "NoExecute"})));
        assert!(covered(json!({"key": "patching", "value": "now"})));
        assert!(covered(json!({"key": "pool", "value": "gpu", "effect": "NoSchedule"})));
        assert!(covered(json!({"key": "pool", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"})));
        assert!(!covered(json!({"key": "pool", "value": "gpu"})), "all effects is more than NoSchedule");
        assert!(!covered(json!({"key": "pool", "operator": "Exists", "effect": "NoSchedule"})));
        assert!(!covered(json!({"key": "pool", "value": "cpu", "effect": "NoSchedule"})));
        assert!(!covered(json!({"operator": "Exists"})), "tolerating every taint is not granted");
        let any = grant(json!({"tolerations": [{"operator": "Exists"}]}));
        assert!(any.covers(&toleration(json!({"operator": "Exists"}))));
        let refused = g.refusal("ops", &task(json!({"tolerations": [{"operator": "Exists"}]})), 3);
        let message = refused.map(|r| (r.reason, r.message)).unwrap_or_default();
        assert_eq!(message.0, "TolerationNotGranted");
        assert!(message.1.contains("does not allow (any key exists:any effect)"), "{}", message.1);
    }
}
