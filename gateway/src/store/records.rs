//! The rows the store reads and writes, in domain types.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{
    AttemptOutcome, Channel, ChannelOrder, Language, MessageState, NhsNumber, OdsCode, Priority,
    StatusAudience, StatusKind,
};

/// A practice to add.
#[derive(Debug, Clone)]
pub struct NewPractice {
    /// Its ODS code.
    pub ods_code: OdsCode,
    /// Name patients know it by.
    pub name: String,
    /// Public phone number, for messages.
    pub phone: Option<String>,
    /// Public website, for messages.
    pub website: Option<String>,
    /// Email address replies go to.
    pub email: Option<String>,
    /// IANA timezone.
    pub timezone: String,
    /// Channels tried for patients without a preference.
    pub channel_order: ChannelOrder,
    /// Whether every message goes in Welsh and English (Welsh first).
    pub bilingual: bool,
}

/// A stored practice.
#[derive(Debug, Clone)]
pub struct Practice {
    /// Row id.
    pub id: i64,
    /// Its ODS code.
    pub ods_code: OdsCode,
    /// Name patients know it by.
    pub name: String,
    /// Public phone number.
    pub phone: Option<String>,
    /// Public website.
    pub website: Option<String>,
    /// Email address replies go to.
    pub email: Option<String>,
    /// IANA timezone.
    pub timezone: String,
    /// Channels tried for patients without a preference.
    pub channel_order: ChannelOrder,
    /// Whether every message goes in Welsh and English (Welsh first).
    pub bilingual: bool,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// A patient to insert or update, with the contacts to keep for them.
#[derive(Debug, Clone)]
pub struct PatientUpsert {
    /// Their NHS number: the key within the practice.
    pub nhs_number: NhsNumber,
    /// First name, for personal messages.
    pub given_name: Option<String>,
    /// Surname.
    pub family_name: Option<String>,
    /// Channel they asked to be reached on.
    pub preferred_channel: Option<Channel>,
    /// Language code (`en`, `cy`).
    pub language: String,
    /// Whether they are still registered.
    pub active: bool,
    /// Their SMS and email contacts. For each channel named here, contacts of that
    /// channel not listed are removed (a changed number replaces the old one).
    pub contacts: Vec<ContactUpsert>,
}

/// One contact of a patient to keep.
#[derive(Debug, Clone)]
pub struct ContactUpsert {
    /// Channel (sms or email).
    pub channel: Channel,
    /// Normalised address (E.164 or email).
    pub address: String,
    /// Whether the patient has opted out of this address (never cleared by an upsert).
    pub opted_out: bool,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct UpsertSummary {
    /// Patients new to the practice.
    pub created: u64,
    /// Patients already there, updated.
    pub updated: u64,
}

/// A patient as fan-out sees them: usable contacts only.
#[derive(Debug, Clone)]
pub struct FanoutPatient {
    /// Row id.
    pub id: i64,
    /// NHS number.
    pub nhs_number: String,
    /// First name.
    pub given_name: Option<String>,
    /// Surname.
    pub family_name: Option<String>,
    /// Preferred channel, if any (as stored; unknown values are ignored).
    pub preferred_channel: Option<Channel>,
    /// Language code.
    pub language: String,
    /// Contacts not opted out and not known bad, in id order.
    pub contacts: Vec<FanoutContact>,
}

/// A usable contact of a patient.
#[derive(Debug, Clone)]
pub struct FanoutContact {
    /// Row id.
    pub id: i64,
    /// Its channel.
    pub channel: Channel,
    /// Its address.
    pub address: String,
}

/// A patient with every contact, for reading back.
#[derive(Debug, Clone, Serialize)]
pub struct PatientView {
    /// NHS number.
    pub nhs_number: String,
    /// First name.
    pub given_name: Option<String>,
    /// Surname.
    pub family_name: Option<String>,
    /// Preferred channel.
    pub preferred_channel: Option<String>,
    /// Language code.
    pub language: String,
    /// Still registered.
    pub active: bool,
    /// All contacts.
    pub contacts: Vec<ContactView>,
}

/// A contact with its opt-out state.
#[derive(Debug, Clone, Serialize)]
pub struct ContactView {
    /// Channel.
    pub channel: String,
    /// Address.
    pub address: String,
    /// When the patient opted out, if they did.
    pub opted_out_at: Option<DateTime<Utc>>,
}

/// Who an API key speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// Every practice, and practice management.
    Admin,
    /// One practice (by row id) and nothing else.
    Practice(i64),
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// SHA-256 of the whole key, hex.
    pub key_hash: String,
    /// The key's first characters, to recognise it in lists.
    pub prefix: String,
    /// Its scope.
    pub scope: KeyScope,
    /// A note saying whose it is.
    pub label: String,
}

/// A stored, live key.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    /// Row id.
    pub id: i64,
    /// Its scope.
    pub scope: KeyScope,
    /// Whose it is.
    pub label: String,
    /// First characters.
    pub prefix: String,
}

