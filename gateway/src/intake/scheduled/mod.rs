//! Status changes planned ahead (issue 14): posted once at `send_at`, or on every
//! occurrence of a weekly rule or a list of dates, at a local time in the practice's
//! timezone. Listed, edited and cancelled through the API and the console.
//!
//! A notice holds the status change exactly as `POST .../status` takes it, checked at
//! creation as that endpoint checks it. Each occurrence is claimed in the store by one
//! instance (its `next_at` moved on with a revision check) and posted with the idempotency
//! key `{notice}:{instant}` in the `schedule` scope, so neither a race between instances nor
//! a crash between claiming and posting can make two broadcasts of one occurrence
//! (`runner.rs`).

/// When a plan falls: pure functions over the practice's timezone.
pub mod recurrence;
/// The task every API instance runs: claims due occurrences and posts them.
pub mod runner;

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SubsecRound, Utc, Weekday};
use serde::Deserialize;

use self::recurrence::{local_instant, Plan};
use crate::config::ScheduleConfig;
use crate::domain::{Invalid, ScheduledNoticeId};
use crate::intake::status::{StatusChangeRequest, StatusChanges};
use crate::schedule::{Clock, PracticeZone};
use crate::store::{
    AuditEntry, NewNotice, NoticeState, Practice, ScheduledNotice, Store, StoreError,
};

/// A notice as a client creates it: the status change and either `send_at` or a
/// `recurrence`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeRequest {
    /// The status change, exactly as `POST .../status` takes it.
    pub status: StatusChangeRequest,
    /// Once, at this instant (RFC 3339).
    #[serde(default)]
    pub send_at: Option<String>,
    /// Weekly, or on a list of dates.
    #[serde(default)]
    pub recurrence: Option<RecurrenceRequest>,
    /// Local time (`HH:MM`) the same day at which the practice's service is restored (a
    /// `restored` status change is posted), if it is.
    #[serde(default)]
    pub ends_at: Option<String>,
}

/// A change to a notice: the revision it was read at, and what to replace.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    /// The notice's `revision` as the client read it; another change since is a conflict.
    pub revision: i64,
    /// The new status change, if it changes.
    #[serde(default)]
    pub status: Option<StatusChangeRequest>,
    /// A new one-off time (replaces the timing).
    #[serde(default)]
    pub send_at: Option<String>,
    /// A new recurrence (replaces the timing).
    #[serde(default)]
    pub recurrence: Option<RecurrenceRequest>,
    /// The new timing's end of day (with `send_at` or `recurrence` only).
    #[serde(default)]
    pub ends_at: Option<String>,
}

/// `{ "weekly": {...} }` or `{ "dates": [...], "at": "08:00" }`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecurrenceRequest {
    /// Every week on some days.
    #[serde(default)]
    pub weekly: Option<WeeklyRequest>,
    /// On these dates (`YYYY-MM-DD`).
    #[serde(default)]
    pub dates: Option<Vec<String>>,
    /// The local time of day for `dates` (`HH:MM`).
    #[serde(default)]
    pub at: Option<String>,
}

/// `{ "days": ["wed"], "at": "13:00", "until": "2027-06-30" }`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeeklyRequest {
    /// Day names: `mon` or `monday`, any case.
    pub days: Vec<String>,
    /// Local time of day (`HH:MM`).
    pub at: String,
    /// The last day it may fall on (`YYYY-MM-DD`), optional.
    #[serde(default)]
    pub until: Option<String>,
}

/// Why a notice could not be made, changed or cancelled.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The request is invalid.
    #[error("invalid scheduled notice")]
    Invalid(Vec<Invalid>),
    /// The practice has no such notice.
    #[error("no such scheduled notice")]
    NotFound,
    /// It is finished or cancelled.
    #[error("this scheduled notice is {0}")]
    NotActive(&'static str),
    /// It changed (or an occurrence was claimed) since the client read it.
    #[error("this scheduled notice changed since revision {0}; read it again")]
    Changed(i64),
    /// The practice has as many active notices as it may.
    #[error("a practice may have at most {0} active scheduled notices")]
    TooMany(u32),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored notice could not be read back.
    #[error("stored scheduled notice {0} is unreadable: {1}")]
    Corrupt(ScheduledNoticeId, String),
}

