//! Dispatch: claims due messages from the outbox with a lease, queues them per channel in
//! lanes (urgent first, practices taking turns), lets each go when its rate limits and its
//! provider's circuit allow, and records each outcome as soon as the send ends.
//!
//! A message's outcome is stored before its concurrency slot is freed, so a kill can repeat
//! at most `concurrency` messages: those in flight at the kill.

pub mod failover;
pub mod fence;
pub mod lanes;
pub mod limits;
pub mod origins;
mod recorder;
mod screen;
mod send;
mod slots;
mod trace;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DispatchConfig};
use crate::domain::{AttemptOutcome, BroadcastId, Channel, MessageState, PracticeId};
use crate::fallback::FallbackPolicy;
use crate::fanout::Fanout;
use crate::links::SignedLinks;
use crate::outbox::RetryPolicy;
use crate::providers::{PracticeRef, ProviderRegistry};
use crate::schedule::{system_clock, Clock, PracticeZone, QuietHours};
use crate::store::{ClaimedMessage, Completion, Store, StoreError};
use crate::telemetry::metrics::{CircuitGauge, Metrics, Outcome};
use crate::telemetry::traces::Propagation;
use failover::{CircuitState, Rotation};
use lanes::Lanes;
use limits::RateLimits;
use origins::Origins;
use recorder::Recorder;
use slots::Slots;

/// How often a worker checks whether broadcasts it holds messages of were superseded or
/// cancelled (by this or another instance).
const SUPERSEDE_CHECK: Duration = Duration::from_millis(200);

/// What every dispatch worker of one process shares: the rate limiters, the providers'
/// circuits and what is known of practices.
pub struct DispatchControl {
    /// Provider, practice and patient limits.
    pub limits: RateLimits,
    /// Each channel's providers with their health.
    pub rotation: Rotation,
    /// The health of each push service origin (web push), apart from the provider's.
    pub origins: Origins,
    /// The lanes of this process's workers, for the depth `/metrics` shows.
    lanes: Mutex<Vec<Weak<Lanes>>>,
    practices: Mutex<HashMap<PracticeId, PracticeInfo>>,
    /// Per practice, the newest broadcast known to supersede the ones before it, with the
    /// reason their messages are cancelled with.
    superseded: Mutex<HashMap<PracticeId, (BroadcastId, String)>>,
    /// Broadcasts stopped for good (cancelled by a person, or found withdrawn in the store),
    /// with the reason their messages are cancelled with.
    stopped: Mutex<HashMap<BroadcastId, String>>,
}

impl DispatchControl {
    /// Limiters and circuits for the configured providers.
    pub fn new(providers: &ProviderRegistry, config: &Config) -> Self {
        let max_pause = Duration::from_secs(config.dispatch.max_peer_delay_seconds);
        Self {
            limits: RateLimits::from_config(&config.providers, &config.limits),
            rotation: Rotation::with_max_pause(providers, &config.failover, max_pause),
            origins: Origins::new(config.failover.clone(), max_pause),
            lanes: Mutex::default(),
            practices: Mutex::default(),
            superseded: Mutex::default(),
            stopped: Mutex::default(),
        }
    }

    /// Forgets what dispatch read of a practice, so its next message sees its changes.
    pub fn forget_practice(&self, practice_id: PracticeId) {
        let mut known = self.practices.lock().unwrap_or_else(|e| e.into_inner());
        known.remove(&practice_id);
    }

    /// Records that broadcast `newer` of the practice supersedes every earlier one: their
    /// messages still held by workers are not sent.
    pub fn supersede(&self, practice_id: PracticeId, newer: BroadcastId, reason: String) {
        let mut known = self.superseded.lock().unwrap_or_else(|e| e.into_inner());
        let entry = known.entry(practice_id).or_insert((newer, reason.clone()));
        if entry.0 <= newer {
            *entry = (newer, reason);
        }
    }

