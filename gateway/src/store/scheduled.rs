//! Status changes planned ahead, and each of their occurrences once an instance claimed it.
//!
//! A notice's `next_at` is the next occurrence to post. An instance claims it by moving
//! `next_at` on and recording the occurrence in one transaction that checks the notice's
//! `revision`, so of several instances (or an edit at the same moment) only one wins.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{BroadcastId, PracticeId, ScheduledNoticeId};

/// Where a notice is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeState {
    /// Occurrences are still to come.
    Active,
    /// Its last occurrence was claimed.
    Finished,
    /// Someone cancelled it.
    Cancelled,
}

impl NoticeState {
    /// As the column holds it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for NoticeState {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "active" => Ok(Self::Active),
            "finished" => Ok(Self::Finished),
            "cancelled" => Ok(Self::Cancelled),
            _ => Err(()),
        }
    }
}

/// A notice to record.
#[derive(Debug, Clone)]
pub struct NewNotice {
    /// Its practice.
    pub practice_id: PracticeId,
    /// The status change as `POST .../status` takes it (JSON).
    pub request: String,
    /// When it is posted (JSON: once, weekly or dates).
    pub timing: String,
    /// Its first occurrence.
    pub next_at: DateTime<Utc>,
    /// The audit trail's actor who scheduled it.
    pub created_by: String,
}

/// A recorded notice.
#[derive(Debug, Clone)]
pub struct ScheduledNotice {
    /// Its id.
    pub id: ScheduledNoticeId,
    /// Its practice.
    pub practice_id: PracticeId,
    /// The status change, in the API's JSON.
    pub request: String,
    /// When it is posted, in JSON.
    pub timing: String,
    /// Active, finished or cancelled.
    pub state: NoticeState,
    /// The next occurrence to post; `None` once none is left.
    pub next_at: Option<DateTime<Utc>>,
    /// Moves on with every change and claim; edits and claims compare it.
    pub revision: i64,
    /// Who scheduled it, and when.
    pub created_by: String,
    /// When it was scheduled.
    pub created_at: DateTime<Utc>,
    /// Who last edited it.
    pub updated_by: Option<String>,
    /// When it was last edited.
    pub updated_at: Option<DateTime<Utc>>,
    /// Who cancelled it.
    pub cancelled_by: Option<String>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// What became of a claimed occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OccurrenceState {
    /// Claimed; its status change is being posted (or the instance stopped meanwhile).
    Claimed,
    /// Posted: it has its broadcast.
    Posted,
    /// Too late when an instance first saw it (every instance was down): not posted.
    Missed,
    /// Its status change could not be posted.
    Failed,
}

impl OccurrenceState {
    /// As the column holds it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Posted => "posted",
            Self::Missed => "missed",
            Self::Failed => "failed",
        }
    }
}

impl std::str::FromStr for OccurrenceState {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "claimed" => Ok(Self::Claimed),
            "posted" => Ok(Self::Posted),
            "missed" => Ok(Self::Missed),
            "failed" => Ok(Self::Failed),
            _ => Err(()),
        }
    }
}

/// One claimed occurrence of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// Its notice.
    pub notice_id: ScheduledNoticeId,
    /// The instant it was due.
    pub due_at: DateTime<Utc>,
    /// What became of it.
    pub state: OccurrenceState,
    /// The broadcast its status change started.
    pub broadcast_id: Option<BroadcastId>,
    /// Why it failed.
    pub error: Option<String>,
    /// When an instance claimed it (by the gateway's clock).
    pub claimed_at: DateTime<Utc>,
    /// When it was posted, missed or failed.
    pub done_at: Option<DateTime<Utc>>,
}

/// A claim: move the notice from `due_at` to `next_at` and record the occurrence.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    /// The notice.
    pub notice_id: ScheduledNoticeId,
    /// Its revision as read; the claim fails if it moved.
    pub revision: i64,
    /// The occurrence claimed (the notice's `next_at` as read).
    pub due_at: DateTime<Utc>,
    /// The occurrence after it; `None` finishes the notice.
    pub next_at: Option<DateTime<Utc>>,
    /// `Claimed` to post it now, `Missed` if it is too late.
    pub state: OccurrenceState,
}

/// Where scheduled notices are kept.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Records a new active notice.
    async fn create_notice(
        &self,
        notice: &NewNotice,
        now: DateTime<Utc>,
    ) -> StoreResult<ScheduledNotice>;
    /// The practice's notice `id`.
    async fn notice(
        &self,
        practice_id: PracticeId,
        id: ScheduledNoticeId,
    ) -> StoreResult<Option<ScheduledNotice>>;
    /// The practice's notices, active first, then newest first (at most `limit`).
    async fn notices(
        &self,
        practice_id: PracticeId,
        limit: i64,
    ) -> StoreResult<Vec<ScheduledNotice>>;
    /// How many of the practice's notices are active.
    async fn active_notices(&self, practice_id: PracticeId) -> StoreResult<i64>;
    /// Replaces an active notice's status change and timing if its revision is still
    /// `revision`; whether it did.
    #[allow(clippy::too_many_arguments)]
    async fn edit_notice(
        &self,
        id: ScheduledNoticeId,
        revision: i64,
        request: &str,
        timing: &str,
        next_at: DateTime<Utc>,
        by: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Cancels an active notice if its revision is still `revision`; whether it did.
    async fn cancel_notice(
        &self,
        id: ScheduledNoticeId,
        revision: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Active notices whose next occurrence is at or before `now`, earliest first.
    async fn due_notices(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ScheduledNotice>>;
    /// Claims an occurrence (see [`Claim`]); whether this caller won it.
    async fn claim_occurrence(&self, claim: &Claim, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Records what became of a claimed occurrence. A posted one may also correct `missed`
    /// (an instance judged a slow post abandoned and too late; the broadcast is the truth).
    async fn finish_occurrence(
        &self,
        notice_id: ScheduledNoticeId,
        due_at: DateTime<Utc>,
        state: OccurrenceState,
        broadcast_id: Option<BroadcastId>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Occurrences still `claimed` that were claimed at or before `before` (their instance
    /// may have stopped between claiming and posting).
    async fn stale_claims(&self, before: DateTime<Utc>, limit: i64)
        -> StoreResult<Vec<Occurrence>>;
    /// The notice's occurrences, newest first (at most `limit`).
    async fn occurrences(
        &self,
        notice_id: ScheduledNoticeId,
        limit: i64,
    ) -> StoreResult<Vec<Occurrence>>;
    /// The broadcast a status change posted under this idempotency scope and key started,
    /// if one was.
    async fn posted_under(&self, scope: &str, key: &str) -> StoreResult<Option<BroadcastId>>;
    /// The notice `id` whatever its practice (the runner's view).
    async fn notice_by_id(&self, id: ScheduledNoticeId) -> StoreResult<Option<ScheduledNotice>>;
}