/// The scheduling service: what making, changing and posting planned notices takes.
#[derive(Clone)]
pub struct Schedules {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Posts each occurrence.
    pub status_changes: StatusChanges,
    /// "Now", for checks and for the runner (tests move it).
    pub clock: Clock,
    /// Bounds and the catch-up window.
    pub config: ScheduleConfig,
}

impl Schedules {
    /// Records a notice after checking its status change as `POST .../status` would and
    /// its timing against the practice's timezone.
    pub async fn create(
        &self,
        practice: &Practice,
        request: &NoticeRequest,
        actor: &str,
    ) -> Result<ScheduledNotice, ScheduleError> {
        let now = (self.clock)();
        let mut errors = status_errors(&request.status, actor);
        let timing = self.timing(
            request.send_at.as_deref(),
            request.recurrence.as_ref(),
            request.ends_at.as_deref(),
            practice.timezone,
            now,
        );
        let (plan, first) = match timing {
            Ok(timing) if errors.is_empty() => timing,
            Ok(_) => return Err(ScheduleError::Invalid(errors)),
            Err(more) => {
                errors.extend(more);
                return Err(ScheduleError::Invalid(errors));
            }
        };
        let limit = self.config.max_active_per_practice;
        if self.store.active_notices(practice.id).await? >= i64::from(limit) {
            return Err(ScheduleError::TooMany(limit));
        }
        let new = NewNotice {
            practice_id: practice.id,
            request: to_json(&request.status)?,
            timing: to_json(&plan)?,
            next_at: first,
            created_by: actor.to_string(),
        };
        let notice = self.store.create_notice(&new, now).await?;
        self.audit(
            practice,
            actor,
            "scheduled_notice.created",
            notice.id,
            serde_json::json!({ "kind": request.status.kind, "timing": plan, "next_at": first }),
        )
        .await?;
        Ok(notice)
    }

    /// Replaces a notice's status change and/or timing, if nothing changed it since
    /// `revision`. New timing starts from now; occurrences already claimed stay as they were.
    pub async fn edit(
        &self,
        practice: &Practice,
        id: ScheduledNoticeId,
        request: &EditRequest,
        actor: &str,
    ) -> Result<ScheduledNotice, ScheduleError> {
        let now = (self.clock)();
        let notice = self.active(practice, id).await?;
        if notice.revision != request.revision {
            return Err(ScheduleError::Changed(request.revision));
        }
        let status = match &request.status {
            Some(status) => {
                let errors = status_errors(status, actor);
                if !errors.is_empty() {
                    return Err(ScheduleError::Invalid(errors));
                }
                status.clone()
            }
            None => status_of(&notice)?,
        };
        let (plan, next_at) = if request.send_at.is_some() || request.recurrence.is_some() {
            self.timing(
                request.send_at.as_deref(),
                request.recurrence.as_ref(),
                request.ends_at.as_deref(),
                practice.timezone,
                now,
            )
            .map_err(ScheduleError::Invalid)?
        } else if request.ends_at.is_some() {
            return Err(ScheduleError::Invalid(vec![Invalid::new(
                "ends_at",
                "give it with the timing it belongs to (send_at or recurrence)",
            )]));
        } else {
            let plan = plan_of(&notice)?;
            let next = notice.next_at.ok_or(ScheduleError::NotActive("finished"))?;
            (plan, next)
        };
        let edited = self
            .store
            .edit_notice(
                id,
                notice.revision,
                &to_json(&status)?,
                &to_json(&plan)?,
                next_at,
                actor,
                now,
            )
            .await?;
        if !edited {
            return Err(ScheduleError::Changed(request.revision));
        }
        self.audit(
            practice,
            actor,
            "scheduled_notice.edited",
            id,
            serde_json::json!({ "kind": status.kind, "timing": plan, "next_at": next_at }),
        )
        .await?;
        self.store
            .notice(practice.id, id)
            .await?
            .ok_or(ScheduleError::NotFound)
    }

