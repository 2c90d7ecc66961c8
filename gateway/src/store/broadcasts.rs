//! Status changes and the broadcasts they start, including superseding older ones.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{BroadcastPage, MessageView, StoreResult};
use crate::domain::{
    BroadcastId, Channel, MessageId, MessageState, PracticeId, StatusAudience, StatusChangeId,
    StatusKind,
};

/// A status change to record.
#[derive(Debug, Clone, Serialize)]
pub struct NewStatusChange {
    /// What happened.
    pub kind: StatusKind,
    /// One line for patients.
    pub headline: String,
    /// More words, optional.
    pub details: Option<String>,
    /// The headline in Welsh, if the practice gave one.
    pub headline_cy: Option<String>,
    /// The details in Welsh, if the practice gave them.
    pub details_cy: Option<String>,
    /// When the disruption starts, if known.
    pub starts_at: Option<DateTime<Utc>>,
    /// When it is expected to end, if known.
    pub ends_at: Option<DateTime<Utc>>,
    /// Who posted it (audit actor).
    pub created_by: String,
    /// Who it is for, and the period whose appointments it affects.
    pub reach: Reach,
    /// The W3C traceparent of the request that posted it, kept with its broadcast so that
    /// the broadcast's sends join that request's trace (see `telemetry::traces`).
    #[serde(skip)]
    pub traceparent: Option<String>,
}

/// Who a status change is for: everyone, or patients booked in its affected period, or both
/// (each told in their own words). The period is `[affected_from, affected_until)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reach {
    /// All (the general notice), booked or both.
    pub audience: StatusAudience,
    /// Start of the period whose appointments are affected (`None`: from when it was posted).
    pub affected_from: Option<DateTime<Utc>>,
    /// End of that period (needed unless the audience is `all`).
    pub affected_until: Option<DateTime<Utc>>,
}

/// The request's `Idempotency-Key` with what it must match.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Who the key belongs to (the API key and resource), so clients cannot collide.
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// Hash of the request body: the same key with another body is refused.
    pub request_hash: String,
}

/// What starting a broadcast did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// A new status change and broadcast.
    Started(BroadcastId),
    /// The idempotency key was seen with the same body: this is that broadcast.
    Replayed(BroadcastId),
    /// The idempotency key was seen with a different body.
    KeyReused,
}

/// A broadcast with the status change behind it.
#[derive(Debug, Clone)]
pub struct Broadcast {
    /// Row id.
    pub id: BroadcastId,
    /// Practice row id.
    pub practice_id: PracticeId,
    /// The status change.
    pub status_change_id: StatusChangeId,
    /// Its kind.
    pub kind: StatusKind,
    /// Its headline.
    pub headline: String,
    /// Its details.
    pub details: Option<String>,
    /// Its headline in Welsh, if given.
    pub headline_cy: Option<String>,
    /// Its details in Welsh, if given.
    pub details_cy: Option<String>,
    /// Start of the disruption.
    pub starts_at: Option<DateTime<Utc>>,
    /// Expected end.
    pub ends_at: Option<DateTime<Utc>>,
    /// Who posted it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When fan-out finished, if it has.
    pub fanout_done_at: Option<DateTime<Utc>>,
    /// Patients with no usable contact.
    pub skipped_no_contact: i64,
    /// The newer status change that superseded this broadcast, if one did.
    pub superseded_by: Option<StatusChangeId>,
    /// When its fan-out failed, if it did (its wording could not be rendered).
    pub failed_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Who it is for, and the period whose appointments it affects.
    pub reach: Reach,
    /// Who stopped it, when and why, if a person did.
    pub cancel: Option<BroadcastCancel>,
    /// The W3C traceparent of the request that started it, if spans were exported then.
    pub traceparent: Option<String>,
}

/// A person's stop of a broadcast: its unsent messages are cancelled and no more are planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BroadcastCancel {
    /// When.
    pub at: DateTime<Utc>,
    /// Who (the audit actor).
    pub by: String,
    /// Why, in their words.
    pub reason: String,
}

impl BroadcastCancel {
    /// The `last_error` of each message the cancel stops, in the store or in a worker's hands.
    pub fn message_reason(&self) -> String {
        cancel_reason(&self.by, &self.reason)
    }
}

