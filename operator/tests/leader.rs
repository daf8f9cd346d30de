//! Leader election on the simulated cluster: two replicas never act at once, a standby takes
//! over a leader that died, and a leader cut off from its Lease stops writing by its renew
//! deadline, before any standby may take over.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

mod common;

use std::time::Duration;

use common::*;
use hostprocess_operator::{LeaderElection, LeaseTiming, Runtime, Stopped};
use hostprocess_sim::faults::{FaultProxy, Matcher};
use hostprocess_sim::wait::until;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;

const LEASE: &str = "hostprocess-operator";

/// A runtime that acts only while it holds the operator's Lease as `identity`, through `client`.
fn leased(client: &kube::Client, identity: &str, timing: LeaseTiming) -> Runtime {
    // The Lease lives in the operator's own namespace, where deploy/ lets it write Leases.
    let leader = LeaderElection::new(client.clone(), hostprocess_sim::operator::NAMESPACE, LEASE, identity)
        .with_timing(timing);
    Runtime { leader: Some(leader), ..Default::default() }
}

async fn lease(fx: &Fixture) -> Lease {
    Api::namespaced(fx.sim.client.clone(), hostprocess_sim::operator::NAMESPACE).get(LEASE).await.unwrap()
}

async fn holder(fx: &Fixture) -> Option<String> {
    let lease: Option<Lease> = Api::namespaced(fx.sim.client.clone(), hostprocess_sim::operator::NAMESPACE)
        .get_opt(LEASE)
        .await
        .unwrap();
    lease?.spec?.holder_identity
}

#[tokio::test]
async fn two_replicas_never_act_at_once_and_the_standby_takes_over() {
    let mut fx = Fixture::start(3, "privileged").await;
    fx.operator.abort();
    let timing = LeaseTiming {
        duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1200),
        retry: Duration::from_millis(300),
    };
    let replica = |name: &str| {
        let runtime = leased(&fx.operator_client, name, timing);
        let metrics = runtime.metrics.clone();
        (spawn_operator_with(fx.operator_client.clone(), runtime), metrics)
    };
    let (first, first_metrics) = replica("replica-a");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (second, second_metrics) = replica("replica-b");
    fx.apply("patch", json!({"script": "sleep 1\n", "rollout": {"maxConcurrent": 1}})).await;
    fx.wait_ready("patch", "the rollout by the leader").await;
    assert!(reconciles(&first_metrics) > 0, "the first replica leads");
    assert_eq!(reconciles(&second_metrics), 0, "the standby never reconciled");

    // The leader dies without handing over: the standby takes over once it has seen the lease
    // unchanged for its duration.
    first.abort();
    fx.apply("patch", json!({"script": "sleep 1\necho v2\n", "rollout": {"maxConcurrent": 1}})).await;
    fx.wait_ready("patch", "the new revision by the standby").await;
    assert!(reconciles(&second_metrics) > 0, "the standby took over");
    let spec = lease(&fx).await.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));

    // A standby told to stop (SIGTERM on a rolling update) returns at once, the lease untouched.
    let standby =
        Stoppable::start_with(fx.operator_client.clone(), leased(&fx.operator_client, "replica-c", timing))
            .await;
    standby.stop(Duration::from_secs(5)).await;
    assert_eq!(holder(&fx).await.as_deref(), Some("replica-b"));
    fx.operator = second;
}

#[tokio::test]
async fn a_leader_cut_off_from_its_lease_writes_nothing_after_its_deadline() {
    let mut fx = Fixture::start(6, "privileged").await;
    fx.operator.abort();
    let timing = LeaseTiming {
        duration: Duration::from_secs(6),
        renew_deadline: Duration::from_secs(4),
        retry: Duration::from_secs(1),
    };
    // The leader talks to the API server through a proxy that records when each request arrives;
    // the standby talks to it directly.
    let proxy = FaultProxy::start(&fx.sim.cluster, &fx.operator_kubeconfig).await.unwrap();
    let through_proxy = proxy.client().await.unwrap();
    let runtime = leased(&through_proxy, "replica-a", timing);
    let old_leader = tokio::spawn(hostprocess_operator::run(
        through_proxy,
        test_config(),
        runtime,
        std::future::pending(),
    ));
    until("replica-a leading", Duration::from_secs(60), || async {
        (holder(&fx).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await
    .unwrap();
    let standby =
        spawn_operator_with(fx.operator_client.clone(), leased(&fx.operator_client, "replica-b", timing));
    fx.apply("patch", json!({"script": "sleep 2\n", "rollout": {"maxConcurrent": 2}})).await;
    until("two nodes patched by the leader", Duration::from_secs(60), || async {
        let task = fx.task("patch").await;
        (task.status?.nodes.succeeded >= 2).then_some(())
    })
    .await
    .unwrap();

    // The partition: the leader's calls on its Lease get no answer from now on, mid-rollout.
    let lease_calls = Matcher::new(None, &format!("/leases/{LEASE}"));
    proxy.faults.stall_next(usize::MAX, lease_calls);
    let stopped = tokio::time::timeout(Duration::from_secs(60), old_leader)
        .await
        .expect("the old leader gives up its stalled lease calls and returns")
        .unwrap();
    assert_eq!(stopped, Stopped::LostLease);

    let done = fx.wait_ready("patch", "the rollout finished by the standby").await;
    let status = done.status.as_ref().unwrap();
    assert_eq!((status.nodes.succeeded, status.nodes.failed), (6, 0));
    assert_eq!(holder(&fx).await.as_deref(), Some("replica-b"), "the standby took over");

    // The renew deadline, on the proxy's clock: the last renewal that reached the API server
    // arrived after the leader started it, so this is no earlier than the leader's own deadline.
    let renewals =
        proxy.faults.arrivals(&Matcher::new(Some(hyper::Method::PUT), &format!("/leases/{LEASE}")));
    let last_renewal = renewals.iter().filter(|a| a.forwarded).map(|a| a.at).max().expect("renewals");
    let deadline = last_renewal + timing.renew_deadline;
    let writes: Vec<_> = proxy
        .faults
        .arrivals(&Matcher::default())
        .into_iter()
        .filter(|a| a.method != hyper::Method::GET && !a.path.contains("/leases/"))
        .collect();
    let late: Vec<String> =
        writes.iter().filter(|a| a.at > deadline).map(|a| format!("{} {}", a.method, a.path)).collect();
    assert!(writes.iter().any(|a| a.at <= deadline), "the old leader wrote while it led");
    assert!(late.is_empty(), "writes of the old leader after its renew deadline: {late:?}");
    // Never two leaders admitting nodes: the executors' records show at most two at once.
    let most = most_at_once(&fx.sim, &done, 6);
    assert!(most <= 2, "at most maxConcurrent payloads at once, saw {most}");
    fx.operator = standby;
}
