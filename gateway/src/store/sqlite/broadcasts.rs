//! Status changes and the broadcasts they start on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::outbox::{message_from_row, MESSAGE_COLUMNS};
use super::SqliteStore;
use crate::domain::{BroadcastId, Channel, MessageId, MessageState, PracticeId, StatusChangeId};
use crate::store::{
    parsed, withdrawn_reasons, At, Broadcast, BroadcastCancel, BroadcastPage, BroadcastStore,
    CancelOutcome, IdempotencyClaim, MessageView, NewStatusChange, Reach, StartOutcome,
    StoreResult, TimeColumn,
};

/// Marks the practice's broadcasts before `newer` as superseded by `status_change_id`, inside
/// the caller's write transaction. Their unsent messages are cancelled afterwards, a page at a time
/// ([`BroadcastStore::cancel_queued_page`]): a large list withdrawn in one statement held the
/// connection for seconds while hundreds of practices posted at once.
async fn mark_superseded(
    conn: &mut sqlx::SqliteConnection,
    practice_id: PracticeId,
    newer: BroadcastId,
    status_change_id: StatusChangeId,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE broadcasts SET superseded_by = $1 WHERE practice_id = $2 AND id < $3 AND superseded_by IS NULL",
    )
    .bind(status_change_id)
    .bind(practice_id)
    .bind(newer)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What an idempotency key already stands for, if it has been used.
