//! Proposed status changes and their approval: nothing a staff member texts, and nothing a
//! supplier's status source reports, reaches patients until a person at the practice
//! approves it (unless the practice chose automatic posting for that source).
//!
//! A proposal holds the status change exactly as the API would take it. Approving it posts
//! that request with the proposal as its idempotency key, so a retry or a crash between
//! "approved" and "posted" can never post twice. A practice may require a second person's
//! approval above a number of recipients; the second approver must be someone else.
//! Approval comes from the console, the API, or a one-time code texted to a staff number
//! (`YES <code>` from that number).

/// One-time codes and their hashes.
pub mod codes;
/// The wording, counts and segments a staff member is shown.
pub mod preview;
/// A practice's approval rules and tags, as the API and console take them.
pub mod rules;
/// Texts to staff, straight to the SMS providers.
pub mod texts;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use self::preview::Preview;
use self::texts::StaffTexts;
use crate::config::ApprovalConfig;
use crate::domain::{BroadcastId, Invalid, ProposalId};
use crate::fanout::FanoutError;
use crate::intake::status::{
    post_status_change, PostStatusError, StatusChangeRequest, StatusChanges,
};
use crate::store::{
    AuditEntry, Broadcast, IncidentRef, NewApprovalCode, NewProposal, Practice, Proposal,
    ProposalOrigin, ProposalState, StaffNumber, Store, StoreError,
};

/// Who acts on a proposal: the name people read, and the identity the two-person rule
/// compares (a staff number, a console user, an API key, a status source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// As the audit trail and the console show it: `staff:Ann Jones`, `user:alice`.
    pub name: String,
    /// As the two-person rule compares it: `staff_number:3`, `user:alice`, `key:gw_ab12`.
    pub identity: String,
}

impl Person {
    /// A registered staff member, by their number's registration.
    pub fn staff(number: &StaffNumber) -> Self {
        Self {
            name: format!("staff:{}", number.name),
            identity: format!("staff_number:{}", number.id),
        }
    }

    /// A console user or API key, by its audit actor (`user:<name>`, `key:<prefix>`).
    pub fn actor(actor: &str) -> Self {
        Self {
            name: actor.to_string(),
            identity: actor.to_string(),
        }
    }

    /// A status source, for the proposals it makes and the ones it posts automatically.
    pub fn source(name: &str) -> Self {
        let actor = format!("source:{name}");
        Self {
            name: actor.clone(),
            identity: actor,
        }
    }
}

/// A status change to propose.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Staff text or source.
    pub origin: ProposalOrigin,
    /// The incident it answers (from a source).
    pub incident: Option<IncidentRef>,
    /// What would be posted.
    pub request: StatusChangeRequest,
    /// The supplier's notice.
    pub link: Option<String>,
    /// Who proposes it.
    pub proposer: Person,
    /// How long it may wait for approval.
    pub lasts: Duration,
}

/// What an approval did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The status change was posted.
    Posted(BroadcastId),
    /// The first of two approvals is recorded; the broadcast waits for someone else's.
    WaitingForSecond,
}