    /// Cancels a notice: no occurrence after this is posted. Cancelling a cancelled notice
    /// changes nothing; a finished one cannot be cancelled.
    pub async fn cancel(
        &self,
        practice: &Practice,
        id: ScheduledNoticeId,
        actor: &str,
    ) -> Result<ScheduledNotice, ScheduleError> {
        // An occurrence claimed meanwhile moves the revision: read again, a few times.
        for _ in 0..3 {
            let notice = self
                .store
                .notice(practice.id, id)
                .await?
                .ok_or(ScheduleError::NotFound)?;
            match notice.state {
                NoticeState::Cancelled => return Ok(notice),
                NoticeState::Finished => return Err(ScheduleError::NotActive("finished")),
                NoticeState::Active => {}
            }
            let now = (self.clock)();
            if self
                .store
                .cancel_notice(id, notice.revision, actor, now)
                .await?
            {
                self.audit(
                    practice,
                    actor,
                    "scheduled_notice.cancelled",
                    id,
                    serde_json::json!({ "next_at": notice.next_at }),
                )
                .await?;
                return self
                    .store
                    .notice(practice.id, id)
                    .await?
                    .ok_or(ScheduleError::NotFound);
            }
        }
        Err(ScheduleError::Changed(0))
    }

    /// The practice's notice `id` if it is still active.
    async fn active(
        &self,
        practice: &Practice,
        id: ScheduledNoticeId,
    ) -> Result<ScheduledNotice, ScheduleError> {
        let notice = self
            .store
            .notice(practice.id, id)
            .await?
            .ok_or(ScheduleError::NotFound)?;
        match notice.state {
            NoticeState::Active => Ok(notice),
            other => Err(ScheduleError::NotActive(other.as_str())),
        }
    }

    /// Parses the timing into a plan and its first occurrence at or after `now`, naming
    /// every problem.
    fn timing(
        &self,
        send_at: Option<&str>,
        recurrence: Option<&RecurrenceRequest>,
        ends_at: Option<&str>,
        zone: PracticeZone,
        now: DateTime<Utc>,
    ) -> Result<(Plan, DateTime<Utc>), Vec<Invalid>> {
        let mut errors = Vec::new();
        let end = ends_at.and_then(|e| time_of_day(e, "ends_at", &mut errors));
        if !errors.is_empty() {
            return Err(errors);
        }
        let horizon = now + Duration::days(i64::from(self.config.max_days_ahead));
        let plan = match (send_at, recurrence) {
            (Some(_), Some(_)) => {
                return Err(vec![Invalid::new(
                    "send_at",
                    "give send_at (once) or recurrence, not both",
                )])
            }
            (None, None) => {
                return Err(vec![Invalid::new(
                    "send_at",
                    "give send_at (once) or recurrence (weekly or dates)",
                )])
            }
            (Some(send_at), None) => {
                let at = DateTime::parse_from_rfc3339(send_at.trim())
                    .map_err(|_| {
                        vec![Invalid::new(
                            "send_at",
                            "not an RFC 3339 time such as 2026-12-24T17:00:00Z",
                        )]
                    })?
                    .with_timezone(&Utc)
                    .trunc_subsecs(0);
                if at < now {
                    return Err(vec![Invalid::new("send_at", "is in the past")]);
                }
                let ends_at = end.map(|end| {
                    let local = at.with_timezone(&zone.tz()).date_naive();
                    local_instant(zone, local, end)
                });
                if ends_at.is_some_and(|end| end <= at) {
                    return Err(vec![Invalid::new(
                        "ends_at",
                        "must be later the same day than send_at",
                    )]);
                }
                Plan::Once {
                    send_at: at,
                    ends_at,
                }
            }
            (None, Some(recurrence)) => self.recurrence(recurrence, end)?,
        };
        let last_day_limit = horizon.with_timezone(&zone.tz()).date_naive();
        if plan.last_day().is_some_and(|last| last > last_day_limit) {
            let field = match &plan {
                Plan::Once { .. } => "send_at",
                Plan::Weekly { .. } => "recurrence.weekly.until",
                Plan::Dates { .. } => "recurrence.dates",
            };
            return Err(vec![Invalid::new(
                field,
                format!("more than {} days ahead", self.config.max_days_ahead),
            )]);
        }
        match plan.first_from(zone, now) {
            Some(first) => Ok((plan, first)),
            None => Err(vec![Invalid::new(
                "recurrence",
                "no occurrence is left: every date is in the past",
            )]),
        }
    }

