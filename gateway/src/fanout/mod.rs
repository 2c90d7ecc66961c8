//! Fan-out: turns one trigger into one outbox message per eligible patient.
//!
//! Patients are read a page at a time and messages written in multi-row batches, so memory
//! does not grow with the list. Each message's idempotency key (broadcast, patient) makes a
//! repeated or resumed fan-out add nothing twice.

mod affected;
mod withdraw;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::domain::{
    BroadcastId, Channel, ChannelChoice, FollowerId, Language, PatientId, PracticeId, Priority,
    TemplateVersionId,
};
use crate::render::budget::Exceeded;
use crate::render::{
    status_context_in, Chosen, MessageTemplates, RenderError, Rendered, TemplateRegistry,
};
use crate::schedule::{system_clock, Clock, QuietHours};
use crate::store::{
    AuditEntry, Broadcast, FanoutContact, FanoutPatient, NewMessage, Practice, Recipient, Store,
    StoreError,
};
pub use affected::AFFECTED_TEMPLATE;
use affected::{affected_message, Bookings, Plan};
pub use withdraw::{cancel_unsent, cancel_unsent_in_background, withdraw_before};

/// Fan-outs planning at once in one process unless [`Fanout::with_concurrency`] says.
const DEFAULT_CONCURRENCY: usize = 4;

/// Head starts planning at once beside `fanouts` full fan-outs: half as many (at least one),
/// since each holds a database connection too, but only for one page.
fn head_places(fanouts: usize) -> usize {
    (fanouts / 2).max(1)
}

/// Times a fan-out interrupted by a store error is tried again (pauses of 0.5 s doubling
/// to 30 s: about two minutes in all) before it is left for the next start.
const STORE_RETRIES: u32 = 8;

/// Why a fan-out stopped.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The store failed; the fan-out can be resumed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A template failed to render.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The broadcast or its practice is gone.
    #[error("broadcast {0} or its practice does not exist")]
    NotFound(BroadcastId),
    /// The practice is gone.
    #[error("practice {0} does not exist")]
    NoPractice(PracticeId),
    /// The broadcast's wording could not be rendered, so its fan-out was stopped and the
    /// broadcast marked failed (other broadcasts are not affected).
    #[error("broadcast {broadcast_id} failed: {reason}")]
    Failed {
        /// The broadcast.
        broadcast_id: BroadcastId,
        /// Why, as recorded on the broadcast.
        reason: String,
    },
    /// The blocking task that renders the wording died.
    #[error("rendering task failed: {0}")]
    Task(String),
}

/// What a fan-out planned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanoutSummary {
    /// Messages planned per channel (including any written by an earlier, interrupted run).
    pub planned: BTreeMap<Channel, u64>,
    /// Messages new to the outbox in this run.
    pub inserted: u64,
    /// Patients with no contact that can be used.
    pub skipped_no_contact: u64,
}

/// Who a broadcast would reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Audience {
    /// Recipients per channel (patients, and on push anonymous followers too).
    pub recipients: BTreeMap<Channel, u64>,
    /// Patients with no contact that can be used.
    pub no_contact: u64,
}

/// Runs fan-outs against a store, waking the dispatcher as messages land.
pub struct Fanout {
    /// Fan-outs planning at once in this process: each holds a database connection while
    /// it writes, so a storm of status changes queues here instead of taking every
    /// connection the API and dispatch need.
    running: Arc<tokio::sync::Semaphore>,
    /// Places for head starts (a practice's first page only), apart from `running`: when
    /// hundreds of practices post at once, each one's first messages are planned within a
    /// page's time instead of queueing behind every earlier practice's whole list.
    head_starts: Arc<tokio::sync::Semaphore>,
    store: Arc<dyn Store>,
    templates: Arc<TemplateRegistry>,
    batch_size: usize,
    wake: Arc<Notify>,
    quiet_hours: Option<QuietHours>,
    clock: Clock,
    /// Whether an NHS App provider is configured, so every patient not marked unreachable
    /// there has an NHS App contact.
    nhs_app: bool,
}

