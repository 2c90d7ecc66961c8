//! Instances, the leader's lease and the shared per-patient cap on PostgreSQL.
//!
//! Heartbeats, staleness and the leader's lease are judged by the database's clock, so
//! instances on machines whose clocks disagree still agree on who is alive and who leads.
//! Every statement about the lease stands alone (no transaction spans two), so a leader
//! frozen between two of them holds no row lock that others would wait on.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::outbox::requeue_expired;
use super::PostgresStore;
use crate::domain::PatientId;
use crate::store::cluster::patient_allowance;
use crate::store::{
    At, ClusterStore, InstanceRecord, Leadership, NewInstance, StoreError, StoreResult, TimeColumn,
};

/// The condition a leader's job statement runs under: the lease is still holder `$1` at
/// generation `$2`, unexpired.
const LEAD_HELD: &str = "EXISTS (SELECT 1 FROM leader_lease
                               WHERE holder = $1 AND generation = $2 AND expires_at > now())";
/// The advisory lock key serialising registrations ("gw-regst").
const REGISTER_LOCK: i64 = 0x6777_2d72_6567_7374;

/// Seconds as PostgreSQL's double precision, for `make_interval`.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[async_trait]
impl ClusterStore for PostgresStore {
    async fn register_instance(
        &self,
        instance: &NewInstance,
        stale_after: Duration,
    ) -> StoreResult<u32> {
        let mut tx = self.begin().await?;
        // Two instances registering at once: the second waits here and counts the first.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(REGISTER_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO instances (id, role, dispatches, host, pid, started_at, heartbeat_at)
             VALUES ($1, $2, $3, $4, $5, now(), now())
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), is_leader = FALSE",
        )
        .bind(&instance.id)
        .bind(&instance.role)
        .bind(instance.dispatches)
        .bind(&instance.host)
        .bind(instance.pid as i32)
        .execute(&mut *tx)
        .await?;
        let others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM instances
             WHERE dispatches AND id <> $1 AND heartbeat_at > now() - make_interval(secs => $2)",
        )
        .bind(&instance.id)
        .bind(secs(stale_after))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(u32::try_from(others).unwrap_or(u32::MAX))
    }

    async fn beat(&self, id: &str) -> StoreResult<bool> {
        let updated = sqlx::query("UPDATE instances SET heartbeat_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(updated == 1)
    }

    async fn live_workers(&self, stale_after: Duration) -> StoreResult<u32> {
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM instances
             WHERE dispatches AND heartbeat_at > now() - make_interval(secs => $1)",
        )
        .bind(secs(stale_after))
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(live).unwrap_or(u32::MAX))
    }

    async fn deregister_instance(&self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM instances WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
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
                    pid: i64::from(row.try_get::<i32, _>("pid")?),
                    heartbeat_at: row.time("heartbeat_at")?,
                    is_leader: row.try_get("is_leader")?,
                })
            })
            .collect()
    }

    async fn try_lead(
        &self,
        id: &str,
        lease: Duration,
    ) -> StoreResult<Option<Box<dyn Leadership>>> {
        // Free, expired, or already ours: take it, bumping the generation that fences the
        // previous holder's jobs.
        let generation: Option<i64> = sqlx::query_scalar(
            "INSERT INTO leader_lease (id, holder, expires_at)
             VALUES (1, $1, now() + make_interval(secs => $2))
             ON CONFLICT (id) DO UPDATE
                 SET holder = excluded.holder, expires_at = excluded.expires_at,
                     generation = leader_lease.generation + 1
                 WHERE leader_lease.expires_at <= now() OR leader_lease.holder = excluded.holder
             RETURNING generation",
        )
        .bind(id)
        .bind(secs(lease))
        .fetch_optional(&self.pool)
        .await?;
        let Some(generation) = generation else {
            return Ok(None);
        };
        sqlx::query(&format!(
            "UPDATE instances SET is_leader = (id = $1) WHERE {LEAD_HELD}"
        ))
        .bind(id)
        .bind(generation)
        .execute(&self.pool)
        .await?;
        Ok(Some(Box::new(PgLeadership {
            pool: self.pool.clone(),
            id: id.to_string(),
            generation,
            lease,
        })))
    }

    async fn take_patient_quota(
        &self,
        wanted: &[(PatientId, u32)],
        now: DateTime<Utc>,
        interval: Duration,
        burst: u32,
    ) -> StoreResult<Vec<(PatientId, u32)>> {
        let mut wanted = wanted.to_vec();
        // Rows are locked in patient order, so two instances never wait on each other in a cycle.
        wanted.sort_unstable_by_key(|(patient, _)| *patient);
        wanted.dedup_by_key(|(patient, _)| *patient);
        let ids: Vec<PatientId> = wanted.iter().map(|(p, _)| *p).collect();
        let mut tx = self.begin().await?;
        // Every patient gets a row first (a row due `now` is a full cap), so the lock below
        // covers patients two instances see for the first time at once: the second insert
        // waits for the first to commit and then reads what it stored.
        sqlx::query(
            "INSERT INTO patient_quota (patient_id, tat) SELECT p, $2 FROM UNNEST($1::bigint[]) AS p
             ON CONFLICT (patient_id) DO NOTHING",
        )
        .bind(&ids)
        .bind(At(now))
        .execute(&mut *tx)
        .await?;
        let rows: Vec<(PatientId, DateTime<Utc>)> = sqlx::query_as(
            "SELECT patient_id, tat FROM patient_quota WHERE patient_id = ANY($1)
             ORDER BY patient_id FOR UPDATE",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let known: std::collections::HashMap<PatientId, DateTime<Utc>> = rows.into_iter().collect();
        let mut allowed = Vec::with_capacity(wanted.len());
        let mut tats = Vec::with_capacity(wanted.len());
        for (patient, count) in &wanted {
            let (n, tat) =
                patient_allowance(known.get(patient).copied(), now, interval, burst, *count);
            allowed.push((*patient, n));
            tats.push(tat);
        }
        sqlx::query(
            "UPDATE patient_quota q SET tat = u.tat
             FROM UNNEST($1::bigint[], $2::timestamptz[]) AS u(id, tat) WHERE q.patient_id = u.id",
        )
        .bind(&ids)
        .bind(&tats)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(allowed)
    }
}

