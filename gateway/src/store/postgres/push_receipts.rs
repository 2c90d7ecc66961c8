//! Push receipts on PostgreSQL. Two instances taking the same event at once: the unique
//! index makes the second insert wait for the first and then do nothing, so one of them
//! records it and the other answers that it was replayed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::domain::{Channel, MessageId, PushEvent};
use crate::store::push_receipts::moves_from_json;
use crate::store::{parsed, At, PushReceiptOutcome, PushReceiptStore, StoreResult};

#[async_trait]
impl PushReceiptStore for PostgresStore {
    async fn record_push_receipt(
        &self,
        message_id: MessageId,
        event: PushEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<PushReceiptOutcome> {
        let mut tx = self.begin().await?;
        // The row is locked first, so a completion recording `sent` meanwhile either comes
        // before (this sees `sent` and moves it) or after (it sees this receipt).
        let channel: Option<String> =
            sqlx::query_scalar("SELECT channel FROM messages WHERE id = $1 FOR UPDATE")
                .bind(message_id)
                .fetch_optional(&mut *tx)
                .await?;
        if channel.as_deref() != Some(Channel::Push.as_str()) {
            return Ok(PushReceiptOutcome::NotPush);
        }
        let recorded = sqlx::query(
            "INSERT INTO receipts (message_id, provider, status, new_state, detail, received_at)
             VALUES ($1, 'push', $2, $3, NULL, $4)
             ON CONFLICT (message_id, status) WHERE provider = 'push' DO NOTHING",
        )
        .bind(message_id)
        .bind(event.as_str())
        .bind(event.settles().as_str())
        .bind(At(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 0 {
            return Ok(PushReceiptOutcome::Replayed);
        }
        let moved = sqlx::query(
            "UPDATE messages SET state = $1, updated_at = $2
             WHERE id = $3 AND state IN (SELECT jsonb_array_elements_text($4::jsonb))",
        )
        .bind(event.settles().as_str())
        .bind(At(now))
        .bind(message_id)
        .bind(moves_from_json(event))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let state: String = sqlx::query_scalar("SELECT state FROM messages WHERE id = $1")
            .bind(message_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PushReceiptOutcome::Recorded {
            state: parsed("messages.state", &state)?,
            moved,
        })
    }
}