/// An event for the audit trail.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who: `key:<prefix>` or `cli`.
    pub actor: String,
    /// What, such as `status_change.posted`.
    pub action: String,
    /// The practice it concerned.
    pub practice_id: Option<i64>,
    /// The thing acted on, such as `broadcast:12`.
    pub subject: Option<String>,
    /// Anything else worth keeping, as JSON (no patient data).
    pub details: Option<String>,
}

/// A stored audit event.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Acted on.
    pub subject: Option<String>,
    /// More, as JSON text.
    pub details: Option<String>,
}

/// A status change to record.
#[derive(Debug, Clone, Serialize)]
pub struct NewStatusChange {
    /// What happened.
    pub kind: StatusKind,
    /// One line for patients.
    pub headline: String,
    /// More words, optional.
    pub details: Option<String>,
    /// When the disruption starts, if known.
    pub starts_at: Option<DateTime<Utc>>,
    /// When it is expected to end, if known.
    pub ends_at: Option<DateTime<Utc>>,
    /// Who posted it (audit actor).
    pub created_by: String,
    /// Who it is for, and the period whose appointments it affects.
    pub reach: Reach,
}

/// Who a status change is for: everyone, or patients booked in its affected period, or both
/// (each told in their own words). The period is `[affected_from, affected_until)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Reach {
    /// All (the general notice), booked or both.
    pub audience: StatusAudience,
    /// Start of the period whose appointments are affected (`None`: from when it was posted).
    pub affected_from: Option<DateTime<Utc>>,
    /// End of that period (needed unless the audience is `all`).
    pub affected_until: Option<DateTime<Utc>>,
}

/// The request's `Idempotency-Key` with what it must match.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Who the key belongs to (the API key and resource), so clients cannot collide.
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// Hash of the request body: the same key with another body is refused.
    pub request_hash: String,
}

/// What starting a broadcast did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// A new status change and broadcast.
    Started(i64),
    /// The idempotency key was seen with the same body: this is that broadcast.
    Replayed(i64),
    /// The idempotency key was seen with a different body.
    KeyReused,
}

/// A broadcast with the status change behind it.
#[derive(Debug, Clone)]
pub struct Broadcast {
    /// Row id.
    pub id: i64,
    /// Practice row id.
    pub practice_id: i64,
    /// The status change.
    pub status_change_id: i64,
    /// Its kind.
    pub kind: StatusKind,
    /// Its headline.
    pub headline: String,
    /// Its details.
    pub details: Option<String>,
    /// Start of the disruption.
    pub starts_at: Option<DateTime<Utc>>,
    /// Expected end.
    pub ends_at: Option<DateTime<Utc>>,
    /// Who posted it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When fan-out finished, if it has.
    pub fanout_done_at: Option<DateTime<Utc>>,
    /// Patients with no usable contact.
    pub skipped_no_contact: i64,
    /// The newer status change that superseded this broadcast, if one did.
    pub superseded_by: Option<i64>,
    /// When its fan-out failed, if it did (its wording could not be rendered).
    pub failed_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Who it is for, and the period whose appointments it affects.
    pub reach: Reach,
}

/// Who a planned message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// One of a patient's contacts (row ids).
    Patient {
        /// Patient row id.
        patient_id: i64,
        /// Contact row id.
        contact_id: i64,
    },
    /// An anonymous push follower of the practice (row id): practice-wide notices only.
    Follower(i64),
}

