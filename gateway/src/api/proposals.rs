//! `/practices/{ods}/proposals`: status changes proposed by staff texts and status sources,
//! listed pending first, approved or dismissed by a practice's key or an admin; and
//! `/practices/{ods}/approval`: the practice's approval rules (PIN, two-person threshold,
//! sources allowed to post automatically) and the systems it is tagged with.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::caller::Caller;
use super::extract::{path_id, ApiJson};
use crate::app::AppState;
use crate::domain::{BroadcastId, ProposalId};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::intake::approval::rules::{self, settings_view, ApprovalRules};
use crate::intake::approval::{ApprovalError, Approvals, Decision, Person};
use crate::store::{Proposal, ProposalOrigin, ProposalState};

/// Proposals listed at most.
const LIST_LIMIT: u32 = 200;

/// A proposal as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
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
#[utoipa::path(get, path = "/practices/{ods}/proposals", operation_id = "list_proposals", tag = "approvals",
    params(shapes::OdsPath),
    responses((status = 200, description = "Waiting proposals first, then the newest (at most 200)", body = shapes::ProposalList)))]
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
#[utoipa::path(get, path = "/practices/{ods}/proposals/{id}", operation_id = "show_proposal", tag = "approvals",
    params(shapes::OdsIdPath),
    responses((status = 200, description = "The proposal and, while it waits, what it would send", body = shapes::ProposalDetail)))]
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
#[utoipa::path(post, path = "/practices/{ods}/proposals/{id}/approve", operation_id = "approve_proposal", tag = "approvals",
    params(shapes::OdsIdPath),
    responses((status = 200, description = "Approved and posted", body = shapes::ProposalDecision,
            example = json!({ "state": "approved", "broadcast_id": 12 })),
        (status = 202, description = "Waiting for a second approver", body = shapes::ProposalDecision,
            example = json!({ "state": "proposed", "waiting_for": "a second approver" })),
        (status = 409, description = "`proposal_decided` or `second_approver_needed`", body = shapes::ErrorBody)))]
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
#[utoipa::path(post, path = "/practices/{ods}/proposals/{id}/dismiss", operation_id = "dismiss_proposal", tag = "approvals",
    params(shapes::OdsIdPath),
    responses((status = 200, description = "Dismissed", body = shapes::ProposalDecision,
            example = json!({ "state": "dismissed" })),
        (status = 409, description = "`proposal_decided`", body = shapes::ErrorBody)))]
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

/// `GET /practices/{ods}/approval`: the practice's approval rules and tags.
#[utoipa::path(get, path = "/practices/{ods}/approval", operation_id = "show_approval_rules", tag = "approvals",
    params(shapes::OdsPath),
    responses((status = 200, description = "The practice's approval rules and tags", body = shapes::ApprovalSettingsView)))]
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
#[utoipa::path(put, path = "/practices/{ods}/approval", operation_id = "save_approval_rules", tag = "approvals",
    params(shapes::OdsPath),
    request_body(content = ApprovalRules, example = json!({
        "staff_pin": "4821", "second_approval_above": 5000, "auto_post_sources": [], "tags": ["emis-web"]
    })),
    responses((status = 200, description = "The rules as saved", body = shapes::ApprovalSettingsView)))]
pub async fn save_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiJson(body): ApiJson<ApprovalRules>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let current = state.store.approval_settings(practice.id).await?;
    let settings = body
        .parse(&current, &rules::source_names(&state.config))
        .map_err(ApiError::Validation)?;
    rules::save(
        state.store.as_ref(),
        &practice,
        &settings,
        &current,
        &caller.actor,
    )
    .await?;
    Ok(Json(settings_view(&settings)))
}
