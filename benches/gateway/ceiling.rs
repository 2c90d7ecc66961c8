//! The database's own ceiling, measured in the same run as the gateway: rows the gateway
//! just wrote, written again (as another broadcast's or practice's) into the same tables and
//! indexes by the database's fastest path. On PostgreSQL that is `COPY ... FROM STDIN` in
//! binary format from one connection (the rows read out beforehand, untimed); on SQLite,
//! `INSERT ... SELECT`, the engine copying rows inside itself with no client at all. Neither
//! parses a file, renders wording or checks anything, so the gateway's rate divided by this
//! is the share of the database's speed it reaches.

use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use gateway::domain::{BroadcastId, PracticeId};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::Connection;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A connection of the benchmark's own to the scratch database.
enum Database {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl Database {
    async fn connect(url: &str) -> BenchResult<Self> {
        if url.starts_with("postgres") {
            return Ok(Self::Postgres(PgConnection::connect(url).await?));
        }
        // The store's own settings, so the ceiling pays for the same durability and checks.
        let options = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        Ok(Self::Sqlite(
            SqliteConnection::connect_with(&options).await?,
        ))
    }

    /// The table's columns other than its generated id, in table order.
    async fn columns(&mut self, table: &str) -> BenchResult<Vec<String>> {
        Ok(match self {
            Self::Postgres(conn) => {
                sqlx::query_scalar(
                    "SELECT column_name::text FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = $1 AND column_name <> 'id'
                     ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(conn)
                .await?
            }
            Self::Sqlite(conn) => {
                sqlx::query_scalar(
                    "SELECT name FROM pragma_table_info($1) WHERE name <> 'id' ORDER BY cid",
                )
                .bind(table)
                .fetch_all(conn)
                .await?
            }
        })
    }

    /// Writes the rows `select` reads into `table`'s `columns` by the fastest path, timing
    /// the write alone. Returns the rows written and the seconds it took.
    async fn copy(&mut self, table: &str, columns: &str, select: &str) -> BenchResult<(u64, f64)> {
        match self {
            Self::Postgres(conn) => {
                let rows: Vec<_> = conn
                    .copy_out_raw(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
                    .await?
                    .try_collect()
                    .await?;
                let started = Instant::now();
                let mut copy = conn
                    .copy_in_raw(&format!(
                        "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
                    ))
                    .await?;
                for chunk in rows {
                    copy.send(chunk).await?;
                }
                let written = copy.finish().await?;
                Ok((written, started.elapsed().as_secs_f64()))
            }
            Self::Sqlite(conn) => {
                let started = Instant::now();
                let written = sqlx::query(&format!("INSERT INTO {table} ({columns}) {select}"))
                    .execute(conn)
                    .await?
                    .rows_affected();
                Ok((written, started.elapsed().as_secs_f64()))
            }
        }
    }

    async fn close(self) -> BenchResult<()> {
        match self {
            Self::Postgres(conn) => conn.close().await?,
            Self::Sqlite(conn) => conn.close().await?,
        }
        Ok(())
    }
}

/// The column list and the matching expressions (`alias.column`, or the override given).
fn copied(columns: &[String], alias: &str, overrides: &[(&str, String)]) -> (String, String) {
    let expressions: Vec<String> = columns
        .iter()
        .map(|c| match overrides.iter().find(|(name, _)| name == c) {
            Some((_, expression)) => expression.clone(),
            None => format!("{alias}.{c}"),
        })
        .collect();
    (columns.join(", "), expressions.join(", "))
}

/// Writes broadcast `from`'s messages again as broadcast `into`'s (each with a fresh
/// idempotency key). Returns the rows written and the seconds the write took.
pub async fn copy_messages(
    url: &str,
    from: BroadcastId,
    into: BroadcastId,
) -> BenchResult<(u64, f64)> {
    let mut db = Database::connect(url).await?;
    let columns = db.columns("messages").await?;
    let (names, expressions) = copied(
        &columns,
        "m",
        &[
            ("broadcast_id", format!("CAST({} AS BIGINT)", into.get())),
            (
                "idempotency_key",
                format!("m.idempotency_key || '-ceiling-{}'", into.get()),
            ),
        ],
    );
    let select = format!(
        "SELECT {expressions} FROM messages m WHERE m.broadcast_id = {} ORDER BY m.id",
        from.get()
    );
    let written = db.copy("messages", &names, &select).await?;
    db.close().await?;
    Ok(written)
}

/// Writes practice `from`'s patients and their contacts again as practice `into`'s (an
/// empty practice): what a first import of the same list writes. Returns the patients
/// written and the seconds both writes took.
pub async fn copy_patients(
    url: &str,
    from: PracticeId,
    into: PracticeId,
) -> BenchResult<(u64, f64)> {
    let mut db = Database::connect(url).await?;
    let columns = db.columns("patients").await?;
    let (names, expressions) = copied(
        &columns,
        "p",
        &[("practice_id", format!("CAST({} AS BIGINT)", into.get()))],
    );
    let select = format!(
        "SELECT {expressions} FROM patients p WHERE p.practice_id = {} ORDER BY p.id",
        from.get()
    );
    let (patients, patient_seconds) = db.copy("patients", &names, &select).await?;
    let columns = db.columns("contacts").await?;
    let (names, expressions) = copied(&columns, "c", &[("patient_id", "np.id".to_string())]);
    let select = format!(
        "SELECT {expressions} FROM contacts c
         JOIN patients op ON op.id = c.patient_id
         JOIN patients np ON np.practice_id = {} AND np.nhs_number = op.nhs_number
         WHERE op.practice_id = {} ORDER BY c.id",
        into.get(),
        from.get()
    );
    let (_, contact_seconds) = db.copy("contacts", &names, &select).await?;
    db.close().await?;
    Ok((patients, patient_seconds + contact_seconds))
}
