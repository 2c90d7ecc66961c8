//! `/broadcasts/{id}`: progress by state and channel, the messages a page at a time, and
//! stopping a broadcast (`/broadcasts/{id}/cancel`); `/practices/{ods}/broadcasts`: a
//! practice's status changes with their broadcasts, newest first.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::caller::Caller;
use super::extract::{next_cursor, page_limit, path_id, ApiJson, ApiQuery};
use crate::app::AppState;
use crate::cost::{BroadcastCost, Prices};
use crate::domain::{
    BroadcastId, Channel, Invalid, MessageId, MessageState, PracticeId, Priority, StatusAudience,
    StatusChangeId, StatusKind,
};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::intake::cancel::{cancel_broadcast, CancelRequest};
use crate::store::{Broadcast, BroadcastCancel, BroadcastPage, BroadcastState, Held, MessageView};

/// A broadcast's progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BroadcastView {
    id: BroadcastId,
    practice: String,
    status_change: StatusChangeView,
    fanout_complete: bool,
    superseded_by_status_change: Option<StatusChangeId>,
    /// When the fan-out failed (its wording could not be rendered), if it did.
    failed_at: Option<DateTime<Utc>>,
    /// Why it failed.
    failure: Option<String>,
    /// Who stopped it, when and why, with what that did; `null` unless it was cancelled.
    cancelled: Option<CancelView>,
    skipped_no_contact: i64,
    total: i64,
    planned: BTreeMap<Channel, i64>,
    by_state: BTreeMap<&'static str, i64>,
    by_channel: BTreeMap<Channel, BTreeMap<&'static str, i64>>,
    /// What its planned messages will cost (at each channel's first provider's price) and
    /// what those sent so far did cost (at the price of the provider that took each).
    cost: BroadcastCost,
}

/// A cancel as the progress view shows it. The counts are read with the rest: `messages`
/// are those cancelled (by the cancel, or before it by a newer status change) and
/// `already_gone` those sent or delivered (before the cancel, or in flight as it came), so
/// with the failed, suppressed and any still sending they add up to `total`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CancelView {
    at: DateTime<Utc>,
    by: String,
    reason: String,
    messages_cancelled: i64,
    already_gone: i64,
}

