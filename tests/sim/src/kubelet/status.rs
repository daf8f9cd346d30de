//! What the kubelet knows of a pod, turned into the `PodStatus` it reports: phase, conditions,
//! container states with restart counts.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// What the kubelet knows of one pod, turned into `PodStatus` on every change.
pub(super) struct PodRuntime {
    pub(super) restart_policy: String,
    pub(super) node_ip: String,
    pub(super) start_time: Time,
    pub(super) init: Vec<ContainerStatus>,
    pub(super) containers: Vec<ContainerStatus>,
    pub(super) initialized: bool,
    /// Containers that will not run again (restart policy says no).
    pub(super) finished: HashSet<String>,
    pub(super) conditions: Vec<PodCondition>,
    pub(super) message: Option<String>,
}

impl PodRuntime {
    pub(super) fn phase(&self) -> &'static str {
        if !self.initialized {
            let failed =
                self.init.iter().any(|c| self.finished.contains(&c.name) && terminated_code(c) != Some(0));
            return if failed { "Failed" } else { "Pending" };
        }
        let all_finished = self.containers.iter().all(|c| self.finished.contains(&c.name));
        if !all_finished {
            let started = self
                .containers
                .iter()
                .any(|c| c.restart_count > 0 || state_is(c, "running") || state_is(c, "terminated"));
            return if started { "Running" } else { "Pending" };
        }
        if self.containers.iter().all(|c| terminated_code(c) == Some(0)) { "Succeeded" } else { "Failed" }
    }

    pub(super) fn status(&mut self) -> PodStatus {
        let all_ready =
            self.initialized && !self.containers.is_empty() && self.containers.iter().all(|c| c.ready);
        let wanted = [
            ("PodScheduled", true),
            ("Initialized", self.initialized),
            ("ContainersReady", all_ready),
            ("Ready", all_ready),
        ];
        let now = Time(Timestamp::now());
        let mut conditions = Vec::new();
        for (kind, on) in wanted {
            let status = if on { "True" } else { "False" };
            let previous = self.conditions.iter().find(|c| c.type_ == kind && c.status == status);
            conditions.push(PodCondition {
                type_: kind.into(),
                status: status.into(),
                last_transition_time: Some(
                    previous.and_then(|c| c.last_transition_time.clone()).unwrap_or(now.clone()),
                ),
                ..PodCondition::default()
            });
        }
        self.conditions = conditions.clone();
        PodStatus {
            phase: Some(self.phase().into()),
            conditions: Some(conditions),
            // HostProcess pods use the host's network: the pod's address is the node's.
            host_ip: Some(self.node_ip.clone()),
            host_ips: Some(vec![HostIP { ip: self.node_ip.clone() }]),
            pod_ip: Some(self.node_ip.clone()),
            pod_ips: Some(vec![PodIP { ip: self.node_ip.clone() }]),
            start_time: Some(self.start_time.clone()),
            init_container_statuses: (!self.init.is_empty()).then(|| self.init.clone()),
            container_statuses: Some(self.containers.clone()),
            message: self.message.clone(),
            ..PodStatus::default()
        }
    }

    pub(super) fn container(&mut self, init: bool, name: &str) -> Option<&mut ContainerStatus> {
        let list = if init { &mut self.init } else { &mut self.containers };
        list.iter_mut().find(|c| c.name == name)
    }
}

pub(super) fn state_is(status: &ContainerStatus, which: &str) -> bool {
    status.state.as_ref().is_some_and(|s| match which {
        "running" => s.running.is_some(),
        "terminated" => s.terminated.is_some(),
        _ => s.waiting.is_some(),
    })
}

pub(super) fn terminated_code(status: &ContainerStatus) -> Option<i32> {
    status.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code)
}

pub(super) fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }),
        ..ContainerState::default()
    }
}

pub(super) fn initial_status(container: &Container, previous: Option<&ContainerStatus>) -> ContainerStatus {
    let mut status = ContainerStatus {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: format!("sim://{}", container.image.clone().unwrap_or_default()),
        state: Some(waiting("ContainerCreating", None)),
        ..ContainerStatus::default()
    };
    if let Some(previous) = previous {
        status.restart_count = previous.restart_count;
        status.last_state = previous.last_state.clone();
        if let Some(state) = &previous.state {
            if let Some(running) = &state.running {
                // The node went down under it: the runtime cannot say how it ended.
                status.last_state = Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 255,
                        reason: Some("Unknown".into()),
                        started_at: running.started_at.clone(),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                });
                status.restart_count += 1;
            } else if state.terminated.is_some() {
                status.last_state = Some(state.clone());
                status.restart_count += 1;
            }
        }
    }
    status
}

/// Whether a container had started before (the pod was running when the node went down).
pub(super) fn had_started(status: &ContainerStatus) -> bool {
    status.restart_count > 0 || state_is(status, "running") || state_is(status, "terminated")
}

/// A container of a `Never` pod after a reboot: not started again. It keeps how it ended, or
/// ends as the runtime reports a container it lost (exit 255, `Unknown`).
pub(super) fn ended_at_reboot(container: &Container, previous: Option<&ContainerStatus>) -> ContainerStatus {
    let mut status = initial_status(container, None);
    let Some(previous) = previous else { return status };
    status.restart_count = previous.restart_count;
    status.last_state = previous.last_state.clone();
    let terminated = previous.state.as_ref().and_then(|s| s.terminated.clone()).unwrap_or_else(|| {
        ContainerStateTerminated {
            exit_code: 255,
            reason: Some("Unknown".into()),
            started_at: previous
                .state
                .as_ref()
                .and_then(|s| s.running.as_ref())
                .and_then(|r| r.started_at.clone()),
            ..ContainerStateTerminated::default()
        }
    });
    status.state = Some(ContainerState { terminated: Some(terminated), ..ContainerState::default() });
    status
}
