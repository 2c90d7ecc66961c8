//! A status group's progress as its viewer may see it: totals by message state, and each
//! practice's part (its broadcast, what is still to send, what a stop cancelled and what
//! had already gone), the slowest first.
//!
//! An administrator sees every part; anyone else only the parts of practices it may see
//! (a federation its members, a practice its own), with totals over those parts and the
//! group's list of practices cut to them, so that nothing tells of the others. A group
//! with no part the viewer may see is "not found".

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::auth::Principal;
use crate::domain::{BroadcastId, MessageState, StatusGroupId};
use crate::store::{GroupMember, Store, StoreError};

/// A group's progress, as [`group_progress`] builds it for one viewer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupProgress {
    /// The group.
    pub id: StatusGroupId,
    /// The status change every practice got (as the API takes it).
    pub status_change: serde_json::Value,
    /// How the practices were chosen (a list cut to the parts the viewer sees).
    pub selector: serde_json::Value,
    /// Who sent it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// How many practices' parts are shown.
    pub practices: usize,
    /// Messages in the shown parts.
    pub total: i64,
    /// Messages by state over the shown parts.
    pub by_state: BTreeMap<&'static str, i64>,
    /// Messages still to send (queued or sending).
    pub unsent: i64,
    /// Messages cancelled (by a stop, or withdrawn by a newer status change).
    pub cancelled: i64,
    /// Messages already handed to a provider (sent or delivered).
    pub already_sent: i64,
    /// How many shown parts are stopped.
    pub stopped: usize,
    /// Each shown practice's part, the most still to send first, then those that failed
    /// to post.
    pub parts: Vec<GroupPart>,
}

/// One practice's part of a group.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupPart {
    /// Its ODS code.
    pub practice: String,
    /// Its name.
    pub name: String,
    /// The broadcast its status change started, once it has.
    pub broadcast_id: Option<BroadcastId>,
    /// Why its status change could not be posted, if it could not.
    pub error: Option<String>,
    /// Whether its whole patient list is planned (the rest of a long list is planned after
    /// the group's answer).
    pub fanout_complete: bool,
    /// Messages still to send.
    pub unsent: i64,
    /// Messages cancelled.
    pub cancelled: i64,
    /// Messages already handed to a provider.
    pub already_sent: i64,
    /// Its messages by state.
    pub by_state: BTreeMap<&'static str, i64>,
    /// Its stop, if it was stopped: who, when and why.
    pub stopped: Option<PartStop>,
}

/// Who stopped a part, when and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PartStop {
    /// When.
    pub at: DateTime<Utc>,
    /// The audit trail's actor.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// Sorts parts slowest first: the most still to send, then those that failed to post at
/// all, then by ODS code.
fn slowest_first(parts: &mut [GroupPart]) {
    parts.sort_by(|x, y| {
        y.unsent
            .cmp(&x.unsent)
            .then_with(|| y.error.is_some().cmp(&x.error.is_some()))
            .then_with(|| x.practice.cmp(&y.practice))
    });
}

/// The members of group `id` that `viewer` may see (none if there is no such group).
pub async fn visible_members(
    store: &dyn Store,
    id: StatusGroupId,
    viewer: &Principal,
) -> Result<Vec<GroupMember>, StoreError> {
    let mut members = store.group_members(id).await?;
    members.retain(|m| viewer.can_see(m.practice_id));
    Ok(members)
}

/// The progress of group `id` as `viewer` may see it; `None` if there is no such group or
/// no part of it is the viewer's to see.
pub async fn group_progress(
    store: &dyn Store,
    id: StatusGroupId,
    viewer: &Principal,
) -> Result<Option<GroupProgress>, StoreError> {
    let Some(group) = store.status_group(id).await? else {
        return Ok(None);
    };
    let members = visible_members(store, id, viewer).await?;
    if members.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::new();
    for member in members {
        let Some(practice) = store.practice_by_id(member.practice_id).await? else {
            continue;
        };
        let mut by_state: BTreeMap<&'static str, i64> = BTreeMap::new();
        let mut stopped = member.stop.map(|s| PartStop {
            at: s.at,
            by: s.by,
            reason: s.reason,
        });
        let mut fanout_complete = false;
        if let Some(broadcast) = member.broadcast_id {
            for (_, state, n) in store.broadcast_counts(broadcast).await? {
                *by_state.entry(state.as_str()).or_default() += n;
            }
            if let Some(b) = store.broadcast(broadcast).await? {
                fanout_complete = b.fanout_done_at.is_some();
                // The broadcast's own cancel (by the group's stop, or on its own) says who.
                if let Some(cancel) = b.cancel {
                    stopped = Some(PartStop {
                        at: cancel.at,
                        by: cancel.by,
                        reason: cancel.reason,
                    });
                }
            }
        }
        let count = |states: &[MessageState]| -> i64 {
            states
                .iter()
                .map(|s| by_state.get(s.as_str()).copied().unwrap_or(0))
                .sum()
        };
        parts.push(GroupPart {
            practice: practice.ods_code.as_str().to_string(),
            name: practice.name,
            broadcast_id: member.broadcast_id,
            error: member.error,
            fanout_complete,
            unsent: count(&[MessageState::Queued, MessageState::Sending]),
            cancelled: count(&[MessageState::Cancelled]),
            already_sent: count(&[
                MessageState::Sent,
                MessageState::Delivered,
                MessageState::Read,
            ]),
            by_state,
            stopped,
        });
    }
    slowest_first(&mut parts);
    let mut by_state: BTreeMap<&'static str, i64> = BTreeMap::new();
    for part in &parts {
        for (state, n) in &part.by_state {
            *by_state.entry(*state).or_default() += n;
        }
    }
    let mut selector: serde_json::Value = serde_json::from_str(&group.selector).unwrap_or_default();
    if !viewer.is_admin() && selector.get("practices").is_some() {
        let mut shown: Vec<&str> = parts.iter().map(|p| p.practice.as_str()).collect();
        shown.sort_unstable();
        selector = serde_json::json!({ "practices": shown });
    }
    Ok(Some(GroupProgress {
        id: group.id,
        status_change: serde_json::from_str(&group.request).unwrap_or_default(),
        selector,
        created_by: group.created_by,
        created_at: group.created_at,
        practices: parts.len(),
        total: by_state.values().sum(),
        unsent: parts.iter().map(|p| p.unsent).sum(),
        cancelled: parts.iter().map(|p| p.cancelled).sum(),
        already_sent: parts.iter().map(|p| p.already_sent).sum(),
        stopped: parts.iter().filter(|p| p.stopped.is_some()).count(),
        by_state,
        parts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(practice: &str, unsent: i64, error: Option<&str>) -> GroupPart {
        GroupPart {
            practice: practice.into(),
            name: practice.into(),
            broadcast_id: None,
            error: error.map(str::to_string),
            fanout_complete: true,
            unsent,
            cancelled: 0,
            already_sent: 0,
            by_state: BTreeMap::new(),
            stopped: None,
        }
    }

    #[test]
    fn the_most_still_to_send_come_first_then_failures_then_by_code() {
        let mut parts = vec![
            part("A1", 0, None),
            part("B2", 5, None),
            part("C3", 0, Some("no wording")),
            part("D4", 40, None),
            part("A0", 0, None),
        ];
        slowest_first(&mut parts);
        let order: Vec<&str> = parts.iter().map(|p| p.practice.as_str()).collect();
        assert_eq!(order, ["D4", "B2", "C3", "A0", "A1"]);
    }
}
