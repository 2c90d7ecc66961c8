//! Patients and the contacts they can be reached on, as upserts write them and fan-out
//! reads them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{Channel, ContactId, NhsNumber, PatientId, PracticeId};

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
    pub id: PatientId,
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
    /// Not marked unreachable in the NHS App (see [`FanoutPatient::with_nhs_app`]).
    pub in_nhs_app: bool,
    /// Contacts not opted out and not known bad, in id order.
    pub contacts: Vec<FanoutContact>,
}

impl FanoutPatient {
    /// Adds the patient's NHS App contact, when an NHS App provider is configured and the
    /// app has not said the patient cannot be reached there: it is not stored, as the
    /// address is the NHS number every patient has.
    pub fn with_nhs_app(&mut self, nhs_app: bool) {
        let has = self.contacts.iter().any(|c| c.channel == Channel::NhsApp);
        if nhs_app && self.in_nhs_app && !has {
            self.contacts.push(FanoutContact {
                id: None,
                channel: Channel::NhsApp,
                address: self.nhs_number.clone(),
            });
        }
    }
}

/// A usable contact of a patient.
#[derive(Debug, Clone)]
pub struct FanoutContact {
    /// Row id; `None` for the NHS App contact, which is the patient's NHS number.
    pub id: Option<ContactId>,
    /// Its channel.
    pub channel: Channel,
    /// Its address.
    pub address: String,
}

/// A patient with every contact, for reading back.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContactView {
    /// Channel.
    pub channel: String,
    /// Address.
    pub address: String,
    /// When the patient opted out, if they did.
    pub opted_out_at: Option<DateTime<Utc>>,
}

/// Patients and the contacts they can be reached on.
#[async_trait]
pub trait PatientStore: Send + Sync {
    /// Inserts or updates patients with their contacts, in one transaction.
    /// A recorded opt-out is never cleared here.
    async fn upsert_patients(
        &self,
        practice_id: PracticeId,
        patients: &[PatientUpsert],
        now: DateTime<Utc>,
    ) -> StoreResult<UpsertSummary>;
    /// A page of the practice's active patients with their usable contacts, after `after_patient_id`.
    async fn fanout_page(
        &self,
        practice_id: PracticeId,
        after_patient_id: PatientId,
        limit: usize,
    ) -> StoreResult<Vec<FanoutPatient>>;
    /// One patient with all contacts (opted out or not).
    async fn patient(
        &self,
        practice_id: PracticeId,
        nhs_number: &str,
    ) -> StoreResult<Option<PatientView>>;
    /// The row id of the practice's patient with this NHS number.
    async fn patient_id_of(
        &self,
        practice_id: PracticeId,
        nhs_number: &str,
    ) -> StoreResult<Option<PatientId>>;
    /// The NHS number of the practice's patient with row id `patient_id`.
    async fn nhs_number_of(
        &self,
        practice_id: PracticeId,
        patient_id: PatientId,
    ) -> StoreResult<Option<String>>;
}
