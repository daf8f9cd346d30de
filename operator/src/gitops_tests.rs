//! GitOps health: HostTask and HostGroup objects with the status the operator writes in each
//! phase, judged by (a) the rules of kstatus (sigs.k8s.io/cli-utils, what Flux's health checks
//! use) and (b) the Argo CD health check shipped in deploy/argocd, run by a real Lua
//! interpreter (mlua, Lua 5.4; Argo CD runs gopher-lua, Lua 5.1 — the script uses only what both
//! have).

use std::collections::BTreeMap;
use std::path::Path;

use crate::conditions::Blocked;
use crate::hostgroup::plan::{Plan, SetupResult};
use crate::hosttask::rollout::{Limits, NodeResult, plan_once};
use crate::{hostgroup, hosttask};
use hostprocess_crds::{HostGroup, HostTask};
use k8s_openapi::jiff::Timestamp;
use mlua::{Lua, LuaSerdeExt};
use serde_json::{Value, json};

/// kstatus's verdict on a custom resource (cli-utils `kstatus/status`: `checkGenericProperties`;
/// custom kinds have no type-specific rules).
#[derive(Debug, PartialEq, Eq)]
enum KStatus {
    InProgress,
    Current,
    Failed,
    Terminating,
}

fn kstatus(object: &Value) -> KStatus {
    if !object["metadata"]["deletionTimestamp"].is_null() {
        return KStatus::Terminating;
    }
    if let (Some(generation), Some(observed)) =
        (object["metadata"]["generation"].as_i64(), object["status"]["observedGeneration"].as_i64())
        && generation != observed
    {
        return KStatus::InProgress;
    }
    for condition in object["status"]["conditions"].as_array().into_iter().flatten() {
        match (condition["type"].as_str(), condition["status"].as_str()) {
            (Some("Reconciling"), Some("True")) => return KStatus::InProgress,
            (Some("Stalled"), Some("True")) => return KStatus::Failed,
            _ => {}
        }
    }
    KStatus::Current
}

fn deploy(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/argocd").join(file))
        .unwrap()
}

/// Runs the Argo CD health script with `obj` set, as Argo CD does: (status, message).
fn argo_health(object: &Value) -> (String, String) {
    let lua = Lua::new();
    let options =
        mlua::serde::SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false);
    let obj = lua.to_value_with(object, options).unwrap();
    lua.globals().set("obj", obj).unwrap();
    let hs: mlua::Table = lua.load(deploy("health.lua")).eval().unwrap();
    (hs.get("status").unwrap(), hs.get("message").unwrap())
}

fn now() -> Timestamp {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn task_object(status: Option<hostprocess_crds::HostTaskStatus>, generation: i64) -> Value {
    let mut task = HostTask::new("patch", serde_json::from_value(json!({"script": "exit 0"})).unwrap());
    task.metadata.namespace = Some("hostprocess-tasks".into());
    task.metadata.generation = Some(generation);
    task.status = status;
    serde_json::to_value(&task).unwrap()
}

/// The status a HostTask has before the operator wrote one: the CRD's default.
fn not_observed() -> hostprocess_crds::HostTaskStatus {
    hostprocess_crds::HostTaskStatus { observed_generation: Some(0), ..Default::default() }
}

fn nodes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("win-{i:03}")).collect()
}

fn failed(node: &str) -> NodeResult {
    NodeResult::Failed(Box::new(hostprocess_crds::hosttask::NodeFailure {
        node: node.into(),
        exit_code: Some(1),
        reason: "ExitCode".into(),
        message: "exit code 1".into(),
        attempts: 1,
    }))
}

/// HostTasks in every phase, with the status the operator's status function writes.
fn task_phases() -> Vec<(&'static str, Value)> {
    let limits = Limits::new(2, 0);
    let status = |decision, blocked: Option<&Blocked>, paused| {
        Some(hosttask::status::status(None, Some(2), "abc", decision, blocked, paused, now()))
    };
    let rolling = plan_once(&nodes(4), &[], &BTreeMap::new(), limits);
    let all_done: BTreeMap<String, NodeResult> =
        nodes(4).into_iter().map(|n| (n, NodeResult::Succeeded { reboot_required: false })).collect();
    let complete = plan_once(&nodes(4), &nodes(4), &all_done, limits);
    let broken = BTreeMap::from([("win-000".to_string(), failed("win-000"))]);
    let halted = plan_once(&nodes(4), &nodes(1), &broken, limits);
    let paused_limits = Limits { paused: true, ..limits };
    let paused = plan_once(&nodes(4), &[], &BTreeMap::new(), paused_limits);
    let blocked = Blocked { reason: "PodSecurityRejects", message: "label the namespace privileged".into() };
    let mut deleting = task_object(status(Some(&complete), None, false), 2);
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-23T10:05:00Z");
    vec![
        // The API server defaults a missing status to `observedGeneration: 0` (crds::crds()).
        ("not yet seen by the operator", task_object(Some(not_observed()), 1)),
        ("rolling out", task_object(status(Some(&rolling), None, false), 2)),
        ("complete", task_object(status(Some(&complete), None, false), 2)),
        ("halted by failures", task_object(status(Some(&halted), None, false), 2)),
        ("paused", task_object(status(Some(&paused), None, true), 2)),
        ("refused by Pod Security", task_object(status(None, Some(&blocked), false), 2)),
        ("spec changed, not observed yet", task_object(status(Some(&complete), None, false), 3)),
        ("being deleted", deleting),
    ]
}

