//! Push receipts: what browsers report about the push messages they received, each event
//! recorded once per message (a unique index, so across instances too) and moving the
//! message forward.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{MessageId, MessageState, PushEvent};

/// What became of a push receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushReceiptOutcome {
    /// Recorded: the message's state now, and whether this receipt moved it there.
    Recorded {
        /// The message's state after the receipt.
        state: MessageState,
        /// Whether the receipt changed it.
        moved: bool,
    },
    /// This event was already recorded for the message: nothing changed.
    Replayed,
    /// No push message has this id (none at all, or one on another channel).
    NotPush,
}

/// Browsers' reports on push messages.
#[async_trait]
pub trait PushReceiptStore: Send + Sync {
    /// Records `event` for push message `message_id` once, and moves the message to the
    /// state the event settles if it is in one the event moves from (see
    /// [`PushEvent::moves_from`]); a message not yet `sent` keeps its state until its
    /// outcome is recorded, which then applies the receipts already in.
    async fn record_push_receipt(
        &self,
        message_id: MessageId,
        event: PushEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<PushReceiptOutcome>;
}

/// The states `event` moves a message from, as the SQL of both stores takes them: a JSON
/// array of state names.
pub(crate) fn moves_from_json(event: PushEvent) -> String {
    let names: Vec<&str> = event.moves_from().iter().map(|s| s.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}
