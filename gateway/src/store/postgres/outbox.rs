//! Status changes, broadcasts and the outbox on PostgreSQL.
//!
//! Several processes share the database, so reaping and claiming select their rows
//! `FOR UPDATE SKIP LOCKED`: a row another process is taking is passed over, never
//! taken twice and never waited for.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{parsed, PostgresStore};
use crate::domain::{Channel, MessageState, Priority};
use crate::store::{
    lanes, supersede_reason, superseded_reasons, AttemptView, Broadcast, BroadcastStore,
    ClaimedMessage, Completion, IdempotencyClaim, MessageView, NewMessage, NewStatusChange,
    OutboxStore, Reach, Receipt, StartOutcome, StoreError, StoreResult,
};

/// Why a reaped lease's attempt is `unknown`.
const LOST_LEASE: &str = "lease expired: the worker stopped before recording an outcome, so the provider may or may not have the message";

const MESSAGE_COLUMNS: &str =
    "m.id, m.broadcast_id, m.practice_id, p.nhs_number, m.channel, m.address, m.priority,
    m.template_key, m.template_version, m.subject, m.body, m.state, m.attempts, m.next_attempt_at,
    m.provider, m.provider_ref, m.last_error, m.created_at, m.updated_at";

/// Rows per UNNEST insert: arrays of this length, one per column.
const INSERT_CHUNK: usize = 4000;

/// How often a lost idempotency race is re-read before giving up.
const IDEMPOTENCY_TRIES: usize = 3;

/// Marks the practice's broadcasts before `newer` as superseded by `status_change_id` and
/// cancels the unsent messages of every superseded broadcast of the practice, inside the
/// caller's transaction. Returns how many messages were cancelled.
async fn withdraw_earlier(
    conn: &mut sqlx::PgConnection,
    practice_id: i64,
    newer: i64,
    status_change_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    sqlx::query(
        "UPDATE broadcasts SET superseded_by = $1 WHERE practice_id = $2 AND id < $3 AND superseded_by IS NULL",
    )
    .bind(status_change_id)
    .bind(practice_id)
    .bind(newer)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query(
        "UPDATE messages SET state = 'cancelled', last_error = $1, updated_at = $2
         WHERE state = 'queued' AND broadcast_id IN
               (SELECT id FROM broadcasts WHERE practice_id = $3 AND superseded_by IS NOT NULL)",
    )
    .bind(reason)
    .bind(now)
    .bind(practice_id)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

fn message_from_row(row: &PgRow) -> StoreResult<MessageView> {
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
        next_attempt_at: row.try_get("next_attempt_at")?,
        provider: row.try_get("provider")?,
        provider_ref: row.try_get("provider_ref")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
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
    .bind(now)
    .bind(LOST_LEASE)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(requeued).unwrap_or(0))
}

