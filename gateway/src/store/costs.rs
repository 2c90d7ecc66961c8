//! What a broadcast's or a practice's messages cost is priced from counts read here: the
//! messages and SMS segments by channel, provider and state.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{parsed, StoreResult};
use crate::domain::{BroadcastId, Channel, MessageState, PracticeId};

/// Messages of one channel, provider and state, with their segments summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostRow {
    /// The channel they went (or go) on.
    pub channel: Channel,
    /// The provider that took them; `None` while unsent.
    pub provider: Option<String>,
    /// Where they stand.
    pub state: MessageState,
    /// How many messages.
    pub messages: i64,
    /// Their SMS segments (1 a message on other channels).
    pub segments: i64,
}

/// The grouped counts as both databases read them.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CostRowRead {
    pub channel: String,
    pub provider: Option<String>,
    pub state: String,
    pub messages: i64,
    pub segments: i64,
}

impl CostRowRead {
    /// The row with its channel and state checked.
    pub(crate) fn into_row(self) -> StoreResult<CostRow> {
        Ok(CostRow {
            channel: parsed("messages.channel", &self.channel)?,
            provider: self.provider,
            state: parsed("messages.state", &self.state)?,
            messages: self.messages,
            segments: self.segments,
        })
    }
}

/// The counts of one broadcast's messages (`$1`: the broadcast).
pub(crate) const BROADCAST_COST_ROWS: &str =
    "SELECT channel, provider, state, COUNT(*) AS messages, COALESCE(SUM(segments), 0) AS segments
     FROM messages WHERE broadcast_id = $1 GROUP BY channel, provider, state";

/// The counts of a practice's messages planned in `[$2, $3)` (`$1`: the practice).
pub(crate) const PRACTICE_COST_ROWS: &str =
    "SELECT channel, provider, state, COUNT(*) AS messages, COALESCE(SUM(segments), 0) AS segments
     FROM messages WHERE practice_id = $1 AND created_at >= $2 AND created_at < $3
     GROUP BY channel, provider, state";

/// The counts costs are priced from.
#[async_trait]
pub trait CostStore: Send + Sync {
    /// A broadcast's messages by channel, provider and state.
    async fn broadcast_cost_rows(&self, broadcast_id: BroadcastId) -> StoreResult<Vec<CostRow>>;
    /// A practice's messages planned from `from` until (not including) `until`, by
    /// channel, provider and state.
    async fn practice_cost_rows(
        &self,
        practice_id: PracticeId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<CostRow>>;
}
