//! The trace context dispatch reads, on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::domain::BroadcastId;
use crate::store::{BroadcastMarks, ClaimedBroadcasts, StoreResult, TraceStore};

#[async_trait]
impl TraceStore for PostgresStore {
    async fn withdrawn_and_traced_among(
        &self,
        broadcast_ids: &[BroadcastId],
    ) -> StoreResult<ClaimedBroadcasts> {
        let rows: Vec<BroadcastMarks> = sqlx::query_as(
            "SELECT b.id, s.id AS newer, s.kind AS newer_kind, b.cancelled_at IS NOT NULL AS cancelled,
                    COALESCE(b.cancelled_by, '') AS cancelled_by, COALESCE(b.cancel_reason, '') AS cancel_reason,
                    b.traceparent
             FROM broadcasts b LEFT JOIN status_changes s ON s.id = b.superseded_by
             WHERE b.id = ANY($1)
               AND (b.superseded_by IS NOT NULL OR b.cancelled_at IS NOT NULL OR b.traceparent IS NOT NULL)",
        )
        .bind(broadcast_ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(ClaimedBroadcasts::from_rows(rows))
    }
}
