//! The outbox on PostgreSQL.
//!
//! Several processes share the database, so reaping and claiming select their rows
//! `FOR UPDATE SKIP LOCKED`: a row another process is taking is passed over, never
//! taken twice and never waited for.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PostgresStore;
use crate::domain::{
    BroadcastId, Channel, ContactId, FollowerId, MessageId, MessageState, PatientId, PracticeId,
    Priority,
};
use crate::store::outbox::claim_plan;
use crate::store::{
    lanes, parsed, At, AttemptView, ClaimedMessage, Completion, MessageView, NewMessage,
    OutboxStore, Receipt, StoreResult, TimeColumn,
};

/// Push messages among `$1` just recorded `sent` whose browser reported them before that
/// (the push service hands a message on faster than the outcome is stored): they move on
/// to what their receipts say, so a shown message is not left awaiting a fallback.
const APPLY_EARLY_PUSH_RECEIPTS: &str =
    "UPDATE messages m SET state = CASE WHEN EXISTS (SELECT 1 FROM receipts r
                WHERE r.message_id = m.id AND r.provider = 'push' AND r.status = 'read')
            THEN 'read' ELSE 'delivered' END
     WHERE m.id = ANY($1) AND m.state = 'sent' AND m.channel = 'push'
           AND EXISTS (SELECT 1 FROM receipts r WHERE r.message_id = m.id AND r.provider = 'push')";

/// Why a reaped lease's attempt is `unknown`.
const LOST_LEASE: &str = "lease expired: the worker stopped before recording an outcome, so the provider may or may not have the message";

pub(super) const MESSAGE_COLUMNS: &str =
    "m.id, m.broadcast_id, m.practice_id, p.nhs_number, m.channel, m.address, m.priority,
    m.template_key, m.template_version, m.subject, m.body, m.state, m.attempts, m.next_attempt_at,
    m.provider, m.provider_ref, m.last_error, m.created_at, m.updated_at, m.follow_up_id";

/// Rows per UNNEST insert: arrays of this length, one per column.
const INSERT_CHUNK: usize = 4000;