impl Fanout {
    /// A fan-out writing `batch_size` messages per statement.
    pub fn new(
        store: Arc<dyn Store>,
        templates: Arc<TemplateRegistry>,
        batch_size: usize,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            running: Arc::new(tokio::sync::Semaphore::new(DEFAULT_CONCURRENCY)),
            head_starts: Arc::new(tokio::sync::Semaphore::new(head_places(
                DEFAULT_CONCURRENCY,
            ))),
            store,
            templates,
            batch_size,
            wake,
            quiet_hours: None,
            clock: system_clock(),
            nhs_app: false,
        }
    }

    /// Lets at most `fanouts` fan-outs plan at once (at least one), and half as many head
    /// starts beside them.
    pub fn with_concurrency(mut self, fanouts: usize) -> Self {
        self.running = Arc::new(tokio::sync::Semaphore::new(fanouts.max(1)));
        self.head_starts = Arc::new(tokio::sync::Semaphore::new(head_places(fanouts)));
        self
    }

    /// Holds bulk SMS and push planned inside quiet hours until they end (practice time).
    pub fn with_quiet_hours(mut self, quiet_hours: Option<QuietHours>) -> Self {
        self.quiet_hours = quiet_hours;
        self
    }

    /// Counts patients as reachable in the NHS App (by NHS number) unless marked otherwise:
    /// set when an NHS App provider is configured.
    pub fn with_nhs_app(mut self, nhs_app: bool) -> Self {
        self.nhs_app = nhs_app;
        self
    }

    /// A page of the practice's patients with their usable contacts, the NHS App's
    /// included (see [`FanoutPatient::with_nhs_app`]).
    async fn page(
        &self,
        practice_id: PracticeId,
        after: PatientId,
        limit: usize,
    ) -> Result<Vec<FanoutPatient>, StoreError> {
        let mut page = self.store.fanout_page(practice_id, after, limit).await?;
        for patient in &mut page {
            patient.with_nhs_app(self.nhs_app);
        }
        Ok(page)
    }

    /// Uses `clock` for "now" (tests set the time of day).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// When bulk SMS and push planned at `now` may first go: after the practice's own quiet
    /// hours or else the gateway's, in the practice's timezone.
    fn after_quiet_hours(&self, now: DateTime<Utc>, practice: &Practice) -> DateTime<Utc> {
        match practice.quiet_hours_or(self.quiet_hours) {
            Some(quiet) => quiet.next_allowed(now, practice.timezone.tz()),
            None => now,
        }
    }

    /// Plans every message of a status broadcast and marks its fan-out finished. If its
    /// wording cannot be rendered (a template fails or goes over the render budget), the
    /// fan-out stops, the broadcast is marked failed with the reason (and audited), and
    /// [`FanoutError::Failed`] is returned; what was planned before is left to go. A
    /// broadcast that failed before is not run again.
    pub async fn run_broadcast(
        &self,
        broadcast_id: BroadcastId,
    ) -> Result<FanoutSummary, FanoutError> {
        self.run(broadcast_id, None).await
    }

    /// Plans a head start of a status broadcast: the messages of its first `patients`
    /// patients only, so that each practice of a group has messages going out before any
    /// practice's whole list is planned. A practice with no more patients than that is
    /// planned in full and its fan-out marked finished; otherwise the fan-out stays
    /// unfinished and [`Fanout::run_broadcast`] completes it (adding nothing twice).
    pub async fn run_broadcast_head(
        &self,
        broadcast_id: BroadcastId,
        patients: usize,
    ) -> Result<FanoutSummary, FanoutError> {
        self.run(broadcast_id, Some(patients.max(1))).await
    }

    /// [`Fanout::run_broadcast`], or with `head` its head start (which does nothing for a
    /// finished fan-out), once one of the process's fan-out places is free. A store error
    /// (a pool exhausted, a connection lost) is retried after a pause, up to
    /// [`STORE_RETRIES`] times: a resumed fan-out adds nothing twice, and without the retry
    /// the rest of the list would wait for the next start of the gateway.
    async fn run(
        &self,
        broadcast_id: BroadcastId,
        head: Option<usize>,
    ) -> Result<FanoutSummary, FanoutError> {
        let mut pause = std::time::Duration::from_millis(500);
        let mut tries = 0;
        loop {
            let places = if head.is_some() {
                &self.head_starts
            } else {
                &self.running
            };
            let outcome = {
                let _place = places
                    .acquire()
                    .await
                    .map_err(|e| FanoutError::Task(e.to_string()))?;
                self.run_once(broadcast_id, head).await
            };
            match outcome {
                // A database that failed or ran out of connections may recover; a corrupt
                // value or a duplicate will not, and is reported at once.
                Err(FanoutError::Store(e @ StoreError::Database(_))) if tries < STORE_RETRIES => {
                    tries += 1;
                    tracing::warn!(broadcast = broadcast_id.get(), error = %e, tries, "fan-out interrupted by the store; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(30));
                }
                other => return other,
            }
        }
    }

    /// One try at [`Fanout::run`].
    async fn run_once(
        &self,
        broadcast_id: BroadcastId,
        head: Option<usize>,
    ) -> Result<FanoutSummary, FanoutError> {
        let broadcast = self
            .store
            .broadcast(broadcast_id)
            .await?
            .ok_or(FanoutError::NotFound(broadcast_id))?;
        if let (Some(_), Some(reason)) = (broadcast.failed_at, &broadcast.failure) {
            return Err(FanoutError::Failed {
                broadcast_id,
                reason: reason.clone(),
            });
        }
        if head.is_some() && broadcast.fanout_done_at.is_some() {
            return Ok(FanoutSummary::default());
        }
        match self.plan_broadcast(broadcast, head).await {
            Err(FanoutError::Render(e)) => Err(self.fail(broadcast_id, &e).await),
            other => other,
        }
    }

    /// Marks a broadcast failed because its wording could not be rendered, and audits it.
    async fn fail(&self, broadcast_id: BroadcastId, error: &RenderError) -> FanoutError {
        let reason = format!("its wording could not be rendered: {error}");
        tracing::error!(broadcast = broadcast_id.get(), %reason, "broadcast failed");
        let now = Utc::now();
        if let Err(e) = self.store.fail_fanout(broadcast_id, &reason, now).await {
            return e.into();
        }
        let practice_id = match self.store.broadcast(broadcast_id).await {
            Ok(b) => b.map(|b| b.practice_id),
            Err(e) => return e.into(),
        };
        let entry = AuditEntry {
            actor: "gateway".into(),
            action: "broadcast.failed".into(),
            practice_id,
            subject: Some(format!("broadcast:{broadcast_id}")),
            details: Some(serde_json::json!({ "reason": reason }).to_string()),
        };
        if let Err(e) = self.store.audit(&entry, now).await {
            return e.into();
        }
        FanoutError::Failed {
            broadcast_id,
            reason,
        }
    }

    /// Plans the broadcast's messages, page by page; with `head`, only a first page of that
    /// many patients, leaving the fan-out unfinished if the list goes on.
    async fn plan_broadcast(
        &self,
        broadcast: Broadcast,
        head: Option<usize>,
    ) -> Result<FanoutSummary, FanoutError> {
        let broadcast_id = broadcast.id;
        let practice = self
            .store
            .practice_by_id(broadcast.practice_id)
            .await?
            .ok_or(FanoutError::NotFound(broadcast_id))?;
        let (superseded, reason) = withdraw_before(self.store.as_ref(), &broadcast).await?;
        cancel_unsent_in_background(self.store.clone(), superseded, reason, Utc::now());
        let bookings = Arc::new(self.bookings(&broadcast).await?);
        let mut wording = Wording::new(self.templates.snapshot(), practice, broadcast);
        let practice_id = wording.practice.id;
        let mut summary = FanoutSummary::default();
        // Reading the next page overlaps writing this one (SQLite's WAL lets a reader run
        // beside the writer; PostgreSQL does anyway).
        let page_size = head.map_or(self.batch_size, |h| h.min(self.batch_size));
        let mut page = self.page(practice_id, PatientId::new(0), page_size).await?;
        while let Some(last) = page.last() {
            let next_after = last.id;
            let more = page.len() == page_size;
            // A head start reads no page beyond its first.
            let read_on = more && head.is_none();
            let now = (self.clock)();
            let held_until = self.after_quiet_hours(now, &wording.practice);
            // Rendering runs on the blocking pool, each part within the render budget.
            let plans = bookings.clone();
            let (back, planned) = off_runtime(wording, move |wording| {
                plan_page(wording, &plans, &page, now, held_until)
            })
            .await?;
            wording = back;
            let mut planned = planned?;
            number_turns(&mut planned.batch, summary.planned.values().sum());
            for (channel, n) in &planned.per_channel {
                *summary.planned.entry(*channel).or_default() += n;
            }
            summary.skipped_no_contact += planned.skipped_no_contact;
            let next_page = async {
                if read_on {
                    self.page(practice_id, next_after, page_size).await
                } else {
                    Ok(Vec::new())
                }
            };
            // A person may have cancelled the broadcast while this page was being worded:
            // then it is not written at all.
            if self.stopped(broadcast_id).await?.is_some() {
                break;
            }
            let (inserted, next_page) =
                tokio::join!(self.store.insert_messages(&planned.batch), next_page);
            summary.inserted += inserted?;
            page = next_page?;
            // A newer status change may have come in, or a person cancelled the broadcast,
            // while this page was written: then what was written meanwhile is withdrawn
            // (before workers are woken for it), and the rest is not planned.
            if let Some(reason) = self.stopped(broadcast_id).await? {
                self.store
                    .cancel_queued(broadcast_id, &reason, Utc::now())
                    .await?;
                break;
            }
            self.wake.notify_one();
            if more && !read_on {
                // A head start whose list goes on: the rest is planned by a full run.
                return Ok(summary);
            }
        }
        if bookings.tells_everyone() {
            self.plan_followers(wording, &mut summary).await?;
        }
        self.store
            .finish_fanout(broadcast_id, summary.skipped_no_contact as i64, Utc::now())
            .await?;
        // A cancel committing while the last pages were written did not see them, and the
        // look after each page may have come before it committed. Finishing waits for such
        // a cancel (both change the broadcast's row), so a look now finds it, and what it
        // missed is withdrawn.
        if let Some(reason) = self.stopped(broadcast_id).await? {
            self.store
                .cancel_queued(broadcast_id, &reason, Utc::now())
                .await?;
        }
        Ok(summary)
    }

    /// Plans the broadcast's push message for each anonymous follower of the practice (a
    /// browser that asked for practice-wide notices without being linked to a patient),
    /// unless a newer status change has superseded it. Keys (broadcast, follower) make a
    /// resumed fan-out add nothing twice.
    async fn plan_followers(
        &self,
        wording: Wording,
        summary: &mut FanoutSummary,
    ) -> Result<(), FanoutError> {
        let (broadcast_id, practice_id) = (wording.broadcast.id, wording.practice.id);
        // A page at a time (keyset on row id), so memory does not grow with the followers.
        let mut followers = self
            .store
            .followers_page(practice_id, FollowerId::new(0), self.batch_size)
            .await?;
        if followers.is_empty() || self.stopped(broadcast_id).await?.is_some() {
            return Ok(());
        }
        let (wording, worded) =
            off_runtime(wording, |w| w.render(&anonymous_reader(), Channel::Push)).await?;
        let (rendered, version) = worded?;
        let (broadcast, practice) = (&wording.broadcast, &wording.practice);
        let now = (self.clock)();
        let held_until = self.after_quiet_hours(now, practice);
        while !followers.is_empty() {
            let mut batch: Vec<NewMessage> = followers
                .iter()
                .map(|follower| NewMessage {
                    idempotency_key: format!("b{}:f{}", broadcast.id, follower.id),
                    broadcast_id: Some(broadcast.id),
                    practice_id: practice.id,
                    recipient: Recipient::Follower(follower.id),
                    channel: Channel::Push,
                    address: follower.endpoint.clone(),
                    priority: Priority::Bulk,
                    template_key: wording.key.clone(),
                    template_version: version,
                    subject: rendered.subject.clone(),
                    body: rendered.body.clone(),
                    body_html: None,
                    link: rendered.link.clone(),
                    next_attempt_at: held_until,
                    created_at: now,
                    turn: 0,
                })
                .collect();
            number_turns(&mut batch, summary.planned.values().sum());
            summary.inserted += self.store.insert_messages(&batch).await?;
            *summary.planned.entry(Channel::Push).or_default() += batch.len() as u64;
            self.wake.notify_one();
            followers = match followers.last() {
                Some(last) if followers.len() == self.batch_size => {
                    self.store
                        .followers_page(practice.id, last.id, self.batch_size)
                        .await?
                }
                _ => Vec::new(),
            };
        }
        Ok(())
    }

    /// Why no more of the broadcast's messages may be planned, if a newer status change
    /// has superseded it or a person has cancelled it.
    async fn stopped(&self, broadcast_id: BroadcastId) -> Result<Option<String>, FanoutError> {
        Ok(self
            .store
            .broadcast(broadcast_id)
            .await?
            .and_then(|b| b.stopped_reason()))
    }

    /// Plans a broadcast's message again for a patient whose address was refused, on the
    /// next channel they can be reached on. Returns that channel, or `None` if there is
    /// none left or the broadcast has been superseded or cancelled.
    pub async fn reroute(
        &self,
        broadcast_id: BroadcastId,
        patient_id: PatientId,
    ) -> Result<Option<Channel>, FanoutError> {
        let Some(message) = self.replan(broadcast_id, patient_id, None).await? else {
            return Ok(None);
        };
        let channel = message.channel;
        let inserted = self.store.insert_messages(&[message]).await?;
        self.wake.notify_one();
        Ok((inserted == 1).then_some(channel))
    }

    /// The broadcast's message for one patient as it would be planned now, on the channel
    /// they would get it on (never `tried`, the channel of a message not confirmed in time),
    /// keyed by broadcast, patient and channel so that it is planned at most once per
    /// channel; `None` if they have no such channel, are not in the broadcast's audience,
    /// or the broadcast has been superseded, cancelled or has failed. Bulk SMS and push
    /// planned inside quiet hours wait for them to end.
    pub async fn replan(
        &self,
        broadcast_id: BroadcastId,
        patient_id: PatientId,
        tried: Option<Channel>,
    ) -> Result<Option<NewMessage>, FanoutError> {
        let broadcast = self
            .store
            .broadcast(broadcast_id)
            .await?
            .ok_or(FanoutError::NotFound(broadcast_id))?;
        if broadcast.stopped_reason().is_some() || broadcast.failed_at.is_some() {
            return Ok(None);
        }
        let practice = self
            .store
            .practice_by_id(broadcast.practice_id)
            .await?
            .ok_or(FanoutError::NotFound(broadcast_id))?;
        // The page starting just before the patient holds them, with the contacts still usable.
        let page = self
            .page(practice.id, PatientId::new(patient_id.get() - 1), 1)
            .await?;
        let Some(patient) = page.iter().find(|p| p.id == patient_id) else {
            return Ok(None);
        };
        let bookings = self.bookings(&broadcast).await?;
        let plan = bookings.plan(patient_id);
        let Some(contact) = next_contact(patient, practice.broadcast_choice(), tried) else {
            return Ok(None);
        };
        let now = (self.clock)();
        let held_until = self.after_quiet_hours(now, &practice);
        let key = format!("b{broadcast_id}:p{patient_id}:{}", contact.channel);
        let (plan, patient) = (plan.owned(), patient.clone());
        let wording = Wording::new(self.templates.snapshot(), practice, broadcast);
        let (_, message) = off_runtime(wording, move |wording| match plan {
            None => Ok(None),
            Some(None) => message(wording, &patient, &contact, key, now, held_until).map(Some),
            Some(Some(booked)) => {
                affected_message(wording, &patient, &contact, &booked, key, now).map(Some)
            }
        })
        .await?;
        match message {
            Ok(message) => Ok(message),
            Err(FanoutError::Render(e)) => Err(self.fail(broadcast_id, &e).await),
            Err(e) => Err(e),
        }
    }

    /// Who a broadcast of the practice would reach now: patients per channel, and those
    /// with no usable contact. Reads the list a page at a time, as a fan-out does.
    pub async fn audience(&self, practice_id: PracticeId) -> Result<Audience, FanoutError> {
        let practice = self
            .store
            .practice_by_id(practice_id)
            .await?
            .ok_or(FanoutError::NoPractice(practice_id))?;
        let mut audience = Audience::default();
        let followers = self.store.follower_count(practice_id).await?;
        if followers > 0 {
            audience.recipients.insert(Channel::Push, followers);
        }
        let mut after = PatientId::new(0);
        loop {
            let page = self.page(practice_id, after, self.batch_size).await?;
            for patient in &page {
                match choose_contact(patient, practice.broadcast_choice()) {
                    Some(contact) => *audience.recipients.entry(contact.channel).or_default() += 1,
                    None => audience.no_contact += 1,
                }
            }
            match page.last() {
                Some(last) if page.len() == self.batch_size => after = last.id,
                _ => return Ok(audience),
            }
        }
    }

    /// The SMS a patient of the practice would get for `broadcast` (in English, or in Welsh
    /// and English for a bilingual practice), rendered off the async workers as a fan-out
    /// renders: what a staff member approving a status change by text is shown.
    pub async fn sms_wording(
        &self,
        practice: Practice,
        broadcast: Broadcast,
    ) -> Result<String, FanoutError> {
        let sample = FanoutPatient {
            id: PatientId::new(0),
            nhs_number: String::new(),
            given_name: None,
            family_name: None,
            preferred_channel: Some(Channel::Sms),
            language: "en".into(),
            in_nhs_app: false,
            contacts: Vec::new(),
        };
        let wording = Wording::new(self.templates.snapshot(), practice, broadcast);
        let (_, rendered) = off_runtime(wording, move |wording| {
            wording.render(&sample, Channel::Sms)
        })
        .await?;
        Ok(rendered?.0.body)
    }

    /// Finishes fan-outs that a stopped process left part-done. Returns how many it finished.
    /// One that fails is logged (a render failure also marks its broadcast failed) and the
    /// others carry on, so one bad broadcast cannot stop the gateway from starting.
    pub async fn resume_unfinished(&self) -> Result<usize, FanoutError> {
        let unfinished = self.store.unfinished_broadcasts().await?;
        let mut finished = 0;
        for id in &unfinished {
            tracing::info!(broadcast = id.get(), "resuming an interrupted fan-out");
            match self.run_broadcast(*id).await {
                Ok(_) => finished += 1,
                Err(e) => {
                    tracing::error!(broadcast = id.get(), error = %e, "could not resume a fan-out")
                }
            }
        }
        Ok(finished)
    }
}

