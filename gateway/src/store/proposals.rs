//! Proposed status changes, the one-time codes that approve them by text, each practice's
//! approval rules and tags, and the incidents status sources have shown open.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{BroadcastId, Invalid, PracticeId, ProposalId, StaffNumberId};

/// Where a proposal stands. Only `Proposed` moves, and only once, to one of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalState {
    /// Waiting for approval (or for a second approval).
    Proposed,
    /// Approved: its status change was posted (`broadcast_id`).
    Approved,
    /// Someone decided against it, or the staff member who texted it sent `CANCEL`.
    Dismissed,
    /// Nobody approved it in time, or its incident was resolved first.
    Expired,
}

impl ProposalState {
    /// Every state, pending first.
    pub const ALL: [ProposalState; 4] = [
        ProposalState::Proposed,
        ProposalState::Approved,
        ProposalState::Dismissed,
        ProposalState::Expired,
    ];

    /// The stored and JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalState::Proposed => "proposed",
            ProposalState::Approved => "approved",
            ProposalState::Dismissed => "dismissed",
            ProposalState::Expired => "expired",
        }
    }
}

impl FromStr for ProposalState {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProposalState::ALL
            .into_iter()
            .find(|state| state.as_str() == s.trim())
            .ok_or_else(|| {
                Invalid::new(
                    "state",
                    format!("{s:?} is not a state: use proposed, approved, dismissed or expired"),
                )
            })
    }
}

impl fmt::Display for ProposalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who or what proposed a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProposalOrigin {
    /// A registered staff member's text command.
    StaffText,
    /// A supplier status source's incident.
    Source,
}

impl ProposalOrigin {
    /// The stored and JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalOrigin::StaffText => "staff_text",
            ProposalOrigin::Source => "source",
        }
    }
}

impl FromStr for ProposalOrigin {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "staff_text" => Ok(ProposalOrigin::StaffText),
            "source" => Ok(ProposalOrigin::Source),
            other => Err(Invalid::new(
                "origin",
                format!("{other:?} is not an origin"),
            )),
        }
    }
}

/// Which incident a proposal from a status source answers: its start (`down`) or its end
/// (`restored`). One proposal per practice and phase of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IncidentRef {
    /// The source's configured name.
    pub source: String,
    /// The supplier's incident id.
    pub incident_id: String,
    /// `down` or `restored`.
    pub phase: String,
}

/// A proposal to record.
#[derive(Debug, Clone)]
pub struct NewProposal {
    /// The practice it would be posted for.
    pub practice_id: PracticeId,
    /// Staff text or source.
    pub origin: ProposalOrigin,
    /// The incident it answers, for proposals from a source.
    pub incident: Option<IncidentRef>,
    /// The status kind, as the request names it (for lists; the request is what posts).
    pub kind: String,
    /// The status change as the API takes it, in JSON: approving posts exactly this.
    pub request: String,
    /// The supplier's notice, for whoever approves.
    pub link: Option<String>,
    /// Who proposed it, as people read it (`staff:Dr Ann Jones`, `source:emis`).
    pub proposed_by: String,
    /// The proposer's identity for the two-person rule (`staff_number:3`, `user:7`).
    pub proposer: String,
    /// After this it can no longer be approved.
    pub expires_at: DateTime<Utc>,
}

/// A recorded proposal.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    /// How the API and the audit trail (`proposal:{id}`) name it.
    pub id: ProposalId,
    /// The practice.
    pub practice_id: PracticeId,
    /// Where it stands.
    pub state: ProposalState,
    /// Staff text or source.
    pub origin: ProposalOrigin,
    /// The incident it answers, for proposals from a source.
    pub incident: Option<IncidentRef>,
    /// The status kind.
    pub kind: String,
    /// The status change, in the API's JSON.
    pub request: String,
    /// The supplier's notice.
    pub link: Option<String>,
    /// Who proposed it.
    pub proposed_by: String,
    /// The proposer's identity.
    pub proposer: String,
    /// Who gave the first of two approvals, when two are needed.
    pub first_approved_by: Option<String>,
    /// Their identity: the second approval must come from someone else.
    pub first_approver: Option<String>,
    /// When.
    pub first_approved_at: Option<DateTime<Utc>>,
    /// Who approved or dismissed it (or why it expired).
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<DateTime<Utc>>,
    /// The broadcast its approval posted.
    pub broadcast_id: Option<BroadcastId>,
    /// After this it can no longer be approved.
    pub expires_at: DateTime<Utc>,
    /// When it was proposed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Grows with every change: a decision names the revision it saw.
    pub revision: i64,
}

/// A practice's approval rules and the systems it depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// The PIN staff start each text command with (4 to 8 digits), if required.
    pub staff_pin: Option<String>,
    /// Above this many recipients a broadcast needs a second person's approval.
    pub second_approval_above: Option<u64>,
    /// Status sources whose proposals post without approval (none by default).
    pub auto_post_sources: Vec<String>,
    /// The systems the practice depends on (`emis-web`, `systmone`, ...), lower case.
    pub tags: Vec<String>,
}

