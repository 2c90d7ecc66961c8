//! API keys and the audit trail on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::SqliteStore;
use crate::domain::{ApiKeyId, PracticeId};
use crate::store::{
    role_of, scope_of, AccessStore, ApiKeyRecord, ApiKeySummary, At, AuditEntry, AuditFilter,
    AuditRecord, NewApiKey, StoreResult, TimeColumn,
};

const SUMMARY: &str = "SELECT id, prefix, label, role, practice_id, federation_id, created_at,
        last_used_at, expires_at, revoked_at FROM api_keys";

fn summary_from_row(row: &SqliteRow) -> StoreResult<ApiKeySummary> {
    let role: String = row.try_get("role")?;
    Ok(ApiKeySummary {
        id: row.try_get("id")?,
        prefix: row.try_get("prefix")?,
        label: row.try_get("label")?,
        scope: scope_of(
            "api_keys.role",
            &role,
            row.try_get("practice_id")?,
            row.try_get("federation_id")?,
        )?,
        created_at: row.time("created_at")?,
        last_used_at: row.time_opt("last_used_at")?,
        expires_at: row.time_opt("expires_at")?,
        revoked_at: row.time_opt("revoked_at")?,
    })
}

#[async_trait]
impl AccessStore for SqliteStore {
    async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> StoreResult<ApiKeyId> {
        let stored = role_of(key.scope);
        let id = sqlx::query_scalar(
            "INSERT INTO api_keys (key_hash, prefix, role, practice_id, federation_id, label,
                 created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(stored.role)
        .bind(stored.practice_id)
        .bind(stored.federation_id)
        .bind(&key.label)
        .bind(At(now))
        .bind(key.expires_at.map(At))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn api_key_by_hash(
        &self,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiKeyRecord>> {
        let row = sqlx::query(
            "SELECT id, role, practice_id, federation_id, label, prefix, last_used_at
             FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL
                 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(key_hash)
        .bind(At(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let role: String = row.try_get("role")?;
            let practice_id: Option<PracticeId> = row.try_get("practice_id")?;
            Ok(ApiKeyRecord {
                id: row.try_get("id")?,
                scope: scope_of(
                    "api_keys.role",
                    &role,
                    practice_id,
                    row.try_get("federation_id")?,
                )?,
                label: row.try_get("label")?,
                prefix: row.try_get("prefix")?,
                last_used_at: row.time_opt("last_used_at")?,
            })
        })
        .transpose()
    }

    async fn api_keys(&self, limit: i64) -> StoreResult<Vec<ApiKeySummary>> {
        let rows = sqlx::query(&format!("{SUMMARY} ORDER BY id DESC LIMIT $1"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeySummary>> {
        let row = sqlx::query(&format!("{SUMMARY} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(summary_from_row).transpose()
    }

    async fn revoke_api_key(&self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(At(now))
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_api_key(&self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(At(now))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn audit(&self, entry: &AuditEntry, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, practice_id, subject, details)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(At(now))
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(entry.practice_id)
        .bind(&entry.subject)
        .bind(&entry.details)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_page(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditRecord>> {
        crate::store::audit_query::audit_page_in(&self.pool, filter).await
    }
}
