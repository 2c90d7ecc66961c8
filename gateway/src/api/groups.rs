//! `/status-groups`: one status change to many practices (administrators only), and the
//! group's progress: totals, and each practice's broadcast, slowest first.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::caller::Caller;
use super::extract::{idempotency_key, path_id, ApiJson};
use crate::app::AppState;
use crate::domain::{MessageState, StatusGroupId};
use crate::http::ApiError;
use crate::intake::groups::{post_group, GroupError, GroupRequest};

impl From<GroupError> for ApiError {
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::Invalid(errors) => ApiError::Validation(errors),
            GroupError::KeyReused => ApiError::Conflict("idempotency_key_reused", e.to_string()),
            GroupError::Store(e) => e.into(),
        }
    }
}

/// `POST /status-groups`: records the group and each practice's status change and
/// broadcast, plans each practice's first messages, and answers 201 with the group's
/// progress while the rest of each list is planned (200 and `Idempotent-Replayed: true`
/// for a replayed `Idempotency-Key`).
pub async fn post(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(request): ApiJson<GroupRequest>,
) -> Result<Response, ApiError> {
    caller.require_admin()?;
    let key = idempotency_key(&headers, &caller)?;
    let posted = post_group(&state.status_changes(), &request, &caller.actor, key).await?;
    let view = progress(&state, posted.id).await?;
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

/// `GET /status-groups/{id}`: the group's progress (administrators only).
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let id = path_id(&id, "status group", StatusGroupId::new)?;
    Ok(Json(progress(&state, id).await?))
}

/// The group with its totals by state and each practice's part, those with the most
/// messages still to send first.
async fn progress(state: &AppState, id: StatusGroupId) -> Result<serde_json::Value, ApiError> {
    let store = &state.store;
    let group = store
        .status_group(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no status group {id}")))?;
    let mut totals: BTreeMap<&'static str, i64> = BTreeMap::new();
    let mut parts = Vec::new();
    for member in store.group_members(id).await? {
        let Some(practice) = store.practice_by_id(member.practice_id).await? else {
            continue;
        };
        let mut by_state: BTreeMap<&'static str, i64> = BTreeMap::new();
        // Whether the practice's whole list is planned (the rest of a long list is planned
        // after the group's answer).
        let mut fanout_complete = false;
        if let Some(broadcast) = member.broadcast_id {
            fanout_complete = store
                .broadcast(broadcast)
                .await?
                .is_some_and(|b| b.fanout_done_at.is_some());
            for (_, state, n) in store.broadcast_counts(broadcast).await? {
                *by_state.entry(state.as_str()).or_default() += n;
                *totals.entry(state.as_str()).or_default() += n;
            }
        }
        let unsent: i64 = [MessageState::Queued, MessageState::Sending]
            .iter()
            .map(|s| by_state.get(s.as_str()).copied().unwrap_or(0))
            .sum();
        parts.push((
            unsent,
            json!({
                "practice": practice.ods_code.as_str(),
                "name": practice.name,
                "broadcast_id": member.broadcast_id,
                "error": member.error,
                "fanout_complete": fanout_complete,
                "unsent": unsent,
                "by_state": by_state,
            }),
        ));
    }
    // Slowest first: the most still to send, then those that failed to post at all.
    parts.sort_by(|(a, x), (b, y)| {
        b.cmp(a)
            .then_with(|| y["error"].is_string().cmp(&x["error"].is_string()))
            .then_with(|| x["practice"].as_str().cmp(&y["practice"].as_str()))
    });
    let status_change: serde_json::Value = serde_json::from_str(&group.request).unwrap_or_default();
    let selector: serde_json::Value = serde_json::from_str(&group.selector).unwrap_or_default();
    let total: i64 = totals.values().sum();
    Ok(json!({
        "id": group.id,
        "status_change": status_change,
        "selector": selector,
        "created_by": group.created_by,
        "created_at": group.created_at,
        "practices": parts.len(),
        "total": total,
        "by_state": totals,
        "parts": parts.into_iter().map(|(_, part)| part).collect::<Vec<_>>(),
    }))
}
