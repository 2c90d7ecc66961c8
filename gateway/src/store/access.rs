//! API keys and the audit trail.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{AuditFilter, StoreResult};
use crate::domain::{ApiKeyId, FederationId, PracticeId};

/// Who an API key speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// Every practice, and practice management.
    Admin,
    /// One practice (by row id) and nothing else.
    Practice(PracticeId),
    /// The member practices of a federation (a named set of practices), as an administrator
    /// would act on them, and nothing else; no practice, key or federation management.
    Federation(FederationId),
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// SHA-256 of the whole key, hex.
    pub key_hash: String,
    /// The key's first characters, to recognise it in lists.
    pub prefix: String,
    /// Its scope.
    pub scope: KeyScope,
    /// A note saying whose it is.
    pub label: String,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A stored, live key.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    /// Row id.
    pub id: ApiKeyId,
    /// Its scope.
    pub scope: KeyScope,
    /// Whose it is.
    pub label: String,
    /// First characters.
    pub prefix: String,
    /// When it was last used, to the minute ([`crate::auth::keys::LAST_USED_EVERY`]).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key as an administrator sees it in a list: everything but its secret.
#[derive(Debug, Clone)]
pub struct ApiKeySummary {
    /// Row id.
    pub id: ApiKeyId,
    /// Its first characters, to recognise it by.
    pub prefix: String,
    /// Whose it is.
    pub label: String,
    /// What it may touch.
    pub scope: KeyScope,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it was last used (to the minute), if ever.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked (or rotated away), if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An event for the audit trail.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who: `key:<prefix>` or `cli`.
    pub actor: String,
    /// What, such as `status_change.posted`.
    pub action: String,
    /// The practice it concerned.
    pub practice_id: Option<PracticeId>,
    /// The thing acted on, such as `broadcast:12`.
    pub subject: Option<String>,
    /// Anything else worth keeping, as JSON (no patient data).
    pub details: Option<String>,
}

/// A stored audit event.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// Row id: the `before` of the next page.
    pub id: i64,
    /// The ODS code of the practice it concerned, if one.
    pub practice: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Acted on.
    pub subject: Option<String>,
    /// More, as JSON text.
    pub details: Option<String>,
}

/// API keys and the audit trail.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores a new key by its hash.
    async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> StoreResult<ApiKeyId>;
    /// The live key with this hash: not revoked, and not expired at `now`.
    async fn api_key_by_hash(
        &self,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiKeyRecord>>;
    /// Every key, newest first, live or not, up to `limit`.
    async fn api_keys(&self, limit: i64) -> StoreResult<Vec<ApiKeySummary>>;
    /// One key by row id, live or not.
    async fn api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeySummary>>;
    /// Revokes a key at `now`; false if there is no such key or it was already revoked.
    async fn revoke_api_key(&self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Records that the key was used at `now`.
    async fn touch_api_key(&self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<()>;
    /// Records who did what.
    async fn audit(&self, entry: &AuditEntry, now: DateTime<Utc>) -> StoreResult<()>;
    /// The most recent audit entries of a practice, newest first.
    async fn audit_trail(
        &self,
        practice_id: PracticeId,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>> {
        let filter = AuditFilter {
            practice_id: Some(practice_id),
            limit,
            ..AuditFilter::default()
        };
        self.audit_page(&filter).await
    }
    /// The audit entries `filter` selects, newest first.
    async fn audit_page(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>>;
}