/// Why the unsent messages of a broadcast `by` cancelled for `reason` are cancelled.
pub fn cancel_reason(by: &str, reason: &str) -> String {
    format!("broadcast cancelled by {by}: {reason}")
}

/// What cancelling a broadcast did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelOutcome {
    /// The cancel in force: this call's, or the first one's if it was cancelled before.
    pub cancel: BroadcastCancel,
    /// How many queued messages this call cancelled; `None` if it was cancelled before.
    pub cancelled_now: Option<u64>,
}

impl Broadcast {
    /// Why its unsent messages must not go, if a newer status change superseded it or a
    /// person cancelled it (the cancel's reason first).
    pub fn stopped_reason(&self) -> Option<String> {
        match (&self.cancel, self.superseded_by) {
            (Some(cancel), _) => Some(cancel.message_reason()),
            (None, Some(newer)) => Some(format!("superseded by status change {newer}")),
            (None, None) => None,
        }
    }

    /// The broadcast `change` would start, before anything is recorded (its ids are 0): what
    /// a preview of its wording is rendered from.
    pub fn unrecorded(
        practice_id: PracticeId,
        change: &NewStatusChange,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: BroadcastId::new(0),
            practice_id,
            status_change_id: StatusChangeId::new(0),
            kind: change.kind,
            headline: change.headline.clone(),
            details: change.details.clone(),
            headline_cy: change.headline_cy.clone(),
            details_cy: change.details_cy.clone(),
            starts_at: change.starts_at,
            ends_at: change.ends_at,
            created_by: change.created_by.clone(),
            created_at: now,
            fanout_done_at: None,
            skipped_no_contact: 0,
            superseded_by: None,
            failed_at: None,
            failure: None,
            reach: change.reach,
            cancel: None,
            traceparent: None,
        }
    }
}

