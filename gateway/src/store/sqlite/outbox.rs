//! The outbox on SQLite.
//!
//! Claiming is `UPDATE ... WHERE id IN (SELECT ... LIMIT $n) RETURNING`: SQLite has one
//! writer, so no row locks are needed; several processes on one file are not supported.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row};

use super::SqliteStore;
use crate::domain::{BroadcastId, Channel, MessageId, MessageState, PracticeId, Priority};
use crate::store::outbox::claim_plan;
use crate::store::{
    lanes, parsed, At, AttemptView, ClaimedMessage, Completion, MessageView, NewMessage,
    OutboxStore, Receipt, StoreResult, TimeColumn,
};

/// Push messages of the completion batch `$1` just recorded `sent` whose browser reported
/// them before that (the push service hands a message on faster than the outcome is
/// stored): they move on to what their receipts say, so a shown message is not left
/// awaiting a fallback.
const APPLY_EARLY_PUSH_RECEIPTS: &str =
    "UPDATE messages SET state = CASE WHEN EXISTS (SELECT 1 FROM receipts r
                WHERE r.message_id = messages.id AND r.provider = 'push' AND r.status = 'read')
            THEN 'read' ELSE 'delivered' END
     WHERE id IN (SELECT json_extract(value, '$.id') FROM json_each($1))
           AND state = 'sent' AND channel = 'push'
           AND EXISTS (SELECT 1 FROM receipts r WHERE r.message_id = messages.id AND r.provider = 'push')";

/// Rows per INSERT: eight bound values each, plus thirteen per distinct shared part; even
/// with every row distinct (personal wording) that stays under SQLite's 32,766 per statement.
const INSERT_CHUNK: usize = 1500;

/// What rows of one INSERT may share: everything but the recipient, address and key.
type SharedKey<'a> = (
    Option<BroadcastId>,
    PracticeId,
    i16,
    &'a str,
    i32,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    At,
    At,
);

fn shared_key(m: &NewMessage) -> SharedKey<'_> {
    (
        m.broadcast_id,
        m.practice_id,
        m.priority.rank(),
        &m.template_key,
        m.template_version,
        m.subject.as_deref(),
        &m.body,
        m.body_html.as_deref(),
        m.link.as_deref(),
        At(m.next_attempt_at),
        At(m.created_at),
    )
}

/// Why a reaped lease's attempt is `unknown`.
const LOST_LEASE: &str = "lease expired: the worker stopped before recording an outcome, so the provider may or may not have the message";

pub(super) const MESSAGE_COLUMNS: &str =
    "m.id, m.broadcast_id, m.practice_id, p.nhs_number, m.channel, m.address, m.priority,
    m.template_key, m.template_version, m.subject, m.body, m.state, m.attempts, m.next_attempt_at,
    m.provider, m.provider_ref, m.last_error, m.created_at, m.updated_at, m.follow_up_id";

