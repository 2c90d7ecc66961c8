//! Status groups: one status change sent to many practices, each member practice with the
//! broadcast its own status change started.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{IdempotencyClaim, StoreResult};
use crate::domain::{BroadcastId, PracticeId, StatusGroupId};

/// A group to record, with its member practices.
#[derive(Debug, Clone)]
pub struct NewStatusGroup {
    /// The status change as the API takes it (JSON), the same for every member.
    pub request: String,
    /// How the practices were chosen (JSON: a list, a tag, or all).
    pub selector: String,
    /// The audit trail's actor who sent it.
    pub created_by: String,
    /// The member practices, each once.
    pub members: Vec<PracticeId>,
}

/// What recording a group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStart {
    /// A new group.
    Started(StatusGroupId),
    /// The Idempotency-Key was seen with the same request: this is that group.
    Replayed(StatusGroupId),
    /// The Idempotency-Key was seen with a different request.
    KeyReused,
}

/// A recorded group.
#[derive(Debug, Clone)]
pub struct StatusGroup {
    /// Its id.
    pub id: StatusGroupId,
    /// The status change, in the API's JSON.
    pub request: String,
    /// How the practices were chosen, in JSON.
    pub selector: String,
    /// Who sent it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A member practice of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The practice.
    pub practice_id: PracticeId,
    /// The broadcast its status change started, once it has.
    pub broadcast_id: Option<BroadcastId>,
    /// Why its status change could not be posted, if it could not.
    pub error: Option<String>,
    /// Its stop with the group, if it was stopped.
    pub stop: Option<GroupStop>,
}

/// Who stopped a group member, when and why (the first stop stands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStop {
    /// When.
    pub at: DateTime<Utc>,
    /// The audit trail's actor.
    pub by: String,
    /// Why, as they said it.
    pub reason: String,
}

/// Where status groups are kept.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Records a group and its members in one transaction, honouring the idempotency claim.
    async fn start_group(
        &self,
        group: &NewStatusGroup,
        claim: Option<&IdempotencyClaim>,
        now: DateTime<Utc>,
    ) -> StoreResult<GroupStart>;
    /// The group `id`.
    async fn status_group(&self, id: StatusGroupId) -> StoreResult<Option<StatusGroup>>;
    /// The group's members, in practice id order.
    async fn group_members(&self, id: StatusGroupId) -> StoreResult<Vec<GroupMember>>;
    /// Records the broadcast (or the error) of a member's status change, and returns the
    /// member's stop if it was stopped meanwhile (its broadcast is then to be cancelled).
    async fn record_member(
        &self,
        id: StatusGroupId,
        practice_id: PracticeId,
        broadcast_id: Option<BroadcastId>,
        error: Option<&str>,
    ) -> StoreResult<Option<GroupStop>>;
    /// Stops these members of the group (those not stopped before: the first stop stands),
    /// so that a status change not yet posted never is.
    async fn stop_members(
        &self,
        id: StatusGroupId,
        members: &[PracticeId],
        stop: &GroupStop,
    ) -> StoreResult<()>;
}