/// Runs `work` on the blocking pool with the wording (rendering is CPU work that must not
/// hold an async worker), handing the wording back.
async fn off_runtime<T: Send + 'static>(
    mut wording: Wording,
    work: impl FnOnce(&mut Wording) -> T + Send + 'static,
) -> Result<(Wording, T), FanoutError> {
    tokio::task::spawn_blocking(move || {
        let out = work(&mut wording);
        (wording, out)
    })
    .await
    .map_err(|e| FanoutError::Task(e.to_string()))
}

/// What one page of patients is sent.
struct PagePlan {
    batch: Vec<NewMessage>,
    per_channel: BTreeMap<Channel, u64>,
    skipped_no_contact: u64,
}

/// Numbers a page of a broadcast's messages in planning order, after the `before` planned
/// already: each message's turn in the bulk queue (see [`NewMessage::turn`]). The same
/// patients get the same turns in a resumed or completed fan-out, as pages are read in
/// patient order.
fn number_turns(batch: &mut [NewMessage], before: u64) {
    for (i, message) in batch.iter_mut().enumerate() {
        message.turn = i32::try_from(before + i as u64).unwrap_or(i32::MAX);
    }
}

/// Plans (and words) the messages of one page of patients.
fn plan_page(
    wording: &mut Wording,
    bookings: &Bookings,
    page: &[FanoutPatient],
    now: DateTime<Utc>,
    held_until: DateTime<Utc>,
) -> Result<PagePlan, FanoutError> {
    let broadcast_id = wording.broadcast.id;
    let mut plan = PagePlan {
        batch: Vec::with_capacity(page.len()),
        per_channel: BTreeMap::new(),
        skipped_no_contact: 0,
    };
    let budget = wording.templates.budget();
    for patient in page {
        // All the broadcast's renders together stay within the broadcast's render budget.
        if wording.spent > budget.max_broadcast_time {
            return Err(RenderError::Limit {
                name: wording.key.clone(),
                exceeded: Exceeded::BroadcastTime(budget.max_broadcast_time),
            }
            .into());
        }
        let started = std::time::Instant::now();
        let to_send = bookings.plan(patient.id);
        if let Plan::Nothing = to_send {
            continue;
        }
        let Some(contact) = choose_contact(patient, wording.practice.broadcast_choice()) else {
            plan.skipped_no_contact += 1;
            continue;
        };
        *plan.per_channel.entry(contact.channel).or_default() += 1;
        let key = format!("b{broadcast_id}:p{}", patient.id);
        plan.batch.push(match to_send {
            Plan::Affected(booked) => {
                affected_message(wording, patient, contact, booked, key, now)?
            }
            _ => message(wording, patient, contact, key, now, held_until)?,
        });
        wording.spent += started.elapsed();
    }
    Ok(plan)
}