    /// A weekly rule or a list of dates.
    fn recurrence(
        &self,
        recurrence: &RecurrenceRequest,
        ends_at: Option<NaiveTime>,
    ) -> Result<Plan, Vec<Invalid>> {
        let mut errors = Vec::new();
        let plan = match (&recurrence.weekly, &recurrence.dates) {
            (Some(weekly), None) => {
                if recurrence.at.is_some() {
                    errors.push(Invalid::new(
                        "recurrence.at",
                        "a weekly rule takes its time as weekly.at",
                    ));
                }
                let mut days = Vec::new();
                for (i, name) in weekly.days.iter().enumerate() {
                    match name.trim().parse::<Weekday>() {
                        Ok(day) if !days.contains(&day) => days.push(day),
                        Ok(_) => {}
                        Err(_) => errors.push(Invalid::new(
                            format!("recurrence.weekly.days[{i}]"),
                            format!(
                                "{name:?} is not a day: use mon, tue, wed, thu, fri, sat or sun"
                            ),
                        )),
                    }
                }
                if weekly.days.is_empty() {
                    errors.push(Invalid::new(
                        "recurrence.weekly.days",
                        "name at least one day",
                    ));
                }
                days.sort_by_key(|d| d.num_days_from_monday());
                let at = time_of_day(&weekly.at, "recurrence.weekly.at", &mut errors);
                let until = weekly
                    .until
                    .as_deref()
                    .and_then(|u| date(u, "recurrence.weekly.until", &mut errors));
                at.map(|at| Plan::Weekly {
                    days,
                    at,
                    until,
                    ends_at,
                })
            }
            (None, Some(dates)) => {
                let max = self.config.max_dates;
                if dates.is_empty() {
                    errors.push(Invalid::new("recurrence.dates", "name at least one date"));
                }
                if dates.len() > max {
                    errors.push(Invalid::new(
                        "recurrence.dates",
                        format!("at most {max} dates"),
                    ));
                    return Err(errors);
                }
                let mut days: Vec<NaiveDate> = dates
                    .iter()
                    .enumerate()
                    .filter_map(|(i, d)| date(d, &format!("recurrence.dates[{i}]"), &mut errors))
                    .collect();
                days.sort();
                days.dedup();
                let at = match recurrence.at.as_deref() {
                    Some(at) => time_of_day(at, "recurrence.at", &mut errors),
                    None => {
                        errors.push(Invalid::new(
                            "recurrence.at",
                            "a list of dates needs its time of day, such as 08:00",
                        ));
                        None
                    }
                };
                at.map(|at| Plan::Dates {
                    dates: days,
                    at,
                    ends_at,
                })
            }
            _ => {
                errors.push(Invalid::new("recurrence", "give either weekly or dates"));
                None
            }
        };
        if let (Some(Plan::Weekly { at, .. } | Plan::Dates { at, .. }), Some(end)) =
            (&plan, ends_at)
        {
            if end <= *at {
                errors.push(Invalid::new(
                    "ends_at",
                    "must be later the same day than the start",
                ));
            }
        }
        match plan {
            Some(plan) if errors.is_empty() => Ok(plan),
            _ => Err(errors),
        }
    }

