//! `/practices/{ods}/scheduled-notices`: status changes planned ahead (once, weekly, or on
//! a list of dates), listed with their next occurrence and past ones, edited with a
//! revision check, and cancelled, by a practice's key or an admin.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};

use super::caller::Caller;
use super::extract::{path_id, ApiJson};
use crate::app::AppState;
use crate::domain::{BroadcastId, ScheduledNoticeId};
use crate::http::openapi::shapes;
use crate::http::ApiError;
use crate::intake::scheduled::recurrence::{Event, Plan};
use crate::intake::scheduled::{plan_of, EditRequest, NoticeRequest, ScheduleError};
use crate::schedule::PracticeZone;
use crate::store::{NoticeState, Occurrence, OccurrenceState, Practice, ScheduledNotice, Store};

/// Notices listed at most.
const LIST_LIMIT: i64 = 200;

/// Past occurrences shown per notice, newest first.
const OCCURRENCES_SHOWN: i64 = 20;

/// An instant in UTC and in the practice's local time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct When {
    /// In UTC.
    pub utc: DateTime<Utc>,
    /// In the practice's timezone, with its offset (RFC 3339).
    pub local: String,
}

impl When {
    /// `at` as both.
    pub fn new(at: DateTime<Utc>, zone: PracticeZone) -> Self {
        Self {
            utc: at,
            local: at
                .with_timezone(&zone.tz())
                .to_rfc3339_opts(SecondsFormat::Secs, false),
        }
    }
}

/// A past occurrence as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OccurrenceView {
    /// `start` (the notice's status change) or `end` (`restored`).
    event: Event,
    due_at: When,
    state: OccurrenceState,
    broadcast_id: Option<BroadcastId>,
    error: Option<String>,
    claimed_at: DateTime<Utc>,
    done_at: Option<DateTime<Utc>>,
}

/// A notice as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NoticeView {
    /// Its id.
    pub id: ScheduledNoticeId,
    /// Active, finished or cancelled.
    pub state: NoticeState,
    /// Give it back when editing.
    pub revision: i64,
    /// The status change each occurrence posts, as `POST .../status` takes it.
    pub status: Value,
    /// A one-off's time.
    pub send_at: Option<DateTime<Utc>>,
    /// A weekly rule or a list of dates, as the API takes them.
    pub recurrence: Option<Value>,
    /// Local time the same day the service is restored (`HH:MM`), if it is.
    pub ends_at: Option<String>,
    /// The zone local times are read in.
    pub timezone: String,
    /// The next occurrence to post.
    pub next_occurrence: Option<When>,
    /// Occurrences claimed so far, newest first (at most 20).
    pub occurrences: Vec<OccurrenceView>,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_by: Option<String>,
    updated_at: Option<DateTime<Utc>>,
    cancelled_by: Option<String>,
    cancelled_at: Option<DateTime<Utc>>,
}

impl NoticeView {
    /// The notice with its occurrences, read from the store.
    pub async fn load(
        store: &dyn Store,
        practice: &Practice,
        notice: &ScheduledNotice,
    ) -> Result<Self, ApiError> {
        let zone = practice.timezone;
        let plan = plan_of(notice)?;
        let (send_at, recurrence) = match &plan {
            Plan::Once { send_at, .. } => (Some(*send_at), None),
            Plan::Weekly {
                days, at, until, ..
            } => {
                let days: Vec<String> = days.iter().map(|d| d.to_string().to_lowercase()).collect();
                let weekly =
                    json!({ "days": days, "at": at.format("%H:%M").to_string(), "until": until });
                (None, Some(json!({ "weekly": weekly })))
            }
            Plan::Dates { dates, at, .. } => (
                None,
                Some(json!({ "dates": dates, "at": at.format("%H:%M").to_string() })),
            ),
        };
        let ends_at = plan
            .end_time(zone)
            .map(|end| end.format("%H:%M").to_string());
        let occurrences = store
            .occurrences(notice.id, OCCURRENCES_SHOWN)
            .await?
            .into_iter()
            .map(|o: Occurrence| OccurrenceView {
                event: plan.event_at(zone, o.due_at),
                due_at: When::new(o.due_at, zone),
                state: o.state,
                broadcast_id: o.broadcast_id,
                error: o.error,
                claimed_at: o.claimed_at,
                done_at: o.done_at,
            })
            .collect();
        Ok(Self {
            id: notice.id,
            state: notice.state,
            revision: notice.revision,
            status: serde_json::from_str(&notice.request).unwrap_or(Value::Null),
            send_at,
            recurrence,
            ends_at,
            timezone: zone.to_string(),
            next_occurrence: notice.next_at.map(|at| When::new(at, zone)),
            occurrences,
            created_by: notice.created_by.clone(),
            created_at: notice.created_at,
            updated_by: notice.updated_by.clone(),
            updated_at: notice.updated_at,
            cancelled_by: notice.cancelled_by.clone(),
            cancelled_at: notice.cancelled_at,
        })
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::Invalid(errors) => ApiError::Validation(errors),
            ScheduleError::NotFound => ApiError::NotFound("no such scheduled notice".into()),
            ScheduleError::NotActive(_) => ApiError::Conflict("notice_not_active", e.to_string()),
            ScheduleError::Changed(_) => ApiError::Conflict("revision_mismatch", e.to_string()),
            ScheduleError::TooMany(_) => ApiError::Conflict("too_many_notices", e.to_string()),
            ScheduleError::Store(e) => e.into(),
            ScheduleError::Corrupt(..) => ApiError::Internal(e.to_string()),
        }
    }
}

