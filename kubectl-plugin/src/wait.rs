//! `wait`: what a CI job or a GitOps post-sync hook calls. Exit 0 once the latest revision
//! completed within its failure budget; 1 when it halted or stalled, with the reason; 3 when the
//! timeout passed first.

use std::io::Write;
use std::time::{Duration, Instant};

use hostprocess_crds::HostTask;
use kube::Api;

use crate::api::{Error, exit};
use crate::cli::WaitArgs;

/// Where a rollout stands for `wait`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The status describes the latest spec and the rollout completed.
    Complete(String),
    /// It halted or cannot go on: the reason and message.
    Failed(String),
    /// Still going, or waiting (a window, a promotion): what it says.
    Waiting(String),
}

fn condition<'a>(
    task: &'a HostTask,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    task.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

/// The verdict on `task` as the API returned it. Pure.
pub fn judge(task: &HostTask) -> Verdict {
    let Some(status) = &task.status else {
        return Verdict::Waiting("the operator has not reported yet".into());
    };
    if status.observed_generation.is_none() || status.observed_generation != task.metadata.generation {
        return Verdict::Waiting("the operator has not reported on the latest change yet".into());
    }
    if let Some(stalled) = condition(task, "Stalled").filter(|c| c.status == "True") {
        return Verdict::Failed(format!("{}: {}", stalled.reason, stalled.message));
    }
    match condition(task, "Ready") {
        Some(ready) if ready.status == "True" => Verdict::Complete(ready.message.clone()),
        Some(ready) => Verdict::Waiting(format!("{}: {}", ready.reason, ready.message)),
        None => Verdict::Waiting("no Ready condition yet".into()),
    }
}

pub async fn wait(
    client: &kube::Client,
    namespace: &str,
    args: &WaitArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let tasks: Api<HostTask> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + args.timeout;
    let mut last = String::new();
    loop {
        let task = crate::api::get_task(&tasks, namespace, &args.name).await?;
        let what = format!("HostTask {namespace}/{}", args.name);
        match judge(&task) {
            Verdict::Complete(message) => {
                writeln!(out, "{what} complete: {message}")?;
                return Ok(exit::OK);
            }
            Verdict::Failed(why) => {
                writeln!(out, "{what} did not complete: {why}")?;
                writeln!(out, "(kubectl hostprocess why {} -n {namespace} says what to do)", args.name)?;
                return Ok(exit::FAILED);
            }
            Verdict::Waiting(now) => {
                if Instant::now() >= deadline {
                    let timeout = crate::render::duration(args.timeout.as_secs());
                    writeln!(out, "{what} not complete after {timeout}: {now}")?;
                    return Ok(exit::TIMED_OUT);
                }
                if now != last {
                    writeln!(out, "waiting: {now}")?;
                    out.flush()?;
                    last = now;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
    }
}