    /// Adds a line about notice `id` to the practice's audit trail.
    pub(crate) async fn audit(
        &self,
        practice: &Practice,
        actor: &str,
        action: &str,
        id: ScheduledNoticeId,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.store
            .audit(
                &AuditEntry {
                    actor: actor.to_string(),
                    action: action.to_string(),
                    practice_id: Some(practice.id),
                    subject: Some(format!("scheduled_notice:{id}")),
                    details: Some(details.to_string()),
                },
                (self.clock)(),
            )
            .await
    }
}

/// The status change's problems as `POST .../status` names them, under `status.`.
fn status_errors(status: &StatusChangeRequest, actor: &str) -> Vec<Invalid> {
    match status.parse(actor) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| e.under("status")).collect(),
    }
}

/// The status change a notice posts.
pub fn status_of(notice: &ScheduledNotice) -> Result<StatusChangeRequest, ScheduleError> {
    serde_json::from_str(&notice.request)
        .map_err(|e| ScheduleError::Corrupt(notice.id, e.to_string()))
}

/// When a notice is posted.
pub fn plan_of(notice: &ScheduledNotice) -> Result<Plan, ScheduleError> {
    serde_json::from_str(&notice.timing)
        .map_err(|e| ScheduleError::Corrupt(notice.id, e.to_string()))
}

fn to_json(value: &impl serde::Serialize) -> Result<String, ScheduleError> {
    serde_json::to_string(value)
        .map_err(|e| ScheduleError::Corrupt(ScheduledNoticeId::new(0), e.to_string()))
}

/// `HH:MM` as a time of day.
fn time_of_day(text: &str, field: &str, errors: &mut Vec<Invalid>) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .map_err(|_| errors.push(Invalid::new(field, "not a time of day such as 13:00")))
        .ok()
}

/// `YYYY-MM-DD` as a date.
fn date(text: &str, field: &str, errors: &mut Vec<Invalid>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| errors.push(Invalid::new(field, "not a date such as 2026-12-25")))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: serde_json::Value) -> Result<NoticeRequest, serde_json::Error> {
        serde_json::from_value(body)
    }

    fn fields(errors: Vec<Invalid>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn requests_refuse_unknown_fields_in_every_part() {
        let ok = serde_json::json!({ "status": { "kind": "closed" }, "send_at": "2026-12-24T17:00:00Z" });
        assert!(parse(ok).is_ok());
        let bad = serde_json::json!({ "status": { "kind": "closed" }, "when": "now" });
        assert!(parse(bad).is_err());
        let bad = serde_json::json!({ "status": { "kind": "closed" },
            "recurrence": { "weekly": { "days": ["wed"], "at": "13:00", "every": 2 } } });
        assert!(parse(bad).is_err());
    }

    #[test]
    fn times_days_and_dates_are_named_when_wrong() {
        let mut errors = Vec::new();
        assert!(time_of_day("25:00", "at", &mut errors).is_none());
        assert!(time_of_day("1pm", "at", &mut errors).is_none());
        assert_eq!(
            time_of_day(" 13:05 ", "at", &mut errors),
            NaiveTime::from_hms_opt(13, 5, 0)
        );
        assert!(date("2026-02-30", "until", &mut errors).is_none());
        assert_eq!(fields(errors), ["at", "at", "until"]);
        assert_eq!("WEDNESDAY".parse::<Weekday>(), Ok(Weekday::Wed));
        assert!("wodensday".parse::<Weekday>().is_err());
    }
}
