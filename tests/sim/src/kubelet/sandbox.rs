//! The container sandbox: the containerd 1.6 layout (volumes under
//! `$CONTAINER_SANDBOX_MOUNT_POINT`), programs of the simulated Windows host, the account a
//! HostProcess container runs as, and starting the process.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, KeyToPath, ServiceAccount, ServiceAccountTokenProjection, Volume, VolumeProjection,
};
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use crate::process::ContainerProcess;

use super::config::*;
use super::context::*;
use super::env::*;

/// The local executable for a container's program: a registered program by name, else a file
/// of the sandbox (the image) or of the node's disk.
pub(super) fn resolve_program(ctx: &PodCtx, program: &str) -> Option<PathBuf> {
    let unified = program.replace('\\', "/");
    let file = unified.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    let stem = file.strip_suffix(".exe").unwrap_or(&file);
    if let Some(local) = ctx.config.programs.get(stem) {
        return Some(local.clone());
    }
    [under(&ctx.sandbox, program), ctx.config.host_path(program)].into_iter().find(|p| p.is_file())
}

/// The pod's `runAsUserName`: a built-in account always logs on; any other name is a local
/// group (containerd 1.7+ creates an ephemeral user in it), which must exist on the node — the
/// executor's Linux platform keeps groups in the node's test store. Without it containerd treats
/// the name as a user, and the logon fails as on Windows.
pub(super) fn logon(ctx: &PodCtx) -> Result<(), String> {
    let user = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|s| s.windows_options.as_ref())
        .and_then(|w| w.run_as_user_name.clone());
    let Some(user) = user.filter(|u| !u.to_ascii_uppercase().starts_with(r"NT AUTHORITY\")) else {
        return Ok(());
    };
    let accounts: serde_json::Value = std::fs::read(ctx.config.test_store().join("accounts.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    if accounts["groups"].get(user.to_lowercase()).is_some() {
        return Ok(());
    }
    Err(format!(
        "failed to create user process token: failed to logon user: {user}: The user name or password is incorrect."
    ))
}

pub(super) fn start(
    ctx: &PodCtx,
    container: &Container,
    env: &[(String, String)],
    log: &Path,
) -> Result<ContainerProcess, String> {
    let mut words: Vec<String> = container.command.clone().unwrap_or_default();
    words.extend(container.args.clone().unwrap_or_default());
    let words: Vec<String> = words.iter().map(|w| expand(w, env)).collect();
    let Some((program, args)) = words.split_first() else {
        return Err("no command specified: the simulated node has no image entrypoints".into());
    };
    let Some(local) = resolve_program(ctx, program) else {
        return Err(format!(
            "failed to create containerd task: failed to start: exec: \"{program}\": executable file not found"
        ));
    };
    logon(ctx)?;
    std::fs::create_dir_all(&ctx.logs).map_err(|e| e.to_string())?;
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(&local);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&ctx.sandbox)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    cmd.spawn().map(ContainerProcess::new).map_err(|e| format!("failed to start {}: {e}", local.display()))
}

