//! The PostgreSQL store: shared by several gateway processes, so claims take row locks.
//!
//! Times are TIMESTAMPTZ and bind directly as `DateTime<Utc>`; flags are real booleans.
//! Transactions run at READ COMMITTED; work that several processes may race for is
//! selected `FOR UPDATE SKIP LOCKED` so that no two processes take the same row.

mod appointments;
mod cluster;
mod console;
mod contacts;
mod directory;
mod followers;
mod import;
mod outbox;
mod templates;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

use super::{
    AccessStore, ApiKeyRecord, AuditEntry, AuditRecord, KeyScope, NewApiKey, Store, StoreError,
    StoreResult,
};

/// The PostgreSQL implementation of every store trait.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database named in `url` (`postgres://...`).
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        // JIT compiles big-looking plans for tens of milliseconds; the gateway's queries are
        // short and many, so it only adds latency.
        let options = PgConnectOptions::from_str(url)?.options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool, for benchmarks that seed data directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction that survives its caller being cancelled.
    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        super::begin_detached(&self.pool, None).await
    }
}

/// Parses a stored domain value, reporting the column if it cannot be read.
pub(super) fn parsed<T: FromStr>(column: &'static str, text: &str) -> StoreResult<T> {
    text.parse().map_err(|_| StoreError::Corrupt {
        column,
        reason: format!("{text:?} is not a known value"),
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}

#[async_trait]
impl AccessStore for PostgresStore {
    async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> StoreResult<i64> {
        let (role, practice_id) = match key.scope {
            KeyScope::Admin => ("admin", None),
            KeyScope::Practice(id) => ("practice", Some(id)),
        };
        let id = sqlx::query_scalar(
            "INSERT INTO api_keys (key_hash, prefix, role, practice_id, label, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(role)
        .bind(practice_id)
        .bind(&key.label)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row = sqlx::query(
            "SELECT id, role, practice_id, label, prefix FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let role: String = row.try_get("role")?;
            let practice_id: Option<i64> = row.try_get("practice_id")?;
            let scope = match (role.as_str(), practice_id) {
                ("admin", _) => KeyScope::Admin,
                ("practice", Some(id)) => KeyScope::Practice(id),
                _ => {
                    return Err(StoreError::Corrupt {
                        column: "api_keys.role",
                        reason: format!("{role} key without a practice"),
                    })
                }
            };
            Ok(ApiKeyRecord {
                id: row.try_get("id")?,
                scope,
                label: row.try_get("label")?,
                prefix: row.try_get("prefix")?,
            })
        })
        .transpose()
    }

    async fn audit(&self, entry: &AuditEntry, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, practice_id, subject, details)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(entry.practice_id)
        .bind(&entry.subject)
        .bind(&entry.details)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_trail(&self, practice_id: i64, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT at, actor, action, subject, details FROM audit_log
             WHERE practice_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(practice_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    details: row.try_get("details")?,
                })
            })
            .collect()
    }
}