    /// Records that broadcast `broadcast_id` is stopped for good (a person cancelled it):
    /// its messages still held by workers are cancelled with `reason`, not sent.
    pub fn stop(&self, broadcast_id: BroadcastId, reason: String) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        stopped.entry(broadcast_id).or_insert(reason);
    }

    /// Why a message of `broadcast_id` must not be sent, if a newer broadcast of its
    /// practice supersedes it or the broadcast was stopped.
    pub fn withdrawn_reason(
        &self,
        practice_id: PracticeId,
        broadcast_id: BroadcastId,
    ) -> Option<String> {
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = stopped.get(&broadcast_id) {
            return Some(reason.clone());
        }
        drop(stopped);
        let known = self.superseded.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(&practice_id)
            .filter(|(newer, _)| broadcast_id < *newer)
            .map(|(_, reason)| reason.clone())
    }
}

impl DispatchControl {
    /// Remembers a worker's lanes, for [`DispatchControl::lane_depth`].
    fn watch(&self, lanes: &Arc<Lanes>) {
        let mut watched = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        watched.retain(|l| l.strong_count() > 0);
        watched.push(Arc::downgrade(lanes));
    }

    /// Messages held in memory by this process's workers, per channel: waiting in their
    /// lanes or being sent.
    pub fn lane_depth(&self) -> Vec<(Channel, usize)> {
        let watched = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        Channel::ALL
            .iter()
            .map(|c| {
                let held = watched
                    .iter()
                    .filter_map(Weak::upgrade)
                    .flat_map(|l| l.held())
                    .filter(|(d, _)| d == c)
                    .map(|(_, n)| n)
                    .sum();
                (*c, held)
            })
            .collect()
    }
}

/// What dispatch needs of a practice: who messages are from, and its timezone.
#[derive(Clone)]
struct PracticeInfo {
    reference: PracticeRef,
    timezone: PracticeZone,
    /// The practice's own quiet hours, if it set them.
    quiet_hours: Option<QuietHours>,
    /// When it was read: it is read again after [`PRACTICE_REREAD`].
    read_at: std::time::Instant,
}

/// How long dispatch trusts what it read of a practice. A change through this process's
/// API is seen at once (see [`DispatchControl::forget_practice`]); one through another
/// instance (a new SMS sender, say) within this long.
const PRACTICE_REREAD: Duration = Duration::from_secs(30);

/// One dispatch worker: a claimer feeding per-channel lanes, a sender per channel, and a
/// writer recording outcomes in batches.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    control: Arc<DispatchControl>,
    config: DispatchConfig,
    policy: RetryPolicy,
    owner: String,
    wake: Arc<Notify>,
    links: Option<SignedLinks>,
    quiet_hours: Option<QuietHours>,
    clock: Clock,
    metrics: Arc<Metrics>,
    fanout: Option<Arc<Fanout>>,
    propagation: Propagation,
    fallback: FallbackPolicy,
}

