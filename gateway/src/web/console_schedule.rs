//! The console's scheduled notices page for one practice: its notices planned ahead (active
//! first, each with its next occurrence in the practice's local time and what became of the
//! past ones), a change form filled in with the notice and a cancel button behind a
//! confirmation, and a simple form to plan one (once, weekly, or on dates). Every form carries the session's CSRF token; the work is
//! `intake::scheduled`'s, as for the API.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::NaiveDateTime;
use serde::Deserialize;
use serde_json::json;

use super::console::{denied, internal, Signed};
use super::pages::{error_page, page};
use crate::app::AppState;
use crate::domain::{Invalid, ScheduledNoticeId};
use crate::intake::scheduled::recurrence::{local_instant, Plan};
use crate::intake::scheduled::{
    plan_of, status_of, EditRequest, NoticeRequest, RecurrenceRequest, ScheduleError, WeeklyRequest,
};
use crate::intake::status::StatusChangeRequest;
use crate::render::uk_date_time;
use crate::schedule::PracticeZone;
use crate::store::{NoticeState, Practice, ScheduledNotice};

/// Notices listed.
const LISTED: i64 = 100;
/// Past occurrences shown per notice.
const OCCURRENCES_SHOWN: i64 = 5;

/// The page's address for the practice.
fn page_of(practice: &Practice) -> String {
    format!("/console/practices/{}/scheduled", practice.ods_code)
}

/// `GET /console/practices/{ods}/scheduled`.
pub(crate) async fn list(
    State(state): State<AppState>,
    signed: Signed,
    Path(ods): Path<String>,
) -> Response {
    let practice = match signed.practice(state.store.as_ref(), &ods).await {
        Ok(p) => p,
        Err(refusal) => return denied(refusal),
    };
    match list_page(&state, &signed, &practice).await {
        Ok(response) => response,
        Err(e) => internal(e),
    }
}

async fn list_page(
    state: &AppState,
    signed: &Signed,
    practice: &Practice,
) -> Result<Response, ScheduleError> {
    let zone = practice.timezone;
    let mut notices = Vec::new();
    for notice in state.store.notices(practice.id, LISTED).await? {
        let status = status_of(&notice)?;
        let plan = plan_of(&notice)?;
        let when = match plan.clone() {
            Plan::Once { send_at, .. } => format!("Once, {}", uk_date_time(send_at, zone)),
            Plan::Weekly {
                days, at, until, ..
            } => {
                let days: Vec<String> = days.iter().map(|d| format!("{d}")).collect();
                let until = until.map_or(String::new(), |u| {
                    format!(" until {}", u.format("%-d %B %Y"))
                });
                format!("Every {} at {}{until}", days.join(", "), at.format("%H:%M"))
            }
            Plan::Dates { dates, at, .. } => {
                let dates: Vec<String> = dates
                    .iter()
                    .map(|d| d.format("%-d %b %Y").to_string())
                    .collect();
                format!("On {} at {}", dates.join(", "), at.format("%H:%M"))
            }
        };
        let past: Vec<_> = state
            .store
            .occurrences(notice.id, OCCURRENCES_SHOWN)
            .await?
            .iter()
            .map(|o| {
                json!({ "at": uk_date_time(o.due_at, zone), "state": o.state,
                        "broadcast_id": o.broadcast_id, "error": o.error })
            })
            .collect();
        notices.push(json!({
            "id": notice.id,
            "active": notice.state == NoticeState::Active,
            "state": notice.state.as_str(),
            "kind": status.kind,
            "headline": status.headline,
            "when": when,
            "ends_at": plan.end_time(zone).map(|end| end.format("%H:%M").to_string()),
            "next": notice.next_at.map(|at| uk_date_time(at, zone)),
            "created_by": notice.created_by,
            "cancelled_by": notice.cancelled_by,
            "past": past,
            "form": form_values(&notice, &status, &plan, zone),
        }));
    }
    let mut c = signed.context();
    c.insert(
        "practice",
        &json!({ "ods": practice.ods_code.as_str(), "name": practice.name, "timezone": zone.to_string() }),
    );
    c.insert("notices", &notices);
    c.insert(
        "blank",
        &json!({ "prefix": "plan", "kind": "closed", "headline": "", "details": "", "repeat": "once", "send_at": "",
                 "days": "", "until": "", "dates": "", "at": "", "ends_at": "" }),
    );
    Ok(page(StatusCode::OK, "console/scheduled.html", &c))
}

