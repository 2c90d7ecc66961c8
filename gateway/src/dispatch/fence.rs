//! The send fence: a worker hands a message to a provider only while it still holds the
//! message's lease, with a margin.
//!
//! Two checks stand before every send. Locally, the worker's leases were last renewed (by its
//! heartbeat, which extends them all) recently enough that none can have expired: a worker
//! that was paused or cut off from the database finds its fence closed, sends nothing and
//! drops what it holds. Then in the database, in batches (group commit), each message is
//! marked started only if its lease is still this worker's for this attempt (owner and
//! attempt number: the same token the recorder compares) and runs well past now; a message
//! another worker took over is not sent. Marking also says which messages were really in
//! flight: a lease that expires on a started message gets an `unknown` attempt, one that
//! expires on a message only claimed goes back to the queue uncounted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use super::lanes::Lanes;
use super::Dispatcher;
use crate::domain::MessageId;
use crate::store::{ClaimedMessage, OutboxStore};

/// Most messages marked started in one statement.
const MAX_BATCH: usize = 512;
/// Seconds of this instance's share of the provider rates a worker holds in memory at most.
const HOLD_SECONDS: f64 = 3.0;
/// The fewest messages a worker keeps waiting, whatever the rate.
const HOLD_AT_LEAST: usize = 4;

type Mark = ((MessageId, i32), oneshot::Sender<bool>);

/// One worker's view of its leases and the marker of started sends.
pub struct Fence {
    lease: Duration,
    margin: Duration,
    epoch: Instant,
    /// When (nanoseconds after `epoch`) the last renewal of every lease held was issued.
    renewed: AtomicU64,
    /// Messages dropped without a send whose leases may still be this worker's: given back
    /// at the next heartbeat, so that it does not keep them alive.
    given_back: Mutex<Vec<MessageId>>,
    /// How many times the renewals were found late (every lease possibly lost).
    breaks: AtomicU64,
    marks: mpsc::Sender<Mark>,
    store: Arc<dyn OutboxStore>,
    owner: String,
}

/// A message's admission, asked for as soon as its sender takes it (so the database round
/// trip overlaps the waits for a slot and the rate) and settled just before the send.
pub struct Admission {
    id: MessageId,
    asked: Instant,
    breaks: u64,
    answer: Option<oneshot::Receiver<bool>>,
}

/// An admitted message: it may be sent while [`Fence::holds`] says so.
pub struct Admitted {
    breaks: u64,
}

impl Fence {
    /// A fence for leases of `lease`, opened now, and the marker to run for `owner`; the
    /// marker ends once the fence is dropped.
    pub fn new(
        store: Arc<dyn OutboxStore>,
        owner: String,
        lease: Duration,
    ) -> (
        Arc<Self>,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let margin = margin_of(lease);
        let fence = Arc::new(Self {
            lease,
            margin,
            epoch: Instant::now(),
            renewed: AtomicU64::new(0),
            given_back: Mutex::default(),
            breaks: AtomicU64::new(0),
            marks: tx,
            store: store.clone(),
            owner: owner.clone(),
        });
        fence.renewed(Instant::now());
        (fence, mark(store, owner, lease, margin, rx))
    }

    /// Records that a renewal of every lease held, issued at `issued`, succeeded.
    pub fn renewed(&self, issued: Instant) {
        let nanos = issued.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.renewed.fetch_max(nanos, Ordering::SeqCst);
    }

    /// Whether every lease held is still live with the margin at `at`.
    pub fn open_at(&self, at: Instant) -> bool {
        let renewed = self.epoch + Duration::from_nanos(self.renewed.load(Ordering::SeqCst));
        at < renewed + self.lease.saturating_sub(self.margin)
    }

