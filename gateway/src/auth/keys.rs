//! API keys: `gw_` and 256 random bits, shown once when issued and stored as a SHA-256 hash.
//! Each is scoped to one practice, to a federation's practices, or to the admin role. A key
//! may expire; revoking it (or rotating it, which revokes it) stops it on every instance at
//! once, because every request reads its key from the database: there is no key cache.

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::Principal;
use crate::domain::ApiKeyId;
use crate::store::{
    AccessStore, ApiKeySummary, AuditEntry, FederationStore, KeyScope, NewApiKey, StoreError,
};

/// How stale a key's recorded last use may get before a request records it again: so a busy
/// key costs one write a minute, not one per request.
pub const LAST_USED_EVERY: Duration = Duration::seconds(60);

/// Most keys a list shows.
pub const LIST_LIMIT: i64 = 1000;

/// The stored form of a key (and of a session's cookie token): SHA-256, hex. Both are 256
/// random bits, so a fast hash is enough.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key that never expires, stores its hash and returns the key itself: the only
/// time it is seen.
pub async fn issue_key(
    store: &dyn AccessStore,
    scope: KeyScope,
    label: &str,
    actor: &str,
) -> Result<String, StoreError> {
    Ok(issue_expiring_key(store, scope, label, None, actor)
        .await?
        .1)
}

/// Creates a key that stops working at `expires_at` (if given); returns its row id and the
/// key itself, the only time it is seen.
pub async fn issue_expiring_key(
    store: &dyn AccessStore,
    scope: KeyScope,
    label: &str,
    expires_at: Option<DateTime<Utc>>,
    actor: &str,
) -> Result<(ApiKeyId, String), StoreError> {
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
                expires_at,
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
                        "expires_at": expires_at,
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
    Ok((id, key))
}

fn audit_entry(
    actor: &str,
    action: &str,
    key: &ApiKeySummary,
    details: Option<String>,
) -> AuditEntry {
    AuditEntry {
        actor: actor.to_string(),
        action: action.into(),
        practice_id: match key.scope {
            KeyScope::Practice(id) => Some(id),
            KeyScope::Admin | KeyScope::Federation(_) => None,
        },
        subject: Some(format!("api_key:{}", key.id)),
        details,
    }
}

/// Revokes a key: every instance refuses it from its next request. `None` if there is no
/// such key; `Some(false)` if it was already revoked.
pub async fn revoke_key(
    store: &dyn AccessStore,
    id: ApiKeyId,
    actor: &str,
) -> Result<Option<bool>, StoreError> {
    let Some(key) = store.api_key(id).await? else {
        return Ok(None);
    };
    let now = Utc::now();
    let revoked = store.revoke_api_key(id, now).await?;
    if revoked {
        store
            .audit(&audit_entry(actor, "api_key.revoked", &key, None), now)
            .await?;
    }
    Ok(Some(revoked))
}

/// Replaces a live key with a new one of the same scope, label and expiry, and revokes the
/// old one; returns the new key's row id and the key itself (shown only now). `None` if
/// there is no live key with this id.
pub async fn rotate_key(
    store: &dyn AccessStore,
    id: ApiKeyId,
    actor: &str,
) -> Result<Option<(ApiKeyId, String)>, StoreError> {
    let Some(old) = store.api_key(id).await? else {
        return Ok(None);
    };
    let now = Utc::now();
    if old.revoked_at.is_some() || old.expires_at.is_some_and(|at| at <= now) {
        return Ok(None);
    }
    let (new_id, key) =
        issue_expiring_key(store, old.scope, &old.label, old.expires_at, actor).await?;
    // Only the first of two racing rotations revokes; the other's new key stays valid.
    if store.revoke_api_key(id, now).await? {
        let details = serde_json::json!({ "replaced_by": new_id }).to_string();
        store
            .audit(
                &audit_entry(actor, "api_key.rotated", &old, Some(details)),
                now,
            )
            .await?;
    }
    Ok(Some((new_id, key)))
}

/// Who a key speaks for, if it is a live key of ours (a federation's with its members).
pub async fn key_principal<S>(store: &S, key: &str) -> Result<Option<Principal>, StoreError>
where
    S: AccessStore + FederationStore + ?Sized,
{
    let now = Utc::now();
    let Some(record) = store.api_key_by_hash(&hash_key(key), now).await? else {
        return Ok(None);
    };
    if record
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_EVERY)
    {
        // Losing the record of a use is better than refusing the request.
        if let Err(e) = store.touch_api_key(record.id, now).await {
            tracing::warn!(error = %e, key = %record.prefix, "could not record a key's use");
        }
    }
    Ok(Some(Principal::of_key(&record).resolved(store).await?))
}
