//! `/practices/{ods}/staff`: the staff mobile numbers that may send status commands by text
//! message, each with a name and a role (`post`, or `approve` as well).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::caller::Caller;
use super::extract::{path_id, ApiJson};
use crate::app::AppState;
use crate::domain::StaffNumberId;
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::intake::staff::numbers::{self, RegisterError, RegisterStaff};
use crate::store::{StaffNumber, StaffRole};

/// A staff number as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StaffView {
    id: StaffNumberId,
    name: String,
    phone: String,
    role: StaffRole,
    created_at: DateTime<Utc>,
    created_by: String,
}

impl From<&StaffNumber> for StaffView {
    fn from(s: &StaffNumber) -> Self {
        Self {
            id: s.id,
            name: s.name.clone(),
            phone: s.phone.clone(),
            role: s.role,
            created_at: s.created_at,
            created_by: s.created_by.clone(),
        }
    }
}

/// `POST /practices/{ods}/staff`: registers a staff number; 201 with it, 409 if the
/// practice already has this number.
#[utoipa::path(post, path = "/practices/{ods}/staff", operation_id = "register_staff_number", tag = "approvals",
    params(shapes::OdsPath),
    request_body(content = RegisterStaff, example = json!({ "name": "Dr Ann Jones", "phone": "07700 900456", "role": "approve" })),
    responses((status = 201, description = "The staff number", body = StaffView),
        (status = 409, description = "`staff_number_exists`", body = shapes::ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiJson(body): ApiJson<RegisterStaff>,
) -> Result<(StatusCode, Json<StaffView>), ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let staff = numbers::register(state.store.as_ref(), &practice, body, &caller.actor)
        .await
        .map_err(|e| match e {
            RegisterError::Invalid(errors) => ApiError::Validation(errors),
            RegisterError::Exists(..) => ApiError::Conflict("staff_number_exists", e.to_string()),
            RegisterError::Store(e) => e.into(),
        })?;
    Ok((StatusCode::CREATED, Json(StaffView::from(&staff))))
}

/// `GET /practices/{ods}/staff`: the practice's staff numbers, in the order registered.
#[utoipa::path(get, path = "/practices/{ods}/staff", operation_id = "list_staff_numbers", tag = "approvals",
    params(shapes::OdsPath),
    responses((status = 200, description = "The practice's staff numbers, in the order registered", body = shapes::StaffList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let staff: Vec<StaffView> = state
        .store
        .staff_numbers(practice.id)
        .await?
        .iter()
        .map(StaffView::from)
        .collect();
    Ok(Json(json!({ "staff": staff })))
}

/// `DELETE /practices/{ods}/staff/{id}`: removes the number; 204, or 404 if the practice
/// has no staff number with that id.
#[utoipa::path(delete, path = "/practices/{ods}/staff/{id}", operation_id = "remove_staff_number", tag = "approvals",
    params(shapes::OdsIdPath),
    responses((status = 204, description = "Removed")))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let not_found = || ApiError::NotFound(format!("no staff number {id} at {}", practice.ods_code));
    let staff_id = path_id(&id, "staff number", StaffNumberId::new).map_err(|_| not_found())?;
    numbers::remove(state.store.as_ref(), &practice, staff_id, &caller.actor)
        .await?
        .ok_or_else(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}
