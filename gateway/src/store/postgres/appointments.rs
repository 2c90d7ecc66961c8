//! Appointments and their changes on PostgreSQL: bulk upserts bind one array per column and
//! `UNNEST` them into rows, so a statement binds a handful of values whatever its size.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PostgresStore;
use crate::domain::{AppointmentChangeId, MessageId, PatientId, PracticeId};
use crate::store::appointments::change_message_key;
use crate::store::{
    parsed, Appointment, AppointmentChange, AppointmentDetails, AppointmentStore,
    AppointmentUpsert, At, ChangeOutcome, IdempotencyClaim, NewAppointmentChange, NewMessage,
    StoreError, StoreResult, TimeColumn, UpsertSummary,
};

/// How often a lost idempotency race is re-read before giving up.
const IDEMPOTENCY_TRIES: usize = 3;

const APPOINTMENT_SELECT: &str =
    "SELECT a.id, a.practice_id, a.patient_id, p.nhs_number, a.external_ref, a.starts_at, a.clinician,
            a.location, a.mode, a.state, a.created_at, a.updated_at
     FROM appointments a JOIN patients p ON p.id = a.patient_id";

fn appointment_from_row(row: &PgRow) -> StoreResult<Appointment> {
    let mode: String = row.try_get("mode")?;
    let state: String = row.try_get("state")?;
    Ok(Appointment {
        id: row.try_get("id")?,
        practice_id: row.try_get("practice_id")?,
        patient_id: row.try_get("patient_id")?,
        nhs_number: row.try_get("nhs_number")?,
        external_ref: row.try_get("external_ref")?,
        details: AppointmentDetails {
            starts_at: row.time("starts_at")?,
            clinician: row.try_get("clinician")?,
            location: row.try_get("location")?,
            mode: parsed("appointments.mode", &mode)?,
        },
        state: parsed("appointments.state", &state)?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// The details on one side (`old` or `new`) of a stored change.
fn details_from_row(row: &PgRow, side: &str) -> StoreResult<AppointmentDetails> {
    let mode: String = row.try_get(format!("{side}_mode").as_str())?;
    Ok(AppointmentDetails {
        starts_at: row.time(format!("{side}_starts_at").as_str())?,
        clinician: row.try_get(format!("{side}_clinician").as_str())?,
        location: row.try_get(format!("{side}_location").as_str())?,
        mode: parsed("appointment_changes.mode", &mode)?,
    })
}

pub(super) fn change_from_row(row: &PgRow) -> StoreResult<AppointmentChange> {
    let kind: String = row.try_get("kind")?;
    Ok(AppointmentChange {
        id: row.try_get("id")?,
        appointment_id: row.try_get("appointment_id")?,
        kind: parsed("appointment_changes.kind", &kind)?,
        before: details_from_row(row, "old")?,
        after: details_from_row(row, "new")?,
        reason: row.try_get("reason")?,
        message_id: row.try_get("message_id")?,
        created_by: row.try_get("created_by")?,
        created_at: row.time("created_at")?,
    })
}

/// The change recorded under an idempotency key, with its request hash.
async fn change_by_key<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    scope: &str,
    key: &str,
) -> StoreResult<Option<(String, AppointmentChange)>> {
    let row = sqlx::query(
        "SELECT * FROM appointment_changes WHERE idempotency_scope = $1 AND idempotency_key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(executor)
    .await?;
    match row {
        Some(row) => Ok(Some((row.try_get("request_hash")?, change_from_row(&row)?))),
        None => Ok(None),
    }
}

/// What an idempotency key already stands for, as a change outcome.
fn seen(claim: &IdempotencyClaim, hash: String, change: AppointmentChange) -> ChangeOutcome {
    if hash == claim.request_hash {
        ChangeOutcome::Replayed(change)
    } else {
        ChangeOutcome::KeyReused
    }
}

/// Queues one message under `key` in `tx`, with the request's trace context; its id, or none
/// if a message with that key exists already.
pub(super) async fn insert_one_message(
    tx: &mut sqlx::PgConnection,
    m: &NewMessage,
    key: &str,
    traceparent: Option<&str>,
) -> StoreResult<Option<MessageId>> {
    Ok(sqlx::query_scalar(
        "INSERT INTO messages (idempotency_key, broadcast_id, practice_id, patient_id, contact_id, channel,
             address, priority, template_key, template_version, subject, body, body_html, link, state,
             next_attempt_at, created_at, updated_at, traceparent, segments)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'queued', $15, $16, $16, $17,
                 $18)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id",
    )
    .bind(key)
    .bind(m.broadcast_id)
    .bind(m.practice_id)
    .bind(m.recipient.patient_id())
    .bind(m.recipient.contact_id())
    .bind(m.channel.as_str())
    .bind(&m.address)
    .bind(m.priority.rank())
    .bind(&m.template_key)
    .bind(m.template_version)
    .bind(&m.subject)
    .bind(&m.body)
    .bind(&m.body_html)
    .bind(&m.link)
    .bind(At(m.next_attempt_at))
    .bind(At(m.created_at))
    .bind(traceparent)
    .bind(m.segments())
    .fetch_optional(&mut *tx)
    .await?)
}

#[async_trait]
impl AppointmentStore for PostgresStore {
    async fn patient_ids_by_nhs(
        &self,
        practice_id: PracticeId,
        nhs_numbers: &[String],
    ) -> StoreResult<HashMap<String, PatientId>> {
        let rows: Vec<(String, PatientId)> = sqlx::query_as(
            "SELECT nhs_number, id FROM patients WHERE practice_id = $1 AND nhs_number = ANY($2)",
        )
        .bind(practice_id)
        .bind(nhs_numbers)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    async fn upsert_appointments(
        &self,
        practice_id: PracticeId,
        appointments: &[AppointmentUpsert],
        now: DateTime<Utc>,
    ) -> StoreResult<UpsertSummary> {
        if appointments.is_empty() {
            return Ok(UpsertSummary::default());
        }
        let patients: Vec<PatientId> = appointments.iter().map(|a| a.patient_id).collect();
        let refs: Vec<&str> = appointments
            .iter()
            .map(|a| a.external_ref.as_str())
            .collect();
        let starts: Vec<DateTime<Utc>> = appointments.iter().map(|a| a.starts_at).collect();
        let clinicians: Vec<Option<&str>> = appointments
            .iter()
            .map(|a| a.clinician.as_deref())
            .collect();
        let locations: Vec<Option<&str>> =
            appointments.iter().map(|a| a.location.as_deref()).collect();
        let modes: Vec<&str> = appointments.iter().map(|a| a.mode.as_str()).collect();
        let states: Vec<&str> = appointments.iter().map(|a| a.state.as_str()).collect();
        let mut tx = self.begin().await?;
        // `xmax = 0` only on a freshly inserted row: an updated one carries our lock.
        let inserted: Vec<bool> = sqlx::query_scalar(
            "INSERT INTO appointments (practice_id, patient_id, external_ref, starts_at, clinician, location,
                                       mode, state, created_at, updated_at)
             SELECT $1, pa, r, s, c, l, m, st, $9, $9
             FROM UNNEST($2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
                         $8::text[]) AS u(pa, r, s, c, l, m, st)
             ON CONFLICT (practice_id, external_ref) DO UPDATE SET
                 patient_id = excluded.patient_id, starts_at = excluded.starts_at,
                 clinician = excluded.clinician, location = excluded.location, mode = excluded.mode,
                 state = excluded.state, updated_at = excluded.updated_at
             RETURNING (xmax = 0)",
        )
        .bind(practice_id)
        .bind(&patients)
        .bind(&refs)
        .bind(&starts)
        .bind(&clinicians)
        .bind(&locations)
        .bind(&modes)
        .bind(&states)
        .bind(At(now))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let created = inserted.iter().filter(|new| **new).count() as u64;
        Ok(UpsertSummary {
            created,
            updated: inserted.len() as u64 - created,
        })
    }

    async fn appointment_by_ref(
        &self,
        practice_id: PracticeId,
        external_ref: &str,
    ) -> StoreResult<Option<Appointment>> {
        let row = sqlx::query(&format!(
            "{APPOINTMENT_SELECT} WHERE a.practice_id = $1 AND a.external_ref = $2"
        ))
        .bind(practice_id)
        .bind(external_ref)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(appointment_from_row).transpose()
    }

    async fn booked_between(
        &self,
        practice_id: PracticeId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<Appointment>> {
        let rows = sqlx::query(&format!(
            "{APPOINTMENT_SELECT} WHERE a.practice_id = $1 AND a.state = 'booked'
               AND a.starts_at >= $2 AND a.starts_at < $3
             ORDER BY a.patient_id, a.starts_at, a.id"
        ))
        .bind(practice_id)
        .bind(At(from))
        .bind(At(until))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(appointment_from_row).collect()
    }

    async fn change_by_idempotency_key(
        &self,
        scope: &str,
        key: &str,
    ) -> StoreResult<Option<(String, AppointmentChange)>> {
        change_by_key(&self.pool, scope, key).await
    }

    async fn record_appointment_change(
        &self,
        change: &NewAppointmentChange,
        message: Option<&NewMessage>,
        idempotency: Option<&IdempotencyClaim>,
        now: DateTime<Utc>,
    ) -> StoreResult<ChangeOutcome> {
        // A request racing us with the same key may commit between our look-up and our
        // insert; then our insert does nothing, we roll back and answer as a replay.
        for _ in 0..IDEMPOTENCY_TRIES {
            let mut tx = self.begin().await?;
            if let Some(claim) = idempotency {
                if let Some((hash, change)) =
                    change_by_key(&mut *tx, &claim.scope, &claim.key).await?
                {
                    return Ok(seen(claim, hash, change));
                }
            }
            let (before, after) = (&change.before, &change.after);
            // The row lock taken here holds off a concurrent change until we commit; the
            // `updated_at` test then fails for it, and it reads the appointment afresh.
            let updated = sqlx::query(
                "UPDATE appointments SET starts_at = $1, clinician = $2, location = $3, mode = $4, state = $5,
                        updated_at = $6
                 WHERE id = $7 AND updated_at = $8 AND state = 'booked'",
            )
            .bind(At(after.starts_at))
            .bind(&after.clinician)
            .bind(&after.location)
            .bind(after.mode.as_str())
            .bind(change.kind.leaves().as_str())
            .bind(At(now))
            .bind(change.appointment_id)
            .bind(At(change.read_at))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Ok(ChangeOutcome::Stale);
            }
            let recorded: Option<(AppointmentChangeId, DateTime<Utc>)> = sqlx::query_as(
                "INSERT INTO appointment_changes (appointment_id, kind, old_starts_at, old_clinician, old_location,
                     old_mode, new_starts_at, new_clinician, new_location, new_mode, reason,
                     idempotency_scope, idempotency_key, request_hash, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (idempotency_scope, idempotency_key) DO NOTHING
                 RETURNING id, created_at",
            )
            .bind(change.appointment_id)
            .bind(change.kind.as_str())
            .bind(At(before.starts_at))
            .bind(&before.clinician)
            .bind(&before.location)
            .bind(before.mode.as_str())
            .bind(At(after.starts_at))
            .bind(&after.clinician)
            .bind(&after.location)
            .bind(after.mode.as_str())
            .bind(&change.reason)
            .bind(idempotency.map(|c| &c.scope))
            .bind(idempotency.map(|c| &c.key))
            .bind(idempotency.map(|c| &c.request_hash))
            .bind(&change.created_by)
            .bind(At(now))
            .fetch_optional(&mut *tx)
            .await?;
            let Some((change_id, created_at)) = recorded else {
                tx.rollback().await?;
                match idempotency {
                    Some(claim) => {
                        if let Some((hash, change)) =
                            change_by_key(&self.pool, &claim.scope, &claim.key).await?
                        {
                            return Ok(seen(claim, hash, change));
                        }
                        continue;
                    }
                    None => continue,
                }
            };
            let mut message_id = None;
            if let Some(m) = message {
                let Some(id) = insert_one_message(
                    &mut tx,
                    m,
                    &change_message_key(change_id),
                    change.traceparent.as_deref(),
                )
                .await?
                else {
                    return Err(StoreError::Duplicate("the change's message".into()));
                };
                sqlx::query("UPDATE appointment_changes SET message_id = $1 WHERE id = $2")
                    .bind(id)
                    .bind(change_id)
                    .execute(&mut *tx)
                    .await?;
                message_id = Some(id);
            }
            tx.commit().await?;
            return Ok(ChangeOutcome::Recorded(AppointmentChange {
                id: change_id,
                appointment_id: change.appointment_id,
                kind: change.kind,
                before: before.clone(),
                after: after.clone(),
                reason: change.reason.clone(),
                message_id,
                created_by: change.created_by.clone(),
                created_at,
            }));
        }
        Err(StoreError::Duplicate(
            "idempotency key in use by a concurrent request".to_string(),
        ))
    }
}
