//! API keys: issued once, stored hashed, scoped to one practice or the admin role.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::Method;
use chrono::Utc;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::http::ApiError;
use crate::app::AppState;
use crate::domain::OdsCode;
use crate::store::{AuditEntry, KeyScope, NewApiKey, Practice, Store, StoreError};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Key row id.
    pub key_id: i64,
    /// What the key may touch.
    pub scope: KeyScope,
    /// How the audit trail names the caller: `key:<prefix>`.
    pub actor: String,
}

impl Caller {
    /// Refuses anyone but an administrator.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.scope {
            KeyScope::Admin => Ok(()),
            KeyScope::Practice(_) => Err(ApiError::Forbidden("this needs an admin key".into())),
        }
    }

    /// Whether this caller may see the practice with row id `practice_id`.
    pub fn can_see(&self, practice_id: i64) -> bool {
        match self.scope {
            KeyScope::Admin => true,
            KeyScope::Practice(own) => own == practice_id,
        }
    }

    /// The practice with this ODS code, if it exists and the caller may see it. Another
    /// practice's is "not found", exactly as if it did not exist.
    pub async fn practice(&self, store: &dyn Store, ods: &str) -> Result<Practice, ApiError> {
        let not_found = || ApiError::NotFound(format!("no practice {ods}"));
        let code = OdsCode::parse(ods).map_err(|_| not_found())?;
        match store.practice_by_ods(&code).await? {
            Some(practice) if self.can_see(practice.id) => Ok(practice),
            _ => Err(not_found()),
        }
    }

    /// The idempotency scope of this caller's requests.
    pub fn idempotency_scope(&self) -> String {
        format!("key:{}", self.key_id)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return session_caller(parts, state).await;
        };
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized(
                "missing_api_key",
                "send an API key as `Authorization: Bearer <key>`".into(),
            ))?;
        let record =
            state
                .store
                .api_key_by_hash(&hash_key(key))
                .await?
                .ok_or(ApiError::Unauthorized(
                    "invalid_api_key",
                    "this API key is not valid".into(),
                ))?;
        Ok(Caller {
            key_id: record.id,
            scope: record.scope,
            actor: format!("key:{}", record.prefix),
        })
    }
}

/// The console's scripts call the API with the session cookie instead of a key; anything
/// but a read must carry the session's CSRF token in `X-CSRF-Token`.
async fn session_caller(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let missing = || {
        ApiError::Unauthorized(
            "missing_api_key",
            "send an API key as `Authorization: Bearer <key>`".into(),
        )
    };
    let session = crate::web::session::current(state.store.as_ref(), &parts.headers)
        .await?
        .ok_or_else(missing)?;
    let reading = matches!(parts.method, Method::GET | Method::HEAD);
    let token = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok());
    if !reading && !crate::web::session::csrf_matches(&session, token) {
        return Err(ApiError::Forbidden(
            "this request needs the page's CSRF token".into(),
        ));
    }
    Ok(Caller {
        // Sessions have no key row; a negative id keeps their idempotency scope apart.
        key_id: -session.user.id,
        scope: session.user.scope,
        actor: format!("user:{}", session.user.username),
    })
}

/// The stored form of a key: SHA-256, hex. Keys are 256 random bits, so a fast hash is enough.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key, stores its hash and returns the key itself: the only time it is seen.
pub async fn issue_key(
    store: &dyn Store,
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
                    KeyScope::Admin => None,
                },
                subject: Some(format!("api_key:{id}")),
                details: Some(serde_json::json!({ "prefix": prefix, "label": label }).to_string()),
            },
            now,
        )
        .await?;
    Ok(key)
}
