//! The operator's revision key: 32 random bytes in a Secret of its own namespace, created once by
//! whichever replica needs it first, read by every replica after. It keys the hash of the data a
//! task references (`hashing::keyed`), so the published revision is no oracle for a Secret.
//! Deleting the Secret makes a new key, and every task that tracks referenced data rolls out once.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::labels;

/// The Secret's name, in the operator's own namespace.
pub const NAME: &str = "hostprocess-operator-revision-key";
const KEY: &str = "key";

/// The key, read from its Secret or created with it.
pub async fn get_or_create(client: &Client, namespace: &str) -> Result<Vec<u8>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    loop {
        if let Some(secret) = api.get_opt(NAME).await? {
            return key_of(secret).ok_or_else(|| {
                let message = format!("Secret {namespace}/{NAME} holds no key of 16 bytes or more under {KEY:?}: delete it and the operator makes a new one");
                kube::Error::Service(message.into())
            });
        }
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| kube::Error::Service(format!("no random bytes for the key: {e}").into()))?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                labels: Some(labels::managed("hostprocess-operator")),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(KEY.to_string(), ByteString(key.clone()))])),
            immutable: Some(true),
            type_: Some("Opaque".into()),
            ..Secret::default()
        };
        let create =
            PostParams { field_manager: Some(labels::FIELD_MANAGER.into()), ..PostParams::default() };
        match api.create(&create, &secret).await {
            Ok(_) => return Ok(key),
            // Another replica created it first: read theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
}

/// The key a Secret holds, if it holds one of at least 16 bytes.
fn key_of(secret: Secret) -> Option<Vec<u8>> {
    secret.data?.remove(KEY).map(|ByteString(bytes)| bytes).filter(|k| k.len() >= 16)
}
