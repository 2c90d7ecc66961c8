//! Push receipts on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::domain::{Channel, MessageId, PushEvent};
use crate::store::push_receipts::moves_from_json;
use crate::store::{parsed, At, PushReceiptOutcome, PushReceiptStore, StoreResult};

#[async_trait]
impl PushReceiptStore for SqliteStore {
    async fn record_push_receipt(
        &self,
        message_id: MessageId,
        event: PushEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<PushReceiptOutcome> {
        let mut tx = self.begin_write().await?;
        let channel: Option<String> =
            sqlx::query_scalar("SELECT channel FROM messages WHERE id = $1")
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
             WHERE id = $3 AND state IN (SELECT value FROM json_each($4))",
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
