//! Appointments: the bookings a practice imports, and the changes it makes to them.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{IdempotencyClaim, NewMessage, StoreResult, UpsertSummary};
use crate::domain::{
    AppointmentChangeId, AppointmentChangeKind, AppointmentId, AppointmentMode, AppointmentState,
    MessageId, PatientId, PracticeId,
};

/// An appointment to insert or update, keyed by (practice, external reference).
#[derive(Debug, Clone)]
pub struct AppointmentUpsert {
    /// The patient's row id.
    pub patient_id: PatientId,
    /// The practice system's id for it.
    pub external_ref: String,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// Who with (may be empty).
    pub clinician: Option<String>,
    /// Where (may be empty).
    pub location: Option<String>,
    /// In person, by phone or video.
    pub mode: AppointmentMode,
    /// Booked or cancelled.
    pub state: AppointmentState,
}

/// What an appointment is: when, with whom, where and how. A change has one before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AppointmentDetails {
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// Who with.
    pub clinician: Option<String>,
    /// Where.
    pub location: Option<String>,
    /// How.
    pub mode: AppointmentMode,
}

/// A stored appointment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Appointment {
    /// Row id.
    #[serde(skip)]
    pub id: AppointmentId,
    /// Practice row id.
    #[serde(skip)]
    pub practice_id: PracticeId,
    /// Patient row id.
    #[serde(skip)]
    pub patient_id: PatientId,
    /// The patient's NHS number.
    pub nhs_number: String,
    /// The practice system's id for it.
    pub external_ref: String,
    /// When, who, where and how.
    #[serde(flatten)]
    pub details: AppointmentDetails,
    /// Booked or cancelled.
    pub state: AppointmentState,
    /// When it was first imported.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A change to record: the appointment as read, and as it becomes.
#[derive(Debug, Clone)]
pub struct NewAppointmentChange {
    /// The appointment's row id.
    pub appointment_id: AppointmentId,
    /// Its `updated_at` as read: if it has changed since, the change is not recorded.
    pub read_at: DateTime<Utc>,
    /// What happened.
    pub kind: AppointmentChangeKind,
    /// The appointment before.
    pub before: AppointmentDetails,
    /// The appointment after (the same as before for a cancellation).
    pub after: AppointmentDetails,
    /// Why, in the practice's words, for the patient.
    pub reason: Option<String>,
    /// Who made it (audit actor).
    pub created_by: String,
    /// The W3C traceparent of the request that made it, kept with its message so that the
    /// send joins that request's trace (see `telemetry::traces`).
    pub traceparent: Option<String>,
}

/// A recorded change to one appointment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AppointmentChange {
    /// Row id.
    pub id: AppointmentChangeId,
    /// The appointment's row id.
    #[serde(skip)]
    pub appointment_id: AppointmentId,
    /// What happened.
    pub kind: AppointmentChangeKind,
    /// The appointment before.
    pub before: AppointmentDetails,
    /// The appointment after.
    pub after: AppointmentDetails,
    /// Why.
    pub reason: Option<String>,
    /// The message telling the patient, if they could be reached.
    pub message_id: Option<MessageId>,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// What recording a change did.
#[derive(Debug, Clone)]
pub enum ChangeOutcome {
    /// Recorded now, with its message.
    Recorded(AppointmentChange),
    /// The idempotency key was used before for the same request: that change.
    Replayed(AppointmentChange),
    /// The idempotency key was used before for another request.
    KeyReused,
    /// The appointment changed (or was cancelled) since it was read: read it again.
    Stale,
}

/// Appointments, and changes to them, of each practice.
#[async_trait]
pub trait AppointmentStore: Send + Sync {
    /// Row ids of the practice's patients with these NHS numbers; unknown ones are absent.
    async fn patient_ids_by_nhs(
        &self,
        practice_id: PracticeId,
        nhs_numbers: &[String],
    ) -> StoreResult<HashMap<String, PatientId>>;
    /// Inserts or updates appointments by (practice, external reference) in set-based
    /// statements, in one transaction. External references must be distinct.
    async fn upsert_appointments(
        &self,
        practice_id: PracticeId,
        appointments: &[AppointmentUpsert],
        now: DateTime<Utc>,
    ) -> StoreResult<UpsertSummary>;
    /// One appointment by its external reference.
    async fn appointment_by_ref(
        &self,
        practice_id: PracticeId,
        external_ref: &str,
    ) -> StoreResult<Option<Appointment>>;
    /// The practice's booked (not cancelled) appointments starting in `[from, until)`,
    /// ordered by patient, then start.
    async fn booked_between(
        &self,
        practice_id: PracticeId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<Appointment>>;
    /// The change recorded under this idempotency key, with its request hash.
    async fn change_by_idempotency_key(
        &self,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<(String, AppointmentChange)>>;
    /// In one transaction: records the change (under the idempotency claim, if any), brings
    /// the appointment up to date and queues `message`, whose idempotency key becomes
    /// `appointment-change:{change id}`. `Stale` if the appointment changed since it was read.
    async fn record_appointment_change(
        &self,
        change: &NewAppointmentChange,
        message: Option<&NewMessage>,
        idempotency: Option<&IdempotencyClaim>,
        now: DateTime<Utc>,
    ) -> StoreResult<ChangeOutcome>;
}

/// The outbox idempotency key of the message a change sends.
pub(crate) fn change_message_key(change_id: AppointmentChangeId) -> String {
    format!("appointment-change:{change_id}")
}