#[test]
fn kstatus_judges_hosttasks_in_every_phase_as_flux_expects() {
    let verdicts: Vec<(&str, KStatus)> =
        task_phases().into_iter().map(|(phase, o)| (phase, kstatus(&o))).collect();
    assert_eq!(
        verdicts,
        [
            // kstatus reads a custom resource without status as Current: the operator writes
            // status in its first reconcile, so this lasts until the operator has seen the object.
            ("not yet seen by the operator", KStatus::InProgress),
            ("rolling out", KStatus::InProgress),
            ("complete", KStatus::Current),
            ("halted by failures", KStatus::Failed),
            // Paused is not progressing and not failed: Flux does not wait on a paused rollout.
            ("paused", KStatus::Current),
            ("refused by Pod Security", KStatus::Failed),
            ("spec changed, not observed yet", KStatus::InProgress),
            ("being deleted", KStatus::Terminating),
        ]
    );
}

#[test]
fn the_argo_cd_health_check_judges_hosttasks_in_every_phase() {
    let health: Vec<(&str, String)> =
        task_phases().into_iter().map(|(phase, o)| (phase, argo_health(&o).0)).collect();
    let expected = [
        ("not yet seen by the operator", "Progressing"),
        ("rolling out", "Progressing"),
        ("complete", "Healthy"),
        ("halted by failures", "Degraded"),
        ("paused", "Suspended"),
        ("refused by Pod Security", "Degraded"),
        ("spec changed, not observed yet", "Progressing"),
        ("being deleted", "Progressing"),
    ];
    assert_eq!(health, expected.map(|(p, h)| (p, h.to_string())));
    // The message says why, from the condition.
    let (_, halted) = &task_phases()[3];
    let (status, message) = argo_health(halted);
    assert_eq!(status, "Degraded");
    assert!(message.contains("nodes failed, more than maxFailures allows"), "{message}");
}

#[test]
fn hostgroups_are_judged_the_same_way_by_kstatus_and_argo_cd() {
    let group_object = |plan: &Plan, deleting: bool| {
        let mut group = HostGroup::new(
            "app-operators",
            serde_json::from_value(json!({"groupName": "AppOperators"})).unwrap(),
        );
        group.metadata.generation = Some(1);
        group.status = Some(hostgroup::status::status(None, Some(1), Some(plan), None, deleting, now()));
        let mut value = serde_json::to_value(&group).unwrap();
        if deleting {
            value["metadata"]["deletionTimestamp"] = json!("2026-11-23T10:05:00Z");
        }
        value
    };
    let plan = |results: &[SetupResult]| Plan {
        provisioning: results.iter().enumerate().map(|(i, r)| (format!("win-{i:03}"), r.clone())).collect(),
        ..Plan::default()
    };
    let failure = SetupResult::Failed { reason: "ProvisionFailed".into(), message: "no such path".into() };
    let cases = [
        (
            group_object(&plan(&[SetupResult::Done, SetupResult::Pending]), false),
            KStatus::InProgress,
            "Progressing",
        ),
        (group_object(&plan(&[SetupResult::Done, SetupResult::Done]), false), KStatus::Current, "Healthy"),
        (group_object(&plan(&[SetupResult::Done, failure]), false), KStatus::Failed, "Degraded"),
        (group_object(&Plan::default(), true), KStatus::Terminating, "Progressing"),
    ];
    for (object, kstatus_verdict, argo_verdict) in cases {
        assert_eq!(kstatus(&object), kstatus_verdict, "{}", object["status"]);
        assert_eq!(argo_health(&object).0, argo_verdict, "{}", object["status"]);
    }
}

#[test]
fn the_argocd_cm_patch_carries_the_tested_script_for_both_kinds() {
    let patch: Value = yaml_serde::from_str(&deploy("argocd-cm.yaml")).unwrap();
    let script = deploy("health.lua");
    for kind in ["HostTask", "HostGroup"] {
        let key = format!("resource.customizations.health.hostprocess.dev_{kind}");
        assert_eq!(patch["data"][&key].as_str(), Some(script.as_str()), "{key}");
    }
}
