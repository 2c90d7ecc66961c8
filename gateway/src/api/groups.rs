//! `/status-groups`: one status change to many practices (administrators, and federations
//! to their member practices), the group's progress (totals and each practice's part,
//! slowest first, cut to the parts the caller may see), and stopping it as a whole.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::caller::Caller;
use super::extract::{idempotency_key, path_id, ApiJson};
use crate::app::AppState;
use crate::domain::StatusGroupId;
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::intake::cancel::CancelRequest;
use crate::intake::group_progress::{group_progress, GroupProgress};
use crate::intake::group_stop::stop_group;
use crate::intake::groups::{post_group, GroupError, GroupRequest};

impl From<GroupError> for ApiError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::NotAllowed => ApiError::Forbidden(e.to_string()),
            GroupError::NoPractice(code) => ApiError::NotFound(format!("no practice {code}")),
            GroupError::Invalid(errors) => ApiError::Validation(errors),
            GroupError::KeyReused => ApiError::Conflict("idempotency_key_reused", e.to_string()),
            GroupError::Store(e) => e.into(),
        }
    }
}

/// `POST /status-groups`: records the group and each practice's status change and
/// broadcast, plans each practice's first messages, and answers 201 with the group's
/// progress while the rest of each list is planned (200 and `Idempotent-Replayed: true`
/// for a replayed `Idempotency-Key`). A federation's key reaches only its members: a list
/// naming any other practice is 404 for the whole group, and nothing is sent.
#[utoipa::path(post, path = "/status-groups", operation_id = "post_status_group", tag = "broadcasts",
    params(shapes::IdempotencyHeader),
    request_body(content = GroupRequest, example = json!({
        "status_change": { "kind": "systems_down", "headline": "Our clinical system is down" },
        "tag": "emis-web"
    })),
    responses((status = 201, description = "The group's progress", body = GroupProgress),
        (status = 200, description = "A replayed `Idempotency-Key`: the group's progress", body = GroupProgress),
        (status = 409, description = "`idempotency_key_reused`", body = shapes::ErrorBody)))]
pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(request): ApiJson<GroupRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers, &caller)?;
    let posted = post_group(&state.status_changes(), &request, &caller, key).await?;
    let view = progress(&state, &caller, posted.id).await?;
    let status = if posted.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut response = (status, Json(view)).into_response();
    if posted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `GET /status-groups/{id}`: the group's progress; an administrator sees every part, a
/// federation its members' and a practice its own (404 if it has none).
#[utoipa::path(get, path = "/status-groups/{id}", operation_id = "show_status_group", tag = "broadcasts",
    params(shapes::IdPath),
    responses((status = 200, description = "The group's progress, cut to the parts the caller may see", body = GroupProgress)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<GroupProgress>, ApiError> {
    let id = path_id(&id, "status group", StatusGroupId::new)?;
    Ok(Json(progress(&state, &caller, id).await?))
}

/// `POST /status-groups/{id}/cancel` with `{ "reason": "..." }`: stops every part of the
/// group the caller may see (each member broadcast cancelled as `POST /broadcasts/{id}/
/// cancel` does, and members not yet posted never are), and answers 200 with the group's
/// progress. Calling it again answers the same: the first stop (who, when, why) stands.
#[utoipa::path(post, path = "/status-groups/{id}/cancel", operation_id = "cancel_status_group", tag = "broadcasts",
    params(shapes::IdPath),
    request_body(content = CancelRequest, example = json!({ "reason": "Posted to the wrong practices" })),
    responses((status = 200, description = "The group's progress, stopped", body = GroupProgress)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CancelRequest>,
) -> Result<Json<GroupProgress>, ApiError> {
    let id = path_id(&id, "status group", StatusGroupId::new)?;
    let reason = request.parse().map_err(ApiError::Validation)?;
    if stop_group(&state.status_changes(), id, &caller, &reason).await? == 0 {
        return Err(ApiError::NotFound(format!("no status group {id}")));
    }
    Ok(Json(progress(&state, &caller, id).await?))
}

/// The group's progress as the caller may see it, or 404.
pub(crate) async fn progress(
    state: &AppState,
    caller: &Caller,
    id: StatusGroupId,
) -> Result<GroupProgress, ApiError> {
    group_progress(state.store.as_ref(), id, caller)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no status group {id}")))
}
