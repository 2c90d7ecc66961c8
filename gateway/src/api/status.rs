//! `POST /practices/{ods}/status`: a status change, which starts a broadcast.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::Caller;
use super::broadcasts::BroadcastView;
use super::error::ApiError;
use super::extract::ApiJson;
use crate::app::AppState;
use crate::intake::status::{post_status_change, StatusChangeRequest};

/// Longest accepted Idempotency-Key.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Records the change, fans it out and answers 201 with the broadcast and its planned
/// counts. A retry with the same `Idempotency-Key` gets the same broadcast and starts nothing.
pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<StatusChangeRequest>,
) -> Result<Response, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .ok_or(ApiError::BadRequest(
                    "invalid_idempotency_key",
                    format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"),
                ))?;
            Some((caller.idempotency_scope(), key.to_string()))
        }
    };
    let posted =
        post_status_change(&state, &practice, &request, &caller.actor, idempotency_key).await?;
    let view = BroadcastView::load(&state, posted.broadcast_id).await?;
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    if posted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
