//! Status groups on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::SqliteStore;
use crate::domain::{BroadcastId, PracticeId, StatusGroupId};
use crate::store::{
    At, GroupMember, GroupStart, GroupStop, GroupStore, IdempotencyClaim, NewStatusGroup,
    StatusGroup, StoreResult, TimeColumn,
};

#[async_trait]
impl GroupStore for SqliteStore {
    async fn start_group(
        &self,
        group: &NewStatusGroup,
        claim: Option<&IdempotencyClaim>,
        now: DateTime<Utc>,
    ) -> StoreResult<GroupStart> {
        let mut tx = self.pool.begin().await?;
        if let Some(claim) = claim {
            let earlier = sqlx::query(
                "SELECT id, request_hash FROM status_groups
                 WHERE idempotency_scope = $1 AND idempotency_key = $2",
            )
            .bind(&claim.scope)
            .bind(&claim.key)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = earlier {
                let hash: Option<String> = row.try_get("request_hash")?;
                return Ok(if hash.as_deref() == Some(claim.request_hash.as_str()) {
                    GroupStart::Replayed(row.try_get("id")?)
                } else {
                    GroupStart::KeyReused
                });
            }
        }
        let id: StatusGroupId = sqlx::query_scalar(
            "INSERT INTO status_groups (request, selector, created_by, created_at,
                 idempotency_scope, idempotency_key, request_hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(&group.request)
        .bind(&group.selector)
        .bind(&group.created_by)
        .bind(At(now))
        .bind(claim.map(|c| c.scope.as_str()))
        .bind(claim.map(|c| c.key.as_str()))
        .bind(claim.map(|c| c.request_hash.as_str()))
        .fetch_one(&mut *tx)
        .await?;
        for practice_id in &group.members {
            sqlx::query(
                "INSERT INTO status_group_members (group_id, practice_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(practice_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(GroupStart::Started(id))
    }

    async fn status_group(&self, id: StatusGroupId) -> StoreResult<Option<StatusGroup>> {
        let row = sqlx::query(
            "SELECT id, request, selector, created_by, created_at FROM status_groups WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(StatusGroup {
                id: row.try_get("id")?,
                request: row.try_get("request")?,
                selector: row.try_get("selector")?,
                created_by: row.try_get("created_by")?,
                created_at: row.time("created_at")?,
            })
        })
        .transpose()
    }

    async fn group_members(&self, id: StatusGroupId) -> StoreResult<Vec<GroupMember>> {
        let rows = sqlx::query(
            "SELECT practice_id, broadcast_id, error, stopped_at, stopped_by, stop_reason
             FROM status_group_members
             WHERE group_id = $1 ORDER BY practice_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(GroupMember {
                    practice_id: row.try_get("practice_id")?,
                    broadcast_id: row.try_get("broadcast_id")?,
                    error: row.try_get("error")?,
                    stop: stop_from_row(row)?,
                })
            })
            .collect()
    }

    async fn record_member(
        &self,
        id: StatusGroupId,
        practice_id: PracticeId,
        broadcast_id: Option<BroadcastId>,
        error: Option<&str>,
    ) -> StoreResult<Option<GroupStop>> {
        let row = sqlx::query(
            "UPDATE status_group_members SET broadcast_id = $3, error = $4
             WHERE group_id = $1 AND practice_id = $2
             RETURNING stopped_at, stopped_by, stop_reason",
        )
        .bind(id)
        .bind(practice_id)
        .bind(broadcast_id)
        .bind(error)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => stop_from_row(&row)?,
            None => None,
        })
    }

    async fn stop_members(
        &self,
        id: StatusGroupId,
        members: &[PracticeId],
        stop: &GroupStop,
    ) -> StoreResult<()> {
        for practice_id in members {
            sqlx::query(
                "UPDATE status_group_members
                 SET stopped_at = $3, stopped_by = $4, stop_reason = $5
                 WHERE group_id = $1 AND practice_id = $2 AND stopped_at IS NULL",
            )
            .bind(id)
            .bind(practice_id)
            .bind(At(stop.at))
            .bind(&stop.by)
            .bind(&stop.reason)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}

/// A member's stop, if its row has one.
fn stop_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Option<GroupStop>> {
    let by: Option<String> = row.try_get("stopped_by")?;
    let reason: Option<String> = row.try_get("stop_reason")?;
    match (row.time_opt("stopped_at")?, by, reason) {
        (Some(at), Some(by), Some(reason)) => Ok(Some(GroupStop { at, by, reason })),
        _ => Ok(None),
    }
}