/// `GET /practices/{ods}/scheduled-notices`: active notices first, then the newest.
#[utoipa::path(get, path = "/practices/{ods}/scheduled-notices", operation_id = "list_scheduled_notices", tag = "scheduling",
    params(shapes::OdsPath),
    responses((status = 200, description = "Active notices first, then the newest", body = shapes::NoticeList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let mut views = Vec::new();
    for notice in state.store.notices(practice.id, LIST_LIMIT).await? {
        views.push(NoticeView::load(state.store.as_ref(), &practice, &notice).await?);
    }
    Ok(Json(json!({ "scheduled_notices": views })))
}

/// `POST /practices/{ods}/scheduled-notices`: 201 with the notice and its first occurrence.
#[utoipa::path(post, path = "/practices/{ods}/scheduled-notices", operation_id = "create_scheduled_notice", tag = "scheduling",
    params(shapes::OdsPath),
    request_body(content = NoticeRequest, example = json!({
        "status": { "kind": "closed", "headline": "Closed for staff training" },
        "recurrence": { "weekly": { "days": ["wed"], "at": "13:00" } }, "ends_at": "17:00"
    })),
    responses((status = 201, description = "The notice with its next occurrence", body = shapes::NoticeAnswer)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(ods): Path<String>,
    ApiJson(request): ApiJson<NoticeRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let notice = state
        .schedules()
        .create(&practice, &request, &caller.actor)
        .await?;
    let view = NoticeView::load(state.store.as_ref(), &practice, &notice).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "scheduled_notice": view })),
    ))
}

/// `GET /practices/{ods}/scheduled-notices/{id}`.
#[utoipa::path(get, path = "/practices/{ods}/scheduled-notices/{id}", operation_id = "show_scheduled_notice", tag = "scheduling",
    params(shapes::OdsIdPath),
    responses((status = 200, description = "The notice", body = shapes::NoticeAnswer)))]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let id = path_id(&id, "scheduled notice", ScheduledNoticeId::new)?;
    let notice = state
        .store
        .notice(practice.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no scheduled notice {id}")))?;
    let view = NoticeView::load(state.store.as_ref(), &practice, &notice).await?;
    Ok(Json(json!({ "scheduled_notice": view })))
}

/// `PATCH /practices/{ods}/scheduled-notices/{id}`: a new status change and/or timing,
/// given the revision it was read at (409 `revision_mismatch` if it moved).
#[utoipa::path(patch, path = "/practices/{ods}/scheduled-notices/{id}", operation_id = "edit_scheduled_notice", tag = "scheduling",
    params(shapes::OdsIdPath),
    request_body(content = EditRequest, example = json!({ "revision": 1, "send_at": "2026-12-24T12:00:00Z" })),
    responses((status = 200, description = "The notice as changed", body = shapes::NoticeAnswer),
        (status = 409, description = "`revision_mismatch` or `notice_not_active`", body = shapes::ErrorBody)))]
pub async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, id)): Path<(String, String)>,
    ApiJson(request): ApiJson<EditRequest>,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let id = path_id(&id, "scheduled notice", ScheduledNoticeId::new)?;
    let notice = state
        .schedules()
        .edit(&practice, id, &request, &caller.actor)
        .await?;
    let view = NoticeView::load(state.store.as_ref(), &practice, &notice).await?;
    Ok(Json(json!({ "scheduled_notice": view })))
}

/// `POST /practices/{ods}/scheduled-notices/{id}/cancel`: no further occurrence is posted.
/// Cancelling again answers the same; a finished notice is 409 `notice_not_active`.
#[utoipa::path(post, path = "/practices/{ods}/scheduled-notices/{id}/cancel", operation_id = "cancel_scheduled_notice", tag = "scheduling",
    params(shapes::OdsIdPath),
    responses((status = 200, description = "The notice, cancelled", body = shapes::NoticeAnswer),
        (status = 409, description = "`notice_not_active`: it is finished", body = shapes::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path((ods, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let practice = caller.practice(state.store.as_ref(), &ods).await?;
    let id = path_id(&id, "scheduled notice", ScheduledNoticeId::new)?;
    let notice = state
        .schedules()
        .cancel(&practice, id, &caller.actor)
        .await?;
    let view = NoticeView::load(state.store.as_ref(), &practice, &notice).await?;
    Ok(Json(json!({ "scheduled_notice": view })))
}
