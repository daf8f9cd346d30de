//! `hostprocess-sim` run as a user runs it: `up` until SIGTERM (every process it started stops
//! with it), and `node NAME ACTION` driving a node from outside, seen through the API as the
//! real node-lifecycle controller and the kubelet report it.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hostprocess_sim::wait::until;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

fn env_value(env: &str, key: &str) -> String {
    env.lines().find_map(|l| l.strip_prefix(key)).expect(key).to_string()
}

/// Ready condition of a node: (status, message).
async fn ready(client: &kube::Client, node: &str) -> (String, String) {
    let node: Node = Api::all(client.clone()).get(node).await.unwrap();
    let condition =
        node.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    (condition.status, condition.message.unwrap_or_default())
}

fn sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hostprocess-sim")).args(args).output().expect("hostprocess-sim runs")
}

#[tokio::test]
async fn up_runs_until_sigterm_and_nodes_are_driven_from_outside() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("sim.env");
    let mut up = Command::new(env!("CARGO_BIN_EXE_hostprocess-sim"))
        .args(["up", "--nodes", "2", "--env-file"])
        .arg(&env_file)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let env = until("the environment file", Duration::from_secs(120), || async {
        std::fs::read_to_string(&env_file).ok()
    })
    .await
    .unwrap();
    let control = env_value(&env, "HOSTPROCESS_SIM_CONTROL=");
    let client =
        hostprocess_sim::client_from_kubeconfig(Path::new(&env_value(&env, "KUBECONFIG="))).await.unwrap();
    let root = i32::try_from(up.id()).unwrap();
    let started: Vec<i32> = hostprocess_sim::process::tree(root).into_iter().filter(|p| *p != root).collect();
    assert!(started.len() >= 4, "etcd, kube-apiserver, kube-controller-manager, kube-scheduler: {started:?}");

    // NotReady with the node up: the kubelet says why, and says Ready again on recover.
    let out = sim(&["node", "win-001", "not-ready", "--control", &control]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "win-001: not-ready");
    until("win-001 NotReady", Duration::from_secs(20), || async {
        let (status, message) = ready(&client, "win-001").await;
        (status == "False" && message == "container runtime is down").then_some(())
    })
    .await
    .unwrap();
    assert!(sim(&["node", "win-001", "recover", "--control", &control]).status.success());
    until("win-001 Ready again", Duration::from_secs(20), || async {
        (ready(&client, "win-001").await.0 == "True").then_some(())
    })
    .await
    .unwrap();

    // Lost: the real node-lifecycle controller marks it Unknown once its Lease runs out.
    assert!(sim(&["node", "win-000", "lose", "--control", &control]).status.success());
    until("win-000 Unknown", Duration::from_secs(40), || async {
        (ready(&client, "win-000").await.0 == "Unknown").then_some(())
    })
    .await
    .unwrap();
    let listed = sim(&["nodes", "--control", &control]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "win-000 lost boots=1\nwin-001 ready boots=1\n");

    // What cannot be done says what can.
    let unknown = sim(&["node", "win-009", "reboot", "--control", &control]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no node win-009"));

    // SIGTERM: every process it started stops with it.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(root), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || up.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    until("the control plane to stop", Duration::from_secs(20), || async {
        started.iter().all(|pid| !alive(*pid)).then_some(())
    })
    .await
    .unwrap();
}
