//! The embedded SQLite store: one file, WAL journal, one writer at a time.
//!
//! Times are INTEGER milliseconds since the epoch (`store::At` encodes them). Write
//! transactions start with `BEGIN IMMEDIATE` so that a reader never has to upgrade to a
//! writer mid-transaction.

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
/// Status groups: one status change to many practices.
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
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::{Store, StoreError, StoreResult};

/// The SQLite implementation of every store trait.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One long-lived connection for write transactions ([`SqliteStore::begin_write`]).
    /// SQLite lets one writer in at a time anyway; queueing for this connection instead of
    /// retrying `BEGIN IMMEDIATE` in SQLite's busy handler (which sleeps up to 100 ms a
    /// try) hands the lock on at once, in order, and keeps one page cache warm for the
    /// writes instead of every pooled connection re-reading pages another one changed.
    writer: SqlitePool,
    options: SqliteConnectOptions,
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
            .connect_with(options.clone())
            .await?;
        // Waiting for the writer is waiting for SQLite's write lock: as long as the busy
        // timeout a pooled connection would wait for it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            pool,
            writer,
            options,
        })
    }

    /// The connection pool, for benchmarks that seed data directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction (`BEGIN IMMEDIATE`) on the writer connection, that survives its
    /// caller being cancelled. Never call this while holding another: the second would wait
    /// for the first.
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        super::begin_detached(&self.writer, Some("BEGIN IMMEDIATE")).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    /// Migrates on a connection of its own with foreign keys off, as SQLite requires for
    /// rebuilding a table that others refer to (see `0008_push_followers.sql`); each
    /// migration still runs in one transaction.
    async fn migrate(&self) -> StoreResult<()> {
        let migrating = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(self.options.clone().foreign_keys(false))
            .await?;
        let migrated = sqlx::migrate!("migrations/sqlite").run(&migrating).await;
        migrating.close().await;
        Ok(migrated?)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Poll;

    use super::*;

    /// Polls `future` a few times, pausing `pause` between polls, then drops it unfinished
    /// if it has not finished by then.
    async fn cancel_after<F: Future>(future: F, polls: usize, pause: Duration) {
        let mut future: Pin<Box<F>> = Box::pin(future);
        for _ in 0..polls {
            let ready =
                std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await;
            if ready {
                return;
            }
            // Let the runtime run what the begin waits on, then give SQLite's thread time.
            tokio::task::yield_now().await;
            std::thread::sleep(pause);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_begin_leaves_no_transaction_behind() {
        let folder = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}", folder.path().join("cancel.db").display());
        // One connection: a transaction left open on it would break the next write at once.
        let store = SqliteStore::connect(&url, 1).await.expect("store opens");
        sqlx::query("CREATE TABLE marks (n INTEGER)")
            .execute(&store.pool)
            .await
            .expect("table");
        // Each begin is a few round trips to SQLite's thread (acquire's ping, BEGIN, the
        // check that it took); cancelling after 1 to 6 polls, 0 to 200 µs apart, lands in
        // each of the gaps between them.
        for attempt in 0..600u64 {
            let pause = Duration::from_micros(2 * (attempt / 6));
            cancel_after(store.begin_write(), 1 + (attempt as usize % 6), pause).await;
            let mut tx = tokio::time::timeout(Duration::from_secs(5), store.begin_write())
                .await
                .expect("the next write is not kept waiting")
                .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
            sqlx::query("INSERT INTO marks (n) VALUES ($1)")
                .bind(attempt as i64)
                .execute(&mut *tx)
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
        }
        let marks: i64 = sqlx::query_scalar("SELECT count(*) FROM marks")
            .fetch_one(&store.pool)
            .await
            .expect("count");
        assert_eq!(marks, 600);
    }
}
