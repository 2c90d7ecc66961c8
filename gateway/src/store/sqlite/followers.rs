//! Anonymous push followers on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::SqliteStore;
use crate::domain::{FollowerId, PracticeId};
use crate::store::{At, Follower, FollowerStore, StoreResult};

#[async_trait]
impl FollowerStore for SqliteStore {
    async fn add_follower(
        &self,
        practice_id: PracticeId,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        now: DateTime<Utc>,
        cap: u64,
    ) -> StoreResult<Option<FollowerId>> {
        // One statement: SQLite runs it alone, so the count cannot go stale before the insert.
        Ok(sqlx::query_scalar(
            "INSERT INTO push_followers (practice_id, endpoint, p256dh, auth, created_at)
             SELECT $1, $2, $3, $4, $5
             WHERE (SELECT count(*) FROM push_followers WHERE practice_id = $1) < $6
                OR EXISTS (SELECT 1 FROM push_followers WHERE practice_id = $1 AND endpoint = $2)
             ON CONFLICT (practice_id, endpoint) DO UPDATE SET p256dh = excluded.p256dh, auth = excluded.auth
             RETURNING id",
        )
        .bind(practice_id)
        .bind(endpoint)
        .bind(p256dh)
        .bind(auth)
        .bind(At(now))
        .bind(i64::try_from(cap).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn remove_follower_endpoint(
        &self,
        practice_id: PracticeId,
        endpoint: &str,
    ) -> StoreResult<u64> {
        Ok(
            sqlx::query("DELETE FROM push_followers WHERE practice_id = $1 AND endpoint = $2")
                .bind(practice_id)
                .bind(endpoint)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn remove_follower(&self, follower_id: FollowerId) -> StoreResult<()> {
        sqlx::query("DELETE FROM push_followers WHERE id = $1")
            .bind(follower_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn follower_push_keys(
        &self,
        follower_id: FollowerId,
    ) -> StoreResult<Option<(String, String)>> {
        let row = sqlx::query("SELECT p256dh, auth FROM push_followers WHERE id = $1")
            .bind(follower_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("p256dh")?, r.try_get("auth")?)))
            .transpose()
    }

    async fn followers_page(
        &self,
        practice_id: PracticeId,
        after: FollowerId,
        limit: usize,
    ) -> StoreResult<Vec<Follower>> {
        let rows = sqlx::query(
            "SELECT id, endpoint FROM push_followers WHERE practice_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(practice_id)
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Follower {
                    id: r.try_get("id")?,
                    endpoint: r.try_get("endpoint")?,
                })
            })
            .collect()
    }

    async fn follower_count(&self, practice_id: PracticeId) -> StoreResult<u64> {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM push_followers WHERE practice_id = $1")
                .bind(practice_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
