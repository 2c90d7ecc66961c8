//! `/practices/{ods}/proposals`: status changes proposed by staff texts and status sources,
//! listed pending first, approved or dismissed by a practice's key or an admin; and
//! `/practices/{ods}/approval`: the practice's approval rules (PIN, two-person threshold,
//! sources allowed to post automatically) and the systems it is tagged with.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::caller::Caller;
use super::extract::{path_id, ApiJson};
use crate::app::AppState;
use crate::domain::{BroadcastId, Invalid, ProposalId};
use crate::http::ApiError;
use crate::intake::approval::{ApprovalError, Approvals, Decision, Person};
use crate::store::{ApprovalSettings, AuditEntry, Proposal, ProposalOrigin, ProposalState};

/// Proposals listed at most.
const LIST_LIMIT: u32 = 200;
/// Tags a practice may have.
const MAX_TAGS: usize = 50;

/// A proposal as the API shows it.
#[derive(Debug, Serialize)]
pub struct ProposalView {
    id: ProposalId,
    state: ProposalState,
    origin: ProposalOrigin,
    /// `{ source, incident_id, phase }` for a proposal from a status source.
    incident: Option<crate::store::IncidentRef>,
    kind: String,
    /// The status change approval posts, as `POST .../status` takes it.
    status_change: serde_json::Value,
    link: Option<String>,
    proposed_by: String,
    first_approved_by: Option<String>,
    first_approved_at: Option<DateTime<Utc>>,
    decided_by: Option<String>,
    decided_at: Option<DateTime<Utc>>,
    broadcast_id: Option<BroadcastId>,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

impl From<&Proposal> for ProposalView {
    fn from(p: &Proposal) -> Self {
        Self {
            id: p.id,
            state: p.state,
            origin: p.origin,
            incident: p.incident.clone(),
            kind: p.kind.clone(),
            status_change: serde_json::from_str(&p.request).unwrap_or(serde_json::Value::Null),
            link: p.link.clone(),
            proposed_by: p.proposed_by.clone(),
            first_approved_by: p.first_approved_by.clone(),
            first_approved_at: p.first_approved_at,
            decided_by: p.decided_by.clone(),
            decided_at: p.decided_at,
            broadcast_id: p.broadcast_id,
            expires_at: p.expires_at,
            created_at: p.created_at,
        }
    }
}

impl From<ApprovalError> for ApiError {
    fn from(e: ApprovalError) -> Self {
        match e {
            ApprovalError::Invalid(errors) => ApiError::Validation(errors),
            ApprovalError::NotFound => ApiError::NotFound("no such proposal".into()),
            ApprovalError::NotPending(_) | ApprovalError::Expired | ApprovalError::Changed => {
                ApiError::Conflict("proposal_decided", e.to_string())
            }
            ApprovalError::SameApprover(_) => {
                ApiError::Conflict("second_approver_needed", e.to_string())
            }
            ApprovalError::Store(e) => e.into(),
            ApprovalError::Fanout(e) => e.into(),
            ApprovalError::Post(e) => e.into(),
            ApprovalError::Corrupt(..) => ApiError::Internal(e.to_string()),
        }
    }
}

/// `GET /practices/{ods}/proposals`: pending proposals first, then the newest (at most 200).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let proposals = state.store.proposals(practice.id, LIST_LIMIT).await?;
    let views: Vec<ProposalView> = proposals.iter().map(ProposalView::from).collect();
    Ok(Json(json!({ "proposals": views })))
}

/// `GET /practices/{ods}/proposals/{id}`: one proposal, with what it would send now.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let id = path_id(&id, "proposal", ProposalId::new)?;
    let proposal = state
        .store
        .proposal(practice.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no proposal {id}")))?;
    let approvals = state.approvals();
    let preview = match proposal.state {
        ProposalState::Proposed => {
            let request = Approvals::request_of(&proposal)?;
            Some(approvals.preview(&practice, &request).await?)
        }
        _ => None,
    };
    Ok(Json(
        json!({ "proposal": ProposalView::from(&proposal), "preview": preview }),
    ))
}

/// `POST /practices/{ods}/proposals/{id}/approve`: 200 with the broadcast when posted; 202
/// when the two-person rule waits for someone else's approval; 409 if it was decided,
/// expired, or this caller gave the first approval.
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let id = path_id(&id, "proposal", ProposalId::new)?;
    let decision = state
        .approvals()
        .approve(&practice, id, &Person::actor(&caller.actor))
        .await?;
    Ok(match decision {
        Decision::Posted(broadcast_id) => (
            StatusCode::OK,
            Json(json!({ "state": "approved", "broadcast_id": broadcast_id })),
        ),
        Decision::WaitingForSecond => (
            StatusCode::ACCEPTED,
            Json(json!({ "state": "proposed", "waiting_for": "a second approver" })),
        ),
    })
}

/// `POST /practices/{ods}/proposals/{id}/dismiss`: 200, or 409 if it was decided already.
pub async fn dismiss(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let id = path_id(&id, "proposal", ProposalId::new)?;
    state
        .approvals()
        .dismiss(&practice, id, &Person::actor(&caller.actor))
        .await?;
    Ok(Json(json!({ "state": "dismissed" })))
}