/// Why a proposal could not be made, approved or dismissed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The status change itself is invalid.
    #[error("invalid status change")]
    Invalid(Vec<Invalid>),
    /// The practice has no such proposal.
    #[error("no such proposal")]
    NotFound,
    /// It was decided already.
    #[error("this proposal is already {0}")]
    NotPending(ProposalState),
    /// Its time ran out.
    #[error("this proposal has expired")]
    Expired,
    /// The two-person rule: the first approver cannot give the second approval.
    #[error("a second person must approve this broadcast: {0} approved it already")]
    SameApprover(String),
    /// Someone else decided or changed it at the same moment; look again.
    #[error("this proposal changed while it was being decided; look at it again")]
    Changed,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Previewing failed (the wording could not be rendered, or the audience counted).
    #[error(transparent)]
    Fanout(#[from] FanoutError),
    /// Posting the approved status change failed.
    #[error(transparent)]
    Post(#[from] PostStatusError),
    /// The stored request could not be read back.
    #[error("stored proposal {0} is unreadable: {1}")]
    Corrupt(ProposalId, String),
}

/// The approval service: what making, previewing and deciding proposals takes.
#[derive(Clone)]
pub struct Approvals {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Posts an approved status change (and counts and words previews).
    pub status_changes: StatusChanges,
    /// Texts codes and answers to staff.
    pub texts: StaffTexts,
    /// How long codes and proposals last.
    pub config: ApprovalConfig,
}

impl Approvals {
    /// How long a texted code works.
    pub fn code_lasts(&self) -> Duration {
        seconds(self.config.code_seconds)
    }

    /// Records a proposal after checking its status change as the API would.
    pub async fn propose(
        &self,
        practice: &Practice,
        draft: Draft,
    ) -> Result<Proposal, ApprovalError> {
        draft
            .request
            .parse(&draft.proposer.name)
            .map_err(ApprovalError::Invalid)?;
        let now = Utc::now();
        let new = NewProposal {
            practice_id: practice.id,
            origin: draft.origin,
            incident: draft.incident,
            kind: draft.request.kind.clone(),
            request: serde_json::to_string(&draft.request)
                .map_err(|e| ApprovalError::Corrupt(ProposalId::new(0), e.to_string()))?,
            link: draft.link,
            proposed_by: draft.proposer.name.clone(),
            proposer: draft.proposer.identity.clone(),
            expires_at: now + draft.lasts,
        };
        let proposal = self.store.create_proposal(&new, now).await?;
        self.audit(
            practice,
            &draft.proposer.name,
            "proposal.created",
            &proposal,
            serde_json::json!({ "kind": new.kind, "origin": new.origin, "link": new.link }),
        )
        .await?;
        Ok(proposal)
    }

    /// What `request` would send at `practice` now.
    pub async fn preview(
        &self,
        practice: &Practice,
        request: &StatusChangeRequest,
    ) -> Result<Preview, ApprovalError> {
        let now = Utc::now();
        let change = request.parse("preview").map_err(ApprovalError::Invalid)?;
        let broadcast = Broadcast::unrecorded(practice.id, &change, now);
        let fanout = &self.status_changes.fanout;
        let text = fanout.sms_wording(practice.clone(), broadcast).await?;
        let audience = fanout.audience(practice.id).await?;
        Ok(Preview::new(text, &audience))
    }

    /// The status change a proposal holds.
    pub fn request_of(proposal: &Proposal) -> Result<StatusChangeRequest, ApprovalError> {
        serde_json::from_str(&proposal.request)
            .map_err(|e| ApprovalError::Corrupt(proposal.id, e.to_string()))
    }

    /// Texts `to` a new code for `proposal` with its preview, led by `lead`. Whether the
    /// text left; a failure is audited and not an error (others may still be reached).
    pub async fn text_code(
        &self,
        practice: &Practice,
        proposal: &Proposal,
        to: &StaffNumber,
        lead: &str,
        preview: &Preview,
    ) -> Result<bool, ApprovalError> {
        let code = codes::new_code();
        let now = Utc::now();
        self.store
            .add_approval_code(
                &NewApprovalCode {
                    proposal_id: proposal.id,
                    staff_number_id: to.id,
                    phone: to.phone.clone(),
                    code_hash: codes::hash(proposal.id, &code),
                    expires_at: now + self.code_lasts(),
                },
                now,
            )
            .await?;
        let minutes = self.config.code_seconds.div_ceil(60);
        let text = preview.ask(lead, &code, minutes);
        let sent = self.texts.send(practice, &to.phone, &text).await;
        let (action, details) = match &sent {
            Ok(provider) => (
                "proposal.code_sent",
                serde_json::json!({ "to": to.name, "staff_number": to.id, "provider": provider }),
            ),
            Err(e) => (
                "proposal.code_not_sent",
                serde_json::json!({ "to": to.name, "staff_number": to.id, "reason": e.to_string() }),
            ),
        };
        self.audit(practice, "gateway", action, proposal, details)
            .await?;
        Ok(sent.is_ok())
    }

    /// Texts a code for `proposal` to each of the practice's approvers but `except` (an
    /// identity); how many texts left.
    pub async fn ask_approvers(
        &self,
        practice: &Practice,
        proposal: &Proposal,
        lead: &str,
        except: Option<&str>,
    ) -> Result<usize, ApprovalError> {
        let request = Self::request_of(proposal)?;
        let preview = self.preview(practice, &request).await?;
        let mut sent = 0;
        for number in self.store.staff_numbers(practice.id).await? {
            let person = Person::staff(&number);
            if !number.role.may_approve() || except == Some(person.identity.as_str()) {
                continue;
            }
            if self
                .text_code(practice, proposal, &number, lead, &preview)
                .await?
            {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Approves the practice's proposal `id` as `by`. Above the practice's threshold, the
    /// first approval waits for a second from someone else (who is texted a code);
    /// otherwise the status change is posted.
    pub async fn approve(
        &self,
        practice: &Practice,
        id: ProposalId,
        by: &Person,
    ) -> Result<Decision, ApprovalError> {
        let proposal = self.pending(practice, id).await?;
        if proposal.first_approver.as_deref() == Some(by.identity.as_str()) {
            self.audit(
                practice,
                &by.name,
                "proposal.approval_refused",
                &proposal,
                serde_json::json!({ "reason": "the same person cannot give both approvals" }),
            )
            .await?;
            return Err(ApprovalError::SameApprover(
                proposal.first_approved_by.clone().unwrap_or_default(),
            ));
        }
        let settings = self.store.approval_settings(practice.id).await?;
        if proposal.first_approver.is_none() {
            if let Some(threshold) = settings.second_approval_above {
                let audience = self.status_changes.fanout.audience(practice.id).await?;
                let recipients: u64 = audience.recipients.values().sum();
                if recipients > threshold {
                    return self
                        .first_of_two(practice, &proposal, by, recipients, threshold)
                        .await;
                }
            }
        }
        self.post(practice, &proposal, by)
            .await
            .map(Decision::Posted)
    }

    /// Records the first of two approvals and asks the other approvers.
    async fn first_of_two(
        &self,
        practice: &Practice,
        proposal: &Proposal,
        by: &Person,
        recipients: u64,
        threshold: u64,
    ) -> Result<Decision, ApprovalError> {
        let now = Utc::now();
        if !self
            .store
            .record_first_approval(proposal.id, proposal.revision, &by.name, &by.identity, now)
            .await?
        {
            return Err(ApprovalError::Changed);
        }
        self.audit(
            practice,
            &by.name,
            "proposal.first_approval",
            proposal,
            serde_json::json!({ "recipients": recipients, "second_approval_above": threshold }),
        )
        .await?;
        self.store.retire_codes(proposal.id, now).await?;
        let Some(current) = self.store.proposal(practice.id, proposal.id).await? else {
            return Err(ApprovalError::NotFound);
        };
        let lead = format!(
            "{} approved a {} notice for {} patients; a second approval is needed.",
            display_name(&by.name),
            current.kind.replace('_', " "),
            recipients
        );
        self.ask_approvers(practice, &current, &lead, Some(&by.identity))
            .await?;
        Ok(Decision::WaitingForSecond)
    }

    /// Marks the proposal approved by `by` and posts its status change.
    pub(crate) async fn post(
        &self,
        practice: &Practice,
        proposal: &Proposal,
        by: &Person,
    ) -> Result<BroadcastId, ApprovalError> {
        let now = Utc::now();
        if !self
            .store
            .decide_proposal(
                proposal.id,
                proposal.revision,
                ProposalState::Approved,
                &by.name,
                now,
            )
            .await?
        {
            return Err(ApprovalError::Changed);
        }
        self.store.retire_codes(proposal.id, now).await?;
        self.audit(
            practice,
            &by.name,
            "proposal.approved",
            proposal,
            serde_json::json!({ "first_approved_by": proposal.first_approved_by }),
        )
        .await?;
        self.publish(practice, proposal, &by.name).await
    }

    /// Posts an approved proposal's status change (again: idempotent) and records its
    /// broadcast.
    async fn publish(
        &self,
        practice: &Practice,
        proposal: &Proposal,
        actor: &str,
    ) -> Result<BroadcastId, ApprovalError> {
        let request = Self::request_of(proposal)?;
        let key = Some(("proposal".to_string(), proposal.id.to_string()));
        let posted =
            match post_status_change(&self.status_changes, practice, &request, actor, key).await {
                Ok(posted) => posted,
                // The broadcast exists but its wording could not be rendered: it is marked failed
                // with its reason. Recording it stops `tidy` from posting it again and again.
                Err(PostStatusError::Fanout(FanoutError::Failed {
                    broadcast_id,
                    reason,
                })) => {
                    self.store
                        .attach_broadcast(proposal.id, broadcast_id)
                        .await?;
                    let failed = FanoutError::Failed {
                        broadcast_id,
                        reason,
                    };
                    return Err(PostStatusError::Fanout(failed).into());
                }
                Err(e) => return Err(e.into()),
            };
        self.store
            .attach_broadcast(proposal.id, posted.broadcast_id)
            .await?;
        Ok(posted.broadcast_id)
    }

    /// Dismisses the practice's proposal `id` as `by`.
    pub async fn dismiss(
        &self,
        practice: &Practice,
        id: ProposalId,
        by: &Person,
    ) -> Result<Proposal, ApprovalError> {
        let proposal = self.pending(practice, id).await?;
        self.close(practice, &proposal, ProposalState::Dismissed, &by.name)
            .await?;
        Ok(proposal)
    }

    /// Moves a pending proposal to `state` (dismissed or expired), `by` naming who or why.
    pub(crate) async fn close(
        &self,
        practice: &Practice,
        proposal: &Proposal,
        state: ProposalState,
        by: &str,
    ) -> Result<(), ApprovalError> {
        let now = Utc::now();
        if !self
            .store
            .decide_proposal(proposal.id, proposal.revision, state, by, now)
            .await?
        {
            return Err(ApprovalError::Changed);
        }
        self.store.retire_codes(proposal.id, now).await?;
        self.audit(
            practice,
            by,
            &format!("proposal.{state}"),
            proposal,
            serde_json::json!({ "kind": proposal.kind }),
        )
        .await?;
        Ok(())
    }

    /// The practice's proposal `id` if it can still be decided; one whose time ran out is
    /// marked expired on the way.
    async fn pending(
        &self,
        practice: &Practice,
        id: ProposalId,
    ) -> Result<Proposal, ApprovalError> {
        let proposal = self
            .store
            .proposal(practice.id, id)
            .await?
            .ok_or(ApprovalError::NotFound)?;
        if proposal.state != ProposalState::Proposed {
            return Err(ApprovalError::NotPending(proposal.state));
        }
        if proposal.expires_at <= Utc::now() {
            // Another instance may expire it at the same moment: either way it is expired.
            let _ = self
                .close(practice, &proposal, ProposalState::Expired, "time ran out")
                .await;
            return Err(ApprovalError::Expired);
        }
        Ok(proposal)
    }

    /// Expires pending proposals whose time ran out, and posts approved ones whose
    /// broadcast was never recorded (a crash between approving and posting). Run now and
    /// then by every API instance: both steps are idempotent. How many proposals it moved.
    pub async fn tidy(&self) -> Result<usize, ApprovalError> {
        let now = Utc::now();
        let mut moved = 0;
        for proposal in self.store.overdue_proposals(now, 200).await? {
            let Some(practice) = self.store.practice_by_id(proposal.practice_id).await? else {
                continue;
            };
            match self
                .close(&practice, &proposal, ProposalState::Expired, "time ran out")
                .await
            {
                Ok(()) => moved += 1,
                Err(ApprovalError::Changed) => {}
                Err(e) => return Err(e),
            }
        }
        for proposal in self.store.approved_unposted().await? {
            let Some(practice) = self.store.practice_by_id(proposal.practice_id).await? else {
                continue;
            };
            let actor = proposal
                .decided_by
                .clone()
                .unwrap_or_else(|| "gateway".into());
            match self.publish(&practice, &proposal, &actor).await {
                Ok(_) => moved += 1,
                Err(e) => {
                    tracing::error!(proposal = proposal.id.get(), error = %e, "could not post an approved proposal")
                }
            }
        }
        Ok(moved)
    }

    /// Adds a line about `proposal` to the practice's audit trail.
    pub(crate) async fn audit(
        &self,
        practice: &Practice,
        actor: &str,
        action: &str,
        proposal: &Proposal,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.store
            .audit(
                &AuditEntry {
                    actor: actor.to_string(),
                    action: action.to_string(),
                    practice_id: Some(practice.id),
                    subject: Some(format!("proposal:{}", proposal.id)),
                    details: Some(details.to_string()),
                },
                Utc::now(),
            )
            .await
    }
}

/// `seconds` as a chrono duration, saturating.
pub(crate) fn seconds(seconds: u64) -> Duration {
    Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 1000))
}

/// A person's name without its kind: `staff:Ann Jones` is `Ann Jones`.
pub fn display_name(name: &str) -> &str {
    name.split_once(':').map_or(name, |(_, rest)| rest)
}

/// When the proposal stops being decidable, for people: `14:05`.
pub fn until(at: DateTime<Utc>, practice: &Practice) -> String {
    at.with_timezone(&practice.timezone.tz())
        .format("%H:%M")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_are_named_for_readers_and_compared_by_identity() {
        let ann = Person::actor("user:ann");
        assert_eq!(ann.name, ann.identity);
        assert_eq!(Person::source("emis").name, "source:emis");
        assert_eq!(display_name("staff:Ann Jones"), "Ann Jones");
        assert_eq!(display_name("gateway"), "gateway");
        assert_eq!(seconds(600), Duration::minutes(10));
        assert!(seconds(u64::MAX) > Duration::days(365));
    }
}