/// A notice as its change form shows it: the fields of the plan-a-notice form, filled in
/// with the notice's status change and timing (local times in the practice's timezone).
fn form_values(
    notice: &ScheduledNotice,
    status: &StatusChangeRequest,
    plan: &Plan,
    zone: PracticeZone,
) -> serde_json::Value {
    let hm = |t: chrono::NaiveTime| t.format("%H:%M").to_string();
    let (repeat, send_at, days, until, dates, at) = match plan {
        Plan::Once { send_at, .. } => (
            "once",
            send_at
                .with_timezone(&zone.tz())
                .format("%Y-%m-%dT%H:%M")
                .to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ),
        Plan::Weekly {
            days, at, until, ..
        } => (
            "weekly",
            String::new(),
            days.iter()
                .map(|d| d.to_string().to_lowercase())
                .collect::<Vec<_>>()
                .join(", "),
            until.map_or(String::new(), |u| u.format("%Y-%m-%d").to_string()),
            String::new(),
            hm(*at),
        ),
        Plan::Dates { dates, at, .. } => (
            "dates",
            String::new(),
            String::new(),
            String::new(),
            dates
                .iter()
                .map(|d| d.format("%Y-%m-%d").to_string())
                .collect::<Vec<_>>()
                .join(", "),
            hm(*at),
        ),
    };
    json!({
        "prefix": format!("edit-{}", notice.id),
        "revision": notice.revision,
        "kind": status.kind,
        "headline": status.headline.clone().unwrap_or_default(),
        "details": status.details.clone().unwrap_or_default(),
        "repeat": repeat,
        "send_at": send_at,
        "days": days,
        "until": until,
        "dates": dates,
        "at": at,
        "ends_at": plan.end_time(zone).map_or(String::new(), hm),
    })
}

/// The plan-a-notice form: the status change, then one of a local date and time, days of
/// the week and a time, or a list of dates and a time.
#[derive(Deserialize)]
pub(crate) struct NoticeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    headline: String,
    #[serde(default)]
    details: String,
    /// `once`, `weekly` or `dates`.
    #[serde(default)]
    repeat: String,
    /// For `once`: local `YYYY-MM-DDTHH:MM` (a `datetime-local` input).
    #[serde(default)]
    send_at: String,
    /// For `weekly` and `dates`: local `HH:MM`.
    #[serde(default)]
    at: String,
    /// For `weekly`: days, comma- or space-separated (`mon, wed`).
    #[serde(default)]
    days: String,
    /// For `weekly`: optional last day.
    #[serde(default)]
    until: String,
    /// For `dates`: dates, comma- or space-separated.
    #[serde(default)]
    dates: String,
    /// Optional local `HH:MM` the same day at which the service is restored.
    #[serde(default)]
    ends_at: String,
}