/// Status changes and the broadcasts they start.
#[async_trait]
pub trait BroadcastStore: Send + Sync {
    /// Records a status change and its broadcast in one transaction, honouring the
    /// idempotency claim if there is one. The same transaction marks the practice's earlier
    /// broadcasts superseded (as [`supersede_earlier`] does), so no crash or retry can leave
    /// an older notice standing behind a newer one: dispatch looks up the broadcast of every
    /// message it claims and withdraws those of superseded broadcasts unsent. Their queued
    /// messages are cancelled afterwards, a page at a time ([`cancel_queued_page`]).
    ///
    /// [`supersede_earlier`]: BroadcastStore::supersede_earlier
    /// [`cancel_queued_page`]: BroadcastStore::cancel_queued_page
    async fn start_status_broadcast(
        &self,
        practice_id: PracticeId,
        change: &NewStatusChange,
        idempotency: Option<&IdempotencyClaim>,
        now: DateTime<Utc>,
    ) -> StoreResult<StartOutcome>;
    /// A broadcast with its status change.
    async fn broadcast(&self, id: BroadcastId) -> StoreResult<Option<Broadcast>>;
    /// The practice's latest broadcasts, newest first.
    async fn recent_broadcasts(
        &self,
        practice_id: PracticeId,
        limit: i64,
    ) -> StoreResult<Vec<Broadcast>> {
        let page = BroadcastPage {
            before: None,
            state: None,
            limit,
        };
        self.broadcasts_page(practice_id, &page).await
    }
    /// A page of the practice's broadcasts, newest first (see [`BroadcastPage`]).
    async fn broadcasts_page(
        &self,
        practice_id: PracticeId,
        page: &BroadcastPage,
    ) -> StoreResult<Vec<Broadcast>>;
    /// Broadcasts whose fan-out never finished (the process stopped during it) and did not
    /// fail.
    async fn unfinished_broadcasts(&self) -> StoreResult<Vec<BroadcastId>>;
    /// Marks a fan-out complete, with the number of patients it could not reach.
    async fn finish_fanout(
        &self,
        id: BroadcastId,
        skipped_no_contact: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Marks a broadcast's fan-out failed with `reason` (its wording could not be rendered):
    /// it is not resumed, and the messages it planned before failing are left to go.
    async fn fail_fanout(
        &self,
        id: BroadcastId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Marks every earlier broadcast of the practice as superseded by `status_change_id`
    /// (the change behind broadcast `newer`), unless a change has superseded it already.
    /// Returns the broadcasts this change supersedes, whose queued messages the caller
    /// cancels with [`cancel_queued_page`](BroadcastStore::cancel_queued_page).
    async fn supersede_earlier(
        &self,
        practice_id: PracticeId,
        newer: BroadcastId,
        status_change_id: StatusChangeId,
    ) -> StoreResult<Vec<BroadcastId>>;
    /// One bounded step of withdrawing a broadcast: cancels with `reason` the queued messages
    /// among its next `limit` messages after `after`, in id order (messages already with a
    /// provider are left to finish). Returns how many were cancelled and the last message
    /// looked at, to continue after; `None` once no message is left.
    async fn cancel_queued_page(
        &self,
        broadcast_id: BroadcastId,
        after: MessageId,
        limit: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(u64, Option<MessageId>)>;
    /// Cancels a broadcast's unsent messages with `reason` (a fan-out that finds its broadcast
    /// superseded cleans up what it wrote meanwhile). Returns how many were cancelled.
    async fn cancel_queued(
        &self,
        broadcast_id: BroadcastId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Stops a broadcast for good, as `by` (the audit actor) with `reason`: records who, when
    /// and why, and cancels its queued messages, in one transaction. A second call changes
    /// nothing and returns the first cancel. `None` if there is no such broadcast.
    async fn cancel_broadcast(
        &self,
        id: BroadcastId,
        by: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<CancelOutcome>>;
    /// Which of these broadcasts have been superseded or cancelled: each with the reason its
    /// unsent messages are cancelled with (naming the newer status change, or who cancelled
    /// it and why).
    async fn withdrawn_among(
        &self,
        broadcast_ids: &[BroadcastId],
    ) -> StoreResult<Vec<(BroadcastId, String)>>;
    /// Message counts of a broadcast by channel and state.
    async fn broadcast_counts(
        &self,
        id: BroadcastId,
    ) -> StoreResult<Vec<(Channel, MessageState, i64)>>;
    /// A page of a broadcast's messages in id order, optionally of one state.
    async fn broadcast_messages(
        &self,
        id: BroadcastId,
        after_id: MessageId,
        limit: i64,
        state: Option<MessageState>,
    ) -> StoreResult<Vec<MessageView>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::withdrawn_reasons;

    fn change() -> NewStatusChange {
        NewStatusChange {
            kind: StatusKind::Closed,
            headline: "Closed.".into(),
            details: None,
            headline_cy: None,
            details_cy: None,
            starts_at: None,
            ends_at: None,
            created_by: "test".into(),
            reach: Reach::default(),
            traceparent: None,
        }
    }

    #[test]
    fn a_cancel_names_the_person_and_wins_over_a_supersede() {
        let mut broadcast = Broadcast::unrecorded(PracticeId::new(1), &change(), Utc::now());
        assert_eq!(broadcast.stopped_reason(), None);
        broadcast.superseded_by = Some(StatusChangeId::new(7));
        assert_eq!(
            broadcast.stopped_reason().as_deref(),
            Some("superseded by status change 7")
        );
        broadcast.cancel = Some(BroadcastCancel {
            at: Utc::now(),
            by: "user:reception".into(),
            reason: "Wrong practice".into(),
        });
        assert_eq!(
            broadcast.stopped_reason().as_deref(),
            Some("broadcast cancelled by user:reception: Wrong practice")
        );
    }

    #[test]
    fn withdrawn_broadcasts_are_listed_once_each() {
        let (one, two) = (BroadcastId::new(1), BroadcastId::new(2));
        let reasons = withdrawn_reasons(
            vec![
                (one, StatusChangeId::new(9), "restored".into()),
                (two, StatusChangeId::new(9), "restored".into()),
            ],
            vec![(two, "key:gw_1".into(), "Sent twice".into())],
        );
        assert_eq!(
            reasons,
            vec![
                (
                    two,
                    "broadcast cancelled by key:gw_1: Sent twice".to_string()
                ),
                (one, "superseded by status change 9 (restored)".to_string()),
            ]
        );
    }
}
