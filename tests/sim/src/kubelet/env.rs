//! A container's environment: `env` and `envFrom` with values from ConfigMaps and Secrets, and
//! `$(VAR)` references expanded as Kubernetes does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Secret};
use kube::ResourceExt;
use kube::api::Api;

use super::context::*;

/// Kubernetes' `$(VAR)` expansion in commands, args and env values (`$$` escapes).
pub(super) fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(').and_then(|s| s.split_once(')')) {
            let (name, tail) = inner;
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, value)) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The environment of a container: what the simulated Windows host provides, then the pod's.
pub(super) async fn container_env(
    ctx: &PodCtx,
    container: &Container,
) -> Result<Vec<(String, String)>, String> {
    let config = &ctx.config;
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())),
        ("COMPUTERNAME".into(), config.node.to_ascii_uppercase()),
        ("SystemRoot".into(), config.host_path("Windows").display().to_string()),
        ("ProgramData".into(), config.host_path("ProgramData").display().to_string()),
        ("HOSTPROCESS_STATE_DIR".into(), config.state_dir().display().to_string()),
        ("HOSTPROCESS_TEST_STORE".into(), config.test_store().display().to_string()),
        ("CONTAINER_SANDBOX_MOUNT_POINT".into(), ctx.sandbox.display().to_string()),
        ("KUBERNETES_SERVICE_HOST".into(), config.api_host.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), config.api_port.to_string()),
    ];
    let namespace = ctx.pod.namespace().unwrap_or_default();
    for source in container.env_from.clone().unwrap_or_default() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &source.config_map_ref {
            config_map_data(ctx, &namespace, &r.name, r.optional.unwrap_or(false)).await?
        } else if let Some(r) = &source.secret_ref {
            secret_data(ctx, &namespace, &r.name, r.optional.unwrap_or(false)).await?
        } else {
            BTreeMap::new()
        };
        env.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
    }
    for var in container.env.clone().unwrap_or_default() {
        let value = env_value(ctx, &namespace, &var, &env).await?;
        if let Some(value) = value {
            env.push((var.name.clone(), value));
        }
    }
    Ok(env)
}

pub(super) async fn env_value(
    ctx: &PodCtx,
    namespace: &str,
    var: &EnvVar,
    env: &[(String, String)],
) -> Result<Option<String>, String> {
    if let Some(value) = &var.value {
        return Ok(Some(expand(value, env)));
    }
    let Some(from) = &var.value_from else { return Ok(Some(String::new())) };
    if let Some(field) = &from.field_ref {
        let value = field_value(ctx, &field.field_path)?
            .ok_or_else(|| format!("unsupported fieldRef {} in env {}", field.field_path, var.name))?;
        return Ok(Some(value));
    }
    let (kind, data, name, key, optional) = if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional.unwrap_or(false);
        ("ConfigMap", config_map_data(ctx, namespace, &r.name, optional).await?, &r.name, &r.key, optional)
    } else if let Some(r) = &from.secret_key_ref {
        let optional = r.optional.unwrap_or(false);
        ("Secret", secret_data(ctx, namespace, &r.name, optional).await?, &r.name, &r.key, optional)
    } else {
        return Err(format!("unsupported valueFrom in env {}", var.name));
    };
    match data.get(key) {
        Some(v) => Ok(Some(v.clone())),
        None if optional => Ok(None),
        None => Err(format!("couldn't find key {key} in {kind} {namespace}/{name}")),
    }
}

/// A downward-API field of the pod: `Ok(None)` for a field the simulation does not know.
pub(super) fn field_value(ctx: &PodCtx, path: &str) -> Result<Option<String>, String> {
    let meta = &ctx.pod.metadata;
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => Some(ctx.config.node.clone()),
        "spec.serviceAccountName" => ctx.pod.spec.as_ref().and_then(|s| s.service_account_name.clone()),
        "status.hostIP" | "status.podIP" => Some(ctx.config.node_ip.clone()),
        _ => {
            let key = |prefix: &str| {
                path.strip_prefix(prefix).and_then(|s| s.strip_suffix("']")).map(str::to_string)
            };
            if let Some(k) = key("metadata.labels['") {
                meta.labels.as_ref().and_then(|l| l.get(&k).cloned())
            } else if let Some(k) = key("metadata.annotations['") {
                meta.annotations.as_ref().and_then(|a| a.get(&k).cloned())
            } else {
                return Ok(None);
            }
        }
    };
    Ok(Some(value.unwrap_or_default()))
}

pub(super) async fn config_map_data(
    ctx: &PodCtx,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, String>, String> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(cm)) => Ok(cm.data.unwrap_or_default()),
        Ok(None) if optional => Ok(BTreeMap::new()),
        Ok(None) => Err(format!("configmap \"{name}\" not found")),
        Err(e) => Err(format!("cannot read configmap \"{name}\": {e}")),
    }
}

pub(super) async fn secret_data(
    ctx: &PodCtx,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, String>, String> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(secret)) => {
            let mut data: BTreeMap<String, String> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            data.extend(secret.string_data.unwrap_or_default());
            Ok(data)
        }
        Ok(None) if optional => Ok(BTreeMap::new()),
        Ok(None) => Err(format!("secret \"{name}\" not found")),
        Err(e) => Err(format!("cannot read secret \"{name}\": {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn dollar_references_expand_like_kubernetes() {
        let env = vec![("NODE".to_string(), "win-001".to_string()), ("X".to_string(), "1".to_string())];
        assert_eq!(expand("--node=$(NODE)", &env), "--node=win-001");
        assert_eq!(expand("$(MISSING) stays", &env), "$(MISSING) stays");
        assert_eq!(expand("$$(NODE) is escaped", &env), "$(NODE) is escaped");
        assert_eq!(expand("cost $5", &env), "cost $5");
    }
}
