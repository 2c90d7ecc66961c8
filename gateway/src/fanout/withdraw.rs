//! Withdrawing what a newer status change supersedes, as a fan-out starts.

use chrono::{DateTime, Utc};

use crate::store::{supersede_reason, Broadcast, BroadcastStore, StoreError};

/// Withdraws the unsent messages of the practice's broadcasts before `broadcast`, in the
/// store (the half of `intake::status::withdraw_earlier` that a fan-out resumed at start-up
/// repeats: a change recorded without its withdrawal, by a version that did it in a second
/// step and died between the two, is repaired before its messages are planned).
pub async fn withdraw_before(
    store: &dyn BroadcastStore,
    broadcast: &Broadcast,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    if broadcast.superseded_by.is_some() {
        return Ok(0);
    }
    let reason = supersede_reason(broadcast.status_change_id, broadcast.kind.as_str());
    let cancelled = store
        .supersede_earlier(
            broadcast.practice_id,
            broadcast.id,
            broadcast.status_change_id,
            &reason,
            now,
        )
        .await?;
    if cancelled > 0 {
        tracing::info!(
            broadcast = broadcast.id.get(),
            cancelled,
            "withdrew unsent messages of earlier broadcasts"
        );
    }
    Ok(cancelled)
}
