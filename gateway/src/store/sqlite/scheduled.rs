//! Scheduled notices on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::SqliteStore;
use crate::domain::{BroadcastId, PracticeId, ScheduledNoticeId};
use crate::store::{
    parsed, At, Claim, NewNotice, Occurrence, OccurrenceState, ScheduleStore, ScheduledNotice,
    StoreResult, TimeColumn,
};

const NOTICE_COLUMNS: &str = "id, practice_id, request, timing, state, next_at, revision,
     created_by, created_at, updated_by, updated_at, cancelled_by, cancelled_at";

const OCCURRENCE_COLUMNS: &str =
    "notice_id, due_at, state, broadcast_id, error, claimed_at, done_at";

fn notice_from_row(row: &SqliteRow) -> StoreResult<ScheduledNotice> {
    Ok(ScheduledNotice {
        id: row.try_get("id")?,
        practice_id: row.try_get("practice_id")?,
        request: row.try_get("request")?,
        timing: row.try_get("timing")?,
        state: parsed("scheduled_notices.state", row.try_get("state")?)?,
        next_at: row.time_opt("next_at")?,
        revision: row.try_get("revision")?,
        created_by: row.try_get("created_by")?,
        created_at: row.time("created_at")?,
        updated_by: row.try_get("updated_by")?,
        updated_at: row.time_opt("updated_at")?,
        cancelled_by: row.try_get("cancelled_by")?,
        cancelled_at: row.time_opt("cancelled_at")?,
    })
}