/// Words of a comma- or space-separated list.
fn words(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

impl NoticeForm {
    /// The request the API would take, reading a one-off's time in the practice's timezone.
    fn request(&self, practice: &Practice) -> Result<NoticeRequest, Vec<Invalid>> {
        let blank = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let status = StatusChangeRequest {
            kind: self.kind.trim().to_string(),
            headline: blank(&self.headline),
            details: blank(&self.details),
            ..Default::default()
        };
        let (send_at, recurrence) = match self.repeat.as_str() {
            "once" => {
                let local = NaiveDateTime::parse_from_str(self.send_at.trim(), "%Y-%m-%dT%H:%M")
                    .map_err(|_| vec![Invalid::new("send_at", "choose a date and a time")])?;
                let at = local_instant(practice.timezone, local.date(), local.time());
                (Some(at.to_rfc3339()), None)
            }
            "weekly" => (
                None,
                Some(RecurrenceRequest {
                    weekly: Some(WeeklyRequest {
                        days: words(&self.days),
                        at: self.at.clone(),
                        until: blank(&self.until),
                    }),
                    dates: None,
                    at: None,
                }),
            ),
            "dates" => (
                None,
                Some(RecurrenceRequest {
                    weekly: None,
                    dates: Some(words(&self.dates)),
                    at: Some(self.at.clone()),
                }),
            ),
            _ => return Err(vec![Invalid::new("repeat", "choose once, weekly or dates")]),
        };
        Ok(NoticeRequest {
            status,
            send_at,
            recurrence,
            ends_at: blank(&self.ends_at),
        })
    }
}

/// The page naming every wrong field, or the refusal.
fn refused(e: ScheduleError) -> Response {
    match e {
        ScheduleError::Invalid(errors) => invalid(&errors),
        ScheduleError::NotFound => error_page(StatusCode::NOT_FOUND, "There is no such notice."),
        ScheduleError::NotActive(_) | ScheduleError::Changed(_) | ScheduleError::TooMany(_) => {
            error_page(StatusCode::CONFLICT, &e.to_string())
        }
        other => internal(other),
    }
}

fn invalid(errors: &[Invalid]) -> Response {
    let reasons: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    error_page(StatusCode::UNPROCESSABLE_ENTITY, &reasons.join("; "))
}

/// `POST /console/practices/{ods}/scheduled`: plans a notice and shows the list again.
pub(crate) async fn create(
    State(state): State<AppState>,
    signed: Signed,
    Path(ods): Path<String>,
    Form(form): Form<NoticeForm>,
) -> Response {
    if let Some(refusal) = signed.refuse_without_csrf(&form.csrf) {
        return refusal;
    }
    let practice = match signed.practice(state.store.as_ref(), &ods).await {
        Ok(p) => p,
        Err(refusal) => return denied(refusal),
    };
    let request = match form.request(&practice) {
        Ok(request) => request,
        Err(errors) => return invalid(&errors),
    };
    match state
        .schedules()
        .create(&practice, &request, &signed.actor)
        .await
    {
        Ok(_) => Redirect::to(&page_of(&practice)).into_response(),
        Err(e) => refused(e),
    }
}

/// The change-a-notice form: the plan-a-notice form and the revision it was read at.
#[derive(Deserialize)]
pub(crate) struct EditForm {
    #[serde(flatten)]
    notice: NoticeForm,
    /// Kept as text: a flattened form reads every value as a string.
    #[serde(default)]
    revision: String,
}

/// `POST /console/practices/{ods}/scheduled/{id}/edit`: replaces the notice's status change
/// and timing (refused if someone changed it since the page was read) and shows the list
/// again.
pub(crate) async fn edit(
    State(state): State<AppState>,
    signed: Signed,
    Path((ods, id)): Path<(String, i64)>,
    Form(form): Form<EditForm>,
) -> Response {
    if let Some(refusal) = signed.refuse_without_csrf(&form.notice.csrf) {
        return refusal;
    }
    let practice = match signed.practice(state.store.as_ref(), &ods).await {
        Ok(p) => p,
        Err(refusal) => return denied(refusal),
    };
    let request = match form.notice.request(&practice) {
        Ok(request) => EditRequest {
            // An unreadable revision matches no notice's, so the change is refused as stale.
            revision: form.revision.trim().parse().unwrap_or(-1),
            status: Some(request.status),
            send_at: request.send_at,
            recurrence: request.recurrence,
            ends_at: request.ends_at,
        },
        Err(errors) => return invalid(&errors),
    };
    match state
        .schedules()
        .edit(
            &practice,
            ScheduledNoticeId::new(id),
            &request,
            &signed.actor,
        )
        .await
    {
        Ok(_) => Redirect::to(&page_of(&practice)).into_response(),
        Err(e) => refused(e),
    }
}

/// A form with only the CSRF token.
#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/practices/{ods}/scheduled/{id}/cancel`: cancels the notice (the page
/// asks first) and shows the list again.
pub(crate) async fn cancel(
    State(state): State<AppState>,
    signed: Signed,
    Path((ods, id)): Path<(String, i64)>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Some(refusal) = signed.refuse_without_csrf(&form.csrf) {
        return refusal;
    }
    let practice = match signed.practice(state.store.as_ref(), &ods).await {
        Ok(p) => p,
        Err(refusal) => return denied(refusal),
    };
    match state
        .schedules()
        .cancel(&practice, ScheduledNoticeId::new(id), &signed.actor)
        .await
    {
        Ok(_) => Redirect::to(&page_of(&practice)).into_response(),
        Err(e) => refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_in_a_form_are_split_on_commas_and_spaces() {
        assert_eq!(words(" mon, wed  fri,"), ["mon", "wed", "fri"]);
        assert!(words(" , ").is_empty());
    }
}