/// What an idempotency key already stands for, if it has been used.
async fn seen_claim<'e, E>(
    executor: E,
    claim: &IdempotencyClaim,
) -> StoreResult<Option<StartOutcome>>
where
    E: sqlx::PgExecutor<'e>,
{
    let seen: Option<(String, i64)> = sqlx::query_as(
        "SELECT request_hash, broadcast_id FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(&claim.scope)
    .bind(&claim.key)
    .fetch_optional(executor)
    .await?;
    Ok(seen.map(|(hash, broadcast_id)| {
        if hash == claim.request_hash {
            StartOutcome::Replayed(broadcast_id)
        } else {
            StartOutcome::KeyReused
        }
    }))
}

/// Reads broadcasts with their status changes; callers add the WHERE clause.
const BROADCAST_SELECT: &str = "SELECT b.id, b.practice_id, b.status_change_id, s.kind, s.headline, s.details, s.starts_at, s.ends_at,
                    s.created_by, b.created_at, b.fanout_done_at, b.skipped_no_contact, b.superseded_by, b.failed_at, b.failure,
                    s.audience, s.affected_from, s.affected_until
             FROM broadcasts b JOIN status_changes s ON s.id = b.status_change_id";
/// A broadcast with its status change, as `BROADCAST_SELECT` reads it.
fn broadcast_from_row(row: &PgRow) -> StoreResult<Broadcast> {
    let kind: String = row.try_get("kind")?;
    let audience: String = row.try_get("audience")?;
    Ok(Broadcast {
        id: row.try_get("id")?,
        practice_id: row.try_get("practice_id")?,
        status_change_id: row.try_get("status_change_id")?,
        kind: parsed("status_changes.kind", &kind)?,
        headline: row.try_get("headline")?,
        details: row.try_get("details")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        fanout_done_at: row.try_get("fanout_done_at")?,
        skipped_no_contact: row.try_get("skipped_no_contact")?,
        superseded_by: row.try_get("superseded_by")?,
        failed_at: row.try_get("failed_at")?,
        failure: row.try_get("failure")?,
        reach: Reach {
            audience: parsed("status_changes.audience", &audience)?,
            affected_from: row.try_get("affected_from")?,
            affected_until: row.try_get("affected_until")?,
        },
    })
}

#[async_trait]
impl BroadcastStore for PostgresStore {
    async fn start_status_broadcast(
        &self,
        practice_id: i64,
        change: &NewStatusChange,
        idempotency: Option<&IdempotencyClaim>,
        now: DateTime<Utc>,
    ) -> StoreResult<StartOutcome> {
        // A request racing us with the same key may commit between our look-up and our
        // insert; then our insert does nothing, we roll back and answer as a replay.
        for _ in 0..IDEMPOTENCY_TRIES {
            let mut tx = self.begin().await?;
            // One status change of a practice at a time, so that the newer one always sees
            // (and supersedes) the one before it. NO KEY UPDATE leaves the practice's rows
            // free for inserts that reference it (messages being planned meanwhile).
            sqlx::query("SELECT id FROM practices WHERE id = $1 FOR NO KEY UPDATE")
                .bind(practice_id)
                .execute(&mut *tx)
                .await?;
            if let Some(claim) = idempotency {
                if let Some(outcome) = seen_claim(&mut *tx, claim).await? {
                    return Ok(outcome);
                }
            }
            let status_change_id: i64 = sqlx::query_scalar(
                "INSERT INTO status_changes (practice_id, kind, headline, details, starts_at, ends_at, created_by, created_at,
                                             audience, affected_from, affected_until)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .bind(practice_id)
            .bind(change.kind.as_str())
            .bind(&change.headline)
            .bind(&change.details)
            .bind(change.starts_at)
            .bind(change.ends_at)
            .bind(&change.created_by)
            .bind(now)
            .bind(change.reach.audience.as_str())
            .bind(change.reach.affected_from)
            .bind(change.reach.affected_until)
            .fetch_one(&mut *tx)
            .await?;
            let broadcast_id: i64 = sqlx::query_scalar(
                "INSERT INTO broadcasts (practice_id, status_change_id, created_at) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(practice_id)
            .bind(status_change_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            if let Some(claim) = idempotency {
                let claimed = sqlx::query(
                    "INSERT INTO idempotency_keys (scope, key, request_hash, broadcast_id, created_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, key) DO NOTHING",
                )
                .bind(&claim.scope)
                .bind(&claim.key)
                .bind(&claim.request_hash)
                .bind(broadcast_id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if claimed == 0 {
                    tx.rollback().await?;
                    if let Some(outcome) = seen_claim(&self.pool, claim).await? {
                        return Ok(outcome);
                    }
                    // The winner's row is gone again (removed meanwhile): try afresh.
                    continue;
                }
            }
            let reason = supersede_reason(status_change_id, change.kind.as_str());
            withdraw_earlier(
                &mut tx,
                practice_id,
                broadcast_id,
                status_change_id,
                &reason,
                now,
            )
            .await?;
            tx.commit().await?;
            return Ok(StartOutcome::Started(broadcast_id));
        }
        Err(StoreError::Duplicate(
            "idempotency key in use by a concurrent request".to_string(),
        ))
    }

    async fn broadcast(&self, id: i64) -> StoreResult<Option<Broadcast>> {
        let row = sqlx::query(&format!("{BROADCAST_SELECT} WHERE b.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(broadcast_from_row).transpose()
    }

    async fn recent_broadcasts(&self, practice_id: i64, limit: i64) -> StoreResult<Vec<Broadcast>> {
        let rows = sqlx::query(&format!(
            "{BROADCAST_SELECT} WHERE b.practice_id = $1 ORDER BY b.id DESC LIMIT $2"
        ))
        .bind(practice_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(broadcast_from_row).collect()
    }

    async fn unfinished_broadcasts(&self) -> StoreResult<Vec<i64>> {
        Ok(
            sqlx::query_scalar(
                "SELECT id FROM broadcasts WHERE fanout_done_at IS NULL AND failed_at IS NULL ORDER BY id",
            )
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn finish_fanout(
        &self,
        id: i64,
        skipped_no_contact: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE broadcasts SET fanout_done_at = $1, skipped_no_contact = $2 WHERE id = $3",
        )
        .bind(now)
        .bind(skipped_no_contact)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn fail_fanout(&self, id: i64, reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE broadcasts SET failed_at = $1, failure = $2 WHERE id = $3 AND failed_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn supersede_earlier(
        &self,
        practice_id: i64,
        newer: i64,
        status_change_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let cancelled =
            withdraw_earlier(&mut tx, practice_id, newer, status_change_id, reason, now).await?;
        tx.commit().await?;
        Ok(cancelled)
    }

    async fn cancel_queued(
        &self,
        broadcast_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET state = 'cancelled', last_error = $1, updated_at = $2
             WHERE broadcast_id = $3 AND state = 'queued'",
        )
        .bind(reason)
        .bind(now)
        .bind(broadcast_id)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn superseded_among(&self, broadcast_ids: &[i64]) -> StoreResult<Vec<(i64, String)>> {
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT b.id, s.id, s.kind FROM broadcasts b JOIN status_changes s ON s.id = b.superseded_by
             WHERE b.id = ANY($1)",
        )
        .bind(broadcast_ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(superseded_reasons(rows))
    }

    async fn broadcast_counts(&self, id: i64) -> StoreResult<Vec<(Channel, MessageState, i64)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT channel, state, COUNT(*) FROM messages WHERE broadcast_id = $1 GROUP BY channel, state",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(c, s, n)| {
                Ok((
                    parsed("messages.channel", &c)?,
                    parsed("messages.state", &s)?,
                    n,
                ))
            })
            .collect()
    }

    async fn broadcast_messages(
        &self,
        id: i64,
        after_id: i64,
        limit: i64,
        state: Option<MessageState>,
    ) -> StoreResult<Vec<MessageView>> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN patients p ON p.id = m.patient_id
             WHERE m.broadcast_id = $1 AND m.id > $2 AND ($3::text IS NULL OR m.state = $3)
             ORDER BY m.id LIMIT $4"
        ))
        .bind(id)
        .bind(after_id)
        .bind(state.map(|s| s.as_str()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn insert_messages(&self, messages: &[NewMessage]) -> StoreResult<u64> {
        if messages.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut inserted = 0;
        // One array per column, unnested into rows: seventeen bound values per statement
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
            let broadcasts: Vec<Option<i64>> = chunk.iter().map(|m| m.broadcast_id).collect();
            let practices: Vec<i64> = chunk.iter().map(|m| m.practice_id).collect();
            let patients: Vec<Option<i64>> =
                chunk.iter().map(|m| m.recipient.patient_id()).collect();
            let contacts: Vec<Option<i64>> =
                chunk.iter().map(|m| m.recipient.contact_id()).collect();
            let followers: Vec<Option<i64>> =
                chunk.iter().map(|m| m.recipient.follower_id()).collect();
            let links: Vec<Option<String>> = chunk.iter().map(|m| m.link.clone()).collect();
            let priorities: Vec<i16> = chunk.iter().map(|m| m.priority.rank()).collect();
            let versions: Vec<i32> = chunk.iter().map(|m| m.template_version).collect();
            let due: Vec<DateTime<Utc>> = chunk.iter().map(|m| m.next_attempt_at).collect();
            let created: Vec<DateTime<Utc>> = chunk.iter().map(|m| m.created_at).collect();
            inserted += sqlx::query(
                "INSERT INTO messages (idempotency_key, broadcast_id, practice_id, patient_id, contact_id, channel,
                 address, priority, template_key, template_version, subject, body, body_html, state,
                 next_attempt_at, created_at, updated_at, follower_id, link)
                 SELECT k, b, pr, pa, c, ch, a, pri, t, v, s, body, html, 'queued', d, cr, cr, f, l
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[],
                             $7::text[], $8::smallint[], $9::text[], $10::int[], $11::text[], $12::text[],
                             $13::timestamptz[], $14::timestamptz[], $15::text[], $16::bigint[], $17::text[])
                      AS r(k, b, pr, pa, c, ch, a, pri, t, v, s, body, d, cr, html, f, l)
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
        skip_practices: &[i64],
        skip_channels: &[Channel],
    ) -> StoreResult<Vec<ClaimedMessage>> {
        let skip_channels: Vec<&str> = skip_channels.iter().map(|c| c.as_str()).collect();
        let mut tx = self.begin().await?;
        requeue_expired(&mut tx, now).await?;
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT id FROM messages WHERE state = 'queued' AND next_attempt_at <= $1
                        AND priority <= $5
                        AND (priority = 0 OR (practice_id <> ALL($6) AND channel <> ALL($7)))
                 ORDER BY priority, next_attempt_at, id LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE messages m SET state = 'sending', lease_owner = $3, lease_expires_at = $4,
                    send_started_at = NULL, attempts = m.attempts + 1, updated_at = $1
             FROM due WHERE m.id = due.id
             RETURNING m.id, m.practice_id, m.patient_id, m.follower_id, m.broadcast_id, m.contact_id, m.channel, m.address,
                       m.subject, m.body, m.body_html, m.link, m.priority, m.attempts, m.created_at",
        )
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(owner)
        .bind(lease_until)
        .bind(if urgent_only {
            Priority::Urgent.rank()
        } else {
            Priority::Bulk.rank()
        })
        .bind(skip_practices)
        .bind(&skip_channels)
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
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by_key(|m| (m.priority, m.id));
        Ok(claimed)
    }

    async fn complete_many(&self, owner: &str, done: &[Completion]) -> StoreResult<Vec<bool>> {
        let ids: Vec<i64> = done.iter().map(|c| c.message_id).collect();
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
        let updated: Vec<(i64,)> = sqlx::query_as(
            "UPDATE messages m SET state = u.state, next_attempt_at = COALESCE(u.next_at, m.next_attempt_at),
                    lease_owner = NULL, lease_expires_at = NULL, send_started_at = NULL,
                    provider = COALESCE(u.provider, m.provider),
                    provider_ref = COALESCE(u.provider_ref, m.provider_ref), last_error = u.error,
                    updated_at = u.finished_at
             FROM UNNEST($1::bigint[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                         $6::text[], $7::timestamptz[], $9::int[])
                  AS u(id, state, next_at, provider, provider_ref, error, finished_at, attempt)
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
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let updated: std::collections::HashSet<i64> = updated.into_iter().map(|(id,)| id).collect();
        Ok(ids.iter().map(|id| updated.contains(id)).collect())
    }

    async fn start_sends(
        &self,
        owner: &str,
        sends: &[(i64, i32)],
        now: DateTime<Utc>,
        live_after: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<bool>> {
        let ids: Vec<i64> = sends.iter().map(|(id, _)| *id).collect();
        let started: Vec<(i64,)> = sqlx::query_as(
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
        .bind(now)
        .bind(live_after)
        .bind(lease_until)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let started: std::collections::HashSet<i64> = started.into_iter().map(|(id,)| id).collect();
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
        .bind(until)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn defer(
        &self,
        owner: &str,
        due: &[(i64, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE messages m SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                    send_started_at = NULL, attempts = m.attempts - 1, next_attempt_at = d.at,
                    updated_at = $3
             FROM UNNEST($1::bigint[], $2::timestamptz[]) AS d(id, at)
             WHERE m.id = d.id AND m.state = 'sending' AND m.lease_owner = $4",
        )
        .bind(due.iter().map(|(id, _)| *id).collect::<Vec<i64>>())
        .bind(due.iter().map(|(_, at)| *at).collect::<Vec<_>>())
        .bind(now)
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
        .bind(now)
        .bind(owner)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn message(&self, id: i64) -> StoreResult<Option<(MessageView, Vec<AttemptView>)>> {
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
                started_at: a.try_get("started_at")?,
                finished_at: a.try_get("finished_at")?,
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
    ) -> StoreResult<Option<(i64, Option<String>, MessageState)>> {
        let row: Option<(i64, Option<String>, String)> = sqlx::query_as(
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
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let moved = match receipt.new_state {
            Some(state) => {
                sqlx::query(
                    "UPDATE messages SET state = $1, last_error = COALESCE($2, last_error), updated_at = $3
                     WHERE id = $4 AND state = 'sent'",
                )
                .bind(state.as_str())
                .bind(&receipt.detail)
                .bind(now)
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