/// Returns expired leases to the queue, inside the caller's write transaction: a message
/// whose send had started gets an `unknown` attempt (it may or may not have reached the
/// provider), started when the send began; one that was only claimed goes back uncounted,
/// due when it was. Returns how many leases were returned.
pub(super) async fn requeue_expired(
    conn: &mut sqlx::SqliteConnection,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    sqlx::query(
        "INSERT INTO attempts (message_id, attempt_no, provider, outcome, error, started_at, finished_at)
         SELECT id, attempts, NULL, 'unknown', $2, send_started_at, $1 FROM messages
         WHERE state = 'sending' AND lease_expires_at <= $1 AND send_started_at IS NOT NULL",
    )
    .bind(At(now))
    .bind(LOST_LEASE)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query(
        "UPDATE messages SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                attempts = CASE WHEN send_started_at IS NULL THEN attempts - 1 ELSE attempts END,
                next_attempt_at = CASE WHEN send_started_at IS NULL THEN next_attempt_at ELSE $1 END,
                last_error = CASE WHEN send_started_at IS NULL THEN last_error ELSE $2 END,
                send_started_at = NULL, updated_at = $1
         WHERE state = 'sending' AND lease_expires_at <= $1",
    )
    .bind(At(now))
    .bind(LOST_LEASE)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

pub(super) fn message_from_row(row: &SqliteRow) -> StoreResult<MessageView> {
    Ok(MessageView {
        id: row.try_get("id")?,
        broadcast_id: row.try_get("broadcast_id")?,
        practice_id: row.try_get("practice_id")?,
        nhs_number: row.try_get("nhs_number")?,
        channel: row.try_get("channel")?,
        address: row.try_get("address")?,
        priority: Priority::from_rank(row.try_get("priority")?),
        template_key: row.try_get("template_key")?,
        template_version: row.try_get("template_version")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.time("next_attempt_at")?,
        provider: row.try_get("provider")?,
        provider_ref: row.try_get("provider_ref")?,
        last_error: row.try_get("last_error")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        held: None,
        superseded_by_fallback: row.try_get("follow_up_id")?,
    })
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn insert_messages(&self, messages: &[NewMessage]) -> StoreResult<u64> {
        if messages.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let mut inserted = 0;
        // The rows of a broadcast share everything but patient, contact and key. What they
        // share is bound once per chunk in a `shared` CTE and joined in, so a row binds eight
        // values, not twenty, and the wording is copied once, not per row. Every value is
        // bound, so the SQL text repeats and its prepared statement is reused.
        for chunk in messages.chunks(INSERT_CHUNK) {
            let mut shared: Vec<&NewMessage> = Vec::new();
            let mut shared_index: HashMap<SharedKey, usize> = HashMap::new();
            let rows: Vec<(&NewMessage, i64)> = chunk
                .iter()
                .map(|m| {
                    let k = *shared_index.entry(shared_key(m)).or_insert_with(|| {
                        shared.push(m);
                        shared.len() - 1
                    });
                    (m, k as i64)
                })
                .collect();
            let mut insert = QueryBuilder::new(
                "WITH shared (k, broadcast_id, practice_id, priority, template_key, template_version, subject, body,
                              body_html, link, next_attempt_at, created_at, sms_segments) AS (",
            );
            insert.push_values(shared.iter().enumerate(), |mut row, (k, m)| {
                row.push_bind(k as i64)
                    .push_bind(m.broadcast_id)
                    .push_bind(m.practice_id)
                    .push_bind(m.priority.rank())
                    .push_bind(&m.template_key)
                    .push_bind(m.template_version)
                    .push_bind(&m.subject)
                    .push_bind(&m.body)
                    .push_bind(&m.body_html)
                    .push_bind(&m.link)
                    .push_bind(At(m.next_attempt_at))
                    .push_bind(At(m.created_at))
                    .push_bind(m.sms_segments());
            });
            insert.push(
                "), rows (idempotency_key, patient_id, contact_id, follower_id, channel, address, k, turn) AS (",
            );
            insert.push_values(rows, |mut row, (m, k)| {
                row.push_bind(&m.idempotency_key)
                    .push_bind(m.recipient.patient_id())
                    .push_bind(m.recipient.contact_id())
                    .push_bind(m.recipient.follower_id())
                    .push_bind(m.channel.as_str())
                    .push_bind(&m.address)
                    .push_bind(k)
                    .push_bind(m.turn);
            });
            // `WHERE true` keeps SQLite from reading ON CONFLICT as part of the join.
            insert.push(
                ") INSERT INTO messages (idempotency_key, broadcast_id, practice_id, patient_id, contact_id, follower_id,
                   channel, address, priority, template_key, template_version, subject, body, body_html, link, state,
                   next_attempt_at, created_at, updated_at, turn, segments)
                 SELECT r.idempotency_key, s.broadcast_id, s.practice_id, r.patient_id, r.contact_id, r.follower_id,
                        r.channel, r.address, s.priority, s.template_key, s.template_version, s.subject, s.body,
                        s.body_html, s.link,
                        'queued',
                        s.next_attempt_at, s.created_at, s.created_at, r.turn,
                        CASE WHEN r.channel = 'sms' THEN s.sms_segments ELSE 1 END
                 FROM rows r JOIN shared s ON s.k = r.k WHERE true
                 ON CONFLICT (idempotency_key) DO NOTHING",
            );
            inserted += insert.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn claim_due_skipping(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
        urgent_only: bool,
        skip_practices: &[PracticeId],
        skip_channels: &[Channel],
    ) -> StoreResult<Vec<ClaimedMessage>> {
        let (channels, mut most) = claim_plan(urgent_only, skip_channels);
        let mut tx = self.begin_write().await?;
        requeue_expired(&mut tx, now).await?;
        // A channel's bulk range is read only if a bulk message is due in it: SQLite would
        // otherwise walk a queue held for quiet hours on every claim (a false condition
        // known before the loop, as `$most >= 1` with 0, skips the range at once).
        let due = channels_with_due_bulk(&mut tx, &channels, now).await?;
        for (channel, most) in channels.iter().zip(most.iter_mut()) {
            if !due.iter().any(|d| d == channel) {
                *most = Priority::Urgent.rank();
            }
        }
        let mut query = sqlx::query(claim_sql())
            .bind(owner)
            .bind(At(lease_until))
            .bind(At(now))
            .bind(serde_json::to_string(skip_practices).unwrap_or_else(|_| "[]".into()))
            .bind(limit as i64);
        for (channel, most) in channels.iter().zip(&most) {
            query = query.bind(*channel).bind(*most);
        }
        let rows = query.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                let channel: String = row.try_get("channel")?;
                Ok(ClaimedMessage {
                    id: row.try_get("id")?,
                    practice_id: row.try_get("practice_id")?,
                    patient_id: row.try_get("patient_id")?,
                    follower_id: row.try_get("follower_id")?,
                    broadcast_id: row.try_get("broadcast_id")?,
                    contact_id: row.try_get("contact_id")?,
                    channel: parsed("messages.channel", &channel)?,
                    address: row.try_get("address")?,
                    subject: row.try_get("subject")?,
                    body: row.try_get("body")?,
                    body_html: row.try_get("body_html")?,
                    link: row.try_get("link")?,
                    priority: Priority::from_rank(row.try_get("priority")?),
                    attempt_no: row.try_get("attempts")?,
                    created_at: row.time("created_at")?,
                    trace: row.try_get("traceparent")?,
                    template_key: row.try_get("template_key")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by_key(|m| (m.priority, m.id));
        Ok(claimed)
    }

    async fn complete_many(&self, owner: &str, done: &[Completion]) -> StoreResult<Vec<bool>> {
        // The batch goes in as one JSON array, so two statements record any number of
        // outcomes (each statement is a hand-off to SQLite's thread).
        let rows: Vec<serde_json::Value> = done
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.message_id,
                    "attempt": c.attempt_no,
                    "provider": c.provider,
                    "outcome": c.outcome.as_str(),
                    "ref": c.provider_ref,
                    "error": c.error,
                    "state": c.new_state.as_str(),
                    "next": c.next_attempt_at.map(|t| t.timestamp_millis()),
                    "started": c.started_at.timestamp_millis(),
                    "finished": c.finished_at.timestamp_millis(),
                    "due": c.fallback_due_at.map(|t| t.timestamp_millis()),
                })
            })
            .collect();
        let batch = serde_json::Value::Array(rows).to_string();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO attempts (message_id, attempt_no, provider, outcome, error, started_at, finished_at)
             SELECT json_extract(value, '$.id'), json_extract(value, '$.attempt'),
                    json_extract(value, '$.provider'), json_extract(value, '$.outcome'),
                    json_extract(value, '$.error'), json_extract(value, '$.started'),
                    json_extract(value, '$.finished')
             FROM json_each($1)",
        )
        .bind(&batch)
        .execute(&mut *tx)
        .await?;
        let held: Vec<(MessageId,)> = sqlx::query_as(
            "UPDATE messages SET state = u.state, next_attempt_at = COALESCE(u.next, messages.next_attempt_at),
                    lease_owner = NULL, lease_expires_at = NULL, send_started_at = NULL,
                    provider = COALESCE(u.provider, messages.provider),
                    provider_ref = COALESCE(u.ref, messages.provider_ref),
                    last_error = u.error, updated_at = u.finished, fallback_due_at = u.due
             FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.state') AS state,
                          json_extract(value, '$.due') AS due,
                          json_extract(value, '$.next') AS next, json_extract(value, '$.provider') AS provider,
                          json_extract(value, '$.ref') AS ref, json_extract(value, '$.error') AS error,
                          json_extract(value, '$.finished') AS finished,
                          json_extract(value, '$.attempt') AS attempt
                   FROM json_each($1)) AS u
             WHERE messages.id = u.id AND messages.lease_owner = $2 AND messages.attempts = u.attempt
                   AND messages.state = 'sending'
             RETURNING messages.id",
        )
        .bind(&batch)
        .bind(owner)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(APPLY_EARLY_PUSH_RECEIPTS)
            .bind(&batch)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let held: std::collections::HashSet<MessageId> = held.into_iter().map(|(id,)| id).collect();
        Ok(done.iter().map(|c| held.contains(&c.message_id)).collect())
    }

    async fn start_sends(
        &self,
        owner: &str,
        sends: &[(MessageId, i32)],
        now: DateTime<Utc>,
        live_after: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<bool>> {
        let batch = serde_json::to_string(sends).unwrap_or_else(|_| "[]".into());
        let mut tx = self.begin_write().await?;
        let started: Vec<(MessageId,)> = sqlx::query_as(
            "UPDATE messages SET send_started_at = $1, lease_expires_at = MAX(lease_expires_at, $2)
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS attempt
                   FROM json_each($3)) AS s
             WHERE messages.id = s.id AND messages.attempts = s.attempt
                   AND messages.lease_owner = $4 AND messages.state = 'sending'
                   AND messages.lease_expires_at > $5 AND messages.send_started_at IS NULL
             RETURNING messages.id",
        )
        .bind(At(now))
        .bind(At(lease_until))
        .bind(batch)
        .bind(owner)
        .bind(At(live_after))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let started: std::collections::HashSet<MessageId> =
            started.into_iter().map(|(id,)| id).collect();
        Ok(sends.iter().map(|(id, _)| started.contains(id)).collect())
    }

    async fn extend_leases(&self, owner: &str, until: DateTime<Utc>) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET lease_expires_at = $1 WHERE state = 'sending' AND lease_owner = $2",
        )
        .bind(At(until))
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn defer(
        &self,
        owner: &str,
        due: &[(MessageId, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let batch = serde_json::to_string(
            &due.iter()
                .map(|(id, at)| (*id, at.timestamp_millis()))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_else(|_| "[]".into());
        Ok(sqlx::query(
            "UPDATE messages SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                    send_started_at = NULL, attempts = attempts - 1, next_attempt_at = d.at,
                    updated_at = $1
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at
                   FROM json_each($2)) AS d
             WHERE messages.id = d.id AND messages.state = 'sending' AND messages.lease_owner = $3",
        )
        .bind(At(now))
        .bind(batch)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn queue_depth(&self) -> StoreResult<Vec<(Priority, i64)>> {
        let rows: Vec<(i16, i64)> = sqlx::query_as(
            "SELECT priority, COUNT(*) FROM messages WHERE state = 'queued' GROUP BY priority",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(lanes(rows))
    }

    async fn release_leases(&self, owner: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        // The attempt never started talking to a provider, so it does not count.
        Ok(sqlx::query(
            "UPDATE messages SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                    attempts = attempts - 1, next_attempt_at = $1, updated_at = $1
             WHERE state = 'sending' AND lease_owner = $2 AND send_started_at IS NULL",
        )
        .bind(At(now))
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn message(&self, id: MessageId) -> StoreResult<Option<(MessageView, Vec<AttemptView>)>> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN patients p ON p.id = m.patient_id WHERE m.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let attempts = sqlx::query(
            "SELECT attempt_no, provider, outcome, error, started_at, finished_at FROM attempts
             WHERE message_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|a| {
            Ok(AttemptView {
                attempt_no: a.try_get("attempt_no")?,
                provider: a.try_get("provider")?,
                outcome: a.try_get("outcome")?,
                error: a.try_get("error")?,
                started_at: a.time("started_at")?,
                finished_at: a.time("finished_at")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some((message_from_row(&row)?, attempts)))
    }

    async fn pending_count(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM messages WHERE state IN ('queued', 'sending')",
            )
            .fetch_one(&self.pool)
            .await?,
        )
    }

    async fn message_by_provider_ref(
        &self,
        providers: &[String],
        provider_ref: &str,
    ) -> StoreResult<Option<(MessageId, Option<String>, MessageState)>> {
        let row: Option<(MessageId, Option<String>, String)> = sqlx::query_as(
            "SELECT id, provider, state FROM messages
             WHERE provider_ref = $1 AND provider IN (SELECT value FROM json_each($2))
             ORDER BY id DESC LIMIT 1",
        )
        .bind(provider_ref)
        .bind(serde_json::to_string(providers).unwrap_or_else(|_| "[]".into()))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id, provider, state)| Ok((id, provider, parsed("messages.state", &state)?)))
            .transpose()
    }

    async fn record_receipt(&self, receipt: &Receipt, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO receipts (message_id, provider, status, new_state, detail, received_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(receipt.message_id)
        .bind(&receipt.provider)
        .bind(&receipt.status)
        .bind(receipt.new_state.map(|s| s.as_str()))
        .bind(&receipt.detail)
        .bind(At(now))
        .execute(&mut *tx)
        .await?;
        let moved = match receipt.new_state {
            Some(state) => {
                sqlx::query(
                    "UPDATE messages SET state = $1, last_error = COALESCE($2, last_error), updated_at = $3
                     WHERE id = $4 AND (state = 'sent' OR ($1 = 'read' AND state = 'delivered'))",
                )
                .bind(state.as_str())
                .bind(&receipt.detail)
                .bind(At(now))
                .bind(receipt.message_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1
            }
            None => false,
        };
        tx.commit().await?;
        Ok(moved)
    }
}

/// Which of `channels` have a bulk message due at `now`: one probe of the due-time index
/// each.
async fn channels_with_due_bulk(
    tx: &mut sqlx::SqliteConnection,
    channels: &[&str],
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT c.value FROM json_each($1) AS c
         WHERE EXISTS (SELECT 1 FROM messages WHERE state = 'queued' AND channel = c.value
                                                AND priority = 1 AND next_attempt_at <= $2)",
    )
    .bind(serde_json::to_string(channels).unwrap_or_else(|_| "[]".into()))
    .bind(At(now))
    .fetch_all(tx)
    .await?)
}

/// The claim statement. Each channel is read through index ranges of its own, at most `$5`
/// from each: its urgent messages by due time, then, if its highest priority rank allows
/// (the channel is not full, and [`channels_with_due_bulk`] found a due bulk message in it),
/// its bulk messages turn by turn. Of them all, urgent ones are
/// taken first, then bulk ones by turn, so practices share the providers from their first
/// message. Parameters: `$1` owner, `$2` lease end, `$3` now, `$4` practices left out (JSON),
/// `$5` limit, then each channel's name and highest priority rank, in the order of
/// [`Channel::ALL`].
fn claim_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let per_channel: Vec<String> = (0..Channel::ALL.len())
            .map(|i| {
                let (channel, most) = (6 + 2 * i, 7 + 2 * i);
                format!(
                    "SELECT * FROM (SELECT id, 0 AS tier, 0 AS turn FROM messages
                         WHERE state = 'queued' AND channel = ${channel} AND priority = 0
                               AND next_attempt_at <= $3
                         ORDER BY next_attempt_at, id LIMIT $5)
                     UNION ALL
                     SELECT * FROM (SELECT id, 1 AS tier, turn FROM messages
                         WHERE state = 'queued' AND channel = ${channel} AND priority = 1
                               AND ${most} >= 1
                               AND next_attempt_at <= $3
                               AND practice_id NOT IN (SELECT value FROM json_each($4))
                         ORDER BY turn, id LIMIT $5)"
                )
            })
            .collect();
        format!(
            "UPDATE messages SET state = 'sending', lease_owner = $1, lease_expires_at = $2,
                    send_started_at = NULL, attempts = attempts + 1, updated_at = $3
             WHERE id IN (SELECT id FROM ({}) ORDER BY tier, turn, id LIMIT $5)
             RETURNING id, practice_id, patient_id, follower_id, broadcast_id, contact_id, channel, address, subject, body,
                       body_html, link, priority, attempts, created_at, traceparent, template_key",
            per_channel.join(" UNION ALL ")
        )
    })
}