/// A practice's approval rules as the API takes them. The PIN is write-only: `null` removes
/// it, leaving it out keeps it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRules {
    #[serde(default, deserialize_with = "present")]
    staff_pin: Option<Option<String>>,
    #[serde(default)]
    second_approval_above: Option<u64>,
    #[serde(default)]
    auto_post_sources: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Whether `tag` is lower-case letters, digits and dashes (`emis-web`), 1 to 50 long.
fn valid_tag(tag: &str) -> bool {
    (1..=50).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl ApprovalRules {
    /// The settings to store (keeping `current`'s PIN unless one is given), or every
    /// field that is wrong.
    fn parse(
        self,
        current: &ApprovalSettings,
        sources: &[String],
    ) -> Result<ApprovalSettings, Vec<Invalid>> {
        let mut errors = Vec::new();
        let staff_pin = match self.staff_pin {
            None => current.staff_pin.clone(),
            Some(None) => None,
            Some(Some(pin)) => {
                let pin = pin.trim().to_string();
                if !(4..=8).contains(&pin.len()) || !pin.bytes().all(|b| b.is_ascii_digit()) {
                    errors.push(Invalid::new("staff_pin", "must be 4 to 8 digits"));
                }
                Some(pin)
            }
        };
        let mut tags: Vec<String> = self
            .tags
            .iter()
            .map(|t| t.trim().to_ascii_lowercase())
            .collect();
        tags.sort();
        tags.dedup();
        if tags.len() > MAX_TAGS {
            errors.push(Invalid::new("tags", format!("at most {MAX_TAGS} tags")));
        }
        for tag in &tags {
            if !valid_tag(tag) {
                errors.push(Invalid::new(
                    "tags",
                    format!("{tag:?}: use lower-case letters, digits and dashes, e.g. emis-web"),
                ));
            }
        }
        let mut auto_post_sources = self.auto_post_sources.clone();
        auto_post_sources.sort();
        auto_post_sources.dedup();
        for source in &auto_post_sources {
            if !sources.contains(source) {
                errors.push(Invalid::new(
                    "auto_post_sources",
                    format!("{source:?} is not a configured status source"),
                ));
            }
        }
        if errors.is_empty() {
            Ok(ApprovalSettings {
                staff_pin,
                second_approval_above: self.second_approval_above,
                auto_post_sources,
                tags,
            })
        } else {
            Err(errors)
        }
    }
}

/// The settings as the API shows them: whether a PIN is required, never the PIN.
fn settings_view(settings: &ApprovalSettings) -> serde_json::Value {
    json!({
        "staff_pin_required": settings.staff_pin.is_some(),
        "second_approval_above": settings.second_approval_above,
        "auto_post_sources": settings.auto_post_sources,
        "tags": settings.tags,
    })
}

/// `GET /practices/{ods}/approval`: the practice's approval rules and tags.
pub async fn settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let settings = state.store.approval_settings(practice.id).await?;
    Ok(Json(settings_view(&settings)))
}

/// `PUT /practices/{ods}/approval`: replaces the practice's approval rules and tags.
pub async fn save_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiJson(body): ApiJson<ApprovalRules>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let current = state.store.approval_settings(practice.id).await?;
    let sources = crate::api::proposals::source_names(&state);
    let settings = body
        .parse(&current, &sources)
        .map_err(ApiError::Validation)?;
    let now = Utc::now();
    state
        .store
        .save_approval_settings(practice.id, &settings, &caller.actor, now)
        .await?;
    let mut details = settings_view(&settings);
    details["pin_changed"] = json!(settings.staff_pin != current.staff_pin);
    state
        .store
        .audit(
            &AuditEntry {
                actor: caller.actor.clone(),
                action: "approval.settings_saved".into(),
                practice_id: Some(practice.id),
                subject: None,
                details: Some(details.to_string()),
            },
            now,
        )
        .await?;
    Ok(Json(settings_view(&settings)))
}

/// The names of the configured status sources.
pub(crate) fn source_names(_state: &AppState) -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: serde_json::Value) -> ApprovalRules {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_pin_is_kept_unless_given_or_cleared() {
        let current = ApprovalSettings {
            staff_pin: Some("4821".into()),
            ..Default::default()
        };
        let kept = rules(json!({})).parse(&current, &[]).unwrap();
        assert_eq!(kept.staff_pin.as_deref(), Some("4821"));
        let cleared = rules(json!({ "staff_pin": null }))
            .parse(&current, &[])
            .unwrap();
        assert_eq!(cleared.staff_pin, None);
        let errors = rules(json!({ "staff_pin": "12a4" }))
            .parse(&current, &[])
            .unwrap_err();
        assert_eq!(errors[0].field, "staff_pin");
    }

    #[test]
    fn tags_are_lower_case_words_and_sources_must_exist() {
        let parsed = rules(json!({ "tags": ["EMIS-Web", " spine ", "spine"] }))
            .parse(&ApprovalSettings::default(), &[])
            .unwrap();
        assert_eq!(parsed.tags, vec!["emis-web", "spine"]);
        let errors = rules(json!({ "tags": ["emis web"], "auto_post_sources": ["nope"] }))
            .parse(&ApprovalSettings::default(), &["emis".into()])
            .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["tags", "auto_post_sources"]);
        assert!(rules(json!({ "auto_post_sources": ["emis"] }))
            .parse(&ApprovalSettings::default(), &["emis".into()])
            .is_ok());
    }
}
