//! The outbox: durable messages, claimed with leases, completed with attempts, settled
//! by receipts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{
    AttemptOutcome, BroadcastId, Channel, ContactId, FollowerId, MessageId, MessageState,
    PatientId, PracticeId, Priority,
};

/// What a claim reads from each channel: every channel by name, each with the highest
/// priority rank it may give (urgent only for a full channel, or for an urgent-only claim).
/// The stores read each channel through its own index range, so a full channel's queue is
/// never scanned for nothing.
pub(crate) fn claim_plan(urgent_only: bool, full: &[Channel]) -> (Vec<&'static str>, Vec<i16>) {
    Channel::ALL
        .iter()
        .map(|c| {
            let most = if urgent_only || full.contains(c) {
                Priority::Urgent
            } else {
                Priority::Bulk
            };
            (c.as_str(), most.rank())
        })
        .unzip()
}

/// Who a planned message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// One of a patient's contacts (row ids).
    Patient {
        /// Patient row id.
        patient_id: PatientId,
        /// Contact row id; `None` on the NHS App, addressed by the patient's NHS number.
        contact_id: Option<ContactId>,
    },
    /// An anonymous push follower of the practice (row id): practice-wide notices only.
    Follower(FollowerId),
}

impl Recipient {
    /// The patient row id, if the recipient is a patient.
    pub fn patient_id(&self) -> Option<PatientId> {
        match self {
            Recipient::Patient { patient_id, .. } => Some(*patient_id),
            Recipient::Follower(_) => None,
        }
    }

    /// The contact row id, if the recipient is a patient.
    pub fn contact_id(&self) -> Option<ContactId> {
        match self {
            Recipient::Patient { contact_id, .. } => *contact_id,
            Recipient::Follower(_) => None,
        }
    }

    /// The follower row id, if the recipient is an anonymous follower.
    pub fn follower_id(&self) -> Option<FollowerId> {
        match self {
            Recipient::Follower(id) => Some(*id),
            Recipient::Patient { .. } => None,
        }
    }
}

/// A message for the outbox.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Unique per trigger and patient: a re-run fan-out adds nothing.
    pub idempotency_key: String,
    /// The broadcast it belongs to, if any.
    pub broadcast_id: Option<BroadcastId>,
    /// Practice row id.
    pub practice_id: PracticeId,
    /// Who receives it: a patient's contact, or an anonymous push follower.
    pub recipient: Recipient,
    /// Channel.
    pub channel: Channel,
    /// Where it goes.
    pub address: String,
    /// Lane.
    pub priority: Priority,
    /// Template key.
    pub template_key: String,
    /// Template version used.
    pub template_version: i32,
    /// Email subject or push title.
    pub subject: Option<String>,
    /// The rendered text.
    pub body: String,
    /// The rendered HTML part (email only).
    pub body_html: Option<String>,
    /// Where a push notification leads when tapped (push only).
    pub link: Option<String>,
    /// When it may first be sent.
    pub next_attempt_at: DateTime<Utc>,
    /// Its round in the bulk queue: a broadcast's n-th message has turn n, and bulk
    /// messages are claimed turn by turn across all broadcasts, so every practice's first
    /// messages go out before any practice's hundredth, whoever posted first (0 for a
    /// message that is not part of a broadcast).
    pub turn: i32,
    /// When it was planned.
    pub created_at: DateTime<Utc>,
}

impl NewMessage {
    /// The SMS segments its text takes (at least 1), whatever its channel: what the
    /// message costs is priced by them when it goes by SMS.
    pub fn sms_segments(&self) -> i32 {
        i32::try_from(crate::render::sms::cost(&self.body).segments.max(1)).unwrap_or(i32::MAX)
    }

    /// What it is priced by: its SMS segments on SMS, 1 on every other channel.
    pub fn segments(&self) -> i32 {
        if self.channel == Channel::Sms {
            self.sms_segments()
        } else {
            1
        }
    }
}

