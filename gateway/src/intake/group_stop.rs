//! Stopping a status group as a whole: every member broadcast the stopper may see is
//! cancelled as one broadcast is (`intake::cancel`, with the same reason), and every such
//! member is marked stopped, so that a status change not yet posted (a group still being
//! sent, or one resumed after a crash) never is. Idempotent: stopping again changes
//! nothing, and the first stop (who, when, why) stands.
//!
//! A federation's principal stops only its member practices' parts, a practice's only its
//! own: the rest of the group goes on.

use chrono::Utc;

use super::cancel::cancel_broadcast;
use super::group_progress::visible_members;
use super::status::StatusChanges;
use crate::auth::Principal;
use crate::domain::StatusGroupId;
use crate::store::{AuditEntry, GroupStop, StoreError};

/// Stops the parts of group `id` that `stopper` may see, for `reason` (already checked with
/// `CancelRequest::parse`). Returns how many parts that was; 0 if there is no such group or
/// no part of it is the stopper's to see.
pub async fn stop_group(
    changes: &StatusChanges,
    id: StatusGroupId,
    stopper: &Principal,
    reason: &str,
) -> Result<usize, StoreError> {
    let store = &changes.store;
    let members = visible_members(store.as_ref(), id, stopper).await?;
    if members.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let stop = GroupStop {
        at: now,
        by: stopper.actor.clone(),
        reason: reason.to_string(),
    };
    // Marked first: a member posted from now on is cancelled as soon as it is recorded.
    let practices: Vec<_> = members.iter().map(|m| m.practice_id).collect();
    store.stop_members(id, &practices, &stop).await?;
    // Read again after the mark: a broadcast recorded before it is seen here, one recorded
    // after it is cancelled by whoever posted it (`post_members`).
    let marked = visible_members(store.as_ref(), id, stopper).await?;
    for member in &marked {
        let Some(broadcast_id) = member.broadcast_id else {
            continue;
        };
        if let Some(broadcast) = store.broadcast(broadcast_id).await? {
            cancel_broadcast(changes, &broadcast, &stopper.actor, reason).await?;
        }
    }
    // Audited when it stopped something not stopped before.
    if members.iter().any(|m| m.stop.is_none()) {
        let details = serde_json::json!({ "reason": reason, "practices": members.len() });
        store
            .audit(
                &AuditEntry {
                    actor: stopper.actor.clone(),
                    action: "status_group.stopped".into(),
                    practice_id: None,
                    subject: Some(format!("status_group:{id}")),
                    details: Some(details.to_string()),
                },
                now,
            )
            .await?;
    }
    Ok(members.len())
}
