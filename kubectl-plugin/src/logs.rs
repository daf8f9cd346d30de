//! `logs`: the payload's output on one node, from the task pod's `task` container (the
//! executor passes the payload's output through).

use std::io::Write;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};

use crate::api::{Error, exit};
use crate::cli::LogsArgs;
use crate::view::TASK_LABEL;

pub async fn logs(
    client: &kube::Client,
    namespace: &str,
    args: &LogsArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = ListParams::default()
        .labels(&format!("{TASK_LABEL}={}", args.name))
        .fields(&format!("spec.nodeName={}", args.node));
    let listed = pods
        .list(&selector)
        .await
        .map_err(|e| Error::api(&format!("listing the pods of HostTask {namespace}/{}", args.name), e))?;
    // The newest pod on the node (a new revision's, when two are there).
    let Some(pod) = listed.items.iter().max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
    else {
        return Err(Error::Refused(format!(
            "HostTask {namespace}/{} has no pod on node {}: the node is not admitted yet, or not targeted (kubectl hostprocess status {} lists the nodes that have one)",
            args.name, args.node, args.name
        )));
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let params =
        LogParams { container: Some("task".into()), previous: args.previous, ..LogParams::default() };
    let text = pods.logs(&name, &params).await.map_err(|e| match e {
        kube::Error::Api(status) if status.code == 400 && args.previous => Error::Refused(format!(
            "pod {name} on {} has no previous run (its container did not restart): run without --previous",
            args.node
        )),
        other => Error::api(&format!("reading the log of pod {name}"), other),
    })?;
    write!(out, "{text}")?;
    Ok(exit::OK)
}
