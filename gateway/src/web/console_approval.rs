//! The console's approvals page for one practice: proposed status changes waiting for
//! approval first (each with what patients would get and how many), then recent decisions,
//! the staff numbers that may text commands, and the practice's approval rules and tags.
//! Every form carries the session's CSRF token; practice users see only their practice.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::json;

use super::console::{denied, internal, Signed};
use super::pages::{error_page, page};
use crate::app::AppState;
use crate::domain::{Invalid, ProposalId, StaffNumberId};
use crate::intake::approval::rules::{self, ApprovalRules};
use crate::intake::approval::{ApprovalError, Approvals, Person};
use crate::intake::staff::numbers::{self, RegisterError, RegisterStaff};
use crate::render::uk_date_time;
use crate::store::{Practice, ProposalState};

/// Pending proposals shown with a preview (each counts the practice's patients).
const PREVIEWED: usize = 10;
/// Proposals listed in all.
const LISTED: u32 = 50;

/// The approvals page's address for the practice.
fn page_of(practice: &Practice) -> String {
    format!("/console/practices/{}/approvals", practice.ods_code)
}

/// `GET /console/practices/{ods}/approvals`.
pub(crate) async fn approvals(
    State(state): State<AppState>,
    signed: Signed,
    Path(ods): Path<String>,
) -> Response {
    let practice = match signed.practice(state.store.as_ref(), &ods).await {
        Ok(p) => p,
        Err(refusal) => return denied(refusal),
    };
    match approvals_page(&state, &signed, &practice).await {
        Ok(response) => response,
        Err(e) => internal(e),
    }
}

async fn approvals_page(
    state: &AppState,
    signed: &Signed,
    practice: &Practice,
) -> Result<Response, ApprovalError> {
    let store = &state.store;
    let approvals = state.approvals();
    let zone = practice.timezone;
    let mut pending = Vec::new();
    let mut decided = Vec::new();
    for proposal in store.proposals(practice.id, LISTED).await? {
        let request = Approvals::request_of(&proposal)?;
        let mut row = json!({
            "id": proposal.id,
            "state": proposal.state.as_str(),
            "kind": proposal.kind,
            "headline": request.headline,
            "link": proposal.link,
            "proposed_by": proposal.proposed_by,
            "first_approved_by": proposal.first_approved_by,
            "decided_by": proposal.decided_by,
            "at": uk_date_time(proposal.created_at, zone),
            "expires": uk_date_time(proposal.expires_at, zone),
            "broadcast_id": proposal.broadcast_id,
        });
        if proposal.state == ProposalState::Proposed {
            if pending.len() < PREVIEWED {
                let preview = approvals.preview(practice, &request).await?;
                row["sms"] = json!(preview.sms_text);
                row["counts"] = json!(preview.counts());
                row["total"] = json!(preview.total());
            }
            pending.push(row);
        } else {
            decided.push(row);
        }
    }
    let staff: Vec<_> = store
        .staff_numbers(practice.id)
        .await?
        .iter()
        .map(|s| json!({ "id": s.id, "name": s.name, "phone": s.phone, "role": s.role.as_str() }))
        .collect();
    let settings = store.approval_settings(practice.id).await?;
    let mut c = signed.context();
    c.insert(
        "practice",
        &json!({ "ods": practice.ods_code.as_str(), "name": practice.name }),
    );
    c.insert("pending", &pending);
    c.insert("decided", &decided);
    c.insert("staff", &staff);
    c.insert("rules", &rules::settings_view(&settings));
    c.insert("sources", &rules::source_names(&state.config));
    Ok(page(StatusCode::OK, "console/approvals.html", &c))
}

/// The practice a form is for, once the form's CSRF token is checked; `Err` is the page
/// refusing it (403 without the token, 404 for a practice this user may not see).
async fn form_practice(
    state: &AppState,
    signed: &Signed,
    ods: &str,
    csrf: &str,
) -> Result<Practice, Response> {
    if let Some(refused) = signed.refuse_without_csrf(csrf) {
        return Err(refused);
    }
    signed
        .practice(state.store.as_ref(), ods)
        .await
        .map_err(denied)
}

/// The page naming every wrong field.
fn invalid(errors: &[Invalid]) -> Response {
    let reasons: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    error_page(StatusCode::UNPROCESSABLE_ENTITY, &reasons.join("; "))
}

/// A form with only the CSRF token.
#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/practices/{ods}/proposals/{id}/approve`.
pub(crate) async fn approve(
    State(state): State<AppState>,
    signed: Signed,
    Path((ods, id)): Path<(String, i64)>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    decide(state, signed, &ods, ProposalId::new(id), &form.csrf, true).await
}

/// `POST /console/practices/{ods}/proposals/{id}/dismiss`.
pub(crate) async fn dismiss(
    State(state): State<AppState>,
    signed: Signed,
    Path((ods, id)): Path<(String, i64)>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    decide(state, signed, &ods, ProposalId::new(id), &form.csrf, false).await
}

