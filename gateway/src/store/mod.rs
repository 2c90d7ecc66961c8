//! Storage: narrow traits per concern, one honest implementation per database.
//!
//! Each trait lives in its own file with the records it reads and writes; `Store` bundles
//! them, and `sqlite/` and `postgres/` each implement every trait in their own SQL (files
//! named after the traits), since the schemas and the claim query differ.
//!
//! The whole `Arc<dyn Store>` is held where most of it is used: `AppState` (the handlers
//! reach the store through it), the dispatch worker, the fan-out, and the intake services
//! built from `AppState` (status changes, appointment changes, invitations), which write the
//! audit trail beside their own concern. Everything else takes the narrow trait it calls,
//! and a caller passes its `&dyn Store` or `Arc<dyn Store>` as is (trait upcasting): the
//! cluster's heartbeat and leader an `Arc<dyn ClusterStore>`, the outcome recorder and the
//! lease fence an `Arc<dyn OutboxStore>`, the patient-list import an `ImportStore`, sessions
//! and users a `ConsoleStore`, API keys an `AccessStore`, the template registry a
//! `TemplateStore`. Functions that need two or three traits and hand the store on (the
//! template editor, the appointment import) are generic over `S: ... + ?Sized` instead.

/// API keys and the audit trail.
mod access;
/// Appointments and the changes made to them.
mod appointments;
/// Reading the audit trail back with filters.
pub(crate) mod audit_query;
/// Where a broadcast stands, and a page of a practice's broadcasts.
mod broadcast_state;
/// Status changes and the broadcasts they start.
mod broadcasts;
/// What several instances share: liveness, leadership, patients' daily caps.
mod cluster;
/// Console users and sessions.
mod console;
/// Opt-outs, bad addresses and push subscriptions.
mod contacts;
/// Message counts by channel, provider and state, that costs are priced from.
pub(crate) mod costs;
/// Federations: named sets of practices a key or console user may be scoped to.
mod federations;
/// Sent messages past their deadline, and the follow-ups on another channel.
pub(crate) mod follow_ups;
/// Anonymous push followers of a practice.
mod followers;
/// Status groups: one status change to many practices.
mod groups;
/// Contact-list imports that can resume.
pub(crate) mod import;
/// Durable messages, leases, attempts and receipts.
mod outbox;
/// Listing, deactivating and erasing patients.
pub(crate) mod patient_admin;
/// Patients with their contacts.
mod patients;
/// The PostgreSQL implementation.
mod postgres;
/// Practices, the tenants.
mod practices;
/// Proposed status changes, approval codes and rules, source incidents.
mod proposals;
/// Browsers' reports on push messages: shown, read, each once.
mod push_receipts;
/// Status changes planned ahead and their occurrences.
mod scheduled;
/// The SQLite implementation.
mod sqlite;
/// Staff mobile numbers that may send status commands.
mod staff;
/// Message templates and their versions.
mod templates;
/// One timestamp type, encoded as each database keeps times.
mod timestamp;
/// The trace context dispatch reads to follow sends back to their request.
mod traces;

use std::sync::Arc;

use async_trait::async_trait;

pub use access::{
    AccessStore, ApiKeyRecord, ApiKeySummary, AuditEntry, AuditRecord, KeyScope, NewApiKey,
};
pub use appointments::{
    Appointment, AppointmentChange, AppointmentDetails, AppointmentStore, AppointmentUpsert,
    ChangeOutcome, NewAppointmentChange,
};
pub use audit_query::AuditFilter;
pub use broadcast_state::{BroadcastPage, BroadcastState};
pub use broadcasts::{
    Broadcast, BroadcastCancel, BroadcastStore, CancelOutcome, IdempotencyClaim, NewStatusChange,
    Reach, StartOutcome,
};
pub use cluster::{ClusterStore, InstanceRecord, Leadership, NewInstance};
pub use console::{ConsoleStore, SessionRecord, User, UserSummary};
pub use contacts::{ContactStore, PushSubscription};
pub use costs::{CostRow, CostStore};
pub use federations::{Federation, FederationStore, MAX_FEDERATION_PRACTICES};
pub use follow_ups::{FollowUpOutcome, FollowUpStore, OverdueMessage};
pub use followers::{Follower, FollowerStore};
pub use groups::{GroupMember, GroupStart, GroupStop, GroupStore, NewStatusGroup, StatusGroup};
pub use import::{
    ImportCounts, ImportEnd, ImportFields, ImportRun, ImportStore, ImportedPatient, ListedContact,
    ListedPatient,
};
pub use outbox::{
    AttemptView, ClaimedMessage, Completion, Held, MessageView, NewMessage, OutboxStore, Receipt,
    Recipient,
};
pub use patient_admin::{ErasureSummary, PatientAdminStore, PatientPage};
pub use patients::{
    ContactUpsert, ContactView, FanoutContact, FanoutPatient, PatientStore, PatientUpsert,
    PatientView, UpsertSummary,
};
pub use postgres::PostgresStore;
pub use practices::{NewPractice, Practice, PracticeSenders, PracticeStore};
pub use proposals::{
    ApprovalSettings, IncidentRef, LiveCode, NewApprovalCode, NewProposal, Proposal,
    ProposalOrigin, ProposalState, ProposalStore,
};
pub use push_receipts::{PushReceiptOutcome, PushReceiptStore};
pub use scheduled::{
    Claim, NewNotice, NoticeState, Occurrence, OccurrenceState, ScheduleStore, ScheduledNotice,
};
pub use sqlite::SqliteStore;
pub use staff::{NewStaffNumber, StaffNumber, StaffRole, StaffStore};
pub use templates::{NewTemplate, TemplateStore, TemplateVersion};
pub(crate) use timestamp::{At, TimeColumn};
pub(crate) use traces::BroadcastMarks;
pub use traces::{ClaimedBroadcasts, TraceStore};

