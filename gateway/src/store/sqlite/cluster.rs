//! Instances, leadership and the per-patient cap on SQLite: one process uses the file, so it
//! is the only instance and always leads; the same jobs run on its pool.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::Row;

use super::outbox::requeue_expired;
use super::SqliteStore;
use crate::domain::PatientId;
use crate::store::cluster::patient_allowance;
use crate::store::{
    At, ClusterStore, InstanceRecord, Leadership, NewInstance, StoreResult, TimeColumn,
};

/// The moment `stale_after` ago.
fn stale_since(stale_after: Duration) -> At {
    let ago = TimeDelta::from_std(stale_after).unwrap_or(TimeDelta::MAX);
    At(Utc::now()
        .checked_sub_signed(ago)
        .unwrap_or(DateTime::<Utc>::MIN_UTC))
}

#[async_trait]
impl ClusterStore for SqliteStore {
    async fn register_instance(
        &self,
        instance: &NewInstance,
        stale_after: Duration,
    ) -> StoreResult<u32> {
        let now = At(Utc::now());
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO instances (id, role, dispatches, host, pid, started_at, heartbeat_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, is_leader = 0",
        )
        .bind(&instance.id)
        .bind(&instance.role)
        .bind(instance.dispatches)
        .bind(&instance.host)
        .bind(i64::from(instance.pid))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM instances WHERE dispatches <> 0 AND id <> $1 AND heartbeat_at > $2",
        )
        .bind(&instance.id)
        .bind(stale_since(stale_after))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(u32::try_from(others).unwrap_or(u32::MAX))
    }

    async fn beat(&self, id: &str) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query("UPDATE instances SET heartbeat_at = $1 WHERE id = $2")
            .bind(At(Utc::now()))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(updated == 1)
    }

    async fn live_workers(&self, stale_after: Duration) -> StoreResult<u32> {
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM instances WHERE dispatches <> 0 AND heartbeat_at > $1",
        )
        .bind(stale_since(stale_after))
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(live).unwrap_or(u32::MAX))
    }

    async fn deregister_instance(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn instances(&self) -> StoreResult<Vec<InstanceRecord>> {
        let rows = sqlx::query(
            "SELECT id, role, dispatches, pid, heartbeat_at, is_leader FROM instances ORDER BY started_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(InstanceRecord {
                    id: row.try_get("id")?,
                    role: row.try_get("role")?,
                    dispatches: row.try_get("dispatches")?,
                    pid: row.try_get("pid")?,
                    heartbeat_at: row.time("heartbeat_at")?,
                    is_leader: row.try_get("is_leader")?,
                })
            })
            .collect()
    }

    async fn try_lead(
        &self,
        id: &str,
        _lease: Duration,
    ) -> StoreResult<Option<Box<dyn Leadership>>> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE instances SET is_leader = (id = $1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Box::new(SqliteLeadership {
            store: self.clone(),
        })))
    }

    async fn take_patient_quota(
        &self,
        wanted: &[(PatientId, u32)],
        now: DateTime<Utc>,
        interval: Duration,
        burst: u32,
    ) -> StoreResult<Vec<(PatientId, u32)>> {
        let mut tx = self.begin_write().await?;
        let mut allowed = Vec::with_capacity(wanted.len());
        for (patient, count) in wanted {
            let tat: Option<At> =
                sqlx::query_scalar("SELECT tat FROM patient_quota WHERE patient_id = $1")
                    .bind(patient)
                    .fetch_optional(&mut *tx)
                    .await?;
            let tat = tat.map(|t| t.0);
            let (n, tat) = patient_allowance(tat, now, interval, burst, *count);
            sqlx::query(
                "INSERT INTO patient_quota (patient_id, tat) VALUES ($1, $2)
                 ON CONFLICT (patient_id) DO UPDATE SET tat = excluded.tat",
            )
            .bind(patient)
            .bind(At(tat))
            .execute(&mut *tx)
            .await?;
            allowed.push((*patient, n));
        }
        tx.commit().await?;
        Ok(allowed)
    }
}

/// SQLite's leadership: always held; the jobs run on the store's pool.
struct SqliteLeadership {
    store: SqliteStore,
}

#[async_trait]
impl Leadership for SqliteLeadership {
    async fn confirm(&mut self) -> StoreResult<()> {
        Ok(())
    }

    async fn resign(&mut self) -> StoreResult<()> {
        Ok(())
    }

    async fn requeue_expired(&mut self, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.store.begin_write().await?;
        let requeued = requeue_expired(&mut tx, now).await?;
        tx.commit().await?;
        Ok(requeued)
    }

    async fn remove_dead(&mut self, stale_after: Duration) -> StoreResult<u64> {
        let mut tx = self.store.begin_write().await?;
        let removed = sqlx::query("DELETE FROM instances WHERE heartbeat_at <= $1")
            .bind(stale_since(stale_after))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(removed)
    }

    async fn purge(
        &mut self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        let mut tx = self.store.begin_write().await?;
        let purged = sqlx::query(
            "UPDATE messages SET body = '', subject = NULL, body_html = NULL, link = NULL,
                    address = '', purged_at = $1
             WHERE id IN (SELECT id FROM messages
                          WHERE purged_at IS NULL AND created_at < $2
                                AND state IN ('sent', 'delivered', 'read', 'failed', 'suppressed', 'cancelled')
                          ORDER BY created_at LIMIT $3)",
        )
        .bind(At(now))
        .bind(At(created_before))
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(purged)
    }

    async fn forget_spent_quota(&mut self, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.store.begin_write().await?;
        let forgotten = sqlx::query("DELETE FROM patient_quota WHERE tat <= $1")
            .bind(At(now))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(forgotten)
    }
}
