//! `why`: a waiting or stalled HostTask explained — the condition that holds it, the nodes it
//! names, and what to do.

use std::io::Write;

use crate::api::{Error, exit};
use crate::view::{View, read};

/// What to do about a Ready or Stalled reason.
fn advice(reason: &str) -> &'static str {
    match reason {
        "FailureBudgetExceeded" => {
            "more nodes failed than rollout.maxFailures allows. Read the failures (kubectl hostprocess status, kubectl hostprocess logs NAME --node NODE), fix the payload (a new revision rolls out again) or what failed on the nodes, then `kubectl hostprocess retry-failed NAME`; or raise rollout.maxFailures"
        }
        "WaitingForMaintenanceWindow" => {
            "nothing is wrong: nodes start when the next maintenance window opens (status.nextWindow). To start now, widen or remove spec.rollout.schedule"
        }
        "WaitingForPromotion" => {
            "the canary nodes succeeded; look at them, then `kubectl hostprocess resume NAME` promotes the revision"
        }
        "CanarySoaking" => {
            "the canary nodes succeeded; the other nodes start by themselves when the soak ends"
        }
        "Paused" => "spec.rollout.paused is set: `kubectl hostprocess resume NAME` starts nodes again",
        "WaitingForHostGroup" | "HostGroupNotFound" => {
            "the task runs as a HostGroup that is not provisioned (or not there) on some nodes: kubectl get hg"
        }
        "NamespaceNotEnabled"
        | "AccountNotGranted"
        | "RebootNotGranted"
        | "ConcurrencyNotGranted"
        | "TolerationNotGranted"
        | "HostGroupNotOffered" => {
            "the namespace's HostTaskGrant does not allow what the task asks (the message names the field): ask a cluster administrator, or ask for less"
        }
        "PodSecurityRejects" => {
            "the namespace does not enforce the privileged Pod Security level: run the task in hostprocess-tasks"
        }
        "InvalidSchedule" => {
            "spec.rollout.schedule names an unknown time zone or a date not on the calendar: correct it"
        }
        "ForeignConfigMap" => {
            "a ConfigMap under the name of the task's script was not written by the operator: delete it, and the operator writes its own"
        }
        "RollingOut" => "nothing is wrong: the rollout goes on, maxConcurrent nodes at a time",
        "NoTargetedNodes" => {
            "the node selector matches no Windows node: check it against kubectl get nodes -l kubernetes.io/os=windows --show-labels"
        }
        _ => "see docs/operations.md, Troubleshooting, for this reason",
    }
}

/// The explanation of `view`. Pure.
pub fn explain(view: &View) -> String {
    let task = format!("HostTask {}/{}", view.namespace, view.name);
    if !view.current {
        return format!(
            "{task}: the operator has not reported on the latest change yet; look again in a moment\n"
        );
    }
    let find = |type_: &str| view.conditions.iter().find(|c| c.type_ == type_);
    let stalled = find("Stalled").filter(|c| c.status == "True");
    let ready = find("Ready");
    let (state, condition) = match (stalled, ready) {
        (Some(stalled), _) => ("stalled", stalled),
        (None, Some(ready)) if ready.status == "True" => {
            return format!("{task} is ready: {}\n", ready.message);
        }
        (None, Some(ready)) => ("waits", ready),
        (None, None) => return format!("{task}: no conditions yet; the operator has not seen it\n"),
    };
    let mut text = format!("{task} {state} ({}): {}\n\n", condition.reason, condition.message);
    let failing: Vec<&crate::view::NodeRow> =
        view.rows.iter().filter(|r| r.state.contains("Fail") || r.state.ends_with("TimedOut")).collect();
    for row in &failing {
        text.push_str(&format!("  {}: {} {}\n", row.node, row.state, row.message));
    }
    if !failing.is_empty() {
        text.push('\n');
    }
    text.push_str(&format!("what to do: {}\n", advice(&condition.reason).replace("NAME", &view.name)));
    text
}

pub async fn why(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let view = read(client, namespace, name).await?;
    write!(out, "{}", explain(&view))?;
    Ok(exit::OK)
}
