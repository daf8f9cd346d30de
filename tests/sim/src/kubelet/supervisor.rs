//! The container supervisor: init containers in order, then the containers, each restarted per
//! `restartPolicy` with back-off; exit codes and termination messages as a kubelet reports them.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::{Client, ResourceExt};
use tokio::sync::{Notify, watch};

use super::config::*;
use super::context::*;
use super::env::*;
use super::probes::*;
use super::sandbox::*;
use super::status::*;

pub(super) async fn run_pod(
    client: Client,
    config: Arc<KubeletConfig>,
    pod: Pod,
    stop: watch::Receiver<bool>,
) {
    let Some(spec) = pod.spec.clone() else { return };
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return;
    }
    let previous = |list: Option<&Vec<ContainerStatus>>, name: &str| {
        list.and_then(|l| l.iter().find(|c| c.name == name).cloned())
    };
    let old = pod.status.clone().unwrap_or_default();
    let init_containers = spec.init_containers.clone().unwrap_or_default();
    let runtime = PodRuntime {
        restart_policy: spec.restart_policy.clone().unwrap_or_else(|| "Always".into()),
        node_ip: config.node_ip.clone(),
        start_time: old.start_time.clone().unwrap_or(Time(Timestamp::now())),
        // Init containers run again after a reboot, as on a real node.
        init: init_containers.iter().map(|c| initial_status(c, None)).collect(),
        containers: spec
            .containers
            .iter()
            .map(|c| initial_status(c, previous(old.container_statuses.as_ref(), &c.name).as_ref()))
            .collect(),
        initialized: init_containers.is_empty(),
        finished: HashSet::new(),
        conditions: old.conditions.clone().unwrap_or_default(),
        message: None,
    };
    // A kubelet does not start a pod again that must not restart and already ran (after a reboot
    // its containers' processes are gone): the pod ends, Failed unless every container had
    // exited 0 — kubelet's computePodActions creates no new sandbox for it.
    let mut runtime = runtime;
    let ended = runtime.restart_policy == "Never" && old.container_statuses.iter().flatten().any(had_started);
    if ended {
        runtime.initialized = true;
        runtime.containers = spec
            .containers
            .iter()
            .map(|c| ended_at_reboot(c, previous(old.container_statuses.as_ref(), &c.name).as_ref()))
            .collect();
        runtime.finished = spec.containers.iter().map(|c| c.name.clone()).collect();
    }
    let uid = pod.uid().unwrap_or_default();
    let pod_dir = config.root.join("pods").join(&uid);
    let ctx = Arc::new(PodCtx {
        client,
        sandbox: pod_dir.join("sandbox"),
        logs: pod_dir.join("logs"),
        config,
        pod,
        runtime: Mutex::new(runtime),
        changed: Notify::new(),
    });
    if ended {
        ctx.write_status().await;
        return;
    }
    let writer = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                ctx.changed.notified().await;
                ctx.write_status().await;
            }
        })
    };
    ctx.changed.notify_one();
    run_containers(&ctx, &init_containers, &spec.containers, stop).await;
    writer.abort();
    ctx.write_status().await;
}

