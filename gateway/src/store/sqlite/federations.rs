//! Federations on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::SqliteStore;
use crate::domain::{FederationId, PracticeId};
use crate::store::{unique_violation, At, Federation, FederationStore, StoreResult, TimeColumn};

fn federation_from_row(row: &SqliteRow) -> StoreResult<Federation> {
    Ok(Federation {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.time("created_at")?,
    })
}

#[async_trait]
impl FederationStore for SqliteStore {
    async fn create_federation(
        &self,
        name: &str,
        members: &[PracticeId],
        now: DateTime<Utc>,
    ) -> StoreResult<Federation> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "INSERT INTO federations (name, created_at) VALUES ($1, $2)
             RETURNING id, name, created_at",
        )
        .bind(name)
        .bind(At(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| unique_violation(e, &format!("federation {name}")))?;
        let federation = federation_from_row(&row)?;
        for practice_id in members {
            sqlx::query(
                "INSERT INTO federation_practices (federation_id, practice_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(federation.id)
            .bind(practice_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(federation)
    }

    async fn federations(&self) -> StoreResult<Vec<Federation>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM federations ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(federation_from_row).collect()
    }

    async fn federation(&self, id: FederationId) -> StoreResult<Option<Federation>> {
        let row = sqlx::query("SELECT id, name, created_at FROM federations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(federation_from_row).transpose()
    }

    async fn federation_by_name(&self, name: &str) -> StoreResult<Option<Federation>> {
        let row = sqlx::query("SELECT id, name, created_at FROM federations WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(federation_from_row).transpose()
    }

    async fn federation_members(&self, id: FederationId) -> StoreResult<Vec<PracticeId>> {
        Ok(sqlx::query_scalar(
            "SELECT practice_id FROM federation_practices WHERE federation_id = $1
             ORDER BY practice_id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn replace_federation_members(
        &self,
        id: FederationId,
        members: &[PracticeId],
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let exists: Option<FederationId> =
            sqlx::query_scalar("SELECT id FROM federations WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM federation_practices WHERE federation_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for practice_id in members {
            sqlx::query(
                "INSERT INTO federation_practices (federation_id, practice_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(practice_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