async fn seen_claim<'e, E>(
    executor: E,
    claim: &IdempotencyClaim,
) -> StoreResult<Option<StartOutcome>>
where
    E: sqlx::SqliteExecutor<'e>,
{
    let seen: Option<(String, BroadcastId)> = sqlx::query_as(
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
                    s.audience, s.affected_from, s.affected_until, s.headline_cy, s.details_cy,
                    b.cancelled_at, b.cancelled_by, b.cancel_reason, b.traceparent
             FROM broadcasts b JOIN status_changes s ON s.id = b.status_change_id";

/// A broadcast with its status change, as `BROADCAST_SELECT` reads it.
fn broadcast_from_row(row: &SqliteRow) -> StoreResult<Broadcast> {
    let kind: String = row.try_get("kind")?;
    let audience: String = row.try_get("audience")?;
    Ok(Broadcast {
        id: row.try_get("id")?,
        practice_id: row.try_get("practice_id")?,
        status_change_id: row.try_get("status_change_id")?,
        kind: parsed("status_changes.kind", &kind)?,
        headline: row.try_get("headline")?,
        details: row.try_get("details")?,
        headline_cy: row.try_get("headline_cy")?,
        details_cy: row.try_get("details_cy")?,
        starts_at: row.time_opt("starts_at")?,
        ends_at: row.time_opt("ends_at")?,
        created_by: row.try_get("created_by")?,
        created_at: row.time("created_at")?,
        fanout_done_at: row.time_opt("fanout_done_at")?,
        skipped_no_contact: row.try_get("skipped_no_contact")?,
        superseded_by: row.try_get("superseded_by")?,
        failed_at: row.time_opt("failed_at")?,
        failure: row.try_get("failure")?,
        reach: Reach {
            audience: parsed("status_changes.audience", &audience)?,
            affected_from: row.time_opt("affected_from")?,
            affected_until: row.time_opt("affected_until")?,
        },
        cancel: cancel_from_row(row)?,
        traceparent: row.try_get("traceparent")?,
    })
}

/// The cancel of a broadcast row, if it was cancelled.
fn cancel_from_row(row: &SqliteRow) -> StoreResult<Option<BroadcastCancel>> {
    let Some(at) = row.time_opt("cancelled_at")? else {
        return Ok(None);
    };
    Ok(Some(BroadcastCancel {
        at,
        by: row
            .try_get::<Option<String>, _>("cancelled_by")?
            .unwrap_or_default(),
        reason: row
            .try_get::<Option<String>, _>("cancel_reason")?
            .unwrap_or_default(),
    }))
}

#[async_trait]
impl BroadcastStore for SqliteStore {
    async fn start_status_broadcast(
        &self,
        practice_id: PracticeId,
        change: &NewStatusChange,
        idempotency: Option<&IdempotencyClaim>,
        now: DateTime<Utc>,
    ) -> StoreResult<StartOutcome> {
        let mut tx = self.begin_write().await?;
        if let Some(claim) = idempotency {
            if let Some(outcome) = seen_claim(&mut *tx, claim).await? {
                return Ok(outcome);
            }
        }
        let status_change_id: StatusChangeId = sqlx::query_scalar(
            "INSERT INTO status_changes (practice_id, kind, headline, details, starts_at, ends_at, created_by, created_at,
                                         audience, affected_from, affected_until, headline_cy, details_cy)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(practice_id)
        .bind(change.kind.as_str())
        .bind(&change.headline)
        .bind(&change.details)
        .bind(change.starts_at.map(At))
        .bind(change.ends_at.map(At))
        .bind(&change.created_by)
        .bind(At(now))
        .bind(change.reach.audience.as_str())
        .bind(change.reach.affected_from.map(At))
        .bind(change.reach.affected_until.map(At))
        .bind(&change.headline_cy)
        .bind(&change.details_cy)
        .fetch_one(&mut *tx)
        .await?;
        let broadcast_id: BroadcastId = sqlx::query_scalar(
            "INSERT INTO broadcasts (practice_id, status_change_id, created_at, traceparent) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(practice_id)
        .bind(status_change_id)
        .bind(At(now))
        .bind(&change.traceparent)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(claim) = idempotency {
            sqlx::query(
                "INSERT INTO idempotency_keys (scope, key, request_hash, broadcast_id, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&claim.scope)
            .bind(&claim.key)
            .bind(&claim.request_hash)
            .bind(broadcast_id)
            .bind(At(now))
            .execute(&mut *tx)
            .await?;
        }
        mark_superseded(&mut tx, practice_id, broadcast_id, status_change_id).await?;
        tx.commit().await?;
        Ok(StartOutcome::Started(broadcast_id))
    }

    async fn broadcast(&self, id: BroadcastId) -> StoreResult<Option<Broadcast>> {
        let row = sqlx::query(&format!("{BROADCAST_SELECT} WHERE b.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(broadcast_from_row).transpose()
    }

    async fn broadcasts_page(
        &self,
        practice_id: PracticeId,
        page: &BroadcastPage,
    ) -> StoreResult<Vec<Broadcast>> {
        let rows = sqlx::query(&format!("{BROADCAST_SELECT}{}", page.sql_tail()))
            .bind(practice_id)
            .bind(page.before_id())
            .bind(page.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(broadcast_from_row).collect()
    }

    async fn unfinished_broadcasts(&self) -> StoreResult<Vec<BroadcastId>> {
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
        id: BroadcastId,
        skipped_no_contact: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE broadcasts SET fanout_done_at = $1, skipped_no_contact = $2 WHERE id = $3",
        )
        .bind(At(now))
        .bind(skipped_no_contact)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn fail_fanout(
        &self,
        id: BroadcastId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE broadcasts SET failed_at = $1, failure = $2 WHERE id = $3 AND failed_at IS NULL",
        )
        .bind(At(now))
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn supersede_earlier(
        &self,
        practice_id: PracticeId,
        newer: BroadcastId,
        status_change_id: StatusChangeId,
    ) -> StoreResult<Vec<BroadcastId>> {
        let mut tx = self.begin_write().await?;
        mark_superseded(&mut tx, practice_id, newer, status_change_id).await?;
        let superseded = sqlx::query_scalar(
            "SELECT id FROM broadcasts WHERE practice_id = $1 AND id < $2 AND superseded_by = $3 ORDER BY id",
        )
        .bind(practice_id)
        .bind(newer)
        .bind(status_change_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(superseded)
    }

    async fn cancel_queued_page(
        &self,
        broadcast_id: BroadcastId,
        after: MessageId,
        limit: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(u64, Option<MessageId>)> {
        let last: Option<MessageId> = sqlx::query_scalar(
            "SELECT MAX(id) FROM (SELECT id FROM messages WHERE broadcast_id = $1 AND id > $2 ORDER BY id LIMIT $3) page",
        )
        .bind(broadcast_id)
        .bind(after)
        .bind(limit)
        .fetch_one(&self.pool)
        .await?;
        let Some(last) = last else {
            return Ok((0, None));
        };
        let cancelled = sqlx::query(
            "UPDATE messages SET state = 'cancelled', last_error = $1, updated_at = $2
             WHERE broadcast_id = $3 AND id > $4 AND id <= $5 AND state = 'queued'",
        )
        .bind(reason)
        .bind(At(now))
        .bind(broadcast_id)
        .bind(after)
        .bind(last)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((cancelled, Some(last)))
    }

    async fn cancel_queued(
        &self,
        broadcast_id: BroadcastId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE messages SET state = 'cancelled', last_error = $1, updated_at = $2
             WHERE broadcast_id = $3 AND state = 'queued'",
        )
        .bind(reason)
        .bind(At(now))
        .bind(broadcast_id)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn cancel_broadcast(
        &self,
        id: BroadcastId,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<CancelOutcome>> {
        let mut tx = self.begin_write().await?;
        let first = sqlx::query(
            "UPDATE broadcasts SET cancelled_at = $1, cancelled_by = $2, cancel_reason = $3
             WHERE id = $4 AND cancelled_at IS NULL",
        )
        .bind(At(now))
        .bind(by)
        .bind(reason)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let row = sqlx::query(
            "SELECT cancelled_at, cancelled_by, cancel_reason FROM broadcasts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(cancel) = row.as_ref().map(cancel_from_row).transpose()?.flatten() else {
            return Ok(None);
        };
        let cancelled_now = if first {
            Some(
                sqlx::query(
                    "UPDATE messages SET state = 'cancelled', last_error = $1, updated_at = $2
                     WHERE broadcast_id = $3 AND state = 'queued'",
                )
                .bind(cancel.message_reason())
                .bind(At(now))
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            )
        } else {
            None
        };
        tx.commit().await?;
        Ok(Some(CancelOutcome {
            cancel,
            cancelled_now,
        }))
    }

    async fn withdrawn_among(
        &self,
        broadcast_ids: &[BroadcastId],
    ) -> StoreResult<Vec<(BroadcastId, String)>> {
        let ids = serde_json::to_string(broadcast_ids).unwrap_or_else(|_| "[]".into());
        let superseded: Vec<(BroadcastId, StatusChangeId, String)> = sqlx::query_as(
            "SELECT b.id, s.id, s.kind FROM broadcasts b JOIN status_changes s ON s.id = b.superseded_by
             WHERE b.id IN (SELECT value FROM json_each($1))",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let cancelled: Vec<(BroadcastId, String, String)> = sqlx::query_as(
            "SELECT id, COALESCE(cancelled_by, ''), COALESCE(cancel_reason, '') FROM broadcasts
             WHERE cancelled_at IS NOT NULL AND id IN (SELECT value FROM json_each($1))",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(withdrawn_reasons(superseded, cancelled))
    }

    async fn broadcast_counts(
        &self,
        id: BroadcastId,
    ) -> StoreResult<Vec<(Channel, MessageState, i64)>> {
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
        id: BroadcastId,
        after_id: MessageId,
        limit: i64,
        state: Option<MessageState>,
    ) -> StoreResult<Vec<MessageView>> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN patients p ON p.id = m.patient_id
             WHERE m.broadcast_id = $1 AND m.id > $2 AND ($3 IS NULL OR m.state = $3)
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
