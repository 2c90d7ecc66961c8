//! One appointment changed by the practice (cancelled, moved, now by phone, another
//! clinician): the appointment brought up to date, the change recorded with its before and
//! after, and one urgent message to the patient on their best channel, all in one
//! transaction. With an Idempotency-Key, a retried change is recorded and sent once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::{kept, optional_text};
use crate::domain::{
    parse_start, AppointmentChangeKind, AppointmentMode, AppointmentState, Channel, Invalid,
    MessageId, PatientId,
};
use crate::fanout::{next_contact, urgent_to};
use crate::render::appointment::{render_for_patient_off_runtime, AppointmentWording};
use crate::render::{RenderError, TemplateRegistry};
use crate::store::{
    Appointment, AppointmentChange, AppointmentDetails, AuditEntry, ChangeOutcome,
    IdempotencyClaim, NewAppointmentChange, NewMessage, Practice, Store, StoreError,
};
use crate::telemetry::traces::Propagation;

/// How often a change is tried again when the appointment changed under it.
const STALE_TRIES: usize = 3;

/// What making an appointment change takes: the store, the message templates that word the
/// patient's message, and the dispatch workers' wake-up.
#[derive(Clone)]
pub struct AppointmentChanges {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Message wording.
    pub templates: Arc<TemplateRegistry>,
    /// Pokes idle dispatch workers when the message lands.
    pub wake: Arc<Notify>,
    /// Whether the request's trace context is recorded with the patient's message.
    pub propagation: Propagation,
    /// Whether an NHS App provider is configured (patients then have an NHS App contact).
    pub nhs_app: bool,
}

/// A change as a client posts it. Only the fields its kind takes may be given.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentChangeRequest {
    /// `cancelled`, `moved`, `changed_to_phone` or `changed_clinician`.
    pub kind: String,
    /// For `moved`: the new start, UK local time or RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// The new clinician: needed for `changed_clinician`; optional for `moved` and
    /// `changed_to_phone` (who will call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clinician: Option<String>,
    /// For `moved`: the new place, if it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Why, in words the patient will read (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A change checked against the appointment it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedChange {
    /// What happened.
    pub kind: AppointmentChangeKind,
    /// The appointment as it becomes.
    pub after: AppointmentDetails,
    /// Why.
    pub reason: Option<String>,
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The request is invalid for this appointment.
    #[error("invalid appointment change")]
    Invalid(Vec<Invalid>),
    /// The practice has no appointment with this external reference.
    #[error("no appointment {0}")]
    NotFound(String),
    /// The appointment is cancelled: there is nothing left to change.
    #[error("appointment {0} is cancelled")]
    Cancelled(String),
    /// The Idempotency-Key was used before with a different request.
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    /// The appointment kept changing under this change.
    #[error("appointment {0} changed while this change was being made; send it again")]
    Busy(String),
    /// The wording would not render.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What posting did: the change, and whether it is a replay of an earlier request.
#[derive(Debug, Clone)]
pub struct ChangePosted {
    /// The change recorded (now, or under the same key earlier).
    pub change: AppointmentChange,
    /// True when the Idempotency-Key matched an earlier identical request.
    pub replayed: bool,
}