use crate::domain::{BroadcastId, FederationId, PracticeId, Priority, StatusChangeId};

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

/// Everything the gateway stores.
#[async_trait]
pub trait Store:
    PracticeStore
    + PatientStore
    + PatientAdminStore
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
    + StaffStore
    + ProposalStore
    + GroupStore
    + ScheduleStore
    + FederationStore
    + TraceStore
    + FollowUpStore
    + CostStore
    + PushReceiptStore
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
pub(crate) fn superseded_reasons(
    rows: Vec<(BroadcastId, StatusChangeId, String)>,
) -> Vec<(BroadcastId, String)> {
    rows.into_iter()
        .map(|(broadcast, change, kind)| (broadcast, supersede_reason(change, &kind)))
        .collect()
}

/// Each broadcast's withdrawal reason from the superseded rows (as [`superseded_reasons`]
/// takes them) and the cancelled ones `(broadcast, by, reason)`; a cancel names the person,
/// so it wins where a broadcast was both.
pub(crate) fn withdrawn_reasons(
    superseded: Vec<(BroadcastId, StatusChangeId, String)>,
    cancelled: Vec<(BroadcastId, String, String)>,
) -> Vec<(BroadcastId, String)> {
    let mut reasons: Vec<(BroadcastId, String)> = cancelled
        .into_iter()
        .map(|(id, by, reason)| (id, broadcasts::cancel_reason(&by, &reason)))
        .collect();
    for (id, reason) in superseded_reasons(superseded) {
        if !reasons.iter().any(|(known, _)| *known == id) {
            reasons.push((id, reason));
        }
    }
    reasons
}

/// Why the unsent messages of a broadcast superseded by status change `change` (of `kind`)
/// are cancelled.
pub fn supersede_reason(change: StatusChangeId, kind: &str) -> String {
    format!("superseded by status change {change} ({kind})")
}

/// Parses a stored domain value, reporting the column if it cannot be read.
pub(crate) fn parsed<T: std::str::FromStr>(column: &'static str, text: &str) -> StoreResult<T> {
    text.parse().map_err(|_| StoreError::Corrupt {
        column,
        reason: format!("{text:?} is not a known value"),
    })
}

/// A stored role with its practice or federation (of an API key or a console user, read
/// from `column`) as a scope.
pub(crate) fn scope_of(
    column: &'static str,
    role: &str,
    practice_id: Option<PracticeId>,
    federation_id: Option<FederationId>,
) -> StoreResult<KeyScope> {
    match (role, practice_id, federation_id) {
        ("admin", _, _) => Ok(KeyScope::Admin),
        ("practice", Some(id), _) => Ok(KeyScope::Practice(id)),
        ("federation", _, Some(id)) => Ok(KeyScope::Federation(id)),
        _ => Err(StoreError::Corrupt {
            column,
            reason: format!("{role:?} without its practice or federation"),
        }),
    }
}

/// How a scope is stored (`scope_of` reads it back).
pub(crate) struct StoredScope {
    /// `admin`, `practice` or `federation`.
    pub role: &'static str,
    /// The practice of a practice's scope.
    pub practice_id: Option<PracticeId>,
    /// The federation of a federation's scope.
    pub federation_id: Option<FederationId>,
}

/// A scope as it is stored: the role and its practice or federation.
pub(crate) fn role_of(scope: KeyScope) -> StoredScope {
    let (role, practice_id, federation_id) = match scope {
        KeyScope::Admin => ("admin", None, None),
        KeyScope::Practice(id) => ("practice", Some(id), None),
        KeyScope::Federation(id) => ("federation", None, Some(id)),
    };
    StoredScope {
        role,
        practice_id,
        federation_id,
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
