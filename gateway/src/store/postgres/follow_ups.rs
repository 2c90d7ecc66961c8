//! Deadlines and their follow-ups, on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::appointments::{change_from_row, insert_one_message};
use super::PostgresStore;
use crate::domain::MessageId;
use crate::store::follow_ups::OverdueRow;
use crate::store::{
    AppointmentChange, At, FollowUpOutcome, FollowUpStore, NewMessage, OverdueMessage, StoreResult,
};

#[async_trait]
impl FollowUpStore for PostgresStore {
    async fn overdue_messages(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<OverdueMessage>> {
        let rows: Vec<OverdueRow> = sqlx::query_as(
            "SELECT id, practice_id, patient_id, broadcast_id, channel, template_key, priority
             FROM messages
             WHERE state = 'sent' AND followed_up_at IS NULL AND fallback_due_at IS NOT NULL
               AND fallback_due_at <= $1
             ORDER BY fallback_due_at LIMIT $2",
        )
        .bind(At(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(OverdueRow::into_message).collect()
    }

    async fn record_follow_up(
        &self,
        original: MessageId,
        follow_up: Option<&NewMessage>,
        now: DateTime<Utc>,
    ) -> StoreResult<FollowUpOutcome> {
        // The UPDATE locks the original: another instance waits, then finds it handled.
        let mut tx = self.begin().await?;
        let trace: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE messages SET followed_up_at = $2
             WHERE id = $1 AND state = 'sent' AND followed_up_at IS NULL
             RETURNING traceparent",
        )
        .bind(original)
        .bind(At(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(trace) = trace else {
            return Ok(FollowUpOutcome::AlreadyHandled);
        };
        let mut follow_up_id = None;
        if let Some(message) = follow_up {
            let key = &message.idempotency_key;
            follow_up_id = match insert_one_message(&mut tx, message, key, trace.as_deref()).await?
            {
                Some(id) => Some(id),
                // Planned already under the same key (a re-route to the same channel).
                None => {
                    sqlx::query_scalar("SELECT id FROM messages WHERE idempotency_key = $1")
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?
                }
            };
            sqlx::query("UPDATE messages SET follow_up_id = $2 WHERE id = $1")
                .bind(original)
                .bind(follow_up_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(FollowUpOutcome::Recorded(follow_up_id))
    }

    async fn change_of_message(
        &self,
        message: MessageId,
    ) -> StoreResult<Option<AppointmentChange>> {
        let row = sqlx::query("SELECT * FROM appointment_changes WHERE message_id = $1")
            .bind(message)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(change_from_row).transpose()
    }
}