impl Dispatcher {
    /// A worker with a fresh, unique lease owner name.
    pub fn new(
        store: Arc<dyn Store>,
        control: Arc<DispatchControl>,
        config: DispatchConfig,
        wake: Arc<Notify>,
    ) -> Self {
        let owner = format!(
            "worker-{}-{:08x}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        );
        Self {
            store,
            control,
            policy: RetryPolicy::from_config(&config),
            config,
            owner,
            wake,
            links: None,
            quiet_hours: None,
            clock: system_clock(),
            metrics: Arc::new(Metrics::new()),
            fanout: None,
            propagation: Propagation::default(),
            fallback: FallbackPolicy::default(),
        }
    }

    /// Sends in spans that continue the trace of the request behind each message, read with
    /// the claim's broadcasts (when `propagation` is on).
    pub fn with_propagation(mut self, propagation: Propagation) -> Self {
        self.propagation = propagation;
        self
    }

    /// Gives each message sent on a channel, and by a provider, that can confirm delivery
    /// the deadline its key has under `fallback` (see the `fallback` module).
    pub fn with_fallback(mut self, fallback: FallbackPolicy) -> Self {
        self.fallback = fallback;
        self
    }

    /// Adds one-click unsubscribe links to bulk email.
    pub fn with_unsubscribe_links(mut self, links: Option<SignedLinks>) -> Self {
        self.links = links;
        self
    }

    /// Holds bulk SMS and push (first sends and retries) out of quiet hours, judged by
    /// `clock` (tests set the time of day).
    pub fn with_quiet_hours(mut self, quiet_hours: Option<QuietHours>, clock: Clock) -> Self {
        self.quiet_hours = quiet_hours;
        self.clock = clock;
        self
    }

    /// Counts outcomes, waits and circuit states here.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Re-plans a broadcast message on the patient's next channel when an address is refused.
    pub fn with_rerouting(mut self, fanout: Arc<Fanout>) -> Self {
        self.fanout = Some(fanout);
        self
    }

    /// Names this worker's leases after its instance (see `cluster`), so operators can tell
    /// whose they are.
    pub fn with_owner(mut self, owner: String) -> Self {
        self.owner = owner;
        self
    }

    /// The name this worker's leases carry.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until `shutdown` is cancelled: then stops claiming, lets in-flight sends finish
    /// (waiting at most the lease time) and gives back the leases of messages not started.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(owner = %self.owner, concurrency = self.config.concurrency, "dispatch worker started");
        if let Err(e) = self.work(shutdown, false).await {
            tracing::error!(error = %e, "dispatch worker stopped on a store error");
        }
    }

    /// Sends everything due now (waiting out rate limits), then returns how many messages
    /// it claimed: for tests, benchmarks and one-shot runs.
    pub async fn run_until_idle(&self) -> Result<u64, StoreError> {
        // Anything due is claimed at once, so a store failure shows up before work starts.
        self.store.ping().await?;
        self.clone().work(CancellationToken::new(), true).await
    }

    /// The claimer, the channel senders, the heartbeat and the writer, until told to stop
    /// (or, with `until_idle`, until nothing is due or in hand).
    async fn work(self, shutdown: CancellationToken, until_idle: bool) -> Result<u64, StoreError> {
        // Every task lives in a JoinSet owned here, so dropping this future (a kill, in
        // tests) stops them all, as the end of the process would.
        let lanes = Arc::new(Lanes::default());
        self.control.watch(&lanes);
        let lease = Duration::from_secs(self.config.lease_seconds);
        let (recorder, writer) = Recorder::new(self.store.clone(), self.owner.clone(), lease);
        let control = self.control.clone();
        let permits = Arc::new(
            Slots::new(self.config.concurrency, lanes.clone()).with_held_back(Box::new(move |c| {
                control.rotation.all_out(c, std::time::Instant::now())
            })),
        );
        let stop = shutdown.child_token();
        let mut background = JoinSet::new();
        background.spawn(writer);
        let fence = recorder.fence();
        background.spawn(self.clone().heartbeat(fence, lanes.clone(), stop.clone()));
        let mut senders = JoinSet::new();
        for channel in Channel::ALL {
            senders.spawn(self.clone().sender(
                channel,
                lanes.clone(),
                recorder.clone(),
                permits.clone(),
                stop.clone(),
            ));
        }
        let claimed = self.claim(&lanes, &recorder, &stop, until_idle).await;
        drop(recorder);
        stop.cancel();
        // Senders return once their in-flight sends have finished and been recorded.
        let grace = Duration::from_secs(self.config.lease_seconds);
        let finished = tokio::time::timeout(grace, async {
            while senders.join_next().await.is_some() {}
            while background.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!("dispatch: sends still running at shutdown; their leases will expire");
            senders.abort_all();
            background.abort_all();
        }
        match self.store.release_leases(&self.owner, Utc::now()).await {
            Ok(n) if !until_idle => {
                tracing::info!(owner = %self.owner, released = n, "dispatch worker stopped")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "dispatch: could not release leases; they will expire")
            }
        }
        claimed
    }