pub(super) fn message_from_row(row: &PgRow) -> StoreResult<MessageView> {
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

/// Returns expired leases to the queue in one statement: a message whose send had started
/// gets an `unknown` attempt (it may or may not have reached the provider), started when the
/// send began; one that was only claimed goes back uncounted, due when it was. Rows another
/// process is reaping are skipped. Returns how many leases were returned.
pub(super) async fn requeue_expired(
    conn: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let requeued: i64 = sqlx::query_scalar(
        "WITH expired AS (
             SELECT id, attempts, send_started_at FROM messages
             WHERE state = 'sending' AND lease_expires_at <= $1
             FOR UPDATE SKIP LOCKED
         ), requeued AS (
             UPDATE messages m SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                    send_started_at = NULL,
                    attempts = CASE WHEN e.send_started_at IS NULL THEN m.attempts - 1 ELSE m.attempts END,
                    next_attempt_at = CASE WHEN e.send_started_at IS NULL THEN m.next_attempt_at ELSE $1 END,
                    last_error = CASE WHEN e.send_started_at IS NULL THEN m.last_error ELSE $2 END,
                    updated_at = $1
             FROM expired e WHERE m.id = e.id
             RETURNING e.id, e.attempts, e.send_started_at
         ), lost AS (
             INSERT INTO attempts (message_id, attempt_no, provider, outcome, error, started_at, finished_at)
             SELECT id, attempts, NULL, 'unknown', $2, send_started_at, $1 FROM requeued
             WHERE send_started_at IS NOT NULL
         )
         SELECT COUNT(*) FROM requeued",
    )
    .bind(At(now))
    .bind(LOST_LEASE)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(requeued).unwrap_or(0))
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn insert_messages(&self, messages: &[NewMessage]) -> StoreResult<u64> {
        if messages.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut inserted = 0;
        // One array per column, unnested into rows: eighteen bound values per statement
        // whatever the row count, so binding and planning cost nothing per row.
        for chunk in messages.chunks(INSERT_CHUNK) {
            let column =
                |f: fn(&NewMessage) -> String| chunk.iter().map(f).collect::<Vec<String>>();
            let keys = column(|m| m.idempotency_key.clone());
            let channels = column(|m| m.channel.as_str().to_string());
            let addresses = column(|m| m.address.clone());
            let template_keys = column(|m| m.template_key.clone());
            let bodies = column(|m| m.body.clone());
            let html: Vec<Option<String>> = chunk.iter().map(|m| m.body_html.clone()).collect();
            let subjects: Vec<Option<String>> = chunk.iter().map(|m| m.subject.clone()).collect();
            let broadcasts: Vec<Option<BroadcastId>> =
                chunk.iter().map(|m| m.broadcast_id).collect();
            let practices: Vec<PracticeId> = chunk.iter().map(|m| m.practice_id).collect();
            let patients: Vec<Option<PatientId>> =
                chunk.iter().map(|m| m.recipient.patient_id()).collect();
            let contacts: Vec<Option<ContactId>> =
                chunk.iter().map(|m| m.recipient.contact_id()).collect();
            let followers: Vec<Option<FollowerId>> =
                chunk.iter().map(|m| m.recipient.follower_id()).collect();
            let links: Vec<Option<String>> = chunk.iter().map(|m| m.link.clone()).collect();
            let priorities: Vec<i16> = chunk.iter().map(|m| m.priority.rank()).collect();
            let versions: Vec<i32> = chunk.iter().map(|m| m.template_version).collect();
            let due: Vec<DateTime<Utc>> = chunk.iter().map(|m| m.next_attempt_at).collect();
            let created: Vec<DateTime<Utc>> = chunk.iter().map(|m| m.created_at).collect();
            let turns: Vec<i32> = chunk.iter().map(|m| m.turn).collect();
            let segments: Vec<i32> = chunk.iter().map(NewMessage::segments).collect();
            inserted += sqlx::query(
                "INSERT INTO messages (idempotency_key, broadcast_id, practice_id, patient_id, contact_id, channel,
                 address, priority, template_key, template_version, subject, body, body_html, state,
                 next_attempt_at, created_at, updated_at, follower_id, link, turn, segments)
                 SELECT k, b, pr, pa, c, ch, a, pri, t, v, s, body, html, 'queued', d, cr, cr, f, l, tu, sg
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[],
                             $7::text[], $8::smallint[], $9::text[], $10::int[], $11::text[], $12::text[],
                             $13::timestamptz[], $14::timestamptz[], $15::text[], $16::bigint[], $17::text[],
                             $18::int[], $19::int[])
                      AS r(k, b, pr, pa, c, ch, a, pri, t, v, s, body, d, cr, html, f, l, tu, sg)
                 ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&keys)
            .bind(&broadcasts)
            .bind(&practices)
            .bind(&patients)
            .bind(&contacts)
            .bind(&channels)
            .bind(&addresses)
            .bind(&priorities)
            .bind(&template_keys)
            .bind(&versions)
            .bind(&subjects)
            .bind(&bodies)
            .bind(&due)
            .bind(&created)
            .bind(&html)
            .bind(&followers)
            .bind(&links)
            .bind(&turns)
            .bind(&segments)
            .execute(&mut *tx)
            .await?
            .rows_affected();
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
        let (channels, most) = claim_plan(urgent_only, skip_channels);
        let mut tx = self.begin().await?;
        requeue_expired(&mut tx, now).await?;
        // The bulk range must be read in turn order through `messages_bulk_turns`, stopping
        // after `limit` rows. The planner's other choice, every due row of the channel
        // through `messages_due_by_channel` and then a top-N sort, looks as cheap when the
        // statistics are stale, and they always are in a storm: millions of rows change
        // state within minutes, long before autovacuum analyses the table. In the national
        // benchmark's superseding storms it made each claim read 3 million rows (8.8 s)
        // and dispatch fell to 5 % of the SMS rate. Without sorts, the ordered index scan
        // is the only cheap plan whatever the estimates; the two tiers' union still sorts
        // its few rows.
        sqlx::query("SET LOCAL enable_sort = off")
            .execute(&mut *tx)
            .await?;
        // Each channel is read through index ranges of its own, so a full channel's long
        // queue is never scanned in search of another channel's messages (only its urgent
        // ones are looked at). Urgent messages go first, by due time; then bulk ones turn by
        // turn (a broadcast's n-th message has turn n), so that practices share the providers
        // from their first message instead of first come, first served. The bulk range is
        // read only if a probe of the due-time index finds a due bulk message: a queue held
        // for quiet hours is not walked on every claim. The probe is a LATERAL ordered by
        // due time with LIMIT 1, which PostgreSQL answers from the index; written as EXISTS
        // it became a hashed semi-join over every queued row (seconds at millions).
        let rows = sqlx::query(
            "WITH urgent AS (
                 SELECT u.id, u.next_attempt_at FROM unnest($6::text[]) AS c(channel)
                 CROSS JOIN LATERAL (
                     SELECT id, next_attempt_at FROM messages
                     WHERE state = 'queued' AND channel = c.channel AND priority = 0
                           AND next_attempt_at <= $1
                     ORDER BY next_attempt_at, id LIMIT $2
                     FOR UPDATE SKIP LOCKED
                 ) u
             ), bulk AS (
                 SELECT b.id, b.turn FROM unnest($6::text[], $7::smallint[]) AS c(channel, most)
                 CROSS JOIN LATERAL (
                     SELECT next_attempt_at FROM messages
                     WHERE state = 'queued' AND channel = c.channel AND priority = 1
                           AND next_attempt_at <= $1
                     ORDER BY next_attempt_at LIMIT 1
                 ) due_probe
                 CROSS JOIN LATERAL (
                     SELECT id, turn FROM messages
                     WHERE state = 'queued' AND channel = c.channel AND priority = 1
                           AND next_attempt_at <= $1 AND practice_id <> ALL($5)
                     ORDER BY turn, id LIMIT $2
                     FOR UPDATE SKIP LOCKED
                 ) b
                 WHERE c.most >= 1
             ), due AS (
                 SELECT id FROM (
                     SELECT id, 0 AS tier, 0 AS turn FROM
                         (SELECT id FROM urgent ORDER BY next_attempt_at, id LIMIT $2) first_urgent
                     UNION ALL
                     SELECT id, 1, turn FROM bulk
                 ) both_tiers
                 ORDER BY tier, turn, id LIMIT $2
             )
             UPDATE messages m SET state = 'sending', lease_owner = $3, lease_expires_at = $4,
                    send_started_at = NULL, attempts = m.attempts + 1, updated_at = $1
             FROM due WHERE m.id = due.id
             RETURNING m.id, m.practice_id, m.patient_id, m.follower_id, m.broadcast_id, m.contact_id, m.channel, m.address,
                       m.subject, m.body, m.body_html, m.link, m.priority, m.attempts, m.created_at,
                       m.traceparent, m.template_key",
        )
        .bind(At(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(owner)
        .bind(At(lease_until))
        .bind(skip_practices)
        .bind(&channels)
        .bind(&most)
        .fetch_all(&mut *tx)
        .await?;
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
        let ids: Vec<MessageId> = done.iter().map(|c| c.message_id).collect();
        let providers: Vec<Option<&str>> = done.iter().map(|c| c.provider.as_deref()).collect();
        let errors: Vec<Option<&str>> = done.iter().map(|c| c.error.as_deref()).collect();
        let finished: Vec<DateTime<Utc>> = done.iter().map(|c| c.finished_at).collect();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO attempts (message_id, attempt_no, provider, outcome, error, started_at, finished_at)
             SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[],
                                  $6::timestamptz[], $7::timestamptz[])",
        )
        .bind(&ids)
        .bind(done.iter().map(|c| c.attempt_no).collect::<Vec<i32>>())
        .bind(&providers)
        .bind(done.iter().map(|c| c.outcome.as_str()).collect::<Vec<&str>>())
        .bind(&errors)
        .bind(done.iter().map(|c| c.started_at).collect::<Vec<_>>())
        .bind(&finished)
        .execute(&mut *tx)
        .await?;
        let updated: Vec<(MessageId,)> = sqlx::query_as(
            "UPDATE messages m SET state = u.state, next_attempt_at = COALESCE(u.next_at, m.next_attempt_at),
                    lease_owner = NULL, lease_expires_at = NULL, send_started_at = NULL,
                    provider = COALESCE(u.provider, m.provider),
                    provider_ref = COALESCE(u.provider_ref, m.provider_ref), last_error = u.error,
                    updated_at = u.finished_at, fallback_due_at = u.due
             FROM UNNEST($1::bigint[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                         $6::text[], $7::timestamptz[], $9::int[], $10::timestamptz[])
                  AS u(id, state, next_at, provider, provider_ref, error, finished_at, attempt, due)
             WHERE m.id = u.id AND m.lease_owner = $8 AND m.attempts = u.attempt
                   AND m.state = 'sending'
             RETURNING m.id",
        )
        .bind(&ids)
        .bind(done.iter().map(|c| c.new_state.as_str()).collect::<Vec<&str>>())
        .bind(done.iter().map(|c| c.next_attempt_at).collect::<Vec<_>>())
        .bind(&providers)
        .bind(done.iter().map(|c| c.provider_ref.as_deref()).collect::<Vec<_>>())
        .bind(&errors)
        .bind(&finished)
        .bind(owner)
        .bind(done.iter().map(|c| c.attempt_no).collect::<Vec<i32>>())
        .bind(done.iter().map(|c| c.fallback_due_at).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        // A statement of its own, so it sees a receipt committed while the one above waited
        // for the row (`record_push_receipt` locks it first).
        sqlx::query(APPLY_EARLY_PUSH_RECEIPTS)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let updated: std::collections::HashSet<MessageId> =
            updated.into_iter().map(|(id,)| id).collect();
        Ok(ids.iter().map(|id| updated.contains(id)).collect())
    }

    async fn start_sends(
        &self,
        owner: &str,
        sends: &[(MessageId, i32)],
        now: DateTime<Utc>,
        live_after: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<bool>> {
        let ids: Vec<MessageId> = sends.iter().map(|(id, _)| *id).collect();
        let started: Vec<(MessageId,)> = sqlx::query_as(
            "UPDATE messages m SET send_started_at = $3,
                    lease_expires_at = GREATEST(m.lease_expires_at, $5)
             FROM UNNEST($1::bigint[], $2::int[]) AS s(id, attempt)
             WHERE m.id = s.id AND m.attempts = s.attempt AND m.lease_owner = $6
                   AND m.state = 'sending' AND m.lease_expires_at > $4
                   AND m.send_started_at IS NULL
             RETURNING m.id",
        )
        .bind(&ids)
        .bind(sends.iter().map(|(_, a)| *a).collect::<Vec<i32>>())
        .bind(At(now))
        .bind(At(live_after))
        .bind(At(lease_until))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let started: std::collections::HashSet<MessageId> =
            started.into_iter().map(|(id,)| id).collect();
        Ok(ids.iter().map(|id| started.contains(id)).collect())
    }

    async fn extend_leases(&self, owner: &str, until: DateTime<Utc>) -> StoreResult<u64> {
        Ok(sqlx::query(
            // Rows locked by this worker's own recording or marking are skipped (those are
            // settled or extended there), so the statements never deadlock.
            "UPDATE messages SET lease_expires_at = $1
             WHERE id IN (SELECT id FROM messages WHERE state = 'sending' AND lease_owner = $2
                          FOR UPDATE SKIP LOCKED)",
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
        Ok(sqlx::query(
            "UPDATE messages m SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                    send_started_at = NULL, attempts = m.attempts - 1, next_attempt_at = d.at,
                    updated_at = $3
             FROM UNNEST($1::bigint[], $2::timestamptz[]) AS d(id, at)
             WHERE m.id = d.id AND m.state = 'sending' AND m.lease_owner = $4",
        )
        .bind(due.iter().map(|(id, _)| *id).collect::<Vec<MessageId>>())
        .bind(due.iter().map(|(_, at)| *at).collect::<Vec<_>>())
        .bind(At(now))
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
             WHERE provider_ref = $1 AND provider = ANY($2)
             ORDER BY id DESC LIMIT 1",
        )
        .bind(provider_ref)
        .bind(providers)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id, provider, state)| Ok((id, provider, parsed("messages.state", &state)?)))
            .transpose()
    }

    async fn record_receipt(&self, receipt: &Receipt, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
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
