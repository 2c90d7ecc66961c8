//! From a status source's incidents to proposed status changes.
//!
//! Each reading of a source is its whole current list of incidents. An open incident that
//! maps to tags proposes `systems_down` (headline from its title, with a link to the
//! supplier's notice) for every practice tagged with them, once per practice: a later
//! reading that changes the incident revises the proposal while it is pending, and never
//! proposes or posts twice. A resolved incident (or, for a source that lists only open
//! incidents, one gone from the list) expires proposals nobody approved, and proposes
//! `restored` where the practice is still marked down because of it: its approved notice
//! is the practice's latest.
//!
//! Approvers are texted a code with the preview; a practice that chose automatic posting
//! for the source has the change posted at once, by the source.

use std::collections::{BTreeSet, HashSet};

use chrono::Utc;

use super::poller::{IncidentSink, SinkError, Source};
use super::Incident;
use crate::intake::approval::{seconds, ApprovalError, Approvals, Draft, Person};
use crate::intake::status::StatusChangeRequest;
use crate::store::{IncidentRef, Practice, Proposal, ProposalOrigin, ProposalState, StoreError};

/// The phase of an incident a proposal answers: its start.
pub const DOWN: &str = "down";
/// The phase of an incident a proposal answers: its end.
pub const RESTORED: &str = "restored";

/// Turns readings of status sources into proposals.
#[derive(Clone)]
pub struct SourceWatch {
    /// Makes and posts proposals, and texts approvers.
    pub approvals: Approvals,
}

impl SourceWatch {
    /// Acts on one reading of `source`: every incident its document lists now. One
    /// practice's failure is logged and the others go on; a storage failure fails the
    /// reading, which the poller then delivers again.
    pub async fn read(&self, source: &Source, incidents: &[Incident]) -> Result<(), StoreError> {
        let store = &self.approvals.store;
        let now = Utc::now();
        let name = source.name.as_str();
        // Read once: every incident the loop below opens is listed, so what is open and not
        // listed afterwards is exactly what was open before and is not listed.
        let open_before: BTreeSet<String> = store.open_incidents(name).await?.into_iter().collect();
        let mut listed = HashSet::new();
        for incident in incidents {
            listed.insert(incident.id.as_str());
            if incident.status.is_resolved() {
                if open_before.contains(&incident.id) {
                    store.note_incident(name, &incident.id, true, now).await?;
                }
                self.resolved(name, &incident.id).await?;
                continue;
            }
            let tags = source.mapping.tags_for(incident);
            if tags.is_empty() {
                continue;
            }
            store.note_incident(name, &incident.id, false, now).await?;
            let link = incident.link.clone().or_else(|| source.link.clone());
            self.opened(name, incident, link, &tags).await?;
        }
        if source.lists_only_open() {
            for id in &open_before {
                if !listed.contains(id.as_str()) {
                    store.note_incident(name, id, true, now).await?;
                    self.resolved(name, id).await?;
                }
            }
        }
        Ok(())
    }

    /// An open incident touching `tags`: proposes, or revises the pending proposal, at each
    /// practice tagged with them.
    async fn opened(
        &self,
        source: &str,
        incident: &Incident,
        link: Option<String>,
        tags: &BTreeSet<String>,
    ) -> Result<(), StoreError> {
        let store = &self.approvals.store;
        let tags: Vec<String> = tags.iter().cloned().collect();
        for practice_id in store.practices_tagged(&tags).await? {
            let Some(practice) = store.practice_by_id(practice_id).await? else {
                continue;
            };
            let request = StatusChangeRequest {
                kind: "systems_down".into(),
                headline: Some(incident.title.clone()).filter(|t| !t.trim().is_empty()),
                ..Default::default()
            };
            let incident_ref = IncidentRef {
                source: source.to_string(),
                incident_id: incident.id.clone(),
                phase: DOWN.into(),
            };
            let lead = format!(
                "{source} reports: {}. Proposed for {}: systems down.",
                incident.title.trim_end_matches('.'),
                practice.name
            );
            let outcome = self
                .propose_or_revise(&practice, incident_ref, request, link.clone(), &lead)
                .await;
            if let Err(e) = outcome {
                tracing::error!(source, practice = %practice.ods_code, error = %e, "could not propose a status change for an incident");
            }
        }
        Ok(())
    }

