//! Synthetic data for tests and benchmarks, written straight to the database: a practice,
//! and patients in bulk (two in three on SMS, one in three on email), in SQL rather than row
//! by row.

use std::str::FromStr;
use std::time::Duration;

use chrono::Utc;
use gateway::domain::{BroadcastId, ChannelOrder, OdsCode, PracticeId, StatusKind};
use gateway::store::{
    BroadcastStore, NewPractice, NewStatusChange, Practice, PracticeStore, StartOutcome,
};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, PgConnection, SqliteConnection};

/// A practice named "Benchmark Surgery" with the code `ods`, messaging in `channel_order`.
pub async fn practice(
    store: &dyn PracticeStore,
    ods: &str,
    channel_order: ChannelOrder,
) -> Result<Practice, Box<dyn std::error::Error>> {
    Ok(store
        .create_practice(
            &NewPractice {
                ods_code: OdsCode::parse(ods)?,
                name: "Benchmark Surgery".into(),
                phone: None,
                website: None,
                email: None,
                timezone: gateway::schedule::PracticeZone::UK,
                channel_order,
                urgent_channel_order: ChannelOrder::fastest_first(),
                order_overrides_preference: false,
                bilingual: false,
                senders: Default::default(),
                quiet_hours: None,
            },
            Utc::now(),
        )
        .await?)
}

/// Records a `systems_down` status change for the practice by `actor` through the store
/// (superseding the one before) and returns its broadcast, not yet fanned out.
pub async fn systems_down(
    store: &dyn BroadcastStore,
    practice_id: PracticeId,
    actor: &str,
) -> Result<BroadcastId, Box<dyn std::error::Error>> {
    let change = NewStatusChange {
        kind: StatusKind::SystemsDown,
        headline: "Our computer systems are down.".into(),
        details: None,
        headline_cy: None,
        details_cy: None,
        starts_at: None,
        ends_at: None,
        created_by: actor.into(),
        reach: Default::default(),
        traceparent: None,
    };
    match store
        .start_status_broadcast(practice_id, &change, None, Utc::now())
        .await?
    {
        StartOutcome::Started(id) => Ok(id),
        other => Err(format!("the broadcast did not start: {other:?}").into()),
    }
}

/// Bulk-inserts `count` synthetic patients into practice `practice_id` of the database at
/// `url` (`sqlite:...` or `postgres://...`) through a connection of its own.
pub async fn synthetic_patients(
    url: &str,
    practice_id: PracticeId,
    count: u64,
) -> Result<(), sqlx::Error> {
    if url.starts_with("postgres") {
        let mut connection = PgConnection::connect(url).await?;
        postgres_patients(&mut connection, practice_id, count).await?;
        connection.close().await
    } else {
        // The gateway may be writing too: wait for its lock as the store's own pool does.
        let options = SqliteConnectOptions::from_str(url)?.busy_timeout(Duration::from_secs(30));
        let mut connection = SqliteConnection::connect_with(&options).await?;
        sqlite_patients(&mut connection, practice_id, count).await?;
        connection.close().await
    }
}

/// [`synthetic_patients`] on a PostgreSQL connection, then `ANALYZE` so that fan-out
/// queries are planned on real row counts, as autovacuum would soon after an import.
pub async fn postgres_patients(
    connection: &mut PgConnection,
    practice_id: PracticeId,
    count: u64,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let mut tx = connection.begin().await?;
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
    sqlx::query("ANALYZE patients, contacts")
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// [`synthetic_patients`] on a SQLite connection (times stored as milliseconds).
pub async fn sqlite_patients(
    connection: &mut SqliteConnection,
    practice_id: PracticeId,
    count: u64,
) -> Result<(), sqlx::Error> {
    let now = Utc::now().timestamp_millis();
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
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
    tx.commit().await
}

/// [`synthetic_patients`] for each of `practices` (`count` each). On PostgreSQL, in one
/// statement for all of them and one `ANALYZE`, which seeds millions of patients in
/// minutes rather than a transaction and an `ANALYZE` per practice.
pub async fn synthetic_patients_of(
    url: &str,
    practices: &[PracticeId],
    count: u64,
) -> Result<(), sqlx::Error> {
    if !url.starts_with("postgres") {
        for practice_id in practices {
            synthetic_patients(url, *practice_id, count).await?;
        }
        return Ok(());
    }
    let mut connection = PgConnection::connect(url).await?;
    let now = Utc::now();
    let ids: Vec<i64> = practices.iter().map(|p| p.get()).collect();
    sqlx::query(
        "INSERT INTO patients (practice_id, nhs_number, given_name, family_name, language, active, created_at, updated_at)
         SELECT p, 'S' || lpad(i::text, 9, '0'), 'Pat', 'Bench', 'en', TRUE, $2, $2
         FROM unnest($1::bigint[]) AS p, generate_series(1, $3::bigint) AS i",
    )
    .bind(&ids)
    .bind(now)
    .bind(count as i64)
    .execute(&mut connection)
    .await?;
    sqlx::query(
        "INSERT INTO contacts (patient_id, channel, address, created_at)
         SELECT id, CASE id % 3 WHEN 0 THEN 'email' ELSE 'sms' END,
                CASE id % 3 WHEN 0 THEN 'patient' || id || '@example.com'
                            ELSE '+447700900' || lpad((id % 1000)::text, 3, '0') END, $1
         FROM patients WHERE practice_id = ANY($2)",
    )
    .bind(now)
    .bind(&ids)
    .execute(&mut connection)
    .await?;
    sqlx::query("ANALYZE patients, contacts")
        .execute(&mut connection)
        .await?;
    connection.close().await
}