impl CancelView {
    /// The cancel with the broadcast's counts by state.
    fn new(cancel: BroadcastCancel, by_state: &BTreeMap<&'static str, i64>) -> Self {
        let count = |state: MessageState| by_state.get(state.as_str()).copied().unwrap_or(0);
        Self {
            at: cancel.at,
            by: cancel.by,
            reason: cancel.reason,
            messages_cancelled: count(MessageState::Cancelled),
            already_gone: count(MessageState::Sent)
                + count(MessageState::Delivered)
                + count(MessageState::Read),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StatusChangeView {
    id: StatusChangeId,
    kind: StatusKind,
    headline: String,
    details: Option<String>,
    /// The Welsh headline and details, when the practice gave them.
    #[serde(skip_serializing_if = "Option::is_none")]
    headline_cy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details_cy: Option<String>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    created_by: String,
    created_at: DateTime<Utc>,
    audience: StatusAudience,
    affected_from: Option<DateTime<Utc>>,
    affected_until: Option<DateTime<Utc>>,
}

impl StatusChangeView {
    /// The status change behind a broadcast.
    fn of(b: &Broadcast) -> Self {
        Self {
            id: b.status_change_id,
            kind: b.kind,
            headline: b.headline.clone(),
            details: b.details.clone(),
            headline_cy: b.headline_cy.clone(),
            details_cy: b.details_cy.clone(),
            starts_at: b.starts_at,
            ends_at: b.ends_at,
            created_by: b.created_by.clone(),
            created_at: b.created_at,
            audience: b.reach.audience,
            affected_from: b.reach.affected_from,
            affected_until: b.reach.affected_until,
        }
    }
}

/// A broadcast in a practice's list: its status change and where it stands, without the
/// message counts (`GET /broadcasts/{id}` has those).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BroadcastSummary {
    id: BroadcastId,
    state: BroadcastState,
    status_change: StatusChangeView,
    created_at: DateTime<Utc>,
    /// When every message was planned, if it has been.
    fanout_done_at: Option<DateTime<Utc>>,
    skipped_no_contact: i64,
    superseded_by_status_change: Option<StatusChangeId>,
    failure: Option<String>,
    /// Who stopped it, when and why; `null` unless it was cancelled.
    cancelled: Option<BroadcastCancel>,
}

impl From<Broadcast> for BroadcastSummary {
    fn from(b: Broadcast) -> Self {
        Self {
            id: b.id,
            state: BroadcastState::of(&b),
            status_change: StatusChangeView::of(&b),
            created_at: b.created_at,
            fanout_done_at: b.fanout_done_at,
            skipped_no_contact: b.skipped_no_contact,
            superseded_by_status_change: b.superseded_by,
            failure: b.failure,
            cancelled: b.cancel,
        }
    }
}

/// Paging through a practice's broadcasts, newest first.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BroadcastListQuery {
    /// Only broadcasts older than this one: the previous page's `next_before`.
    #[serde(default)]
    before: Option<BroadcastId>,
    /// Only broadcasts in this state.
    #[serde(default)]
    state: Option<String>,
    /// At most this many (1 to 200; 50 if left out).
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /practices/{ods}/broadcasts?before=&state=&limit=`: the practice's status changes
/// with their broadcasts, newest first; pass the returned `next_before` as `before` for the
/// next page (`null` on the last).
#[utoipa::path(get, path = "/practices/{ods}/broadcasts", operation_id = "list_practice_broadcasts", tag = "broadcasts",
    params(shapes::OdsPath, BroadcastListQuery),
    responses((status = 200, description = "A page of the practice's broadcasts, newest first", body = shapes::BroadcastListAnswer)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiQuery(query): ApiQuery<BroadcastListQuery>,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let mut errors = Vec::new();
    let limit = page_limit(query.limit, 50, 200, &mut errors);
    let filter = query
        .state
        .as_deref()
        .map(str::parse::<BroadcastState>)
        .transpose()
        .map_err(|reason| errors.push(Invalid::new("state", reason)))
        .ok()
        .flatten();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = BroadcastPage {
        before: query.before,
        state: filter,
        limit,
    };
    let broadcasts = state.store.broadcasts_page(practice.id, &page).await?;
    let next_before = next_cursor(&broadcasts, limit, |b| b.id);
    let broadcasts: Vec<BroadcastSummary> = broadcasts.into_iter().map(Into::into).collect();
    Ok(Json(
        json!({ "broadcasts": broadcasts, "next_before": next_before }),
    ))
}

impl BroadcastView {
    /// Reads a broadcast and counts its messages.
    pub async fn load(state: &AppState, id: BroadcastId) -> Result<Self, ApiError> {
        let b = state
            .store
            .broadcast(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no broadcast {id}")))?;
        let practice = state
            .store
            .practice_by_id(b.practice_id)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("broadcast {id} has no practice")))?;
        let counts = state.store.broadcast_counts(id).await?;
        let cost = BroadcastCost::of_rows(
            &state.store.broadcast_cost_rows(id).await?,
            &Prices::from_config(&state.config.providers),
        );
        let mut by_state: BTreeMap<&'static str, i64> =
            MessageState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        let mut by_channel: BTreeMap<Channel, BTreeMap<&'static str, i64>> = BTreeMap::new();
        // The NHS App is listed where it can be used: with an NHS App provider configured.
        let mut planned: BTreeMap<Channel, i64> = Channel::ALL
            .iter()
            .filter(|c| **c != Channel::NhsApp || state.nhs_app())
            .map(|c| (*c, 0))
            .collect();
        let mut total = 0;
        for (channel, state, n) in counts {
            total += n;
            *by_state.entry(state.as_str()).or_default() += n;
            *planned.entry(channel).or_default() += n;
            *by_channel
                .entry(channel)
                .or_default()
                .entry(state.as_str())
                .or_default() += n;
        }
        Ok(Self {
            id: b.id,
            practice: practice.ods_code.to_string(),
            status_change: StatusChangeView::of(&b),
            fanout_complete: b.fanout_done_at.is_some(),
            superseded_by_status_change: b.superseded_by,
            failed_at: b.failed_at,
            failure: b.failure,
            cancelled: b.cancel.map(|c| CancelView::new(c, &by_state)),
            skipped_no_contact: b.skipped_no_contact,
            total,
            planned,
            by_state,
            by_channel,
            cost,
        })
    }
}

/// Checks the broadcast exists and is the caller's to see (else 404).
async fn visible_broadcast(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<BroadcastId, ApiError> {
    let id = path_id(raw_id, "broadcast", BroadcastId::new)?;
    match state.store.broadcast(id).await? {
        Some(b) if caller.can_see(b.practice_id) => Ok(id),
        _ => Err(ApiError::NotFound(format!("no broadcast {id}"))),
    }
}

/// `GET /broadcasts/{id}`.
#[utoipa::path(get, path = "/broadcasts/{id}", operation_id = "show_broadcast", tag = "broadcasts",
    params(shapes::IdPath),
    responses((status = 200, description = "Progress by state and channel", body = BroadcastView)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BroadcastView>, ApiError> {
    let id = visible_broadcast(&state, &caller, &id).await?;
    Ok(Json(BroadcastView::load(&state, id).await?))
}

/// `POST /broadcasts/{id}/cancel` with `{ "reason": "..." }`: stops the broadcast (see
/// `intake::cancel`) and answers 200 with its progress view, the cancel included. Calling
/// it again answers 200 with the same view: the first cancel (who, when, why) stands.
#[utoipa::path(post, path = "/broadcasts/{id}/cancel", operation_id = "cancel_broadcast", tag = "broadcasts",
    params(shapes::IdPath),
    request_body(content = CancelRequest, example = json!({ "reason": "Posted by mistake" })),
    responses((status = 200, description = "The progress view with the cancel", body = BroadcastView)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CancelRequest>,
) -> Result<Json<BroadcastView>, ApiError> {
    let id = visible_broadcast(&state, &caller, &id).await?;
    let reason = request.parse().map_err(ApiError::Validation)?;
    let broadcast = state
        .store
        .broadcast(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no broadcast {id}")))?;
    cancel_broadcast(&state.status_changes(), &broadcast, &caller.actor, &reason)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no broadcast {id}")))?;
    Ok(Json(BroadcastView::load(&state, id).await?))
}

/// Paging through a broadcast's messages.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessagePage {
    /// The `next_after` of the previous page.
    #[serde(default)]
    after: Option<MessageId>,
    /// Messages per page, 1 to 1000 (default 100).
    #[serde(default)]
    limit: Option<i64>,
    /// Only messages in this state (`queued`, `sent`, `failed`, ...).
    #[serde(default)]
    state: Option<String>,
}

/// `GET /broadcasts/{id}/messages?after=&limit=&state=`: messages in id order; pass the
/// returned `next_after` as `after` for the next page.
#[utoipa::path(get, path = "/broadcasts/{id}/messages", operation_id = "list_broadcast_messages", tag = "broadcasts",
    params(shapes::IdPath, MessagePage),
    responses((status = 200, description = "A page of messages in id order", body = shapes::MessagePageAnswer)))]
pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<MessagePage>,
) -> Result<Json<Value>, ApiError> {
    let id = visible_broadcast(&state, &caller, &id).await?;
    let mut errors = Vec::new();
    let limit = page_limit(page.limit, 100, 1000, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let filter = page
        .state
        .as_deref()
        .map(str::parse::<MessageState>)
        .transpose()
        .map_err(|e| ApiError::Validation(vec![e]))?;
    let mut messages = state
        .store
        .broadcast_messages(id, page.after.unwrap_or(MessageId::new(0)), limit, filter)
        .await?;
    if let Some(first) = messages.first() {
        mark_held(&state, first.practice_id, &mut messages).await?;
    }
    let next_after = next_cursor(&messages, limit, |m| m.id);
    Ok(Json(
        json!({ "messages": messages, "next_after": next_after }),
    ))
}

/// `GET /messages/{id}`: one message with every attempt.
#[utoipa::path(get, path = "/messages/{id}", operation_id = "show_message", tag = "broadcasts",
    params(shapes::IdPath),
    responses((status = 200, description = "The message with every attempt", body = shapes::MessageDetail)))]
pub async fn message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(&id, "message", MessageId::new)?;
    match state.store.message(id).await? {
        Some((mut message, attempts)) if caller.can_see(message.practice_id) => {
            mark_held(
                &state,
                message.practice_id,
                std::slice::from_mut(&mut message),
            )
            .await?;
            Ok(Json(json!({ "message": message, "attempts": attempts })))
        }
        _ => Err(ApiError::NotFound(format!("no message {id}"))),
    }
}

/// Says which of a practice's messages quiet hours hold, and until when: queued bulk SMS and
/// push, under the practice's own quiet hours or else the gateway's.
async fn mark_held(
    state: &AppState,
    practice_id: PracticeId,
    messages: &mut [MessageView],
) -> Result<(), ApiError> {
    let Some(practice) = state.store.practice_by_id(practice_id).await? else {
        return Ok(());
    };
    let Some(quiet) = practice.quiet_hours_or(state.config.quiet_hours()) else {
        return Ok(());
    };
    let now = Utc::now();
    let tz = practice.timezone.tz();
    let waits = |m: &MessageView| {
        m.state == MessageState::Queued.as_str()
            && m.priority == Priority::Bulk
            && (m.channel == Channel::Sms.as_str() || m.channel == Channel::Push.as_str())
    };
    for message in messages.iter_mut().filter(|m| waits(m)) {
        message.held = quiet
            .holds(now, message.next_attempt_at, tz)
            .map(|until| Held {
                reason: "quiet_hours",
                until,
            });
    }
    Ok(())
}
