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
/// Message counts that costs are priced from.
mod costs;
/// Federations and their member practices.
mod federations;
/// Deadlines and their follow-ups.
mod follow_ups;
/// Anonymous push followers.
mod followers;
/// Staff mobile numbers.
mod groups;
/// Contact-list imports.
mod import;
/// Durable messages: inserting, claiming, completing.
mod outbox;
/// Listing, deactivating and erasing patients (the shared code of `store::patient_admin`).
mod patient_admin;
/// Patients with their contacts.
mod patients;
/// Practices.
mod practices;
/// Proposed status changes, approval codes and rules, source incidents.
mod proposals;
/// Push receipts.
mod push_receipts;
/// Status changes planned ahead and their occurrences.
mod scheduled;
/// Staff mobile numbers.
mod staff;
/// Message templates and their versions.
mod templates;
/// The trace context dispatch reads for the broadcasts it claims.
mod traces;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
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
}
