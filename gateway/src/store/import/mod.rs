//! Contact-list imports: runs that can resume, the NHS numbers each run has met, and batches
//! of patients written whole (a patient and its contacts are never half-written).
//!
//! Deciding what a batch changes is the same on both databases, so it is worked out once
//! (`plan.rs`) from what is stored; each database only reads and writes.

mod plan;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Serialize;

use super::{PatientUpsert, StoreResult};
use crate::domain::{Channel, ImportRunId, PracticeId};

/// A run untouched for this long is abandoned when the practice's next import starts.
pub(crate) const ABANDON_AFTER: TimeDelta = TimeDelta::days(7);

/// Which columns a file has. An import writes those and leaves the rest of a patient alone;
/// for a contact channel it covers, the file's address replaces the stored ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportFields {
    /// First name.
    pub given_name: bool,
    /// Surname.
    pub family_name: bool,
    /// Date of birth.
    pub date_of_birth: bool,
    /// Landline (kept, never used for SMS).
    pub landline: bool,
    /// Preferred channel.
    pub preferred_channel: bool,
    /// Message language.
    pub language: bool,
    /// SMS contacts (a mobile column).
    pub sms: bool,
    /// Email contacts.
    pub email: bool,
}

impl ImportFields {
    /// Whether the file speaks for contacts of `channel`.
    pub fn covers(&self, channel: Channel) -> bool {
        match channel {
            Channel::Sms => self.sms,
            Channel::Email => self.email,
            Channel::Push | Channel::NhsApp => false,
        }
    }
}

/// One valid row of a file, ready to store. Its patient is active.
#[derive(Debug, Clone)]
pub struct ImportedPatient {
    /// The row in the file (header = 1), as a spreadsheet shows it.
    pub row: u64,
    /// Names, preferences and contacts (an opted-out contact records an opt-out).
    pub patient: PatientUpsert,
    /// Landline in E.164 form.
    pub landline: Option<String>,
    /// Date of birth.
    pub date_of_birth: Option<NaiveDate>,
}

/// What committed batches of a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    /// Patients new to the practice.
    pub created: u64,
    /// Patients whose details, contacts or active flag changed.
    pub updated: u64,
    /// Patients the file named exactly as stored.
    pub unchanged: u64,
}

impl ImportCounts {
    /// Adds another batch's counts.
    pub fn add(&mut self, other: ImportCounts) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
    }
}

/// An import run as stored.
#[derive(Debug, Clone)]
pub struct ImportRun {
    /// Row id, reported as the import id.
    pub id: ImportRunId,
    /// The practice whose list it is.
    pub practice_id: PracticeId,
    /// Whether the practice's list is made equal to the file.
    pub replace: bool,
    /// The last file row whose batch is committed (1, the header, when none is): a resumed
    /// run writes only the rows after it.
    pub through_row: u64,
    /// What its committed batches did.
    pub counts: ImportCounts,
    /// Whether it was found unfinished and is being resumed.
    pub resumed: bool,
}

/// How a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportEnd {
    /// The whole file was read; with `deactivate`, the practice's active patients the file
    /// did not name become inactive.
    Completed {
        /// Make unnamed patients inactive (replace mode).
        deactivate: bool,
    },
    /// All-or-nothing import with bad rows: nothing was written.
    Rejected,
    /// Given up (a streamed upload that failed): it will not be resumed.
    Abandoned,
}

/// A patient as the list holds them, for reading an import back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedPatient {
    /// NHS number.
    pub nhs_number: String,
    /// First name.
    pub given_name: Option<String>,
    /// Surname.
    pub family_name: Option<String>,
    /// Date of birth.
    pub date_of_birth: Option<NaiveDate>,
    /// Landline.
    pub landline: Option<String>,
    /// Preferred channel.
    pub preferred_channel: Option<String>,
    /// Language code.
    pub language: String,
    /// Still registered.
    pub active: bool,
    /// Contacts, by channel and address.
    pub contacts: Vec<ListedContact>,
}

/// A contact of a [`ListedPatient`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedContact {
    /// Channel.
    pub channel: String,
    /// Address.
    pub address: String,
    /// Whether the patient opted out of it.
    pub opted_out: bool,
}

/// Storage for CSV imports.
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// Starts a run, or resumes the practice's unfinished run with the same `fingerprint`
    /// (settings and file) and mode. Runs untouched for a week are abandoned here.
    async fn open_import(
        &self,
        practice_id: PracticeId,
        fingerprint: Option<&str>,
        replace: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<ImportRun>;
    /// Records NHS numbers (each once, with its row) as met by the run, keeping the earliest
    /// row. Returns those met before at an earlier row, with that row.
    async fn note_seen(
        &self,
        run_id: ImportRunId,
        seen: &[(&str, u64)],
    ) -> StoreResult<Vec<(String, u64)>>;
    /// Writes valid patients with their contacts in one transaction, which also moves the
    /// run's checkpoint to `through_row` and adds the counts it returns.
    async fn import_batch(
        &self,
        run: &ImportRun,
        fields: &ImportFields,
        patients: &[ImportedPatient],
        through_row: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<ImportCounts>;
    /// Ends a run in one transaction and forgets its NHS numbers. Returns how many patients
    /// were made inactive.
    async fn finish_import(
        &self,
        run: &ImportRun,
        end: ImportEnd,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// A page of the practice's patients in NHS number order, after `after_nhs`.
    async fn listed_patients(
        &self,
        practice_id: PracticeId,
        after_nhs: &str,
        limit: i64,
    ) -> StoreResult<Vec<ListedPatient>>;
}

pub(crate) use plan::{
    group_listing, listing, plan_batch, stored_patient, with_contacts, ListingRow, PatientRow,
    PatientValues, StoredContact,
};