impl AppointmentChangeRequest {
    /// Checks the request against the appointment as it stands, naming every problem.
    pub fn parse(&self, current: &Appointment, timezone: Tz) -> Result<ParsedChange, Vec<Invalid>> {
        let mut errors = Vec::new();
        let e = &mut errors;
        let kind = kept(e, self.kind.parse::<AppointmentChangeKind>());
        let reason = kept(e, optional_text(&self.reason, "reason")).flatten();
        let clinician = kept(e, optional_text(&self.clinician, "clinician")).flatten();
        let location = kept(e, optional_text(&self.location, "location")).flatten();
        let starts_at = match self.starts_at.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => kept(e, parse_start(text, "starts_at", timezone)),
        };
        let Some(kind) = kind else {
            return Err(errors);
        };
        let given = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
        let takes: &[&str] = match kind {
            AppointmentChangeKind::Cancelled => &[],
            AppointmentChangeKind::Moved => &["starts_at", "clinician", "location"],
            AppointmentChangeKind::ChangedToPhone => &["clinician"],
            AppointmentChangeKind::ChangedClinician => &["clinician"],
        };
        for (field, value) in [
            ("starts_at", &self.starts_at),
            ("clinician", &self.clinician),
            ("location", &self.location),
        ] {
            if given(value) && !takes.contains(&field) {
                errors.push(Invalid::new(
                    field,
                    format!("a {kind} change does not take {field}"),
                ));
            }
        }
        let mut after = current.details.clone();
        match kind {
            AppointmentChangeKind::Cancelled => {}
            AppointmentChangeKind::Moved => {
                match starts_at {
                    Some(at) => after.starts_at = at,
                    None if !given(&self.starts_at) => errors.push(Invalid::new(
                        "starts_at",
                        "a moved appointment needs its new start",
                    )),
                    None => {}
                }
                after.clinician = clinician.or(after.clinician);
                after.location = location.or(after.location);
                if starts_at.is_some() && after == current.details {
                    errors.push(Invalid::new(
                        "starts_at",
                        "is the appointment's time already, and nothing else changes",
                    ));
                }
            }
            AppointmentChangeKind::ChangedToPhone => {
                if current.details.mode == AppointmentMode::Phone {
                    errors.push(Invalid::new("kind", "the appointment is by phone already"));
                }
                after.mode = AppointmentMode::Phone;
                after.clinician = clinician.or(after.clinician);
            }
            AppointmentChangeKind::ChangedClinician => match clinician {
                Some(c) if Some(&c) == current.details.clinician.as_ref() => errors.push(
                    Invalid::new("clinician", "is the appointment's clinician already"),
                ),
                Some(c) => after.clinician = Some(c),
                None if !given(&self.clinician) => errors.push(Invalid::new(
                    "clinician",
                    "a changed_clinician change needs the new clinician",
                )),
                None => {}
            },
        }
        if errors.is_empty() {
            Ok(ParsedChange {
                kind,
                after,
                reason,
            })
        } else {
            Err(errors)
        }
    }

    /// A hash of the request and the appointment it names, to tell a retry from another change.
    pub fn fingerprint(&self, external_ref: &str) -> String {
        let canonical = serde_json::to_vec(&json!({ "appointment": external_ref, "change": self }))
            .unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }
}