/// A message a worker holds a lease on.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    /// Row id.
    pub id: MessageId,
    /// Practice row id.
    pub practice_id: PracticeId,
    /// Patient row id (for the patient's daily cap); none for an anonymous push follower.
    pub patient_id: Option<PatientId>,
    /// The anonymous push follower it goes to, if it goes to one (gone if they stopped).
    pub follower_id: Option<FollowerId>,
    /// The broadcast it belongs to, if any (to re-route it to another channel).
    pub broadcast_id: Option<BroadcastId>,
    /// The contact it goes to (gone if the contact was deleted since).
    pub contact_id: Option<ContactId>,
    /// Channel.
    pub channel: Channel,
    /// Where it goes.
    pub address: String,
    /// Subject or title.
    pub subject: Option<String>,
    /// Text.
    pub body: String,
    /// HTML part (email).
    pub body_html: Option<String>,
    /// Where a push notification leads when tapped (push).
    pub link: Option<String>,
    /// Lane.
    pub priority: Priority,
    /// This try's number (1 for the first).
    pub attempt_no: i32,
    /// When it was planned (for the retry deadline).
    pub created_at: DateTime<Utc>,
    /// The W3C traceparent of the request that caused it, which its send span continues:
    /// an appointment change's own, or its broadcast's (filled in by dispatch). Only while
    /// spans are exported.
    pub trace: Option<String>,
    /// Its message key, whose `[fallback]` deadline (if any) starts when it is sent.
    pub template_key: String,
}

/// The result of one attempt, to record.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Message row id.
    pub message_id: MessageId,
    /// Which try.
    pub attempt_no: i32,
    /// Provider used, if one was reached.
    pub provider: Option<String>,
    /// How it went.
    pub outcome: AttemptOutcome,
    /// Provider's reference for the message, if accepted.
    pub provider_ref: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The message's new state.
    pub new_state: MessageState,
    /// For a retry: when to try again.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the attempt began.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// For a message now `sent` whose delivery must be confirmed: when its deadline passes
    /// (see `fallback`).
    pub fallback_due_at: Option<DateTime<Utc>>,
}

/// A message as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    /// Row id.
    pub id: MessageId,
    /// Broadcast, if any.
    pub broadcast_id: Option<BroadcastId>,
    /// Practice row id (not shown).
    #[serde(skip)]
    pub practice_id: PracticeId,
    /// Patient's NHS number; none for an anonymous push follower.
    pub nhs_number: Option<String>,
    /// Channel.
    pub channel: String,
    /// Address.
    pub address: String,
    /// `urgent` or `bulk`.
    pub priority: Priority,
    /// Template key.
    pub template_key: String,
    /// Template version.
    pub template_version: i32,
    /// Subject or title.
    pub subject: Option<String>,
    /// Text.
    pub body: String,
    /// State.
    pub state: String,
    /// Tries so far.
    pub attempts: i32,
    /// Next try.
    pub next_attempt_at: DateTime<Utc>,
    /// Provider that took it.
    pub provider: Option<String>,
    /// Provider's reference.
    pub provider_ref: Option<String>,
    /// Last failure.
    pub last_error: Option<String>,
    /// Planned at.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Why a queued message is waiting, and until when, if quiet hours hold it (the API
    /// fills it in: the store does not know the practice's quiet hours).
    pub held: Option<Held>,
    /// The message that followed this one on the patient's next channel because no receipt
    /// confirmed this one by its key's deadline (`[fallback]`); this one was superseded by it.
    pub superseded_by_fallback: Option<MessageId>,
}

/// A queued message kept back on purpose.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Held {
    /// Why: `quiet_hours`.
    #[schema(value_type = String, example = "quiet_hours")]
    pub reason: &'static str,
    /// When it may go.
    pub until: DateTime<Utc>,
}

/// One recorded attempt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    /// Which try.
    pub attempt_no: i32,
    /// Provider.
    pub provider: Option<String>,
    /// Outcome name.
    pub outcome: String,
    /// Failure reason.
    pub error: Option<String>,
    /// Began.
    pub started_at: DateTime<Utc>,
    /// Ended.
    pub finished_at: DateTime<Utc>,
}

/// A provider's word on a message it took.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// Message row id.
    pub message_id: MessageId,
    /// Which provider kind sent it (`twilio`, `notify`, `webhook`).
    pub provider: String,
    /// The provider's status word, as sent.
    pub status: String,
    /// The state it settles the message in, if it does (`delivered`, `read` or `failed`).
    pub new_state: Option<MessageState>,
    /// The provider's reason, for failures.
    pub detail: Option<String>,
}

