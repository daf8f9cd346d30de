//! What every HostProcess pod the operator makes has in common — task DaemonSet pods, HostGroup
//! setup pods, reboot pods: Windows, host network, a HostProcess security context at pod level,
//! no service-account token, the usual Windows taints tolerated.

use k8s_openapi::api::core::v1::{
    Container, PodOS, PodSecurityContext, PodSpec, SecurityContext, Toleration, Volume,
    WindowsSecurityContextOptions,
};

/// The built-in account setup and reboot pods run as.
pub const SYSTEM: &str = r"NT AUTHORITY\SYSTEM";

/// The executor inside its own image (HostProcess resolves a relative program in the image).
pub const IMAGE_EXECUTOR: &str = "node-executor.exe";

/// The program and arguments of a container that runs `command` with the executor at `executor`:
/// the invocation comes from the protocol types the executor parses with, never from strings.
pub fn invocation(executor: &str, command: &hostprocess_protocol::Command) -> Vec<String> {
    std::iter::once(executor.to_string()).chain(command.to_args()).collect()
}

/// The taints Windows node pools usually carry, tolerated by every pod the operator makes.
pub fn windows_tolerations() -> Vec<Toleration> {
    ["os", "node.kubernetes.io/os"]
        .into_iter()
        .map(|key| Toleration {
            key: Some(key.into()),
            operator: Some("Equal".into()),
            value: Some("windows".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        })
        .collect()
}

/// A container of a HostProcess pod that runs as SYSTEM whatever account the pod runs as
/// (the init container that prepares the node for a task).
pub fn system_container_context() -> SecurityContext {
    SecurityContext {
        windows_options: Some(WindowsSecurityContextOptions {
            host_process: Some(true),
            run_as_user_name: Some(SYSTEM.into()),
            ..WindowsSecurityContextOptions::default()
        }),
        ..SecurityContext::default()
    }
}

/// A HostProcess pod spec running as `user`, with the fields every such pod needs set; the
/// caller adds placement, containers and restart behaviour.
pub fn spec(user: &str) -> PodSpec {
    PodSpec {
        os: Some(PodOS { name: "windows".into() }),
        // HostProcess pods must say so explicitly.
        host_network: Some(true),
        security_context: Some(PodSecurityContext {
            windows_options: Some(WindowsSecurityContextOptions {
                host_process: Some(true),
                run_as_user_name: Some(user.into()),
                ..WindowsSecurityContextOptions::default()
            }),
            ..PodSecurityContext::default()
        }),
        // The payloads need no API access; they get no token.
        automount_service_account_token: Some(false),
        ..PodSpec::default()
    }
}

/// A SYSTEM HostProcess pod pinned to `node` (it is about this node, whatever the scheduler
/// would say) running one executor container.
pub fn pinned_system_spec(
    node: &str,
    tolerations: Vec<Toleration>,
    restart_policy: &str,
    container: Container,
    volumes: Option<Vec<Volume>>,
) -> PodSpec {
    PodSpec {
        node_name: Some(node.to_string()),
        tolerations: Some(tolerations),
        restart_policy: Some(restart_policy.into()),
        containers: vec![container],
        volumes,
        ..spec(SYSTEM)
    }
}
