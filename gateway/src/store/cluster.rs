//! What several gateway instances share through the database: who is alive, who leads the
//! periodic jobs, and each patient's cap on non-urgent messages.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::PatientId;

/// An instance as it registers.
#[derive(Debug, Clone)]
pub struct NewInstance {
    /// Unique name, also the lease owner of its dispatch worker.
    pub id: String,
    /// `all`, `api` or `worker`.
    pub role: String,
    /// Whether it runs a dispatch worker (and so takes a share of every rate).
    pub dispatches: bool,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
}

/// A registered instance, as operators and tests see it.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    /// Unique name.
    pub id: String,
    /// `all`, `api` or `worker`.
    pub role: String,
    /// Whether it runs a dispatch worker.
    pub dispatches: bool,
    /// Its process id.
    pub pid: i64,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Whether it holds the leader's lease (as it last recorded).
    pub is_leader: bool,
}

/// Instances, their heartbeats and the leader's lease.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Registers an instance (again, if its row was removed) and returns how many *other*
    /// dispatching instances have beaten within `stale_after`. Registrations are serialised,
    /// so of two instances starting together the second always sees the first.
    async fn register_instance(
        &self,
        instance: &NewInstance,
        stale_after: Duration,
    ) -> StoreResult<u32>;
    /// Records a heartbeat; false if the row is gone (the others took it for dead).
    async fn beat(&self, id: &str) -> StoreResult<bool>;
    /// Dispatching instances whose last beat is within `stale_after`, by the database's clock.
    async fn live_workers(&self, stale_after: Duration) -> StoreResult<u32>;
    /// Removes an instance that is stopping.
    async fn deregister_instance(&self, id: &str) -> StoreResult<()>;
    /// Every registered instance, oldest first.
    async fn instances(&self) -> StoreResult<Vec<InstanceRecord>>;
    /// Takes the leader's lease for instance `id` for `lease` if no one holds it or its
    /// holder's has expired. On PostgreSQL it is a row with an expiry by the database's
    /// clock, renewed by [`Leadership::confirm`]: a leader that stops renewing (dead, frozen,
    /// cut off) loses it when it expires, whatever its connections do. SQLite serves one
    /// process, which always leads.
    async fn try_lead(&self, id: &str, lease: Duration)
        -> StoreResult<Option<Box<dyn Leadership>>>;
    /// For each `(patient, wanted)`, how many of `wanted` non-urgent messages the patient may
    /// have now under a cap of one per `interval` with `burst` at once (GCRA, counted in
    /// the database so that every instance shares it), counting those allowed.
    async fn take_patient_quota(
        &self,
        wanted: &[(PatientId, u32)],
        now: DateTime<Utc>,
        interval: Duration,
        burst: u32,
    ) -> StoreResult<Vec<(PatientId, u32)>>;
}

/// The leader's lease, held; the periodic jobs run through it, so that only the leader
/// runs them (on PostgreSQL each job's statement checks the lease is still this one, so a
/// deposed leader that wakes up mid-round changes nothing).
#[async_trait]
pub trait Leadership: Send {
    /// Renews the lease for another `lease` from now; an error
    /// ([`StoreError::LeaseLost`](super::StoreError::LeaseLost) if another took it) means
    /// leadership is lost.
    async fn confirm(&mut self) -> StoreResult<()>;
    /// Gives the lease up at once (a clean stop), so another instance takes it at its next
    /// bid.
    async fn resign(&mut self) -> StoreResult<()>;
    /// Returns expired leases to the queue, recording each lost attempt as `unknown`, even
    /// when no worker is claiming. Returns how many.
    async fn requeue_expired(&mut self, now: DateTime<Utc>) -> StoreResult<u64>;
    /// Removes instances with no heartbeat within `stale_after`. Returns how many.
    async fn remove_dead(&mut self, stale_after: Duration) -> StoreResult<u64>;
    /// Blanks the wording and address of up to `limit` final messages created before
    /// `created_before` and marks them purged at `now`. Returns how many.
    async fn purge(
        &mut self,
        created_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<u64>;
    /// Forgets patients whose cap is back to full. Returns how many.
    async fn forget_spent_quota(&mut self, now: DateTime<Utc>) -> StoreResult<u64>;
}

/// GCRA for `wanted` messages to one patient whose next message was due at `tat` (`None`:
/// never messaged): how many may go at `now`, and the new `tat`.
pub fn patient_allowance(
    tat: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    interval: Duration,
    burst: u32,
    wanted: u32,
) -> (u32, DateTime<Utc>) {
    let step = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX);
    let base = tat.map_or(now, |t| t.max(now));
    // Message j (from 0) may go while base + j*step <= now + (burst - 1)*step.
    let mut allowed = 0;
    let mut next = base;
    let limit = now + step * (burst.max(1) as i32 - 1);
    while allowed < wanted && next <= limit {
        allowed += 1;
        next += step;
    }
    (allowed, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_follows_the_gcra() {
        let now = Utc::now();
        let day = Duration::from_secs(86_400);
        let four_hours = day / 6;
        // A new patient may have the burst at once, and not one more.
        let (n, tat) = patient_allowance(None, now, four_hours, 6, 9);
        assert_eq!(n, 6);
        assert_eq!(tat, now + chrono::Duration::hours(24));
        let (n, _) = patient_allowance(Some(tat), now, four_hours, 6, 1);
        assert_eq!(n, 0);
        // Four hours later, one more.
        let later = now + chrono::Duration::hours(4);
        let (n, _) = patient_allowance(Some(tat), later, four_hours, 6, 3);
        assert_eq!(n, 1);
        // Two at a time count as two.
        let (n, tat) = patient_allowance(None, now, four_hours, 2, 1);
        assert_eq!(n, 1);
        assert_eq!(patient_allowance(Some(tat), now, four_hours, 2, 5).0, 1);
    }
}
