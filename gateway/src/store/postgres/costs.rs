//! The counts costs are priced from, on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::domain::{BroadcastId, PracticeId};
use crate::store::costs::{CostRowRead, BROADCAST_COST_ROWS, PRACTICE_COST_ROWS};
use crate::store::{At, CostRow, CostStore, StoreResult};

#[async_trait]
impl CostStore for PostgresStore {
    async fn broadcast_cost_rows(&self, broadcast_id: BroadcastId) -> StoreResult<Vec<CostRow>> {
        let rows: Vec<CostRowRead> = sqlx::query_as(BROADCAST_COST_ROWS)
            .bind(broadcast_id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(CostRowRead::into_row).collect()
    }

    async fn practice_cost_rows(
        &self,
        practice_id: PracticeId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<CostRow>> {
        let rows: Vec<CostRowRead> = sqlx::query_as(PRACTICE_COST_ROWS)
            .bind(practice_id)
            .bind(At(from))
            .bind(At(until))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(CostRowRead::into_row).collect()
    }
}
