//! The task every API instance runs: every `[schedule] tick_ms` it claims the occurrences
//! that are due and posts each as a normal status change.
//!
//! Exactly once, with any number of instances and restarts:
//! - claiming moves the notice's `next_at` on with a revision check, in the transaction that
//!   records the occurrence, so one instance wins each occurrence;
//! - posting uses the idempotency key `{notice}:{instant}` (scope `schedule`), so a post
//!   repeated after a crash between claiming and recording, or by another instance picking
//!   up a claim that looked abandoned, returns the first broadcast instead of a second.
//!
//! An occurrence found due later than `catch_up_minutes` is recorded as missed, not posted.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use super::recurrence::Event;
use super::{plan_of, status_of, ScheduleError, Schedules};
use crate::domain::{BroadcastId, ScheduledNoticeId};
use crate::fanout::FanoutError;
use crate::intake::status::{post_status_change, PostStatusError, StatusChangeRequest};
use crate::store::{Claim, OccurrenceState, ScheduledNotice};

/// The idempotency scope occurrences are posted under (`post_status_change` adds the
/// practice).
const SCOPE: &str = "schedule";

/// Notices looked at per tick; more wait for the next.
const DUE_PER_TICK: i64 = 100;

/// Occurrences of one notice claimed per tick (a long outage leaves many missed).
const CLAIMS_PER_NOTICE: usize = 50;

/// How long a claim may stay unposted before another instance posts it (idempotently).
const ABANDONED_AFTER_SECONDS: i64 = 30;