/// Makes a change to the practice's appointment `external_ref` and queues the patient's
/// message. With an Idempotency-Key (`(caller scope, key)`), a retry returns the first change.
pub async fn post_appointment_change(
    changes: &AppointmentChanges,
    practice: &Practice,
    external_ref: &str,
    request: &AppointmentChangeRequest,
    actor: &str,
    idempotency: Option<(String, String)>,
) -> Result<ChangePosted, ChangeError> {
    let store = changes.store.as_ref();
    let claim = idempotency.map(|(scope, key)| IdempotencyClaim {
        scope: format!("{scope}:practice:{}:appointment_change", practice.id),
        key,
        request_hash: request.fingerprint(external_ref),
    });
    // A retry is answered before the appointment is judged: the change it repeats has
    // already moved or cancelled it.
    if let Some(claim) = &claim {
        if let Some((hash, change)) = store
            .change_by_idempotency_key(&claim.scope, &claim.key)
            .await?
        {
            return match hash == claim.request_hash {
                true => Ok(ChangePosted {
                    change,
                    replayed: true,
                }),
                false => Err(ChangeError::KeyReused),
            };
        }
    }
    let timezone = practice.timezone.tz();
    for _ in 0..STALE_TRIES {
        let appointment = store
            .appointment_by_ref(practice.id, external_ref)
            .await?
            .ok_or_else(|| ChangeError::NotFound(external_ref.to_string()))?;
        if appointment.state == AppointmentState::Cancelled {
            return Err(ChangeError::Cancelled(external_ref.to_string()));
        }
        let parsed = request
            .parse(&appointment, timezone)
            .map_err(ChangeError::Invalid)?;
        let now = Utc::now();
        let message = plan_message(
            changes,
            practice,
            (appointment.patient_id, &appointment.details),
            &parsed,
            None,
            now,
        )
        .await?;
        let change = NewAppointmentChange {
            appointment_id: appointment.id,
            read_at: appointment.updated_at,
            kind: parsed.kind,
            before: appointment.details.clone(),
            after: parsed.after,
            reason: parsed.reason,
            created_by: actor.to_string(),
            traceparent: changes.propagation.traceparent(),
        };
        match store
            .record_appointment_change(&change, message.as_ref(), claim.as_ref(), now)
            .await?
        {
            ChangeOutcome::Recorded(change) => {
                if change.message_id.is_some() {
                    changes.wake.notify_one();
                }
                let details = json!({ "kind": change.kind, "change": change.id, "message": change.message_id });
                store
                    .audit(
                        &AuditEntry {
                            actor: actor.to_string(),
                            action: "appointment.changed".into(),
                            practice_id: Some(practice.id),
                            subject: Some(format!("appointment:{}", appointment.id)),
                            details: Some(details.to_string()),
                        },
                        now,
                    )
                    .await?;
                return Ok(ChangePosted {
                    change,
                    replayed: false,
                });
            }
            ChangeOutcome::Replayed(change) => {
                return Ok(ChangePosted {
                    change,
                    replayed: true,
                })
            }
            ChangeOutcome::KeyReused => return Err(ChangeError::KeyReused),
            ChangeOutcome::Stale => continue,
        }
    }
    Err(ChangeError::Busy(external_ref.to_string()))
}

/// The patient's urgent message about the change, on the channel the practice's urgent
/// order picks (fastest first unless it chose otherwise), or `None` if they cannot be reached (no usable contact, or no longer registered). Its
/// idempotency key is set by the store from the change's id.
async fn plan_message(
    changes: &AppointmentChanges,
    practice: &Practice,
    (patient_id, before): (PatientId, &AppointmentDetails),
    change: &ParsedChange,
    tried: Option<Channel>,
    now: DateTime<Utc>,
) -> Result<Option<NewMessage>, ChangeError> {
    // The page starting just before the patient holds them, with their usable contacts.
    let mut page = changes
        .store
        .fanout_page(practice.id, PatientId::new(patient_id.get() - 1), 1)
        .await?;
    let Some(patient) = page.iter_mut().find(|p| p.id == patient_id) else {
        return Ok(None);
    };
    patient.with_nhs_app(changes.nhs_app);
    let patient = &*patient;
    let Some(contact) = next_contact(patient, practice.urgent_choice(), tried) else {
        return Ok(None);
    };
    let wording = AppointmentWording {
        now: &change.after,
        before: (change.kind != AppointmentChangeKind::Cancelled).then_some(before),
        reason: change.reason.as_deref(),
    };
    let key = change.kind.template_key();
    let worded = render_for_patient_off_runtime(
        changes.templates.snapshot(),
        practice,
        &patient.language,
        &key,
        contact.channel,
        |language| wording.context(practice, patient, None, language),
    )
    .await?;
    Ok(Some(urgent_to(
        practice.id,
        patient.id,
        &contact,
        &key,
        worded,
        now,
    )))
}

