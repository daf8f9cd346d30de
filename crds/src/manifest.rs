//! Reading HostTask and HostGroup manifests from YAML, the way a user writes them: several
//! documents per file, every field checked. A field the types do not know is an error (the API
//! server would prune it silently, which turns a typo like `maxConcurent` into a default).

use serde_json::Value;

use crate::grant::HostTaskGrant;
use crate::hostgroup::HostGroup;
use crate::hosttask::HostTask;
use crate::validate::ValidationErrors;

/// The API group of every type here.
pub const GROUP: &str = "hostprocess.dev";
/// The API version of every type here.
pub const VERSION: &str = "v1alpha1";

/// One parsed object.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    HostTask(Box<HostTask>),
    HostGroup(Box<HostGroup>),
    HostTaskGrant(Box<HostTaskGrant>),
}

/// Why a document was refused. `document` counts from 1.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("document {document}: not valid YAML: {source}")]
    Yaml { document: usize, source: yaml_serde::Error },
    #[error(
        "document {document}: apiVersion {api_version:?} kind {kind:?} is not a {GROUP}/{VERSION} HostTask, HostGroup or HostTaskGrant"
    )]
    UnknownKind { document: usize, api_version: String, kind: String },
    #[error("document {document} ({kind} {name}): {source}")]
    Shape { document: usize, kind: &'static str, name: String, source: serde_json::Error },
    #[error(
        "document {document} ({kind} {name}): unknown field {field} (check its spelling against `kubectl explain {plural}`)"
    )]
    UnknownField { document: usize, kind: &'static str, name: String, field: String, plural: &'static str },
    #[error("document {document} ({kind} {name}): {errors}")]
    Invalid { document: usize, kind: &'static str, name: String, errors: ValidationErrors },
}

/// Parses every document of a YAML stream; empty documents are skipped.
pub fn parse_manifests(yaml: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for (i, document) in yaml_serde::Deserializer::from_str(yaml).enumerate() {
        let number = i + 1;
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|source| ManifestError::Yaml { document: number, source })?;
        if value.is_null() {
            continue;
        }
        out.push(parse_value(number, value)?);
    }
    Ok(out)
}

fn parse_value(document: usize, value: Value) -> Result<Manifest, ManifestError> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("(no name)").to_string();
    if api_version != format!("{GROUP}/{VERSION}") {
        return Err(ManifestError::UnknownKind { document, api_version, kind });
    }
    let at = Document { number: document, name: &name, value: &value };
    match kind.as_str() {
        "HostTask" => {
            let task: HostTask = at.checked("HostTask", "hosttasks", |t: &HostTask| t.spec.validate())?;
            Ok(Manifest::HostTask(Box::new(task)))
        }
        "HostGroup" => {
            let group: HostGroup =
                at.checked("HostGroup", "hostgroups", |g: &HostGroup| g.spec.validate())?;
            Ok(Manifest::HostGroup(Box::new(group)))
        }
        "HostTaskGrant" => {
            let grant: HostTaskGrant =
                at.checked("HostTaskGrant", "hosttaskgrants", |g: &HostTaskGrant| g.spec.validate())?;
            Ok(Manifest::HostTaskGrant(Box::new(grant)))
        }
        _ => Err(ManifestError::UnknownKind { document, api_version, kind }),
    }
}

/// One document of a stream, for the errors about it.
struct Document<'a> {
    number: usize,
    name: &'a str,
    value: &'a Value,
}

impl Document<'_> {
    /// The document as a `kind` (whose plural `kubectl explain` knows), checked by `validate`.
    fn checked<T>(
        &self,
        kind: &'static str,
        plural: &'static str,
        validate: impl Fn(&T) -> Result<(), ValidationErrors>,
    ) -> Result<T, ManifestError>
    where
        T: serde::de::DeserializeOwned + serde::Serialize,
    {
        let object: T = typed(self.number, kind, plural, self.name, self.value)?;
        validate(&object).map_err(|errors| ManifestError::Invalid {
            document: self.number,
            kind,
            name: self.name.to_string(),
            errors,
        })?;
        Ok(object)
    }
}

fn typed<T>(
    document: usize,
    kind: &'static str,
    plural: &'static str,
    name: &str,
    value: &Value,
) -> Result<T, ManifestError>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let name = name.to_string();
    let typed: T = serde_json::from_value(value.clone()).map_err(|source| ManifestError::Shape {
        document,
        kind,
        name: name.clone(),
        source,
    })?;
    let round_trip = serde_json::to_value(&typed).map_err(|source| ManifestError::Shape {
        document,
        kind,
        name: name.clone(),
        source,
    })?;
    if let Some(field) = dropped_field(value, &round_trip, "") {
        return Err(ManifestError::UnknownField { document, kind, name, field, plural });
    }
    Ok(typed)
}

/// The first field of `original` that did not survive the round trip through the types.
/// Only the object's own fields count (`metadata` is the API server's business).
fn dropped_field(original: &Value, round_trip: &Value, path: &str) -> Option<String> {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(key, value)| {
            let field = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            match b.get(key) {
                _ if path.is_empty() && key == "metadata" => None,
                None if !value.is_null() => Some(field),
                None => None,
                Some(kept) => dropped_field(value, kept, &field),
            }
        }),
        (Value::Array(a), Value::Array(b)) => {
            a.iter().zip(b).enumerate().find_map(|(i, (x, y))| dropped_field(x, y, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_documents_and_empty_ones() {
        let yaml = "---\napiVersion: hostprocess.dev/v1alpha1\nkind: HostGroup\nmetadata: {name: g}\nspec: {groupName: ops}\n---\n---\napiVersion: hostprocess.dev/v1alpha1\nkind: HostTask\nmetadata: {name: t}\nspec: {script: 'exit 0'}\n";
        let parsed = parse_manifests(yaml).expect("parses");
        assert_eq!(parsed.len(), 2);
        assert!(matches!(&parsed[0], Manifest::HostGroup(g) if g.spec.group_name == "ops"));
        assert!(matches!(&parsed[1], Manifest::HostTask(t) if t.spec.script.as_deref() == Some("exit 0")));
    }

    #[test]
    fn a_misspelt_field_is_named() {
        let yaml = "apiVersion: hostprocess.dev/v1alpha1\nkind: HostTask\nmetadata: {name: t}\nspec:\n  script: 'exit 0'\n  rollout: {maxConcurent: 5}\n";
        let err = parse_manifests(yaml).expect_err("typo").to_string();
        assert_eq!(
            err,
            "document 1 (HostTask t): unknown field spec.rollout.maxConcurent (check its spelling against `kubectl explain hosttasks`)"
        );
    }

    #[test]
    fn another_kind_is_refused() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
        let err = parse_manifests(yaml).expect_err("configmap").to_string();
        assert!(
            err.contains("is not a hostprocess.dev/v1alpha1 HostTask, HostGroup or HostTaskGrant"),
            "{err}"
        );
    }
}
