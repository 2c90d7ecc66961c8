//! `POST /practices/{ods}/status`: a status change, which starts a broadcast.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::broadcasts::BroadcastView;
use super::caller::Caller;
use super::extract::{idempotency_key, ApiJson};
use crate::app::AppState;
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::intake::status::{post_status_change, StatusChangeRequest};

/// Records the change, fans it out and answers 201 with the broadcast and its planned
/// counts. A retry with the same `Idempotency-Key` gets the same broadcast and starts nothing.
#[utoipa::path(post, path = "/practices/{ods}/status", operation_id = "post_status_change", tag = "broadcasts",
    params(shapes::OdsPath, shapes::IdempotencyHeader),
    request_body(content = StatusChangeRequest, example = json!({
        "kind": "closed", "headline": "The surgery is closed this afternoon",
        "details": "Call 111 for urgent help.", "ends_at": "2026-12-04T18:00:00Z"
    })),
    responses((status = 201, description = "The broadcast and its messages planned so far (`Idempotent-Replayed: true` on a replay)", body = BroadcastView),
        (status = 409, description = "`idempotency_key_reused`: the key came with another body", body = shapes::ErrorBody)))]
pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<StatusChangeRequest>,
) -> Result<Response, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let idempotency_key = idempotency_key(&headers, &caller)?;
    let posted = post_status_change(
        &state.status_changes(),
        &practice,
        &request,
        &caller.actor,
        idempotency_key,
    )
    .await?;
    let view = BroadcastView::load(&state, posted.broadcast_id).await?;
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if posted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
