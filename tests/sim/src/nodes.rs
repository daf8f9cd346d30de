//! What a node agent writes about its node, as a kubelet on a Windows node does: the Node it
//! registers (labels and the taint of a Windows pool), the status it posts (conditions,
//! capacity, node info with a boot id) and the Lease it renews in `kube-node-lease`, from which
//! the real node-lifecycle controller judges whether the node is alive.
//!
//! The simulated kubelets use it with their own node credentials; the fleet benchmark's
//! stand-in nodes (`StandIns`), which run no pods, use it to stay Ready.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

/// The namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// What a kubelet asks for (upstream default: 40 s); renewed every quarter of it.
pub const LEASE_SECONDS: i32 = 40;

/// The internal IP of the `index`-th simulated node.
pub fn node_ip(index: usize) -> String {
    format!("10.240.{}.{}", index / 250, index % 250 + 4)
}

/// Registers the node as a kubelet does (`--register-with-taints os=windows:NoSchedule`, as
/// AKS Windows pools): labels a kubelet may set under NodeRestriction. An existing Node is kept.
/// Returns its uid.
pub async fn register(client: &kube::Client, name: &str) -> Result<String, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/os": "windows", "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name,
            "node.kubernetes.io/windows-build": "10.0.20348",
            "pool": "win2022",
        }},
        "spec": {"taints": [{"key": "os", "value": "windows", "effect": "NoSchedule"}]},
    }))
    .map_err(kube::Error::SerdeError)?;
    let created = match nodes.create(&PostParams::default(), &node).await {
        Ok(node) => node,
        Err(kube::Error::Api(status)) if status.code == 409 => nodes.get(name).await?,
        Err(e) => return Err(e),
    };
    Ok(created.metadata.uid.unwrap_or_default())
}

/// Whether the kubelet says the node is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Graceful node shutdown: the kubelet reports NotReady before the node goes down.
    ShuttingDown,
    /// The node is up but its container runtime does not answer.
    RuntimeDown,
}

/// Posts the node's status: Ready (or NotReady while shutting down), no pressure, the capacity
/// of a 4-core, 16 GiB Windows Server 2022 VM, the machine ID of its installation (a reimage
/// gives a new one) and the boot id of this boot.
pub async fn post_status(
    client: &kube::Client,
    name: &str,
    ip: &str,
    (machine_id, boot_id): (&str, &str),
    readiness: Readiness,
) -> Result<(), kube::Error> {
    let now = Time(Timestamp::now());
    let (ready, reason, message) = match readiness {
        Readiness::Ready => ("True", "KubeletReady", "kubelet is posting ready status"),
        Readiness::ShuttingDown => ("False", "KubeletNotReady", "node is shutting down"),
        Readiness::RuntimeDown => ("False", "KubeletNotReady", "container runtime is down"),
    };
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let resources = json!({"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "127Gi"});
    let patch = json!({"status": {
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", ready, reason, message),
        ],
        "capacity": resources, "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"operatingSystem": "windows", "architecture": "amd64",
            "containerRuntimeVersion": "containerd://1.7.20", "kubeletVersion": "v1.37.2",
            "kubeProxyVersion": "", "osImage": "Windows Server 2022 Datacenter",
            "kernelVersion": "10.0.20348.2700", "machineID": machine_id, "systemUUID": name, "bootID": boot_id},
    }});
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
    Ok(())
}

/// Renews the node's Lease (created on the first call, owned by the Node as a kubelet's is).
pub async fn renew_lease(client: &kube::Client, name: &str, node_uid: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.to_string(),
                uid: node_uid.to_string(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_string()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    let mut value = serde_json::to_value(&lease).map_err(kube::Error::SerdeError)?;
    value["apiVersion"] = json!("coordination.k8s.io/v1");
    value["kind"] = json!("Lease");
    leases.patch(name, &PatchParams::apply("kubelet").force(), &Patch::Apply(&value)).await?;
    Ok(())
}

/// Nodes without a kubelet that stay Ready to the node-lifecycle controller: registered, with a
/// Ready status, their Leases renewed every `renew`. They run no pods; whoever uses them
/// completes the pods bound to them. Renewal stops when this is dropped.
#[derive(Debug)]
pub struct StandIns {
    pub names: Vec<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIns {
    /// Registers `count` stand-in nodes numbered from `first` (`win-<n>`), through `client`
    /// (the cluster administrator's).
    pub async fn start(
        client: &kube::Client,
        first: usize,
        count: usize,
        renew: Duration,
    ) -> Result<Self, kube::Error> {
        use futures::StreamExt;
        let registered: Vec<Result<(String, String), kube::Error>> =
            futures::stream::iter(first..first + count)
                .map(|index| async move {
                    let name = format!("win-{index:03}");
                    let uid = register(client, &name).await?;
                    post_status(
                        client,
                        &name,
                        &node_ip(index),
                        (&name, &format!("{name}-boot-1")),
                        Readiness::Ready,
                    )
                    .await?;
                    renew_lease(client, &name, &uid).await?;
                    Ok((name, uid))
                })
                .buffered(16)
                .collect()
                .await;
        let nodes = registered.into_iter().collect::<Result<Vec<_>, _>>()?;
        let names = nodes.iter().map(|(n, _)| n.clone()).collect();
        let client = client.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(renew);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                futures::stream::iter(nodes.iter())
                    .for_each_concurrent(16, |(name, uid)| {
                        let client = client.clone();
                        async move {
                            let _ = renew_lease(&client, name, uid).await;
                        }
                    })
                    .await;
            }
        });
        Ok(StandIns { names, task })
    }
}
