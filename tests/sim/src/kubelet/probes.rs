//! Readiness from exec probes, run in the container's environment at the probe's period.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;

use crate::process::kill_tree;

use super::context::*;
use super::env::*;
use super::sandbox::*;

pub(super) async fn probe_loop(ctx: &PodCtx, env: &[(String, String)], probe: &Probe, name: &str) {
    let period = Duration::from_secs(u64::try_from(probe.period_seconds.unwrap_or(10)).unwrap_or(10).max(1));
    let timeout = Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1)).unwrap_or(1).max(1));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let command = probe.exec.as_ref().and_then(|e| e.command.clone()).unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(
        u64::try_from(probe.initial_delay_seconds.unwrap_or(0)).unwrap_or(0),
    ))
    .await;
    let (mut successes, mut failures) = (0, 0);
    loop {
        let ok = exec_probe(ctx, env, &command, timeout).await;
        if ok {
            successes += 1;
            failures = 0;
        } else {
            failures += 1;
            successes = 0;
        }
        let verdict = if successes >= success_threshold {
            Some(true)
        } else if failures >= failure_threshold {
            Some(false)
        } else {
            None
        };
        if let Some(ready) = verdict
            && is_ready(ctx, name) != ready
        {
            ctx.update(|rt| {
                if let Some(c) = rt.container(false, name) {
                    c.ready = ready;
                }
            });
        }
        tokio::time::sleep(period).await;
    }
}

pub(super) fn is_ready(ctx: &PodCtx, name: &str) -> bool {
    ctx.runtime.lock().unwrap_or_else(|e| e.into_inner()).containers.iter().any(|c| c.name == name && c.ready)
}

pub(super) async fn exec_probe(
    ctx: &PodCtx,
    env: &[(String, String)],
    command: &[String],
    timeout: Duration,
) -> bool {
    let Some((program, args)) = command.split_first() else { return false };
    let Some(program) = resolve_program(ctx, program) else { return false };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args.iter().map(|a| expand(a, env)))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&ctx.sandbox)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let Ok(mut child) = cmd.spawn() else { return false };
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            kill_tree(pid);
            false
        }
    }
}