impl Recipient {
    /// The patient row id, if the recipient is a patient.
    pub fn patient_id(&self) -> Option<i64> {
        match self {
            Recipient::Patient { patient_id, .. } => Some(*patient_id),
            Recipient::Follower(_) => None,
        }
    }

    /// The contact row id, if the recipient is a patient.
    pub fn contact_id(&self) -> Option<i64> {
        match self {
            Recipient::Patient { contact_id, .. } => Some(*contact_id),
            Recipient::Follower(_) => None,
        }
    }

    /// The follower row id, if the recipient is an anonymous follower.
    pub fn follower_id(&self) -> Option<i64> {
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
    pub broadcast_id: Option<i64>,
    /// Practice row id.
    pub practice_id: i64,
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
    /// When it was planned.
    pub created_at: DateTime<Utc>,
}

/// A message a worker holds a lease on.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    /// Row id.
    pub id: i64,
    /// Practice row id.
    pub practice_id: i64,
    /// Patient row id (for the patient's daily cap); none for an anonymous push follower.
    pub patient_id: Option<i64>,
    /// The anonymous push follower it goes to, if it goes to one (gone if they stopped).
    pub follower_id: Option<i64>,
    /// The broadcast it belongs to, if any (to re-route it to another channel).
    pub broadcast_id: Option<i64>,
    /// The contact it goes to (gone if the contact was deleted since).
    pub contact_id: Option<i64>,
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
}

/// The result of one attempt, to record.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Message row id.
    pub message_id: i64,
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
}

/// A message as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Row id.
    pub id: i64,
    /// Broadcast, if any.
    pub broadcast_id: Option<i64>,
    /// Practice row id (not shown).
    #[serde(skip)]
    pub practice_id: i64,
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
}

/// One recorded attempt.
#[derive(Debug, Clone, Serialize)]
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

/// A browser's push subscription, as the Push API gives it.
#[derive(Debug, Clone)]
pub struct PushSubscription {
    /// The push service URL (https).
    pub endpoint: String,
    /// The browser's P-256 public key, base64url.
    pub p256dh: String,
    /// The authentication secret, base64url.
    pub auth: String,
}

/// A provider's word on a message it took.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// Message row id.
    pub message_id: i64,
    /// Which provider kind sent it (`twilio`, `notify`, `webhook`).
    pub provider: String,
    /// The provider's status word, as sent.
    pub status: String,
    /// The state it settles the message in, if it does (`delivered` or `failed`).
    pub new_state: Option<MessageState>,
    /// The provider's reason, for failures.
    pub detail: Option<String>,
}

/// One saved version of a message template.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateVersion {
    /// Row id.
    pub id: i64,
    /// The practice whose override it is; `None` for the global default.
    pub practice_id: Option<i64>,
    /// Template key, such as `status.closed`.
    pub key: String,
    /// Channel.
    pub channel: Channel,
    /// Language.
    pub language: Language,
    /// Version number, from 1, per (practice, key, channel, language).
    pub version: i32,
    /// Email subject or push title.
    pub subject: Option<String>,
    /// SMS text, email text part or push body.
    pub body: String,
    /// Email HTML part.
    pub html: Option<String>,
    /// Push link.
    pub link: Option<String>,
    /// Who saved it.
    pub author: String,
    /// Why, in their words (or "rolled back to version N").
    pub note: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A template to save as the next version.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    /// The practice whose override it is; `None` for the global default.
    pub practice_id: Option<i64>,
    /// Template key.
    pub key: String,
    /// Channel.
    pub channel: Channel,
    /// Language.
    pub language: Language,
    /// Email subject or push title.
    pub subject: Option<String>,
    /// SMS text, email text part or push body.
    pub body: String,
    /// Email HTML part.
    pub html: Option<String>,
    /// Push link.
    pub link: Option<String>,
    /// Who saves it.
    pub author: String,
    /// Why.
    pub note: Option<String>,
}

/// Someone who signs in to the console.
#[derive(Debug, Clone)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Sign-in name.
    pub username: String,
    /// Argon2id hash of the password (PHC string).
    pub password_hash: String,
    /// Whose pages they may see: every practice, or one.
    pub scope: KeyScope,
}

/// A signed-in session with its user.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The user.
    pub user: User,
    /// The token every form and script call must echo.
    pub csrf_token: String,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}
