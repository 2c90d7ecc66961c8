//! The leader: the one instance that runs the periodic jobs, elected through the database
//! as a lease (a row with an expiry) that the leader renews at every heartbeat. A leader
//! that stops renewing (killed, frozen with SIGSTOP, cut off from the database) loses the
//! lead when its lease runs out, `missed_beats` heartbeats after its last renewal, and
//! another instance takes it at its next bid; the old leader's job statements are fenced by
//! the lease, and at its next round it finds the lease gone and stands down.
//!
//! Jobs, every heartbeat: return expired leases to the queue (even when no worker is
//! claiming) and remove dead instances. Every ten minutes: the retention purge, and
//! forgetting patients whose cap is back to full.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Timing;
use crate::store::{ClusterStore, Leadership, StoreError, StoreResult};

/// Time between retention purges.
const PURGE_EVERY: Duration = Duration::from_secs(600);
/// Messages purged per statement: short transactions, so sends are never held up for long.
const PURGE_BATCH: u32 = 5_000;
/// The longest one purge round runs; the rest waits for the next heartbeat.
const PURGE_ROUND: Duration = Duration::from_secs(20);

/// Bids for leadership every heartbeat and, while leading, runs the jobs, until `stop`.
/// `leads` says whether this instance holds the lead, for work outside these jobs.
pub(super) async fn run(
    store: Arc<dyn ClusterStore>,
    id: String,
    timing: Timing,
    retention_days: u32,
    leads: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut leading: Option<Box<dyn Leadership>> = None;
    let mut next_purge = Instant::now();
    loop {
        if leading.is_none() {
            match within(timing.beat, store.try_lead(&id, lead_lease(timing))).await {
                Ok(Some(leadership)) => {
                    tracing::info!(instance = %id, "leading the periodic jobs");
                    leading = Some(leadership);
                    leads.send_replace(true);
                    next_purge = Instant::now();
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not bid for leadership"),
            }
        }
        if let Some(leadership) = leading.as_mut() {
            let jobs = Jobs {
                leadership: leadership.as_mut(),
                timing,
                retention_days,
            };
            if let Err(e) = jobs.run(&mut next_purge).await {
                // The lease may have run out: stand down and bid again.
                tracing::warn!(error = %e, "lost leadership");
                leading = None;
                leads.send_replace(false);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(timing.beat) => {}
            _ = stop.cancelled() => break,
        }
    }
    leads.send_replace(false);
    // Give the lease up, so another instance takes over at once rather than when it expires.
    if let Some(mut leadership) = leading {
        if let Err(e) = within(timing.beat, leadership.resign()).await {
            tracing::warn!(error = %e, "could not give up the lead; it expires on its own");
        }
    }
}

/// How long the leader's lease lasts without a renewal: as long as an instance's heartbeat
/// may be missing before it is taken for dead.
fn lead_lease(timing: Timing) -> Duration {
    timing.stale_after()
}

/// One round of the leader's jobs.
struct Jobs<'a> {
    leadership: &'a mut dyn Leadership,
    timing: Timing,
    retention_days: u32,
}

impl Jobs<'_> {
    async fn run(self, next_purge: &mut Instant) -> StoreResult<()> {
        let limit = self.timing.stale_after();
        within(limit, self.leadership.confirm()).await?;
        let requeued = within(limit, self.leadership.requeue_expired(Utc::now())).await?;
        if requeued > 0 {
            tracing::info!(
                requeued,
                "returned expired leases to the queue (their workers stopped)"
            );
        }
        let removed = within(limit, self.leadership.remove_dead(limit)).await?;
        if removed > 0 {
            tracing::info!(removed, "removed instances with no heartbeat");
        }
        if Instant::now() < *next_purge {
            return Ok(());
        }
        let now = Utc::now();
        let before = now - chrono::Duration::days(i64::from(self.retention_days));
        let started = Instant::now();
        let mut purged = 0;
        let finished = loop {
            let n = within(PURGE_ROUND, self.leadership.purge(before, now, PURGE_BATCH)).await?;
            purged += n;
            if n < u64::from(PURGE_BATCH) {
                break true;
            }
            // A long purge keeps the lease renewed, or another instance would take over.
            within(limit, self.leadership.confirm()).await?;
            if started.elapsed() >= PURGE_ROUND {
                break false;
            }
        };
        if purged > 0 {
            tracing::info!(
                purged,
                days = self.retention_days,
                "purged wording and addresses past retention"
            );
        }
        within(limit, self.leadership.forget_spent_quota(now)).await?;
        // A purge that ran out of time carries on at the next heartbeat.
        *next_purge = if finished {
            Instant::now() + PURGE_EVERY
        } else {
            Instant::now()
        };
        Ok(())
    }
}

/// `work`, failing if it takes longer than `limit` (a hung connection must not stall the
/// jobs, nor keep an instance believing it leads).
async fn within<T>(limit: Duration, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {limit:?}"),
        ))))
    })
}
