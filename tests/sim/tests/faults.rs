//! Fault injection through the proxy, and the API behaviours a controller must survive:
//! failed requests, slow answers, cut watches (resumed from the last resourceVersion), and
//! finalizers that hold a deletion.
#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed step should stop the test

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hostprocess_sim::faults::{FaultProxy, Matcher};
use hostprocess_sim::wait::until;
use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

async fn cluster_and_proxy() -> (hostprocess_sim::Cluster, FaultProxy, kube::Client) {
    let binaries = hostprocess_sim::Binaries::locate().expect("control plane");
    let options = hostprocess_sim::ClusterOptions::default();
    let cluster = hostprocess_sim::Cluster::start(&binaries, &options).await.expect("cluster");
    // Forwarding as the administrator: these tests are about the proxy, not permissions.
    let proxy = FaultProxy::start(&cluster, &cluster.kubeconfig_path).await.expect("proxy");
    let client = proxy.client().await.expect("client through the proxy");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({"metadata": {"name": "f"}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.expect("namespace through the proxy");
    (cluster, proxy, client)
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn the_next_matching_requests_fail_with_the_given_status_then_pass() {
    let (_cluster, proxy, client) = cluster_and_proxy().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "f");
    maps.create(&PostParams::default(), &config_map("a")).await.unwrap();
    let gets = Matcher::new(Some(Method::GET), "/api/v1/namespaces/f/configmaps/a");
    proxy.faults.fail_next(2, gets.clone(), StatusCode::INTERNAL_SERVER_ERROR);
    for _ in 0..2 {
        match maps.get("a").await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 500);
                assert!(status.message.contains("injected fault"), "{}", status.message);
            }
            other => panic!("expected an injected 500, got {other:?}; requests: {:?}", proxy.faults.log()),
        }
    }
    // Other requests were never affected, and the third get passes.
    maps.create(&PostParams::default(), &config_map("b")).await.expect("a create is not matched");
    assert_eq!(maps.get("a").await.unwrap().data.unwrap()["k"], "v");
    assert_eq!(proxy.faults.seen(&gets), 3);
    assert_eq!(proxy.faults.injected(), 2);

    // The client does not retry 503 (or 429) by itself, as the operator's binary configures it:
    // the error reaches the caller, whose controller requeues with back-off.
    proxy.faults.fail_next(1, gets.clone(), StatusCode::SERVICE_UNAVAILABLE);
    let err = maps.get("a").await.expect_err("a 503 is reported, not retried inside the client");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 503), "{err}");
    maps.get("a").await.expect("the next get passes");
    assert_eq!(proxy.faults.seen(&gets), 5);

    // A write conflict, as another writer would cause it.
    let patches = Matcher::new(Some(Method::PATCH), "/configmaps/b");
    proxy.faults.fail_next(1, patches, StatusCode::CONFLICT);
    let apply = PatchParams::apply("test").force();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"k": "w"}});
    let err = maps.patch("b", &apply, &Patch::Apply(&cm)).await.expect_err("conflict");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err}");
    maps.patch("b", &apply, &Patch::Apply(&cm)).await.expect("the retry passes");
}

#[tokio::test]
async fn latency_is_added_to_every_request() {
    let (_cluster, proxy, client) = cluster_and_proxy().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "f");
    proxy.faults.set_latency(Duration::from_millis(400));
    let started = Instant::now();
    maps.list(&Default::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400), "took {:?}", started.elapsed());
    proxy.faults.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn a_cut_watch_resumes_from_its_resource_version_without_losing_events() {
    let (_cluster, proxy, client) = cluster_and_proxy().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "f");
    let mut events =
        watcher(maps.clone(), watcher::Config::default()).default_backoff().applied_objects().boxed();
    let mut seen = BTreeSet::new();
    maps.create(&PostParams::default(), &config_map("before")).await.unwrap();
    while !seen.contains("before") {
        let cm = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("event")
            .unwrap()
            .unwrap();
        seen.insert(cm.metadata.name.unwrap_or_default());
    }
    let watches = Matcher::new(Some(Method::GET), "watch=true");
    let opened = proxy.faults.seen(&watches);
    proxy.faults.cut_watches();
    for name in ["during-1", "during-2", "during-3"] {
        maps.create(&PostParams::default(), &config_map(name)).await.unwrap();
    }
    while !["during-1", "during-2", "during-3"].iter().all(|n| seen.contains(*n)) {
        let cm = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("event")
            .unwrap()
            .unwrap();
        seen.insert(cm.metadata.name.unwrap_or_default());
    }
    assert!(proxy.faults.seen(&watches) > opened, "the watcher opened a new watch after the cut");
    // Resumed from the last resourceVersion: no re-list was needed.
    let lists = proxy.faults.seen(&Matcher::new(Some(Method::GET), "/api/v1/namespaces/f/configmaps?"))
        - proxy.faults.seen(&watches);
    assert_eq!(lists, 1, "one initial list, no re-list after the cut");
}

#[tokio::test]
async fn a_finalizer_holds_the_deletion_until_it_is_removed() {
    let (_cluster, _proxy, client) = cluster_and_proxy().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "f");
    let mut cm = config_map("held");
    cm.metadata.finalizers = Some(vec!["hostprocess.dev/cleanup".into()]);
    maps.create(&PostParams::default(), &cm).await.unwrap();
    maps.delete("held", &DeleteParams::default()).await.unwrap();
    let held = maps.get("held").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    // While it is being deleted, no finalizer may be added; removing the last one lets it go.
    let add = json!({"metadata": {"finalizers": ["hostprocess.dev/cleanup", "other.example/late"]}});
    let err = maps.patch("held", &PatchParams::default(), &Patch::Merge(&add)).await.expect_err("refused");
    assert!(err.to_string().contains("no new finalizers can be added"), "{err}");
    let patch = json!({"metadata": {"finalizers": null}});
    maps.patch("held", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    until("the object to go", Duration::from_secs(10), || async {
        maps.get_opt("held").await.unwrap().is_none().then_some(())
    })
    .await
    .unwrap();
}