    /// A resolved incident: expires its proposals nobody approved, and proposes `restored`
    /// where the practice's latest notice is the one it caused.
    async fn resolved(&self, source: &str, incident_id: &str) -> Result<(), StoreError> {
        let store = &self.approvals.store;
        for proposal in store.proposals_for_incident(source, incident_id).await? {
            let is_down = proposal.incident.as_ref().is_some_and(|i| i.phase == DOWN);
            if !is_down {
                continue;
            }
            let Some(practice) = store.practice_by_id(proposal.practice_id).await? else {
                continue;
            };
            let outcome = match proposal.state {
                ProposalState::Proposed => self
                    .approvals
                    .close(
                        &practice,
                        &proposal,
                        ProposalState::Expired,
                        "the incident was resolved before approval",
                    )
                    .await
                    .or_else(|e| match e {
                        ApprovalError::Changed => Ok(()),
                        e => Err(e),
                    }),
                ProposalState::Approved
                    if self.still_down_because_of(&practice, &proposal).await? =>
                {
                    let incident_ref = IncidentRef {
                        source: source.to_string(),
                        incident_id: incident_id.to_string(),
                        phase: RESTORED.into(),
                    };
                    let request = StatusChangeRequest {
                        kind: "restored".into(),
                        ..Default::default()
                    };
                    let lead = format!(
                        "{source} reports its incident resolved. Proposed for {}: restored.",
                        practice.name
                    );
                    self.propose_or_revise(
                        &practice,
                        incident_ref,
                        request,
                        proposal.link.clone(),
                        &lead,
                    )
                    .await
                }
                _ => Ok(()),
            };
            if let Err(e) = outcome {
                tracing::error!(source, practice = %practice.ods_code, error = %e, "could not act on a resolved incident");
            }
        }
        Ok(())
    }

    /// Whether the practice's latest notice is the one `proposal` posted.
    async fn still_down_because_of(
        &self,
        practice: &Practice,
        proposal: &Proposal,
    ) -> Result<bool, StoreError> {
        let latest = self
            .approvals
            .store
            .recent_broadcasts(practice.id, 1)
            .await?;
        Ok(
            proposal.broadcast_id.is_some()
                && latest.first().map(|b| b.id) == proposal.broadcast_id,
        )
    }

    /// Proposes the change for the incident's phase, or revises its pending proposal; a new
    /// proposal is posted at once if the practice chose so for this source, else its
    /// approvers are texted.
    async fn propose_or_revise(
        &self,
        practice: &Practice,
        incident: IncidentRef,
        request: StatusChangeRequest,
        link: Option<String>,
        lead: &str,
    ) -> Result<(), ApprovalError> {
        let approvals = &self.approvals;
        let store = &approvals.store;
        let source = incident.source.clone();
        if let Some(existing) = store.proposal_for_incident(practice.id, &incident).await? {
            let wording = serde_json::to_string(&request)
                .map_err(|e| ApprovalError::Corrupt(existing.id, e.to_string()))?;
            let changed = existing.request != wording || existing.link != link;
            if existing.state == ProposalState::Proposed && changed {
                request.parse("source").map_err(ApprovalError::Invalid)?;
                if store
                    .revise_proposal(
                        existing.id,
                        existing.revision,
                        &wording,
                        link.as_deref(),
                        Utc::now(),
                    )
                    .await?
                {
                    approvals
                        .audit(
                            practice,
                            &Person::source(&source).name,
                            "proposal.revised",
                            &existing,
                            serde_json::json!({ "headline": request.headline }),
                        )
                        .await?;
                }
            }
            return Ok(());
        }
        let proposal = approvals
            .propose(
                practice,
                Draft {
                    origin: ProposalOrigin::Source,
                    incident: Some(incident),
                    request,
                    link,
                    proposer: Person::source(&source),
                    lasts: seconds(approvals.config.source_proposal_seconds),
                },
            )
            .await?;
        let settings = store.approval_settings(practice.id).await?;
        if settings.auto_post_sources.contains(&source) {
            approvals
                .post(practice, &proposal, &Person::source(&source))
                .await?;
        } else {
            approvals
                .ask_approvers(practice, &proposal, lead, None)
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl IncidentSink for SourceWatch {
    async fn incidents(&self, source: &Source, incidents: Vec<Incident>) -> Result<(), SinkError> {
        self.read(source, &incidents)
            .await
            .map_err(|e| Box::new(e) as SinkError)
    }
}