/// One patient's message of a broadcast, on `contact`'s channel.
fn message(
    wording: &mut Wording,
    patient: &FanoutPatient,
    contact: &FanoutContact,
    idempotency_key: String,
    now: DateTime<Utc>,
    held_until: DateTime<Utc>,
) -> Result<NewMessage, FanoutError> {
    let (rendered, version) = wording.render(patient, contact.channel)?;
    Ok(NewMessage {
        idempotency_key,
        broadcast_id: Some(wording.broadcast.id),
        practice_id: wording.practice.id,
        recipient: Recipient::Patient {
            patient_id: patient.id,
            contact_id: contact.id,
        },
        channel: contact.channel,
        address: contact.address.clone(),
        priority: Priority::Bulk,
        template_version: version,
        template_key: wording.key.clone(),
        subject: rendered.subject,
        body: rendered.body,
        body_html: rendered.html,
        link: rendered.link,
        next_attempt_at: match contact.channel {
            Channel::Sms | Channel::Push | Channel::NhsApp => held_until,
            Channel::Email => now,
        },
        created_at: now,
        turn: 0,
    })
}

/// A broadcast's wording while its messages are planned, from one snapshot of the
/// templates: rendered once per template unless it is personal, in the patient's language,
/// or in Welsh and English for a bilingual practice.
struct Wording {
    templates: Arc<MessageTemplates>,
    practice: Practice,
    broadcast: Broadcast,
    key: String,
    shared: HashMap<TemplateVersionId, Rendered>,
    /// Time spent rendering this broadcast's wording so far.
    spent: std::time::Duration,
}