/// A one-time code to record: only its hash is kept.
#[derive(Debug, Clone)]
pub struct NewApprovalCode {
    /// The proposal it approves.
    pub proposal_id: ProposalId,
    /// The staff number it was texted to.
    pub staff_number_id: StaffNumberId,
    /// That number in E.164: only a text from it can use the code.
    pub phone: String,
    /// The code's hash (see `intake::approval::codes`).
    pub code_hash: String,
    /// After this the code no longer works.
    pub expires_at: DateTime<Utc>,
}

/// A code that may still be used.
#[derive(Debug, Clone)]
pub struct LiveCode {
    /// Row id, to mark it used.
    pub id: i64,
    /// The proposal it approves.
    pub proposal_id: ProposalId,
    /// The staff number it was texted to.
    pub staff_number_id: StaffNumberId,
    /// The code's hash.
    pub code_hash: String,
}

/// Where proposals, their codes, approval settings and source incidents are kept.
#[async_trait]
pub trait ProposalStore: Send + Sync {
    /// The practice's approval rules (the defaults if it never saved any).
    async fn approval_settings(&self, practice_id: PracticeId) -> StoreResult<ApprovalSettings>;
    /// Replaces the practice's approval rules and tags.
    async fn save_approval_settings(
        &self,
        practice_id: PracticeId,
        settings: &ApprovalSettings,
        actor: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The practices tagged with any of `tags`, each once, in id order.
    async fn practices_tagged(&self, tags: &[String]) -> StoreResult<Vec<PracticeId>>;

    /// Records a proposal; `StoreError::Duplicate` if the practice already has one for the
    /// same incident and phase.
    async fn create_proposal(&self, new: &NewProposal, now: DateTime<Utc>)
        -> StoreResult<Proposal>;
    /// The practice's proposal `id` (another practice's id finds nothing).
    async fn proposal(
        &self,
        practice_id: PracticeId,
        id: ProposalId,
    ) -> StoreResult<Option<Proposal>>;
    /// The practice's proposal for an incident's phase, in any state.
    async fn proposal_for_incident(
        &self,
        practice_id: PracticeId,
        incident: &IncidentRef,
    ) -> StoreResult<Option<Proposal>>;
    /// The practice's proposals, pending ones first, then the newest; at most `limit`.
    async fn proposals(&self, practice_id: PracticeId, limit: u32) -> StoreResult<Vec<Proposal>>;
    /// Every proposal from `source` for `incident_id`, at any practice.
    async fn proposals_for_incident(
        &self,
        source: &str,
        incident_id: &str,
    ) -> StoreResult<Vec<Proposal>>;
    /// Rewrites a pending proposal's wording (an incident's update) if it is still at
    /// `revision`; whether it was.
    async fn revise_proposal(
        &self,
        id: ProposalId,
        revision: i64,
        request: &str,
        link: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Records the first of two approvals if the proposal is pending at `revision`.
    async fn record_first_approval(
        &self,
        id: ProposalId,
        revision: i64,
        by: &str,
        approver: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Moves a pending proposal at `revision` to `state`, by `by`; whether it moved. The
    /// one way out of `proposed`, so of two racing decisions exactly one wins.
    async fn decide_proposal(
        &self,
        id: ProposalId,
        revision: i64,
        state: ProposalState,
        by: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Records the broadcast an approved proposal posted.
    async fn attach_broadcast(&self, id: ProposalId, broadcast_id: BroadcastId) -> StoreResult<()>;
    /// Approved proposals whose broadcast was never recorded (a crash between the two).
    async fn approved_unposted(&self) -> StoreResult<Vec<Proposal>>;
    /// Pending proposals whose time ran out before `now`, across practices, at most `limit`.
    async fn overdue_proposals(&self, now: DateTime<Utc>, limit: u32)
        -> StoreResult<Vec<Proposal>>;

    /// Records a one-time code.
    async fn add_approval_code(
        &self,
        code: &NewApprovalCode,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The codes texted to `phone` that are unused, unexpired at `now`, and whose proposal
    /// is still pending.
    async fn live_codes(&self, phone: &str, now: DateTime<Utc>) -> StoreResult<Vec<LiveCode>>;
    /// Marks a code used; false if it was used already (so it works once).
    async fn use_code(&self, id: i64, now: DateTime<Utc>) -> StoreResult<bool>;
    /// Marks every unused code of a proposal used (it was decided another way).
    async fn retire_codes(&self, proposal_id: ProposalId, now: DateTime<Utc>) -> StoreResult<()>;

    /// The incidents `source` has shown open and not yet seen resolved.
    async fn open_incidents(&self, source: &str) -> StoreResult<Vec<String>>;
    /// Records that `source` shows `incident_id`, open or resolved.
    async fn note_incident(
        &self,
        source: &str,
        incident_id: &str,
        resolved: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_what_they_write() {
        for state in ProposalState::ALL {
            assert_eq!(state.as_str().parse::<ProposalState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).ok(),
                Some(serde_json::Value::from(state.as_str()))
            );
        }
        assert_eq!("maybe".parse::<ProposalState>().unwrap_err().field, "state");
        for origin in [ProposalOrigin::StaffText, ProposalOrigin::Source] {
            assert_eq!(origin.as_str().parse::<ProposalOrigin>(), Ok(origin));
        }
    }
}
