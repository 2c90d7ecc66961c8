//! API keys: `gw_` and 256 random bits, shown once when issued and stored as a SHA-256 hash.
//! Each is scoped to one practice, to a federation's practices, or to the admin role.

use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::Principal;
use crate::store::{AccessStore, AuditEntry, FederationStore, KeyScope, NewApiKey, StoreError};

/// The stored form of a key (and of a session's cookie token): SHA-256, hex. Both are 256
/// random bits, so a fast hash is enough.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key, stores its hash and returns the key itself: the only time it is seen.
pub async fn issue_key(
    store: &dyn AccessStore,
    scope: KeyScope,
    label: &str,
    actor: &str,
) -> Result<String, StoreError> {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let key = format!("gw_{}", hex::encode(secret));
    let prefix = key[..11].to_string();
    let now = Utc::now();
    let id = store
        .create_api_key(
            &NewApiKey {
                key_hash: hash_key(&key),
                prefix: prefix.clone(),
                scope,
                label: label.to_string(),
            },
            now,
        )
        .await?;
    store
        .audit(
            &AuditEntry {
                actor: actor.to_string(),
                action: "api_key.created".into(),
                practice_id: match scope {
                    KeyScope::Practice(id) => Some(id),
                    KeyScope::Admin | KeyScope::Federation(_) => None,
                },
                subject: Some(format!("api_key:{id}")),
                details: Some(
                    serde_json::json!({
                        "prefix": prefix,
                        "label": label,
                        "federation": match scope {
                            KeyScope::Federation(id) => Some(id),
                            _ => None,
                        },
                    })
                    .to_string(),
                ),
            },
            now,
        )
        .await?;
    Ok(key)
}

/// Who a key speaks for, if it is a live key of ours (a federation's with its members).
pub async fn key_principal<S>(store: &S, key: &str) -> Result<Option<Principal>, StoreError>
where
    S: AccessStore + FederationStore + ?Sized,
{
    match store.api_key_by_hash(&hash_key(key)).await? {
        Some(record) => Ok(Some(Principal::of_key(&record).resolved(store).await?)),
        None => Ok(None),
    }
}