/// The message that follows `original`, the patient's message about `change` that was
/// not confirmed in time on channel `tried`: the same news on their next usable channel,
/// keyed so that it is planned once; `None` if they have no other channel.
pub async fn plan_follow_up(
    changes: &AppointmentChanges,
    practice: &Practice,
    change: &AppointmentChange,
    (original, patient_id, tried): (MessageId, PatientId, Channel),
    now: DateTime<Utc>,
) -> Result<Option<NewMessage>, ChangeError> {
    let parsed = ParsedChange {
        kind: change.kind,
        after: change.after.clone(),
        reason: change.reason.clone(),
    };
    let planned = plan_message(
        changes,
        practice,
        (patient_id, &change.before),
        &parsed,
        Some(tried),
        now,
    )
    .await?;
    Ok(planned.map(|mut message| {
        message.idempotency_key = follow_up_key(original);
        message
    }))
}

/// The idempotency key of the message that follows message `original` on another channel.
pub fn follow_up_key(original: MessageId) -> String {
    format!("fb:m{original}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AppointmentId, PracticeId};
    use chrono::TimeZone;

    fn booked() -> Appointment {
        Appointment {
            id: AppointmentId::new(1),
            practice_id: PracticeId::new(1),
            patient_id: PatientId::new(1),
            nhs_number: "9434765919".into(),
            external_ref: "A-1".into(),
            details: AppointmentDetails {
                starts_at: Utc.with_ymd_and_hms(2024, 7, 22, 9, 30, 0).unwrap(),
                clinician: Some("Dr Patel".into()),
                location: Some("Room 2".into()),
                mode: AppointmentMode::InPerson,
            },
            state: AppointmentState::Booked,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn request(kind: &str) -> AppointmentChangeRequest {
        AppointmentChangeRequest {
            kind: kind.into(),
            ..Default::default()
        }
    }

    fn parse(r: &AppointmentChangeRequest) -> Result<ParsedChange, Vec<Invalid>> {
        r.parse(&booked(), chrono_tz::Europe::London)
    }

    fn fields(r: &AppointmentChangeRequest) -> Vec<String> {
        parse(r).unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn moved_takes_a_new_start_in_uk_time() {
        let mut r = request("moved");
        assert_eq!(fields(&r), ["starts_at"]);
        r.starts_at = Some("2024-07-23 14:00".into());
        r.location = Some("Room 5".into());
        let change = parse(&r).unwrap();
        assert_eq!(
            change.after.starts_at.to_rfc3339(),
            "2024-07-23T13:00:00+00:00"
        );
        assert_eq!(change.after.location.as_deref(), Some("Room 5"));
        assert_eq!(change.after.clinician.as_deref(), Some("Dr Patel"));
        r.starts_at = Some("2024-07-22 10:30".into());
        r.location = None;
        assert_eq!(fields(&r), ["starts_at"], "the same time is no move");
    }

    #[test]
    fn each_kind_takes_only_its_fields() {
        let mut r = request("cancelled");
        r.reason = Some("the doctor is unwell".into());
        assert_eq!(parse(&r).unwrap().after, booked().details);
        r.starts_at = Some("2024-07-23 14:00".into());
        assert_eq!(fields(&r), ["starts_at"]);
        let mut phone = request("changed_to_phone");
        assert_eq!(parse(&phone).unwrap().after.mode, AppointmentMode::Phone);
        phone.location = Some("Room 9".into());
        assert_eq!(fields(&phone), ["location"]);
        let mut clinician = request("changed_clinician");
        assert_eq!(fields(&clinician), ["clinician"]);
        clinician.clinician = Some("Dr Patel".into());
        assert_eq!(
            fields(&clinician),
            ["clinician"],
            "the same clinician is no change"
        );
        clinician.clinician = Some("Dr Jones".into());
        assert_eq!(
            parse(&clinician).unwrap().after.clinician.as_deref(),
            Some("Dr Jones")
        );
        assert_eq!(fields(&request("postponed")), ["kind"]);
    }

    #[test]
    fn fingerprints_name_the_appointment() {
        let r = request("cancelled");
        assert_eq!(r.fingerprint("A-1"), r.fingerprint("A-1"));
        assert_ne!(r.fingerprint("A-1"), r.fingerprint("A-2"));
    }
}