impl Wording {
    fn new(templates: Arc<MessageTemplates>, practice: Practice, broadcast: Broadcast) -> Self {
        Self {
            key: broadcast.kind.template_key(),
            templates,
            practice,
            broadcast,
            shared: HashMap::new(),
            spent: std::time::Duration::ZERO,
        }
    }

    /// The patient's wording on `channel`, and the version of the template that gave it.
    fn render(
        &mut self,
        patient: &FanoutPatient,
        channel: Channel,
    ) -> Result<(Rendered, i32), FanoutError> {
        if self.practice.bilingual {
            let (welsh, _) = self.in_language(patient, channel, Language::Welsh)?;
            let (english, version) = self.in_language(patient, channel, Language::English)?;
            return Ok((Rendered::bilingual(welsh, english), version));
        }
        self.in_language(patient, channel, Language::of_patient(&patient.language))
    }

    fn in_language(
        &mut self,
        patient: &FanoutPatient,
        channel: Channel,
        language: Language,
    ) -> Result<(Rendered, i32), FanoutError> {
        let chosen: Chosen = self
            .templates
            .choose(self.practice.id, &self.key, channel, language)
            .ok_or_else(|| RenderError::Missing {
                key: self.key.clone(),
                channel,
            })?;
        if chosen.personal {
            let context =
                status_context_in(&self.practice, &self.broadcast, Some(patient), language);
            return Ok((
                self.templates.render_chosen(chosen, &context)?,
                chosen.version,
            ));
        }
        if let Some(r) = self.shared.get(&chosen.id) {
            return Ok((r.clone(), chosen.version));
        }
        let context = status_context_in(&self.practice, &self.broadcast, None, language);
        let r = self.templates.render_chosen(chosen, &context)?;
        self.shared.insert(chosen.id, r.clone());
        Ok((r, chosen.version))
    }
}