/// The idempotency key an occurrence is posted with.
pub fn occurrence_key(notice: ScheduledNoticeId, due_at: DateTime<Utc>) -> String {
    format!(
        "{notice}:{}",
        due_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// What the end of a day's disruption posts: the service restored, in the kind's words.
pub fn restored() -> StatusChangeRequest {
    StatusChangeRequest {
        kind: "restored".into(),
        ..Default::default()
    }
}

/// Logs a notice the runner could not handle this tick.
fn warn(notice: ScheduledNoticeId, error: &ScheduleError) {
    tracing::warn!(notice = notice.get(), error = %error, "could not post a scheduled notice");
}

impl Schedules {
    /// Runs [`Schedules::tick`] every `[schedule] tick_ms` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let every = StdDuration::from_millis(self.config.tick_ms.max(1));
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "could not post scheduled notices");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Claims and posts what is due now, and finishes claims an instance left unposted.
    /// How many occurrences it settled (posted, missed or failed).
    pub async fn tick(&self) -> Result<usize, ScheduleError> {
        let now = (self.clock)();
        let mut settled = 0;
        let abandoned = now - Duration::seconds(ABANDONED_AFTER_SECONDS);
        // One notice that cannot be read or posted (a corrupt row, a practice removed)
        // is logged and holds up no other.
        for claim in self.store.stale_claims(abandoned, DUE_PER_TICK).await? {
            if let Some(notice) = self.store.notice_by_id(claim.notice_id).await? {
                match self.settle(&notice, claim.due_at, now).await {
                    Ok(()) => settled += 1,
                    Err(e) => warn(notice.id, &e),
                }
            }
        }
        for notice in self.store.due_notices(now, DUE_PER_TICK).await? {
            let id = notice.id;
            match self.claim_due(notice, now).await {
                Ok(n) => settled += n,
                Err(e) => warn(id, &e),
            }
        }
        Ok(settled)
    }

    /// Claims the notice's occurrences due by `now`, one after another, and settles each
    /// this instance won.
    async fn claim_due(
        &self,
        mut notice: ScheduledNotice,
        now: DateTime<Utc>,
    ) -> Result<usize, ScheduleError> {
        let Some(practice) = self.store.practice_by_id(notice.practice_id).await? else {
            return Ok(0);
        };
        let plan = plan_of(&notice)?;
        let mut settled = 0;
        for _ in 0..CLAIMS_PER_NOTICE {
            let Some(due_at) = notice.next_at.filter(|at| *at <= now) else {
                break;
            };
            let state = if self.too_late(due_at, now) {
                OccurrenceState::Missed
            } else {
                OccurrenceState::Claimed
            };
            let claim = Claim {
                notice_id: notice.id,
                revision: notice.revision,
                due_at,
                next_at: plan.after(practice.timezone, due_at),
                state,
            };
            if !self.store.claim_occurrence(&claim, now).await? {
                // Another instance (or an edit) moved it first.
                break;
            }
            if state == OccurrenceState::Missed {
                self.audit(
                    &practice,
                    "gateway",
                    "scheduled_notice.missed",
                    notice.id,
                    serde_json::json!({ "due_at": due_at, "found_at": now }),
                )
                .await?;
            } else {
                self.settle(&notice, due_at, now).await?;
            }
            settled += 1;
            notice.revision += 1;
            notice.next_at = claim.next_at;
        }
        Ok(settled)
    }

    /// Whether an occurrence due at `due_at` is too late to post at `now`.
    fn too_late(&self, due_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let window = i64::try_from(self.config.catch_up_minutes).unwrap_or(i64::MAX / 60_000);
        now - due_at > Duration::minutes(window)
    }

    /// Posts a claimed occurrence (idempotently) and records its broadcast; one that turns
    /// out too late and was never posted is recorded as missed.
    async fn settle(
        &self,
        notice: &ScheduledNotice,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        let Some(practice) = self.store.practice_by_id(notice.practice_id).await? else {
            return Ok(());
        };
        let key = occurrence_key(notice.id, due_at);
        let scope = format!("{SCOPE}:practice:{}:status", practice.id);
        if self.too_late(due_at, now) {
            let posted = self.store.posted_under(&scope, &key).await?;
            let state = match posted {
                Some(_) => OccurrenceState::Posted,
                None => OccurrenceState::Missed,
            };
            self.store
                .finish_occurrence(notice.id, due_at, state, posted, None, now)
                .await?;
            return Ok(());
        }
        let request = match plan_of(notice)?.event_at(practice.timezone, due_at) {
            Event::Start => status_of(notice)?,
            Event::End => restored(),
        };
        let actor = format!("schedule:{}", notice.id);
        let idempotency = Some((SCOPE.to_string(), key));
        let (state, broadcast, error): (_, Option<BroadcastId>, Option<String>) =
            match post_status_change(
                &self.status_changes,
                &practice,
                &request,
                &actor,
                idempotency,
            )
            .await
            {
                Ok(posted) => (OccurrenceState::Posted, Some(posted.broadcast_id), None),
                // The broadcast exists but could not be worded: it is marked failed with its
                // reason, and this occurrence is done.
                Err(PostStatusError::Fanout(FanoutError::Failed {
                    broadcast_id,
                    reason,
                })) => (OccurrenceState::Failed, Some(broadcast_id), Some(reason)),
                Err(PostStatusError::Invalid(errors)) => {
                    let reason = errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.reason))
                        .collect::<Vec<_>>()
                        .join("; ");
                    (OccurrenceState::Failed, None, Some(reason))
                }
                Err(PostStatusError::KeyReused) => {
                    // Posted before with the request as it was then (edited since).
                    let posted = self
                        .store
                        .posted_under(&scope, &occurrence_key(notice.id, due_at))
                        .await?;
                    (OccurrenceState::Posted, posted, None)
                }
                // Storage or a fan-out task: left claimed, so a later tick posts it again.
                Err(e) => {
                    tracing::warn!(notice = notice.id.get(), error = %e, "could not post a scheduled notice");
                    return Ok(());
                }
            };
        self.store
            .finish_occurrence(
                notice.id,
                due_at,
                state,
                broadcast,
                error.as_deref(),
                (self.clock)(),
            )
            .await?;
        if state == OccurrenceState::Failed {
            self.audit(
                &practice,
                "gateway",
                "scheduled_notice.failed",
                notice.id,
                serde_json::json!({ "due_at": due_at, "reason": error }),
            )
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_notice_and_the_instant_to_the_second() {
        let at: DateTime<Utc> = "2026-10-28T13:00:00.250Z".parse().unwrap();
        assert_eq!(
            occurrence_key(ScheduledNoticeId::new(7), at),
            "7:2026-10-28T13:00:00Z"
        );
    }
}