fn occurrence_from_row(row: &SqliteRow) -> StoreResult<Occurrence> {
    Ok(Occurrence {
        notice_id: row.try_get("notice_id")?,
        due_at: row.time("due_at")?,
        state: parsed("scheduled_occurrences.state", row.try_get("state")?)?,
        broadcast_id: row.try_get("broadcast_id")?,
        error: row.try_get("error")?,
        claimed_at: row.time("claimed_at")?,
        done_at: row.time_opt("done_at")?,
    })
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn create_notice(
        &self,
        notice: &NewNotice,
        now: DateTime<Utc>,
    ) -> StoreResult<ScheduledNotice> {
        let row = sqlx::query(&format!(
            "INSERT INTO scheduled_notices (practice_id, request, timing, state, next_at,
                 created_by, created_at)
             VALUES ($1, $2, $3, 'active', $4, $5, $6) RETURNING {NOTICE_COLUMNS}"
        ))
        .bind(notice.practice_id)
        .bind(&notice.request)
        .bind(&notice.timing)
        .bind(At(notice.next_at))
        .bind(&notice.created_by)
        .bind(At(now))
        .fetch_one(&self.pool)
        .await?;
        notice_from_row(&row)
    }

    async fn notice(
        &self,
        practice_id: PracticeId,
        id: ScheduledNoticeId,
    ) -> StoreResult<Option<ScheduledNotice>> {
        let row = sqlx::query(&format!(
            "SELECT {NOTICE_COLUMNS} FROM scheduled_notices WHERE id = $1 AND practice_id = $2"
        ))
        .bind(id)
        .bind(practice_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(notice_from_row).transpose()
    }

    async fn notice_by_id(&self, id: ScheduledNoticeId) -> StoreResult<Option<ScheduledNotice>> {
        let row = sqlx::query(&format!(
            "SELECT {NOTICE_COLUMNS} FROM scheduled_notices WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(notice_from_row).transpose()
    }

    async fn notices(
        &self,
        practice_id: PracticeId,
        limit: i64,
    ) -> StoreResult<Vec<ScheduledNotice>> {
        let rows = sqlx::query(&format!(
            "SELECT {NOTICE_COLUMNS} FROM scheduled_notices WHERE practice_id = $1
             ORDER BY state = 'active' DESC, id DESC LIMIT $2"
        ))
        .bind(practice_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(notice_from_row).collect()
    }

    async fn active_notices(&self, practice_id: PracticeId) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM scheduled_notices WHERE practice_id = $1 AND state = 'active'",
        )
        .bind(practice_id)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn edit_notice(
        &self,
        id: ScheduledNoticeId,
        revision: i64,
        request: &str,
        timing: &str,
        next_at: DateTime<Utc>,
        by: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE scheduled_notices SET request = $3, timing = $4, next_at = $5,
                 updated_by = $6, updated_at = $7, revision = revision + 1
             WHERE id = $1 AND revision = $2 AND state = 'active'",
        )
        .bind(id)
        .bind(revision)
        .bind(request)
        .bind(timing)
        .bind(At(next_at))
        .bind(by)
        .bind(At(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn cancel_notice(
        &self,
        id: ScheduledNoticeId,
        revision: i64,
        by: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE scheduled_notices SET state = 'cancelled', next_at = NULL,
                 cancelled_by = $3, cancelled_at = $4, revision = revision + 1
             WHERE id = $1 AND revision = $2 AND state = 'active'",
        )
        .bind(id)
        .bind(revision)
        .bind(by)
        .bind(At(now))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_notices(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ScheduledNotice>> {
        let rows = sqlx::query(&format!(
            "SELECT {NOTICE_COLUMNS} FROM scheduled_notices
             WHERE state = 'active' AND next_at <= $1 ORDER BY next_at, id LIMIT $2"
        ))
        .bind(At(now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(notice_from_row).collect()
    }

    async fn claim_occurrence(&self, claim: &Claim, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let moved = sqlx::query(
            "UPDATE scheduled_notices
             SET next_at = $3, revision = revision + 1,
                 state = CASE WHEN $3 IS NULL THEN 'finished' ELSE state END
             WHERE id = $1 AND revision = $2 AND state = 'active' AND next_at = $4",
        )
        .bind(claim.notice_id)
        .bind(claim.revision)
        .bind(claim.next_at.map(At))
        .bind(At(claim.due_at))
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        let done_at = (claim.state != OccurrenceState::Claimed).then_some(At(now));
        let inserted = sqlx::query(
            "INSERT INTO scheduled_occurrences (notice_id, due_at, state, claimed_at, done_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(claim.notice_id)
        .bind(At(claim.due_at))
        .bind(claim.state.as_str())
        .bind(At(now))
        .bind(done_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // An occurrence met before (a notice edited back to an instant already claimed) is
        // not claimed twice.
        Ok(inserted.rows_affected() == 1)
    }

    async fn finish_occurrence(
        &self,
        notice_id: ScheduledNoticeId,
        due_at: DateTime<Utc>,
        state: OccurrenceState,
        broadcast_id: Option<BroadcastId>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE scheduled_occurrences SET state = $3, broadcast_id = $4, error = $5,
                 done_at = $6
             WHERE notice_id = $1 AND due_at = $2
               AND (state = 'claimed' OR (state = 'missed' AND $3 = 'posted'))",
        )
        .bind(notice_id)
        .bind(At(due_at))
        .bind(state.as_str())
        .bind(broadcast_id)
        .bind(error)
        .bind(At(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn stale_claims(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Occurrence>> {
        let rows = sqlx::query(&format!(
            "SELECT {OCCURRENCE_COLUMNS} FROM scheduled_occurrences
             WHERE state = 'claimed' AND claimed_at <= $1 ORDER BY claimed_at LIMIT $2"
        ))
        .bind(At(before))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(occurrence_from_row).collect()
    }

    async fn occurrences(
        &self,
        notice_id: ScheduledNoticeId,
        limit: i64,
    ) -> StoreResult<Vec<Occurrence>> {
        let rows = sqlx::query(&format!(
            "SELECT {OCCURRENCE_COLUMNS} FROM scheduled_occurrences
             WHERE notice_id = $1 ORDER BY due_at DESC LIMIT $2"
        ))
        .bind(notice_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(occurrence_from_row).collect()
    }

    async fn posted_under(&self, scope: &str, key: &str) -> StoreResult<Option<BroadcastId>> {
        Ok(sqlx::query_scalar(
            "SELECT broadcast_id FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }
}