/// An urgent message to one patient's `contact`, due `now`, worded by `worded` (the rendered
/// template `key` and its version). Callers set the idempotency key and any broadcast.
pub fn urgent_to(
    practice_id: PracticeId,
    patient_id: PatientId,
    contact: &FanoutContact,
    key: &str,
    (rendered, version): (Rendered, i32),
    now: DateTime<Utc>,
) -> NewMessage {
    NewMessage {
        idempotency_key: String::new(),
        broadcast_id: None,
        practice_id,
        recipient: Recipient::Patient {
            patient_id,
            contact_id: contact.id,
        },
        channel: contact.channel,
        address: contact.address.clone(),
        priority: Priority::Urgent,
        template_key: key.to_string(),
        template_version: version,
        subject: rendered.subject,
        body: rendered.body,
        body_html: rendered.html,
        link: rendered.link,
        next_attempt_at: now,
        created_at: now,
        turn: 0,
    }
}

/// Who an anonymous follower's wording is rendered for: no name, English (bilingual
/// practices still send Welsh first).
fn anonymous_reader() -> FanoutPatient {
    FanoutPatient {
        id: PatientId::new(0),
        nhs_number: String::new(),
        given_name: None,
        family_name: None,
        preferred_channel: Some(Channel::Push),
        language: Language::English.to_string(),
        in_nhs_app: false,
        contacts: Vec::new(),
    }
}