    /// Keeps the lanes topped up: claims due messages while there is room (and urgent ones
    /// even when there is not), screening each for quiet hours and the patient's cap.
    async fn claim(
        &self,
        lanes: &Lanes,
        recorder: &Recorder,
        stop: &CancellationToken,
        until_idle: bool,
    ) -> Result<u64, StoreError> {
        let batch = self.config.claim_batch;
        let most = (batch * 4).max(self.config.concurrency * 2);
        let idle = Duration::from_millis(self.config.poll_interval_ms);
        let mut total = 0u64;
        // Set when leaving crowded practices out found nothing: they are the only ones with
        // messages due, so until then (or until new messages ring `wake`) they are not left
        // out, which would make every claim scan past their queue for nothing.
        let mut alone_until: Option<std::time::Instant> = None;
        let mut supersede_checked = std::time::Instant::now();
        while !stop.is_cancelled() {
            // A few seconds of this instance's share of the rates, so a dead or new worker's
            // share moves to the others quickly.
            let high_water = fence::hold_limit(most, self.control.limits.share_per_second());
            if supersede_checked.elapsed() >= SUPERSEDE_CHECK {
                self.withdraw_superseded(lanes, recorder).await;
                supersede_checked = std::time::Instant::now();
            }
            // Room is counted per channel: a full lane (a stalled channel) only stops the
            // claiming of its own broadcast messages.
            let full = lanes.full(high_water);
            let room = lanes.room(high_water);
            let urgent_only = room == 0;
            let limit = if urgent_only { batch } else { room.min(batch) };
            // No practice takes more than half the lanes while others have messages due.
            let alone = alone_until.is_some_and(|t| t > std::time::Instant::now());
            let crowded = if alone || urgent_only {
                Vec::new()
            } else {
                lanes.crowded(high_water / 2)
            };
            let now = Utc::now();
            let lease_until = now + chrono::Duration::seconds(self.config.lease_seconds as i64);
            let claimed = match self
                .store
                .claim_due_skipping(
                    &self.owner,
                    now,
                    lease_until,
                    limit,
                    urgent_only,
                    &crowded,
                    &full,
                )
                .await
            {
                Ok(claimed) => claimed,
                // A one-shot run reports the failure; a worker waits and tries again.
                Err(e) if until_idle => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "dispatch: store failed; retrying shortly");
                    tokio::select! {
                        _ = tokio::time::sleep(idle * 4) => {}
                        _ = stop.cancelled() => {}
                    }
                    continue;
                }
            };
            let count = claimed.len();
            total += count as u64;
            if count == 0 && !crowded.is_empty() {
                alone_until = Some(std::time::Instant::now() + Duration::from_secs(1));
                continue;
            }
            let ready = self.screen(claimed, recorder).await;
            let ready = self.drop_withdrawn(ready, recorder).await;
            lanes.push(ready);
            if count == limit && !urgent_only {
                continue;
            }
            // Idle only when a claim of everything due found nothing and nothing is in hand.
            if until_idle && count == 0 && !urgent_only && crowded.is_empty() {
                if lanes.idle() {
                    break;
                }
            } else if until_idle && lanes.idle() {
                continue;
            }
            // Top up again once the lanes run low (not while they are low already: then
            // nothing more was due, and new messages ring `wake`).
            let low_water = high_water / 4;
            let topping_up = lanes.len() >= low_water;
            tokio::select! {
                _ = self.wake.notified() => alone_until = None,
                _ = tokio::time::sleep(idle.min(SUPERSEDE_CHECK)) => {}
                _ = lanes.drained_below(low_water), if topping_up => {}
                _ = stop.cancelled() => {}
            }
        }
        Ok(total)
    }

    /// Takes the messages of superseded or cancelled broadcasts out of the lanes and records
    /// them cancelled, naming the newer status change or who cancelled and why: a worker
    /// holding a backlog must not send "closed" after "restored" was posted, nor go on with
    /// a broadcast a person stopped (possibly through another instance). What it learns is
    /// remembered in [`DispatchControl`], so messages already out of the lanes, waiting for
    /// the rate, are dropped too.
    async fn withdraw_superseded(&self, lanes: &Lanes, recorder: &Recorder) {
        let waiting = lanes.broadcasts();
        if waiting.is_empty() {
            return;
        }
        let superseded = match self.store.withdrawn_among(&waiting).await {
            Ok(superseded) if !superseded.is_empty() => superseded,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "dispatch: could not check for superseded broadcasts");
                return;
            }
        };
        for (id, reason) in &superseded {
            self.control.stop(*id, reason.clone());
        }
        let ids: Vec<BroadcastId> = superseded.iter().map(|(id, _)| *id).collect();
        let withdrawn = lanes.withdraw(&ids);
        let records = withdrawn.iter().map(|m| {
            let reason = superseded
                .iter()
                .find(|(id, _)| Some(*id) == m.broadcast_id)
                .map(|(_, reason)| reason.clone())
                .unwrap_or_default();
            self.withdraw(m, reason, recorder)
        });
        futures_util::future::join_all(records).await;
        tracing::info!(
            count = withdrawn.len(),
            "withdrew messages of superseded or cancelled broadcasts"
        );
    }

    /// Records a claimed message cancelled without sending it, for `reason`.
    async fn withdraw(&self, message: &ClaimedMessage, reason: String, recorder: &Recorder) {
        self.record_outcome(Outcome::Cancelled);
        let now = Utc::now();
        recorder
            .record(Completion {
                message_id: message.id,
                attempt_no: message.attempt_no,
                provider: None,
                outcome: AttemptOutcome::Withdrawn,
                provider_ref: None,
                error: Some(reason),
                new_state: MessageState::Cancelled,
                next_attempt_at: None,
                started_at: now,
                finished_at: now,
                fallback_due_at: None,
            })
            .await;
        self.metrics
            .message_outcome(message.channel, None, Outcome::Cancelled);
    }

    /// Extends this worker's leases while messages wait in its lanes (dropping them if the
    /// leases may have been lost: see `fence`), and lets the limiters forget idle practices.
    async fn heartbeat(self, fence: Arc<fence::Fence>, lanes: Arc<Lanes>, stop: CancellationToken) {
        // Three beats per lease, so a lease never runs out between two of them.
        let every = Duration::from_millis((self.config.lease_seconds * 1000 / 3).max(100));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
            self.renew_leases(&fence, &lanes, every).await;
            self.control.limits.forget_idle();
        }
    }

    /// What dispatch knows of a practice, read once and then remembered for a while (see
    /// [`PRACTICE_REREAD`]), so messages cost no query each.
    async fn practice(&self, practice_id: PracticeId) -> Result<PracticeInfo, StoreError> {
        let known = |id| {
            self.control.practices.lock().ok().and_then(
                |m: std::sync::MutexGuard<'_, HashMap<PracticeId, PracticeInfo>>| {
                    m.get(&id)
                        .filter(|p| p.read_at.elapsed() < PRACTICE_REREAD)
                        .cloned()
                },
            )
        };
        if let Some(p) = known(practice_id) {
            return Ok(p);
        }
        let info = match self.store.practice_by_id(practice_id).await? {
            Some(p) => PracticeInfo {
                reference: PracticeRef::of(&p),
                timezone: p.timezone,
                quiet_hours: p.quiet_hours,
                read_at: std::time::Instant::now(),
            },
            None => PracticeInfo {
                reference: PracticeRef::default(),
                timezone: PracticeZone::UK,
                quiet_hours: None,
                read_at: std::time::Instant::now(),
            },
        };
        if let Ok(mut m) = self.control.practices.lock() {
            m.insert(practice_id, info.clone());
        }
        Ok(info)
    }

    fn circuit_gauge(&self, provider: &str, state: CircuitState) {
        let gauge = match state {
            CircuitState::Closed => CircuitGauge::Closed,
            CircuitState::HalfOpen => CircuitGauge::HalfOpen,
            CircuitState::Open => CircuitGauge::Open,
        };
        self.metrics.circuit_state(provider, gauge);
    }
}