/// Materialises the pod's volumes under the sandbox at each container's mount paths.
pub(super) async fn prepare_sandbox(ctx: &PodCtx) -> Result<(), String> {
    let spec = ctx.pod.spec.clone().unwrap_or_default();
    let namespace = ctx.pod.namespace().unwrap_or_default();
    let pod_dir = ctx.sandbox.parent().unwrap_or(&ctx.sandbox).to_path_buf();
    let volumes_dir = pod_dir.join("volumes");
    let io = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(ctx.sandbox.join("dev")).map_err(io)?;
    let termination_log = ctx.sandbox.join("dev").join("termination-log");
    if !termination_log.exists() {
        std::fs::write(&termination_log, b"").map_err(io)?;
    }
    let mut sources: HashMap<String, PathBuf> = HashMap::new();
    for volume in spec.volumes.clone().unwrap_or_default() {
        let dir = volume_source(ctx, &namespace, &volume, &volumes_dir).await?;
        sources.insert(volume.name.clone(), dir);
    }
    let all = spec.init_containers.iter().flatten().chain(spec.containers.iter());
    for container in all {
        for mount in container.volume_mounts.clone().unwrap_or_default() {
            let Some(source) = sources.get(&mount.name) else {
                return Err(format!("volume mount {} names no volume of the pod", mount.name));
            };
            let source = match &mount.sub_path {
                Some(sub) if !sub.is_empty() => under(source, sub),
                _ => source.clone(),
            };
            let target = under(&ctx.sandbox, &mount.mount_path);
            if target.symlink_metadata().is_ok() {
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::os::unix::fs::symlink(&source, &target).map_err(io)?;
        }
    }
    Ok(())
}

pub(super) async fn volume_source(
    ctx: &PodCtx,
    namespace: &str,
    volume: &Volume,
    volumes_dir: &Path,
) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| e.to_string();
    let dir = volumes_dir.join(&volume.name);
    let write_files =
        |data: &BTreeMap<String, String>, items: Option<Vec<(String, String)>>| -> Result<(), String> {
            std::fs::create_dir_all(&dir).map_err(io)?;
            let pairs: Vec<(String, String)> = match items {
                Some(items) => items,
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in pairs {
                let Some(value) = data.get(&key) else {
                    return Err(format!("key {key} not found in volume {}", volume.name));
                };
                let file = under(&dir, &path);
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                std::fs::write(file, value).map_err(io)?;
            }
            Ok(())
        };
    if let Some(cm) = &volume.config_map {
        let data = config_map_data(ctx, namespace, &cm.name, cm.optional.unwrap_or(false)).await?;
        let items = cm.items.as_ref().map(|i| i.iter().map(|k| (k.key.clone(), k.path.clone())).collect());
        write_files(&data, items)?;
        return Ok(dir);
    }
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let data = secret_data(ctx, namespace, &name, secret.optional.unwrap_or(false)).await?;
        let items =
            secret.items.as_ref().map(|i| i.iter().map(|k| (k.key.clone(), k.path.clone())).collect());
        write_files(&data, items)?;
        return Ok(dir);
    }
    if let Some(projected) = &volume.projected {
        let mut data = BTreeMap::new();
        let mut items = Vec::new();
        for source in projected.sources.iter().flatten() {
            let (found, pairs) = projected_source(ctx, namespace, source).await?;
            for (key, path) in pairs {
                // Keys of different sources may clash: each source's files land under a
                // unique key, written to the path the pod asked for.
                let unique = format!("{}:{key}", items.len());
                if let Some(value) = found.get(&key) {
                    data.insert(unique.clone(), value.clone());
                    items.push((unique, path));
                }
            }
        }
        write_files(&data, Some(items))?;
        return Ok(dir);
    }
    if volume.empty_dir.is_some() {
        std::fs::create_dir_all(&dir).map_err(io)?;
        return Ok(dir);
    }
    if let Some(host) = &volume.host_path {
        let path = ctx.config.host_path(&host.path);
        match host.type_.as_deref() {
            Some("Directory") if !path.is_dir() => {
                return Err(format!("hostPath type check failed: {} is not a directory", host.path));
            }
            Some("File") if !path.is_file() => {
                return Err(format!("hostPath type check failed: {} is not a file", host.path));
            }
            Some("DirectoryOrCreate") | None | Some("") => std::fs::create_dir_all(&path).map_err(io)?,
            _ => {}
        }
        return Ok(path);
    }
    Err(format!(
        "volume {}: the simulated kubelet supports configMap, secret, projected, emptyDir and hostPath volumes",
        volume.name
    ))
}

/// One source of a projected volume: its data and the (key, path) pairs to write. The
/// ServiceAccount admission plugin adds such a volume to every pod that does not opt out: a
/// token the kubelet requests for the pod (bound to it), the cluster's CA bundle, the namespace.
async fn projected_source(
    ctx: &PodCtx,
    namespace: &str,
    source: &VolumeProjection,
) -> Result<(BTreeMap<String, String>, Vec<(String, String)>), String> {
    let keys = |data: &BTreeMap<String, String>, items: Option<&Vec<KeyToPath>>| match items {
        Some(items) => items.iter().map(|k| (k.key.clone(), k.path.clone())).collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    if let Some(cm) = &source.config_map {
        let data = config_map_data(ctx, namespace, &cm.name, cm.optional.unwrap_or(false)).await?;
        let pairs = keys(&data, cm.items.as_ref());
        return Ok((data, pairs));
    }
    if let Some(secret) = &source.secret {
        let data = secret_data(ctx, namespace, &secret.name, secret.optional.unwrap_or(false)).await?;
        let pairs = keys(&data, secret.items.as_ref());
        return Ok((data, pairs));
    }
    if let Some(downward) = &source.downward_api {
        let mut data = BTreeMap::new();
        let mut pairs = Vec::new();
        for item in downward.items.iter().flatten() {
            let Some(field) = &item.field_ref else { continue };
            let value = field_value(ctx, &field.field_path)?.unwrap_or_default();
            data.insert(item.path.clone(), value);
            pairs.push((item.path.clone(), item.path.clone()));
        }
        return Ok((data, pairs));
    }
    if let Some(token) = &source.service_account_token {
        let value = service_account_token(ctx, namespace, token).await?;
        let data = BTreeMap::from([(token.path.clone(), value)]);
        return Ok((data, vec![(token.path.clone(), token.path.clone())]));
    }
    Ok((BTreeMap::new(), Vec::new()))
}

/// A token of the pod's ServiceAccount, requested as the node (bound to the pod: the Node
/// authorizer allows no other).
async fn service_account_token(
    ctx: &PodCtx,
    namespace: &str,
    projection: &ServiceAccountTokenProjection,
) -> Result<String, String> {
    let account =
        ctx.pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or("default".into());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: projection.audience.clone().into_iter().collect(),
            expiration_seconds: projection.expiration_seconds,
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(ctx.pod.name_any()),
                uid: ctx.pod.uid(),
            }),
        },
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let answer = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("a token for service account {namespace}/{account}: {e}"))?;
    answer.status.map(|s| s.token).ok_or_else(|| "the TokenRequest came back without a token".into())
}