async fn decide(
    state: AppState,
    signed: Signed,
    ods: &str,
    id: ProposalId,
    csrf: &str,
    approve: bool,
) -> Response {
    let practice = match form_practice(&state, &signed, ods, csrf).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let approvals = state.approvals();
    let by = Person::actor(&signed.actor);
    let outcome = if approve {
        approvals.approve(&practice, id, &by).await.map(|_| ())
    } else {
        approvals.dismiss(&practice, id, &by).await.map(|_| ())
    };
    match outcome {
        Ok(()) => Redirect::to(&page_of(&practice)).into_response(),
        Err(ApprovalError::NotFound) => {
            error_page(StatusCode::NOT_FOUND, "There is no such proposal.")
        }
        Err(
            e @ (ApprovalError::NotPending(_)
            | ApprovalError::Expired
            | ApprovalError::Changed
            | ApprovalError::SameApprover(_)),
        ) => error_page(StatusCode::CONFLICT, &format!("Not done: {e}.")),
        Err(e) => internal(e),
    }
}

/// The form that registers a staff number.
#[derive(Deserialize)]
pub(crate) struct StaffForm {
    #[serde(default)]
    csrf: String,
    name: String,
    phone: String,
    role: String,
}

/// `POST /console/practices/{ods}/staff`.
pub(crate) async fn add_staff(
    State(state): State<AppState>,
    signed: Signed,
    Path(ods): Path<String>,
    Form(form): Form<StaffForm>,
) -> Response {
    let practice = match form_practice(&state, &signed, &ods, &form.csrf).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let request = RegisterStaff {
        name: form.name,
        phone: form.phone,
        role: form.role,
    };
    match numbers::register(state.store.as_ref(), &practice, request, &signed.actor).await {
        Ok(_) => Redirect::to(&page_of(&practice)).into_response(),
        Err(RegisterError::Invalid(errors)) => invalid(&errors),
        Err(e @ RegisterError::Exists(..)) => error_page(StatusCode::CONFLICT, &e.to_string()),
        Err(RegisterError::Store(e)) => internal(e),
    }
}

/// `POST /console/practices/{ods}/staff/{id}/remove`.
pub(crate) async fn remove_staff(
    State(state): State<AppState>,
    signed: Signed,
    Path((ods, id)): Path<(String, i64)>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let practice = match form_practice(&state, &signed, &ods, &form.csrf).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    match numbers::remove(
        state.store.as_ref(),
        &practice,
        StaffNumberId::new(id),
        &signed.actor,
    )
    .await
    {
        Ok(Some(_)) => Redirect::to(&page_of(&practice)).into_response(),
        Ok(None) => error_page(StatusCode::NOT_FOUND, "There is no such staff number."),
        Err(e) => internal(e),
    }
}

/// The approval rules form: blank PIN keeps it unless "remove the PIN" is ticked; tags and
/// sources are comma-separated.
#[derive(Deserialize)]
pub(crate) struct RulesForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    staff_pin: String,
    #[serde(default)]
    remove_pin: Option<String>,
    #[serde(default)]
    second_approval_above: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    auto_post_sources: String,
}

/// Comma- or space-separated words.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `POST /console/practices/{ods}/approval`.
pub(crate) async fn save_rules(
    State(state): State<AppState>,
    signed: Signed,
    Path(ods): Path<String>,
    Form(form): Form<RulesForm>,
) -> Response {
    let practice = match form_practice(&state, &signed, &ods, &form.csrf).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let threshold = form.second_approval_above.trim();
    let second_approval_above = match threshold {
        "" => None,
        n => match n.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "The number of recipients above which a second approval is needed must be a whole number, or blank.",
                )
            }
        },
    };
    let staff_pin = match (form.remove_pin.is_some(), form.staff_pin.trim()) {
        (true, _) => Some(None),
        (false, "") => None,
        (false, pin) => Some(Some(pin.to_string())),
    };
    let request = ApprovalRules {
        staff_pin,
        second_approval_above,
        auto_post_sources: words(&form.auto_post_sources),
        tags: words(&form.tags),
    };
    let current = match state.store.approval_settings(practice.id).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let settings = match request.parse(&current, &rules::source_names(&state.config)) {
        Ok(s) => s,
        Err(errors) => return invalid(&errors),
    };
    match rules::save(
        state.store.as_ref(),
        &practice,
        &settings,
        &current,
        &signed.actor,
    )
    .await
    {
        Ok(()) => Redirect::to(&page_of(&practice)).into_response(),
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_commas_and_spaces() {
        assert_eq!(
            words(" emis-web, spine  systmone,,"),
            ["emis-web", "spine", "systmone"]
        );
        assert!(words(" , ").is_empty());
    }
}