/// The contact a patient is messaged on, as the practice's `choice` picks among the
/// channels they can be reached on (see [`ChannelChoice::pick`]).
pub fn choose_contact<'a>(
    patient: &'a FanoutPatient,
    choice: ChannelChoice<'_>,
) -> Option<&'a FanoutContact> {
    let mut usable = [Channel::Sms; Channel::ALL.len()];
    let mut n = 0;
    for contact in &patient.contacts {
        if n < usable.len() && !usable[..n].contains(&contact.channel) {
            usable[n] = contact.channel;
            n += 1;
        }
    }
    let channel = choice.pick(patient.preferred_channel, &usable[..n])?;
    patient.contacts.iter().find(|c| c.channel == channel)
}

/// The contact a patient would be messaged on as [`choose_contact`] picks it, leaving out
/// the channel `tried` (a message on it was not confirmed in time).
pub fn next_contact(
    patient: &FanoutPatient,
    choice: ChannelChoice<'_>,
    tried: Option<Channel>,
) -> Option<FanoutContact> {
    let Some(tried) = tried else {
        return choose_contact(patient, choice).cloned();
    };
    let mut others = patient.clone();
    others.contacts.retain(|c| c.channel != tried);
    choose_contact(&others, choice).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChannelOrder, ContactId};

    fn patient(preferred: Option<Channel>, channels: &[Channel]) -> FanoutPatient {
        FanoutPatient {
            id: PatientId::new(1),
            nhs_number: "9990000018".into(),
            given_name: None,
            family_name: None,
            preferred_channel: preferred,
            language: "en".into(),
            in_nhs_app: true,
            contacts: channels
                .iter()
                .enumerate()
                .map(|(i, c)| FanoutContact {
                    id: Some(ContactId::new(i as i64)),
                    channel: *c,
                    address: format!("{c}-address"),
                })
                .collect(),
        }
    }

    #[test]
    fn preference_wins_when_reachable_else_practice_order() {
        let sms_first = ChannelOrder::parse("sms,email,push").unwrap();
        let order = ChannelChoice {
            order: &sms_first,
            overrides_preference: false,
        };
        let p = patient(Some(Channel::Email), &[Channel::Sms, Channel::Email]);
        assert_eq!(choose_contact(&p, order).unwrap().channel, Channel::Email);
        let p = patient(Some(Channel::Push), &[Channel::Email, Channel::Sms]);
        assert_eq!(choose_contact(&p, order).unwrap().channel, Channel::Sms);
        let p = patient(None, &[Channel::Push, Channel::Email]);
        assert_eq!(choose_contact(&p, order).unwrap().channel, Channel::Email);
        let p = patient(None, &[Channel::Push]);
        let email_only = ChannelOrder::parse("email").unwrap();
        let email_only = ChannelChoice {
            order: &email_only,
            ..order
        };
        assert!(choose_contact(&p, email_only).is_none());
        assert!(choose_contact(&patient(None, &[]), order).is_none());
    }

    #[test]
    fn the_nhs_app_reaches_patients_by_nhs_number_unless_marked_unreachable() {
        let nhsapp_first = ChannelOrder::parse("nhsapp,sms").unwrap();
        let order = ChannelChoice {
            order: &nhsapp_first,
            overrides_preference: false,
        };
        let mut p = patient(None, &[Channel::Sms]);
        p.with_nhs_app(false);
        assert_eq!(choose_contact(&p, order).unwrap().channel, Channel::Sms);
        p.with_nhs_app(true);
        p.with_nhs_app(true);
        let app = choose_contact(&p, order).unwrap();
        assert_eq!((app.channel, app.id), (Channel::NhsApp, None));
        assert_eq!(app.address, "9990000018");
        assert_eq!(p.contacts.len(), 2);
        let next = next_contact(&p, order, Some(Channel::NhsApp)).unwrap();
        assert_eq!(next.channel, Channel::Sms);
        let mut gone = patient(None, &[Channel::Sms]);
        gone.in_nhs_app = false;
        gone.with_nhs_app(true);
        assert_eq!(choose_contact(&gone, order).unwrap().channel, Channel::Sms);
    }
}