    /// Notes a message dropped without a send, to give its lease back.
    fn give_back(&self, id: MessageId) {
        self.given_back
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id);
    }

    fn take_given_back(&self) -> Vec<MessageId> {
        std::mem::take(&mut *self.given_back.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Asks for `message`'s admission: if the fence is open, the database is asked to mark
    /// it started (see [`Fence::admit`]).
    pub async fn request(&self, message: &ClaimedMessage) -> Admission {
        let asked = Instant::now();
        let mut admission = Admission {
            id: message.id,
            asked,
            breaks: self.breaks.load(Ordering::SeqCst),
            answer: None,
        };
        if self.open_at(asked) {
            let (done, answer) = oneshot::channel();
            if self
                .marks
                .send(((message.id, message.attempt_no), done))
                .await
                .is_ok()
            {
                admission.answer = Some(answer);
            }
        }
        admission
    }

    /// Whether the message may go to a provider now: the fence was open when asked and still
    /// is, and the database marked it started for this worker (its lease still this worker's
    /// for this attempt, with a margin, and extended). A `false` means the message is dropped,
    /// unsent, its lease (if still this worker's) given back at the next heartbeat.
    pub async fn admit(&self, admission: Admission) -> Option<Admitted> {
        let limit = self.lease.saturating_sub(self.margin);
        let started = match admission.answer {
            Some(answer) => {
                let left = limit.saturating_sub(admission.asked.elapsed());
                matches!(tokio::time::timeout(left, answer).await, Ok(Ok(true)))
            }
            None => false,
        };
        let admitted = Admitted {
            breaks: admission.breaks,
        };
        if started && admission.asked.elapsed() < limit && self.holds(&admitted) {
            return Some(admitted);
        }
        // Refused (another worker holds it, or this lease ran too short), marked too late to
        // be sure the lease outlasts the send, or no answer (the mark may yet land).
        self.give_back(admission.id);
        None
    }

    /// Whether an admitted message's lease is still live with the margin now: the fence is
    /// open and has not been found broken since the message was admitted.
    pub fn holds(&self, admitted: &Admitted) -> bool {
        self.open_at(Instant::now()) && self.breaks.load(Ordering::SeqCst) == admitted.breaks
    }

    /// Returns an admitted message that will not be sent to the queue uncounted at once.
    pub async fn release_now(&self, id: MessageId) {
        let now = Utc::now();
        let due = [(id, now)];
        if let Err(e) = self.store.defer(&self.owner, &due, now).await {
            tracing::warn!(error = %e, message = id.get(), "dispatch: could not give back a lease");
            self.give_back(id);
        }
    }

    /// Gives back an admission that will not be used (the worker is stopping): a message
    /// marked started is returned to the queue uncounted at once.
    pub async fn abandon(&self, admission: Admission) {
        let Some(answer) = admission.answer else {
            return;
        };
        let limit = self.lease.saturating_sub(self.margin);
        if let Ok(Ok(true)) = tokio::time::timeout(limit, answer).await {
            self.release_now(admission.id).await;
        }
    }
}

/// The margin a lease must still have when a send starts: a third of it (the heartbeat
/// renews three times per lease, so a worker on time never finds its fence closed).
pub fn margin_of(lease: Duration) -> Duration {
    lease / 3
}

/// How many claimed messages a worker keeps waiting: a few seconds of its share of the
/// provider rates, at least a handful, never more than `most`.
pub fn hold_limit(most: usize, share_per_second: Option<f64>) -> usize {
    match share_per_second {
        Some(rate) if rate.is_finite() && rate >= 0.0 => {
            let held = (rate * HOLD_SECONDS).ceil();
            let held = if held >= most as f64 {
                most
            } else {
                held as usize
            };
            held.max(HOLD_AT_LEAST).min(most.max(1))
        }
        _ => most,
    }
}

/// Marks sends started in batches until every fence is dropped.
async fn mark(
    store: Arc<dyn OutboxStore>,
    owner: String,
    lease: Duration,
    margin: Duration,
    mut rx: mpsc::Receiver<Mark>,
) {
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    let margin = chrono::Duration::from_std(margin / 2).unwrap_or(chrono::Duration::zero());
    let mut batch: Vec<Mark> = Vec::with_capacity(MAX_BATCH);
    while super::recorder::next_batch(&mut rx, &mut batch, MAX_BATCH).await {
        let (sends, answers): (Vec<(MessageId, i32)>, Vec<oneshot::Sender<bool>>) =
            batch.drain(..).unzip();
        let now = Utc::now();
        let started = match store
            .start_sends(&owner, &sends, now, now + margin, now + lease)
            .await
        {
            Ok(started) => started,
            Err(e) => {
                tracing::warn!(error = %e, count = sends.len(), "dispatch: could not mark sends started; they wait");
                vec![false; sends.len()]
            }
        };
        for ((id, _), (answer, started)) in sends.iter().zip(answers.into_iter().zip(started)) {
            if !started {
                tracing::debug!(message = id.get(), "lease no longer held: not sent");
            }
            let _ = answer.send(started);
        }
    }
}

impl Dispatcher {
    /// One heartbeat of this worker's leases: extends them all, or, if the last renewal is
    /// too old for them all to be live (the process was paused, the database unreachable),
    /// drops every message waiting in memory and gives back the leases not started first.
    /// Each store call is cut off after `limit`.
    pub(super) async fn renew_leases(&self, fence: &Fence, lanes: &Lanes, limit: Duration) {
        let issued = Instant::now();
        if !fence.open_at(issued) {
            // Admitted messages not yet sent may have been taken over too: they are not sent.
            fence.breaks.fetch_add(1, Ordering::SeqCst);
            let dropped = lanes.drain_all();
            tracing::warn!(
                owner = %self.owner,
                dropped = dropped.len(),
                "dispatch: leases not renewed in time; dropped the messages held in memory"
            );
            fence.take_given_back();
            match tokio::time::timeout(limit, self.store.release_leases(&self.owner, Utc::now()))
                .await
            {
                Ok(Ok(n)) => tracing::info!(released = n, "dispatch: gave back unstarted leases"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "dispatch: could not give back leases");
                    return;
                }
                Err(_) => {
                    tracing::warn!("dispatch: giving back leases took too long");
                    return;
                }
            }
        } else {
            let back = fence.take_given_back();
            if !back.is_empty() {
                let now = Utc::now();
                let due: Vec<_> = back.iter().map(|id| (*id, now)).collect();
                let given = tokio::time::timeout(limit, self.store.defer(&self.owner, &due, now));
                if !matches!(given.await, Ok(Ok(_))) {
                    // Tried again at the next heartbeat (and released if the fence closes).
                    for id in back {
                        fence.give_back(id);
                    }
                }
            }
        }
        let until =
            Utc::now() + chrono::Duration::from_std(fence.lease).unwrap_or(chrono::Duration::MAX);
        match tokio::time::timeout(limit, self.store.extend_leases(&self.owner, until)).await {
            Ok(Ok(_)) => fence.renewed(issued),
            Ok(Err(e)) => tracing::warn!(error = %e, "dispatch: could not extend leases"),
            Err(_) => tracing::warn!("dispatch: extending leases took too long"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_holds_a_few_seconds_of_its_share() {
        // 100/s among three instances: about 100 messages, not 1,024.
        assert_eq!(hold_limit(1024, Some(100.0 / 3.0)), 100);
        assert_eq!(hold_limit(1024, Some(50.0)), 150);
        // Never more than the claimer's own limit, never fewer than a handful.
        assert_eq!(hold_limit(64, Some(10_000.0)), 64);
        assert_eq!(hold_limit(1024, Some(0.01)), HOLD_AT_LEAST);
        assert_eq!(hold_limit(2, Some(0.01)), 2);
        // No rate to go by: the claimer's limit.
        assert_eq!(hold_limit(1024, None), 1024);
        assert_eq!(hold_limit(1024, Some(f64::NAN)), 1024);
        assert_eq!(hold_limit(1024, Some(f64::INFINITY)), 1024);
    }

    #[tokio::test]
    async fn the_fence_closes_when_renewals_stop() {
        let lease = Duration::from_secs(3);
        assert_eq!(margin_of(lease), Duration::from_secs(1));
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("f.db").display());
        let store = crate::store::connect(&url, 1).await.unwrap();
        let (fence, _marker) = Fence::new(store, "w".into(), lease);
        let epoch = Instant::now();
        fence.renewed(epoch);
        assert!(fence.open_at(epoch + Duration::from_millis(1_999)));
        assert!(!fence.open_at(epoch + Duration::from_secs(2)));
        // A renewal issued a second later keeps it open a second longer; an older one
        // arriving late changes nothing.
        fence.renewed(epoch + Duration::from_secs(1));
        fence.renewed(epoch + Duration::from_millis(500));
        assert!(fence.open_at(epoch + Duration::from_millis(2_999)));
        assert!(!fence.open_at(epoch + Duration::from_secs(3)));
    }
}