/// The outbox: durable messages, claimed with leases, completed with attempts.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Writes messages in multi-row batches; rows whose idempotency key exists are skipped.
    /// Returns how many were new.
    async fn insert_messages(&self, messages: &[NewMessage]) -> StoreResult<u64>;
    /// Returns expired leases to the queue (recording a started one's attempt as `unknown`,
    /// an unstarted one uncounted), then
    /// claims up to `limit` due messages for `owner` until `lease_until`, urgent first
    /// (only urgent ones if `urgent_only`), leaving bulk messages of `skip_practices` (those
    /// with their fair share already claimed) for later.
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
        urgent_only: bool,
        skip_practices: &[PracticeId],
    ) -> StoreResult<Vec<ClaimedMessage>> {
        self.claim_due_skipping(
            owner,
            now,
            lease_until,
            limit,
            urgent_only,
            skip_practices,
            &[],
        )
        .await
    }
    /// As [`OutboxStore::claim_due`], also leaving the bulk messages of `skip_channels`
    /// (whose lanes are full) for later, so a stalled channel takes no other channel's room.
    #[allow(clippy::too_many_arguments)]
    async fn claim_due_skipping(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: usize,
        urgent_only: bool,
        skip_practices: &[PracticeId],
        skip_channels: &[Channel],
    ) -> StoreResult<Vec<ClaimedMessage>>;
    /// Records attempts and the messages' new states in one transaction. For each, whether
    /// `owner` still held the lease (the attempt is recorded all the same). A push message
    /// recorded `sent` that its browser already reported (`PushReceiptStore`) moves on to
    /// `delivered` or `read` in the same transaction.
    async fn complete_many(
        &self,
        owner: &str,
        completions: &[Completion],
    ) -> StoreResult<Vec<bool>>;
    /// Records one attempt and the message's new state. Returns false if `owner` no longer
    /// held the lease (the attempt is recorded all the same).
    async fn complete(&self, owner: &str, completion: &Completion) -> StoreResult<bool> {
        let held = self
            .complete_many(owner, std::slice::from_ref(completion))
            .await?;
        Ok(held.first().copied().unwrap_or(false))
    }
    /// The send fence, just before messages go to a provider: marks each `(id, attempt)` of
    /// `owner` as started at `now` if its lease is still `owner`'s for that attempt (the
    /// token the recorder compares too) and runs past `live_after`, extending it to at least
    /// `lease_until`. Returns, for each, whether it may be sent. A started message whose lease
    /// expires gets an `unknown` attempt; an unstarted one goes back to the queue uncounted.
    async fn start_sends(
        &self,
        owner: &str,
        sends: &[(MessageId, i32)],
        now: DateTime<Utc>,
        live_after: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<bool>>;
    /// Extends every lease `owner` holds to `until` (a worker's heartbeat while messages wait
    /// for a rate limit). Returns how many.
    async fn extend_leases(&self, owner: &str, until: DateTime<Utc>) -> StoreResult<u64>;
    /// Gives back `owner`'s leases on these messages without counting an attempt, each due
    /// again at its time (quiet hours; a worker that claimed more than it can send).
    async fn defer(
        &self,
        owner: &str,
        due: &[(MessageId, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Queued messages per lane.
    async fn queue_depth(&self) -> StoreResult<Vec<(Priority, i64)>>;
    /// Gives back every lease `owner` holds on messages not started (see `start_sends`),
    /// uncounted: at a clean shutdown, or when the worker may have lost its leases.
    async fn release_leases(&self, owner: &str, now: DateTime<Utc>) -> StoreResult<u64>;
    /// One message with its attempts.
    async fn message(&self, id: MessageId) -> StoreResult<Option<(MessageView, Vec<AttemptView>)>>;
    /// Messages not yet final, for tests and readiness.
    async fn pending_count(&self) -> StoreResult<i64>;
    /// The message one of `providers` (by name) sent and knows by `provider_ref`: its id,
    /// provider name and state. A reference counts only with the provider that gave it, so a
    /// callback of one kind cannot settle what a provider of another kind sent.
    async fn message_by_provider_ref(
        &self,
        providers: &[String],
        provider_ref: &str,
    ) -> StoreResult<Option<(MessageId, Option<String>, MessageState)>>;
    /// Keeps a provider's receipt and, if it settles the message, moves a `sent` message
    /// to `new_state`, or a `delivered` one to `read` (a receipt never moves a message
    /// backwards). Returns whether it moved.
    async fn record_receipt(&self, receipt: &Receipt, now: DateTime<Utc>) -> StoreResult<bool>;
}