pub(super) async fn run_containers(
    ctx: &Arc<PodCtx>,
    init: &[Container],
    containers: &[Container],
    stop: watch::Receiver<bool>,
) {
    // Volumes, retried like a kubelet retries a mount that is not possible yet.
    loop {
        match prepare_sandbox(ctx).await {
            Ok(()) => break,
            Err(message) => {
                ctx.update(|rt| {
                    rt.message = Some(message.clone());
                    for c in rt.init.iter_mut().chain(rt.containers.iter_mut()) {
                        c.state = Some(waiting("ContainerCreating", Some(message.clone())));
                    }
                });
                if wait_or_stop(&stop, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    }
    ctx.update(|rt| rt.message = None);
    for container in init {
        if !supervise(ctx, container, true, stop.clone()).await {
            return;
        }
    }
    ctx.update(|rt| rt.initialized = true);
    let tasks: Vec<_> = containers
        .iter()
        .map(|c| {
            let (ctx, c, stop) = (ctx.clone(), c.clone(), stop.clone());
            tokio::spawn(async move { supervise(&ctx, &c, false, stop).await })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// Sleeps, or returns true early when the pod is being stopped.
pub(super) async fn wait_or_stop(stop: &watch::Receiver<bool>, duration: Duration) -> bool {
    let mut stop = stop.clone();
    if *stop.borrow_and_update() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Runs one container, restarting it as the pod's restart policy says. For an init container,
/// returns whether it succeeded (so the next one may start).
pub(super) async fn supervise(
    ctx: &Arc<PodCtx>,
    container: &Container,
    init: bool,
    stop: watch::Receiver<bool>,
) -> bool {
    let name = container.name.clone();
    let policy = ctx.runtime.lock().unwrap_or_else(|e| e.into_inner()).restart_policy.clone();
    let mut backoff = ctx.config.restart_backoff;
    loop {
        if *stop.borrow() {
            return false;
        }
        let ran = Instant::now();
        let code = match run_once(ctx, container, init, &stop).await {
            Attempt::Stopped => return false,
            Attempt::Exited(code) => code,
        };
        let restart = match policy.as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            // An init container that succeeded is done, whatever the policy.
            _ => !init || code != 0,
        };
        if !restart {
            ctx.update(|rt| {
                rt.finished.insert(name.clone());
            });
            return code == 0;
        }
        // The real kubelet forgets the back-off once a container ran long enough, and restarts
        // a container the first time without waiting.
        if ran.elapsed() > ctx.config.restart_backoff_cap * 2 {
            backoff = ctx.config.restart_backoff;
        }
        let restarts = ctx
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .container(init, &name)
            .map_or(0, |c| c.restart_count);
        let delay = if restarts == 0 {
            Duration::ZERO
        } else {
            let delay = backoff;
            backoff = (backoff * 2).min(ctx.config.restart_backoff_cap);
            delay
        };
        let pod_name = ctx.pod.name_any();
        ctx.update(|rt| {
            if let Some(c) = rt.container(init, &name) {
                c.last_state = c.state.take();
                c.state = Some(if delay.is_zero() {
                    waiting("ContainerCreating", None)
                } else {
                    waiting(
                        "CrashLoopBackOff",
                        Some(format!(
                            "back-off {}s restarting failed container={name} pod={pod_name}",
                            delay.as_secs()
                        )),
                    )
                });
            }
        });
        if wait_or_stop(&stop, delay).await {
            return false;
        }
        ctx.update(|rt| {
            if let Some(c) = rt.container(init, &name) {
                c.restart_count += 1;
            }
        });
    }
}

pub(super) enum Attempt {
    Exited(i32),
    Stopped,
}

pub(super) async fn run_once(
    ctx: &Arc<PodCtx>,
    container: &Container,
    init: bool,
    stop: &watch::Receiver<bool>,
) -> Attempt {
    let name = container.name.clone();
    let env = loop {
        match container_env(ctx, container).await {
            Ok(env) => break env,
            Err(message) => {
                ctx.update(|rt| {
                    if let Some(c) = rt.container(init, &name) {
                        c.state = Some(waiting("CreateContainerConfigError", Some(message.clone())));
                    }
                });
                if wait_or_stop(stop, Duration::from_secs(1)).await {
                    return Attempt::Stopped;
                }
            }
        }
    };
    let restart_count = ctx
        .runtime
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .container(init, &name)
        .map(|c| c.restart_count)
        .unwrap_or(0);
    let log = ctx.logs.join(format!("{name}-{restart_count}.log"));
    let started_at = Time(Timestamp::now());
    let mut process = match start(ctx, container, &env, &log) {
        Ok(process) => process,
        Err(message) => {
            // What containerd reports when the entrypoint cannot be started.
            ctx.update(|rt| {
                if let Some(c) = rt.container(init, &name) {
                    c.state = Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 128,
                            reason: Some("StartError".into()),
                            message: Some(message.clone()),
                            started_at: Some(started_at.clone()),
                            finished_at: Some(Time(Timestamp::now())),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    });
                }
            });
            return Attempt::Exited(128);
        }
    };
    let probe = container.readiness_probe.clone().filter(|p| p.exec.is_some() && !init);
    ctx.update(|rt| {
        if let Some(c) = rt.container(init, &name) {
            c.state = Some(ContainerState {
                running: Some(ContainerStateRunning { started_at: Some(started_at.clone()) }),
                ..ContainerState::default()
            });
            c.started = Some(true);
            c.container_id = Some(format!("sim://{}", process.pid()));
            // Without a readiness probe a running container is ready.
            c.ready = !init && container.readiness_probe.is_none();
        }
    });
    let prober = probe.map(|probe| {
        let (ctx, env, name) = (ctx.clone(), env.clone(), name.clone());
        tokio::spawn(async move { probe_loop(&ctx, &env, &probe, &name).await })
    });
    let mut stop_signal = stop.clone();
    let code = tokio::select! {
        code = process.wait() => Some(code),
        _ = stop_signal.wait_for(|s| *s) => None,
    };
    if let Some(prober) = prober {
        prober.abort();
    }
    let Some(code) = code else {
        let grace = ctx.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        process.stop(Duration::from_secs(u64::try_from(grace).unwrap_or(30))).await;
        return Attempt::Stopped;
    };
    drop(process);
    let message = termination_message(ctx, container, code, &log);
    ctx.update(|rt| {
        if let Some(c) = rt.container(init, &name) {
            c.ready = false;
            c.started = Some(false);
            c.state = Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                    message,
                    started_at: Some(started_at.clone()),
                    finished_at: Some(Time(Timestamp::now())),
                    container_id: c.container_id.clone(),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            });
        }
    });
    Attempt::Exited(code)
}

/// `terminationMessagePolicy`: the file at `terminationMessagePath` (under the sandbox), or with
/// `FallbackToLogsOnError` the tail of the log when the file is empty and the container failed.
pub(super) fn termination_message(
    ctx: &PodCtx,
    container: &Container,
    code: i32,
    log: &Path,
) -> Option<String> {
    let path = container.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
    let from_file = std::fs::read(under(&ctx.sandbox, &path)).ok().filter(|b| !b.is_empty());
    if let Some(bytes) = from_file {
        return Some(String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).into_owned());
    }
    if container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") && code != 0 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(80).collect();
        let tail = lines.into_iter().rev().collect::<Vec<_>>().join("\n");
        let start = tail.len().saturating_sub(2048);
        let start = (start..tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(tail.len());
        return Some(tail[start..].to_string()).filter(|s| !s.is_empty());
    }
    None
}
