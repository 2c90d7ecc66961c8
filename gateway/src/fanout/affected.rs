//! A status change merged with the appointments it falls on. With audience `booked` or
//! `both`, a patient booked in the affected period is told about their own appointment
//! (`appointment.affected_by_closure`, urgent); with `both` everyone else gets the general
//! notice (bulk). A patient has one message key per broadcast whichever wording they get,
//! so nobody gets both, and two bookings in the period give one message naming the first.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Fanout, FanoutError, Wording};
use crate::domain::{PatientId, StatusAudience};
use crate::render::appointment::{render_for_patient, AppointmentWording};
use crate::store::{Appointment, Broadcast, FanoutContact, FanoutPatient, NewMessage};

/// The template that tells a patient a status change stops their appointment.
pub const AFFECTED_TEMPLATE: &str = "appointment.affected_by_closure";

/// The appointments a broadcast falls on: each booked patient's first in the period.
pub(super) struct Bookings {
    audience: StatusAudience,
    first: HashMap<PatientId, Appointment>,
}

/// What one patient of a broadcast is sent.
pub(super) enum Plan<'a> {
    /// The general notice.
    General,
    /// Word of their own appointment.
    Affected(&'a Appointment),
    /// Nothing: the broadcast is for booked patients only, and they have no booking.
    Nothing,
}

impl Bookings {
    /// What patient `patient_id` is sent.
    pub(super) fn plan(&self, patient_id: PatientId) -> Plan<'_> {
        match (self.audience, self.first.get(&patient_id)) {
            (StatusAudience::All, _) => Plan::General,
            (_, Some(appointment)) => Plan::Affected(appointment),
            (StatusAudience::Booked, None) => Plan::Nothing,
            (StatusAudience::Both, None) => Plan::General,
        }
    }
}

impl Plan<'_> {
    /// The plan without borrowing: `None` for nothing, `Some(None)` for the general notice,
    /// `Some(Some(appointment))` for word of their own appointment.
    pub(super) fn owned(&self) -> Option<Option<Appointment>> {
        match self {
            Plan::General => Some(None),
            Plan::Affected(appointment) => Some(Some((*appointment).clone())),
            Plan::Nothing => None,
        }
    }
}

impl Bookings {
    /// Whether people without appointments (anonymous followers too) get the general notice.
    pub(super) fn tells_everyone(&self) -> bool {
        self.audience != StatusAudience::Booked
    }
}

impl Fanout {
    /// The bookings a broadcast falls on: none unless its audience names appointments. The
    /// period runs from `affected_from` (else when the change was posted) to `affected_until`.
    pub(super) async fn bookings(&self, broadcast: &Broadcast) -> Result<Bookings, FanoutError> {
        let reach = broadcast.reach;
        let mut first = HashMap::new();
        if let (true, Some(until)) = (reach.audience.names_appointments(), reach.affected_until) {
            let from = reach.affected_from.unwrap_or(broadcast.created_at);
            // Ordered by patient, then start: the first kept is the earliest.
            for appointment in self
                .store
                .booked_between(broadcast.practice_id, from, until)
                .await?
            {
                first.entry(appointment.patient_id).or_insert(appointment);
            }
        }
        Ok(Bookings {
            audience: reach.audience,
            first,
        })
    }
}

/// One patient's urgent message that the broadcast stops their appointment, in their
/// language (Welsh first for a bilingual practice), sent at once: quiet hours hold only
/// bulk messages.
pub(super) fn affected_message(
    wording: &Wording,
    patient: &FanoutPatient,
    contact: &FanoutContact,
    appointment: &Appointment,
    idempotency_key: String,
    now: DateTime<Utc>,
) -> Result<NewMessage, FanoutError> {
    let (practice, broadcast) = (&wording.practice, &wording.broadcast);
    let about = AppointmentWording {
        now: &appointment.details,
        before: None,
        reason: None,
    };
    let worded = render_for_patient(
        &wording.templates,
        practice,
        &patient.language,
        AFFECTED_TEMPLATE,
        contact.channel,
        |language| about.context(practice, patient, Some(broadcast), language),
    )?;
    Ok(NewMessage {
        idempotency_key,
        broadcast_id: Some(broadcast.id),
        ..super::urgent_to(
            practice.id,
            patient.id,
            contact,
            AFFECTED_TEMPLATE,
            worded,
            now,
        )
    })
}
