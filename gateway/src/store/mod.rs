//! Storage: narrow traits per concern, one honest implementation per database.
//!
//! Handlers and workers hold an `Arc<dyn Store>`; `sqlite.rs` and `postgres.rs` each
//! implement every trait in their own SQL, since the schemas and the claim query differ.

mod appointments;
mod cluster;
mod followers;
pub(crate) mod import;
mod postgres;
mod records;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use appointments::{
    Appointment, AppointmentChange, AppointmentDetails, AppointmentStore, AppointmentUpsert,
    ChangeOutcome, NewAppointmentChange,
};
pub use cluster::{ClusterStore, InstanceRecord, Leadership, NewInstance};
pub use followers::{Follower, FollowerStore};
pub use import::{
    ImportCounts, ImportEnd, ImportFields, ImportRun, ImportStore, ImportedPatient, ListedContact,
    ListedPatient,
};
pub use postgres::PostgresStore;
pub use records::*;
pub use sqlite::SqliteStore;

use crate::domain::{Channel, Language, MessageState, OdsCode, Priority};

/// A storage failure. Constraint violations the caller can act on get their own variants.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row that should be unique already exists.
    #[error("already exists: {0}")]
    Duplicate(String),
    /// The database refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A lease (the leader's) is no longer held by the caller.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// A stored value could not be read back into a domain type.
    #[error("corrupt stored value in {column}: {reason}")]
    Corrupt {
        /// Which column held it.
        column: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Shorthand for results of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// Practices: the tenants of the gateway.
#[async_trait]
pub trait PracticeStore: Send + Sync {
    /// Adds a practice; `Duplicate` if its ODS code is taken.
    async fn create_practice(
        &self,
        practice: &NewPractice,
        now: DateTime<Utc>,
    ) -> StoreResult<Practice>;
    /// Every practice, ordered by ODS code.
    async fn list_practices(&self) -> StoreResult<Vec<Practice>>;
    /// One practice by ODS code.
    async fn practice_by_ods(&self, ods: &OdsCode) -> StoreResult<Option<Practice>>;
    /// One practice by id.
    async fn practice_by_id(&self, id: i64) -> StoreResult<Option<Practice>>;
}

/// Patients and the contacts they can be reached on.
#[async_trait]
pub trait PatientStore: Send + Sync {
    /// Inserts or updates patients with their contacts, in one transaction.
    /// A recorded opt-out is never cleared here.
    async fn upsert_patients(
        &self,
        practice_id: i64,
        patients: &[PatientUpsert],
        now: DateTime<Utc>,
    ) -> StoreResult<UpsertSummary>;
    /// A page of the practice's active patients with their usable contacts, after `after_patient_id`.
    async fn fanout_page(
        &self,
        practice_id: i64,
        after_patient_id: i64,
        limit: usize,
    ) -> StoreResult<Vec<FanoutPatient>>;
    /// One patient with all contacts (opted out or not).
    async fn patient(&self, practice_id: i64, nhs_number: &str)
        -> StoreResult<Option<PatientView>>;
    /// The row id of the practice's patient with this NHS number.
    async fn patient_id_of(&self, practice_id: i64, nhs_number: &str) -> StoreResult<Option<i64>>;
    /// The NHS number of the practice's patient with row id `patient_id`.
    async fn nhs_number_of(&self, practice_id: i64, patient_id: i64)
        -> StoreResult<Option<String>>;
}

/// API keys and the audit trail.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores a new key by its hash.
    async fn create_api_key(&self, key: &NewApiKey, now: DateTime<Utc>) -> StoreResult<i64>;
    /// The live (unrevoked) key with this hash.
    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Records who did what.
    async fn audit(&self, entry: &AuditEntry, now: DateTime<Utc>) -> StoreResult<()>;
    /// The most recent audit entries of a practice, newest first.
    async fn audit_trail(&self, practice_id: i64, limit: i64) -> StoreResult<Vec<AuditRecord>>;
}

