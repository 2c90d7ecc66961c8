//! The embedded SQLite store: one file, WAL journal, one writer at a time.
//!
//! Times are INTEGER milliseconds since the epoch. Write transactions start with
//! `BEGIN IMMEDIATE` so that a reader never has to upgrade to a writer mid-transaction.

mod console;
mod contacts;
mod directory;
mod outbox;
mod templates;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    AccessStore, ApiKeyRecord, AuditEntry, AuditRecord, KeyScope, NewApiKey, Store, StoreError,
    StoreResult,
};

/// The SQLite implementation of every store trait.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file named in `url`, and its folder.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // 32 MiB of page cache per connection (SQLite's default is 2 MiB): the outbox's
            // indexes stay in memory while a large broadcast is written.
            .pragma("cache_size", "-32768")
            .pragma("temp_store", "memory");
        if let Some(folder) = options.get_filename().parent() {
            if !folder.as_os_str().is_empty() {
                std::fs::create_dir_all(folder)
                    .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool, for benchmarks that seed data directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// A time as stored: milliseconds since the epoch.
pub(super) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// A stored time read back.
pub(super) fn at(column: &'static str, millis: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis).ok_or(StoreError::Corrupt {
        column,
        reason: format!("{millis} is not a time"),
    })
}

/// An optional stored time read back.
pub(super) fn at_opt(
    column: &'static str,
    millis: Option<i64>,
) -> StoreResult<Option<DateTime<Utc>>> {
    millis.map(|m| at(column, m)).transpose()
}

/// Parses a stored domain value, reporting the column if it cannot be read.
pub(super) fn parsed<T: FromStr>(column: &'static str, text: &str) -> StoreResult<T> {
    text.parse().map_err(|_| StoreError::Corrupt {
        column,
        reason: format!("{text:?} is not a known value"),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("migrations/sqlite").run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn seed_synthetic_patients(&self, practice_id: i64, count: u64) -> StoreResult<()> {
        let now = ms(Utc::now());
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?)
             INSERT INTO patients (practice_id, nhs_number, given_name, family_name, language, active, created_at, updated_at)
             SELECT ?, printf('S%09d', i), 'Pat', 'Bench', 'en', 1, ?, ? FROM seq",
        )
        .bind(count as i64)
        .bind(practice_id)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO contacts (patient_id, channel, address, created_at)
             SELECT id, CASE id % 3 WHEN 0 THEN 'email' ELSE 'sms' END,
                    CASE id % 3 WHEN 0 THEN 'patient' || id || '@example.com'
                                ELSE printf('+447700900%03d', id % 1000) END, ?
             FROM patients WHERE practice_id = ?",
        )
        .bind(now)
        .bind(practice_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl AccessStore for SqliteStore {
    async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> StoreResult<i64> {
        let (role, practice_id) = match key.scope {
            KeyScope::Admin => ("admin", None),
            KeyScope::Practice(id) => ("practice", Some(id)),
        };
        let id = sqlx::query_scalar(
            "INSERT INTO api_keys (key_hash, prefix, role, practice_id, label, created_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(role)
        .bind(practice_id)
        .bind(&key.label)
        .bind(ms(now))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row = sqlx::query(
            "SELECT id, role, practice_id, label, prefix FROM api_keys
             WHERE key_hash = ? AND revoked_at IS NULL",
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
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(ms(now))
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
             WHERE practice_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(practice_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditRecord {
                    at: at("audit_log.at", row.try_get("at")?)?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    details: row.try_get("details")?,
                })
            })
            .collect()
    }
}
