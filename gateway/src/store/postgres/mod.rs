//! The PostgreSQL store: shared by several gateway processes, so claims take row locks.
//!
//! Times are TIMESTAMPTZ (`store::At` binds them as `DateTime<Utc>`); flags are real booleans.
//! Transactions run at READ COMMITTED; work that several processes may race for is
//! selected `FOR UPDATE SKIP LOCKED` so that no two processes take the same row.

/// API keys and the audit trail.
mod access;
/// Appointments and the changes made to them.
mod appointments;
/// Status changes and the broadcasts they start.
mod broadcasts;
/// Instances, leadership and patients' caps.
mod cluster;
/// Console users and sessions.
mod console;
/// Opt-outs, bad addresses and push subscriptions.
mod contacts;
/// Anonymous push followers.
mod followers;
/// Contact-list imports.
mod import;
/// Durable messages: inserting, claiming, completing.
mod outbox;
/// Patients with their contacts.
mod patients;
/// Practices.
mod practices;
/// Message templates and their versions.
mod templates;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::{Store, StoreResult};

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

    async fn seed_synthetic_patients(&self, practice_id: i64, count: u64) -> StoreResult<()> {
        let now = Utc::now();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO patients (practice_id, nhs_number, given_name, family_name, language, active, created_at, updated_at)
             SELECT $1, 'S' || lpad(i::text, 9, '0'), 'Pat', 'Bench', 'en', TRUE, $2, $2
             FROM generate_series(1, $3::bigint) AS i",
        )
        .bind(practice_id)
        .bind(now)
        .bind(count as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO contacts (patient_id, channel, address, created_at)
             SELECT id, CASE id % 3 WHEN 0 THEN 'email' ELSE 'sms' END,
                    CASE id % 3 WHEN 0 THEN 'patient' || id || '@example.com'
                                ELSE '+447700900' || lpad((id % 1000)::text, 3, '0') END, $1
             FROM patients WHERE practice_id = $2",
        )
        .bind(now)
        .bind(practice_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Plan fan-out queries on real row counts, as autovacuum would soon after an import.
        sqlx::query("ANALYZE patients, contacts")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