/// Status changes and the broadcasts they start.
#[async_trait]
pub trait BroadcastStore: Send + Sync {
    /// Records a status change and its broadcast in one transaction, honouring the
    /// idempotency claim if there is one. The same transaction supersedes the practice's
    /// earlier broadcasts and cancels their unsent messages (as [`supersede_earlier`] does),
    /// so no crash or retry can leave an older notice queued behind a newer one.
    ///
    /// [`supersede_earlier`]: BroadcastStore::supersede_earlier
    async fn start_status_broadcast(
        &self,
        practice_id: i64,
        change: &NewStatusChange,
        idempotency: Option<&IdempotencyClaim>,
        now: DateTime<Utc>,
    ) -> StoreResult<StartOutcome>;
    /// A broadcast with its status change.
    async fn broadcast(&self, id: i64) -> StoreResult<Option<Broadcast>>;
    /// The practice's latest broadcasts, newest first.
    async fn recent_broadcasts(&self, practice_id: i64, limit: i64) -> StoreResult<Vec<Broadcast>>;
    /// Broadcasts whose fan-out never finished (the process stopped during it) and did not
    /// fail.
    async fn unfinished_broadcasts(&self) -> StoreResult<Vec<i64>>;
    /// Marks a fan-out complete, with the number of patients it could not reach.
    async fn finish_fanout(
        &self,
        id: i64,
        skipped_no_contact: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Marks a broadcast's fan-out failed with `reason` (its wording could not be rendered):
    /// it is not resumed, and the messages it planned before failing are left to go.
    async fn fail_fanout(&self, id: i64, reason: &str, now: DateTime<Utc>) -> StoreResult<()>;
    /// Marks every earlier broadcast of the practice as superseded by `status_change_id`
    /// (the change behind broadcast `newer`) and cancels their unsent messages, naming it.
    /// Messages already with a provider are left to finish. Returns how many were cancelled.
    async fn supersede_earlier(
        &self,
        practice_id: i64,
        newer: i64,
        status_change_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Cancels a broadcast's unsent messages with `reason` (a fan-out that finds its broadcast
    /// superseded cleans up what it wrote meanwhile). Returns how many were cancelled.
    async fn cancel_queued(
        &self,
        broadcast_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Which of these broadcasts have been superseded: each with the reason its unsent
    /// messages are cancelled with (naming the newer status change).
    async fn superseded_among(&self, broadcast_ids: &[i64]) -> StoreResult<Vec<(i64, String)>>;
    /// Message counts of a broadcast by channel and state.
    async fn broadcast_counts(&self, id: i64) -> StoreResult<Vec<(Channel, MessageState, i64)>>;
    /// A page of a broadcast's messages in id order, optionally of one state.
    async fn broadcast_messages(
        &self,
        id: i64,
        after_id: i64,
        limit: i64,
        state: Option<MessageState>,
    ) -> StoreResult<Vec<MessageView>>;
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
        skip_practices: &[i64],
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
        skip_practices: &[i64],
        skip_channels: &[Channel],
    ) -> StoreResult<Vec<ClaimedMessage>>;
    /// Records attempts and the messages' new states in one transaction. For each, whether
    /// `owner` still held the lease (the attempt is recorded all the same).
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
        sends: &[(i64, i32)],
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
        due: &[(i64, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Queued messages per lane.
    async fn queue_depth(&self) -> StoreResult<Vec<(Priority, i64)>>;
    /// Gives back every lease `owner` holds on messages not started (see `start_sends`),
    /// uncounted: at a clean shutdown, or when the worker may have lost its leases.
    async fn release_leases(&self, owner: &str, now: DateTime<Utc>) -> StoreResult<u64>;
    /// One message with its attempts.
    async fn message(&self, id: i64) -> StoreResult<Option<(MessageView, Vec<AttemptView>)>>;
    /// Messages not yet final, for tests and readiness.
    async fn pending_count(&self) -> StoreResult<i64>;
    /// The message one of `providers` (by name) sent and knows by `provider_ref`: its id,
    /// provider name and state. A reference counts only with the provider that gave it, so a
    /// callback of one kind cannot settle what a provider of another kind sent.
    async fn message_by_provider_ref(
        &self,
        providers: &[String],
        provider_ref: &str,
    ) -> StoreResult<Option<(i64, Option<String>, MessageState)>>;
    /// Keeps a provider's receipt and, if it settles the message, moves a `sent` message
    /// to `new_state` (a receipt never moves a message backwards). Returns whether it moved.
    async fn record_receipt(&self, receipt: &Receipt, now: DateTime<Utc>) -> StoreResult<bool>;
}

/// How patients can be reached: opt-outs, bad addresses, push subscriptions.
#[async_trait]
pub trait ContactStore: Send + Sync {
    /// Marks a contact unreachable (the provider said invalid or unsubscribed): fan-outs skip it.
    async fn mark_bad_recipient(&self, contact_id: i64, now: DateTime<Utc>) -> StoreResult<()>;
    /// Deletes a contact, such as an expired push subscription.
    async fn remove_contact(&self, contact_id: i64) -> StoreResult<()>;
    /// Deletes the practice's push subscriptions with this endpoint (a browser turning
    /// notifications off). Returns how many.
    async fn remove_push_endpoint(&self, practice_id: i64, endpoint: &str) -> StoreResult<u64>;
    /// Opts an SMS number out (or back in) for every patient of the practice who has it.
    /// Returns how many contacts changed.
    async fn set_sms_opt_out(
        &self,
        practice_id: i64,
        address: &str,
        opted_out: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Opts one contact out; false if it does not exist.
    async fn opt_out_contact(&self, contact_id: i64, now: DateTime<Utc>) -> StoreResult<bool>;
    /// A push contact's keys (`p256dh`, `auth`).
    async fn push_keys(&self, contact_id: i64) -> StoreResult<Option<(String, String)>>;
    /// Adds or refreshes a patient's push subscription; `None` if the patient does not exist.
    async fn add_push_subscription(
        &self,
        practice_id: i64,
        nhs_number: &str,
        subscription: &PushSubscription,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>>;
    /// Opts an SMS number out (or back in) at every practice with a patient who has it, in
    /// one transaction: a reply names no practice, and every practice sends through the same
    /// configured senders, so each of them could have sent what the patient answers. Returns
    /// each practice touched with how many of its contacts have the number, by practice id.
    async fn set_sms_opt_out_everywhere(
        &self,
        address: &str,
        opted_out: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(i64, u64)>>;
}

/// Message templates: every save a new version, the newest one in use.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// The newest version of every (practice, key, channel, language).
    async fn current_templates(&self) -> StoreResult<Vec<TemplateVersion>>;
    /// Every version of one template, newest first.
    async fn template_history(
        &self,
        practice_id: Option<i64>,
        key: &str,
        channel: Channel,
        language: Language,
    ) -> StoreResult<Vec<TemplateVersion>>;
    /// Saves `template` as its next version; `Duplicate` if another save took that number.
    async fn save_template(
        &self,
        template: &NewTemplate,
        now: DateTime<Utc>,
    ) -> StoreResult<TemplateVersion>;
    /// Saves each global default that has no version yet as version 1 (first start, or a
    /// key added by an upgrade). Returns how many were added.
    async fn seed_templates(
        &self,
        defaults: &[NewTemplate],
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
}

/// Console users and their sessions.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Adds a user; `Duplicate` if the name is taken.
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        scope: KeyScope,
        now: DateTime<Utc>,
    ) -> StoreResult<User>;
    /// A user by sign-in name.
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    /// Starts a session for `user_id` under the hash of its cookie token.
    async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The live session with this token hash, with its user.
    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<SessionRecord>>;
    /// Ends a session (sign-out), and any that have expired.
    async fn end_session(&self, token_hash: &str, now: DateTime<Utc>) -> StoreResult<()>;
}

/// Everything the gateway stores.
#[async_trait]
pub trait Store:
    PracticeStore
    + PatientStore
    + AccessStore
    + BroadcastStore
    + OutboxStore
    + ContactStore
    + TemplateStore
    + ConsoleStore
    + AppointmentStore
    + FollowerStore
    + ImportStore
    + ClusterStore
{
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Checks the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Which database this is (`sqlite` or `postgres`).
    fn kind(&self) -> &'static str;
}

/// Opens the database named by `url` (`sqlite:...` or `postgres://...`), without migrating.
pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, max_connections).await?))
    } else {
        Ok(Arc::new(
            PostgresStore::connect(url, max_connections).await?,
        ))
    }
}