/// The leader's lease, held: the jobs run on the pool, each statement fenced by the lease.
struct PgLeadership {
    pool: PgPool,
    id: String,
    generation: i64,
    lease: Duration,
}

#[async_trait]
impl Leadership for PgLeadership {
    async fn confirm(&mut self) -> StoreResult<()> {
        let renewed = sqlx::query(
            "UPDATE leader_lease SET expires_at = now() + make_interval(secs => $3)
             WHERE holder = $1 AND generation = $2 AND expires_at > now()",
        )
        .bind(&self.id)
        .bind(self.generation)
        .bind(secs(self.lease))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if renewed == 1 {
            Ok(())
        } else {
            Err(StoreError::LeaseLost(
                "the leader's lease expired or another instance took it".into(),
            ))
        }
    }

    async fn resign(&mut self) -> StoreResult<()> {
        sqlx::query("DELETE FROM leader_lease WHERE holder = $1 AND generation = $2")
            .bind(&self.id)
            .bind(self.generation)
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE instances SET is_leader = FALSE WHERE id = $1")
            .bind(&self.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn requeue_expired(&mut self, now: DateTime<Utc>) -> StoreResult<u64> {
        // Claimers do this too: it is safe from any instance, so it needs no fence.
        let mut conn = self.pool.acquire().await?;
        requeue_expired(&mut conn, now).await
    }

    async fn remove_dead(&mut self, stale_after: Duration) -> StoreResult<u64> {
        Ok(sqlx::query(&format!(
            "DELETE FROM instances
             WHERE heartbeat_at <= now() - make_interval(secs => $3) AND {LEAD_HELD}"
        ))
        .bind(&self.id)
        .bind(self.generation)
        .bind(secs(stale_after))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn purge(
        &mut self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(&format!(
            "WITH doomed AS (
                 SELECT id FROM messages
                 WHERE purged_at IS NULL AND created_at < $3
                       AND state IN ('sent', 'delivered', 'read', 'failed', 'suppressed', 'cancelled')
                       AND {LEAD_HELD}
                 ORDER BY created_at LIMIT $5
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE messages m SET body = '', subject = NULL, body_html = NULL, link = NULL,
                    address = '', purged_at = $4
             FROM doomed WHERE m.id = doomed.id"
        ))
        .bind(&self.id)
        .bind(self.generation)
        .bind(At(created_before))
        .bind(At(now))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn forget_spent_quota(&mut self, now: DateTime<Utc>) -> StoreResult<u64> {
        Ok(sqlx::query(&format!(
            "DELETE FROM patient_quota WHERE tat <= $3 AND {LEAD_HELD}"
        ))
        .bind(&self.id)
        .bind(self.generation)
        .bind(At(now))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
