//! `/federations` (administrators only): named sets of practices (a GP federation, a
//! primary care network, an integrated care board), their members, and API keys scoped to
//! one. A federation's key acts on its member practices as an administrator would, and on
//! nothing else (see `auth::principal`).

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::caller::Caller;
use super::extract::{path_id, ApiJson};
use crate::app::AppState;
use crate::domain::{FederationId, Invalid, OdsCode, PracticeId};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::store::{AuditEntry, Federation, KeyScope, MAX_FEDERATION_PRACTICES};

/// Longest federation name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Longest key label, in characters.
const MAX_LABEL_CHARS: usize = 200;

/// `POST /federations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFederation {
    /// Its name, unique.
    pub name: String,
    /// Its member practices, by ODS code.
    #[serde(default)]
    pub practices: Vec<String>,
}

/// `PUT /federations/{id}/practices`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceMembers {
    /// The member practices from now on, by ODS code.
    pub practices: Vec<String>,
}

/// `POST /federations/{id}/keys`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFederationKey {
    /// A note saying whose key it is.
    #[serde(default)]
    pub label: Option<String>,
}

/// A federation as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FederationView {
    /// Its id.
    pub id: FederationId,
    /// Its name.
    pub name: String,
    /// Its member practices' ODS codes, sorted.
    pub practices: Vec<String>,
}

/// The practices `codes` name, each once, or every code that names none.
async fn members(state: &AppState, codes: &[String]) -> Result<Vec<PracticeId>, ApiError> {
    if codes.len() > MAX_FEDERATION_PRACTICES {
        return Err(ApiError::Validation(vec![Invalid::new(
            "practices",
            format!("at most {MAX_FEDERATION_PRACTICES} practices in a federation"),
        )]));
    }
    let mut found = BTreeSet::new();
    let mut errors = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let practice = match OdsCode::parse(code) {
            Ok(ods) => state.store.practice_by_ods(&ods).await?,
            Err(_) => None,
        };
        match practice {
            Some(p) => {
                found.insert(p.id);
            }
            None => errors.push(Invalid::new(
                format!("practices[{i}]"),
                format!("no practice {code}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(found.into_iter().collect())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// The federation `id` with its members, or 404.
async fn view(state: &AppState, federation: Federation) -> Result<FederationView, ApiError> {
    let mut practices = Vec::new();
    for id in state.store.federation_members(federation.id).await? {
        if let Some(p) = state.store.practice_by_id(id).await? {
            practices.push(p.ods_code.as_str().to_string());
        }
    }
    practices.sort();
    Ok(FederationView {
        id: federation.id,
        name: federation.name,
        practices,
    })
}

/// The federation named by the path, or 404.
async fn federation(state: &AppState, raw_id: &str) -> Result<Federation, ApiError> {
    let id = path_id(raw_id, "federation", FederationId::new)?;
    state
        .store
        .federation(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no federation {id}")))
}

async fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    id: FederationId,
    details: String,
) -> Result<(), ApiError> {
    let entry = AuditEntry {
        actor: caller.actor.clone(),
        action: action.into(),
        practice_id: None,
        subject: Some(format!("federation:{id}")),
        details: Some(details),
    };
    Ok(state.store.audit(&entry, Utc::now()).await?)
}

/// `POST /federations` (admin): creates a federation with its member practices; 409 if
/// the name is taken.
#[utoipa::path(post, path = "/federations", operation_id = "create_federation", tag = "access",
    request_body(content = CreateFederation, example = json!({ "name": "North Riverside PCN", "practices": ["A81001", "A81002"] })),
    responses((status = 201, description = "The federation", body = FederationView),
        (status = 409, description = "`already_exists`: the name is taken", body = shapes::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateFederation>,
) -> Result<(StatusCode, Json<FederationView>), ApiError> {
    caller.require_admin()?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::Validation(vec![Invalid::new(
            "name",
            format!("give a name of 1 to {MAX_NAME_CHARS} characters"),
        )]));
    }
    let members = members(&state, &body.practices).await?;
    let created = state
        .store
        .create_federation(name, &members, Utc::now())
        .await?;
    let details = serde_json::json!({ "name": name, "practices": members.len() });
    audit(
        &state,
        &caller,
        "federation.created",
        created.id,
        details.to_string(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view(&state, created).await?)))
}

/// `GET /federations` (admin): every federation with its members.
#[utoipa::path(get, path = "/federations", operation_id = "list_federations", tag = "access",
    responses((status = 200, description = "Every federation with its members", body = shapes::FederationList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let mut federations = Vec::new();
    for federation in state.store.federations().await? {
        federations.push(view(&state, federation).await?);
    }
    Ok(Json(serde_json::json!({ "federations": federations })))
}

/// `PUT /federations/{id}/practices` (admin): replaces its member practices. Its keys and
/// users see the new set from their next request.
#[utoipa::path(put, path = "/federations/{id}/practices", operation_id = "replace_federation_members", tag = "access",
    params(shapes::IdPath),
    request_body(content = ReplaceMembers, example = json!({ "practices": ["A81001"] })),
    responses((status = 200, description = "The federation with its new members", body = FederationView)))]
pub async fn replace_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplaceMembers>,
) -> Result<Json<FederationView>, ApiError> {
    caller.require_admin()?;
    let found = federation(&state, &id).await?;
    let members = members(&state, &body.practices).await?;
    if !state
        .store
        .replace_federation_members(found.id, &members)
        .await?
    {
        return Err(ApiError::NotFound(format!("no federation {}", found.id)));
    }
    let details = serde_json::json!({ "practices": members.len() });
    audit(
        &state,
        &caller,
        "federation.members_replaced",
        found.id,
        details.to_string(),
    )
    .await?;
    Ok(Json(view(&state, found).await?))
}

/// `POST /federations/{id}/keys` (admin): issues an API key scoped to the federation and
/// answers 201 with it, the only time it is shown.
#[utoipa::path(post, path = "/federations/{id}/keys", operation_id = "issue_federation_key", tag = "access",
    params(shapes::IdPath),
    request_body(content = NewFederationKey, example = json!({ "label": "PCN duty manager" })),
    responses((status = 201, description = "The key, shown only this once", body = shapes::FederationKey)))]
pub async fn issue_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewFederationKey>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require_admin()?;
    let found = federation(&state, &id).await?;
    let label = body
        .label
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map_or_else(|| format!("federation {}", found.name), str::to_string);
    if label.chars().count() > MAX_LABEL_CHARS {
        return Err(ApiError::Validation(vec![Invalid::new(
            "label",
            format!("longer than {MAX_LABEL_CHARS} characters"),
        )]));
    }
    let key = crate::auth::issue_key(
        state.store.as_ref(),
        KeyScope::Federation(found.id),
        &label,
        &caller.actor,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "key": key, "federation": found.id, "label": label })),
    ))
}