/// Maps a unique-constraint violation to `Duplicate`, anything else to `Database`.
pub(crate) fn unique_violation(err: sqlx::Error, what: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Duplicate(what.to_string())
        }
        _ => StoreError::Database(err),
    }
}

/// Both lanes with their counts, zero where no row was returned.
pub(crate) fn lanes(rows: Vec<(i16, i64)>) -> Vec<(Priority, i64)> {
    [Priority::Urgent, Priority::Bulk]
        .into_iter()
        .map(|lane| {
            let count = rows
                .iter()
                .filter(|(rank, _)| Priority::from_rank(*rank) == lane)
                .map(|(_, n)| n)
                .sum();
            (lane, count)
        })
        .collect()
}

/// `(broadcast, newer status change, its kind)` rows as each broadcast's cancel reason.
pub(crate) fn superseded_reasons(rows: Vec<(i64, i64, String)>) -> Vec<(i64, String)> {
    rows.into_iter()
        .map(|(broadcast, change, kind)| (broadcast, supersede_reason(change, &kind)))
        .collect()
}

/// Why the unsent messages of a broadcast superseded by status change `change` (of `kind`)
/// are cancelled.
pub fn supersede_reason(change: i64, kind: &str) -> String {
    format!("superseded by status change {change} ({kind})")
}

/// A stored console role and practice as a scope.
pub(crate) fn scope_of(role: &str, practice_id: Option<i64>) -> StoreResult<KeyScope> {
    match (role, practice_id) {
        ("admin", _) => Ok(KeyScope::Admin),
        ("practice", Some(id)) => Ok(KeyScope::Practice(id)),
        _ => Err(StoreError::Corrupt {
            column: "users.role",
            reason: format!("{role:?} without a practice"),
        }),
    }
}

/// Starts a transaction that cannot be orphaned by its caller being cancelled.
///
/// sqlx 0.8's `begin` has an await between the database opening the transaction and the
/// `Transaction` guard existing; a task aborted there (a killed worker, a client that hung
/// up) returns the connection to the pool still inside the transaction, holding SQLite's
/// write lock or PostgreSQL's row locks for ever. Running `begin` on its own task closes that
/// window: if the caller goes away, the finished `Transaction` is dropped and rolled back.
pub(crate) async fn begin_detached<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    statement: Option<&'static str>,
) -> StoreResult<sqlx::Transaction<'static, DB>> {
    let pool = pool.clone();
    let begun = tokio::spawn(async move {
        match statement {
            Some(statement) => pool.begin_with(statement).await,
            None => pool.begin().await,
        }
    })
    .await;
    match begun {
        Ok(transaction) => Ok(transaction?),
        Err(_) => Err(StoreError::Database(sqlx::Error::WorkerCrashed)),
    }
}
