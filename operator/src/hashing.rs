//! Short, stable hashes of what a task runs: its revision.

use hostprocess_crds::{HostGroupSpec, HostTaskSpec};
use serde_json::json;

/// FNV-1a, 64 bits: stable across runs and platforms, enough to tell revisions apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A keyed hash (HMAC-SHA256) of `value`'s JSON, 20 hex digits: what a task's referenced Secrets
/// and ConfigMaps hold, in its published revision. Without the key nobody can test a guess of a
/// Secret's value against the revision.
pub fn keyed(key: &[u8], value: &serde_json::Value) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        // HMAC takes a key of any length; this cannot happen.
        return String::new();
    };
    mac.update(value.to_string().as_bytes());
    let digest = mac.finalize().into_bytes();
    digest.iter().take(10).map(|b| format!("{b:02x}")).collect()
}

/// A hash of an object's JSON: what was applied, to skip applying it again.
pub fn content_hash(value: &serde_json::Value) -> String {
    format!("{:016x}", fnv1a(value.to_string().as_bytes()))
}

/// The revision of a task: a hash of what runs and how (payload, account, limits, timeout,
/// retries, mode, reboot policy), not of where or how fast it rolls out — changing the node
/// selector, tolerations, `maxConcurrent`, `maxFailures` or `paused` does not run anything again.
/// `referenced` is the content of referenced Secrets/ConfigMaps when the task asks to track it.
/// A `rerun` token and a health check are part of it when set (and only then: a task that never
/// set one keeps the revision it had before the field existed).
pub fn revision(spec: &HostTaskSpec, referenced: Option<&str>) -> String {
    let mut what = json!({
        "image": spec.image, "command": spec.command, "args": spec.args, "script": spec.script,
        "env": spec.env, "envFrom": spec.env_from, "runAs": spec.run_as, "limits": spec.limits,
        "timeout": spec.timeout, "retries": spec.retries, "mode": spec.mode, "reboot": spec.reboot,
        "referenced": referenced,
    });
    if let Some(token) = &spec.rerun {
        what["rerun"] = token.as_str().into();
    }
    if let Some(check) = &spec.health_check {
        what["healthCheck"] = json!(check);
    }
    format!("{:010x}", fnv1a(what.to_string().as_bytes()) & 0xff_ffff_ffff)
}

/// The revision of a HostGroup: what each node enforces (the group, its members and grants), not
/// where nor how it is described — changing the node selector, tolerations, namespaces or the
/// description provisions nothing again (a description reaches a node with its next
/// provisioning).
pub fn group_revision(spec: &HostGroupSpec) -> String {
    let what = json!({"groupName": spec.group_name, "members": spec.members, "grants": spec.grants});
    format!("{:010x}", fnv1a(what.to_string().as_bytes()) & 0xff_ffff_ffff)
}

/// A short hash of a name: node names can be long, pod names built from them must not be.
pub fn short(name: &str) -> String {
    format!("{:08x}", fnv1a(name.as_bytes()) & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_data_is_hashed_with_the_key() {
        let secret = json!([{"secret": "db", "data": [{"password": "MTIzNA=="}, null]}]);
        let (a, b) = (keyed(b"key-a", &secret), keyed(b"key-b", &secret));
        assert_eq!(a, keyed(b"key-a", &secret), "stable under one key");
        assert_ne!(a, b, "another key, another hash: a guess cannot be checked without it");
        assert_eq!(a.len(), 20);
        assert_ne!(keyed(b"key-a", &json!([{"secret": "db", "data": [{"password": "MTIzNQ=="}, null]}])), a);
    }
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn spec(yaml: serde_json::Value) -> HostTaskSpec {
        serde_json::from_value(yaml).unwrap_or_else(|e| panic!("spec: {e}"))
    }

    #[test]
    fn the_revision_follows_what_runs_not_how_it_rolls_out() {
        let base = spec(json!({"command": ["C:\\tools\\patch.exe", "/quiet"]}));
        let r = revision(&base, None);
        assert_eq!(r.len(), 10);
        assert_eq!(revision(&base.clone(), None), r, "stable");

        let mut rollout = base.clone();
        rollout.rollout.max_concurrent = IntOrString::Int(50);
        rollout.rollout.paused = true;
        rollout.node_selector = Some(Default::default());
        assert_eq!(revision(&rollout, None), r, "rollout settings and targeting are not a new revision");

        let mut payload = base.clone();
        payload.args = Some(vec!["/norestart".into()]);
        assert_ne!(revision(&payload, None), r);
        assert_ne!(revision(&base, Some("secret v2")), r, "tracked referenced data is part of it");

        let mut rerun = base.clone();
        rerun.rerun = Some("2026-12-02".into());
        let again = revision(&rerun, None);
        assert_ne!(again, r, "a rerun token is a new revision");
        rerun.rerun = Some("2026-12-03".into());
        assert_ne!(revision(&rerun, None), again, "and every new token another one");

        let mut retried = base.clone();
        retried.retry_failed = Some("CHG-4712".into());
        assert_eq!(revision(&retried, None), r, "retrying the failed nodes is not a new revision");
        let mut checked = base.clone();
        checked.health_check =
            Some(hostprocess_crds::HealthCheck { command: vec!["check.exe".into()], timeout: "5m".into() });
        assert_ne!(revision(&checked, None), r, "a health check is part of what runs");
    }

    #[test]
    fn revisions_of_tasks_without_a_rerun_token_are_what_they_were() {
        // Computed before `rerun` existed: upgrading the operator runs nothing again.
        let task = spec(json!({"command": ["C:\\tools\\patch.exe", "/quiet"]}));
        assert_eq!(revision(&task, None), "4ce9c19274");
    }
}
