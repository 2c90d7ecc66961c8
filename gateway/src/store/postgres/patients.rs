//! Patients and their contacts on PostgreSQL.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PostgresStore;
use crate::domain::{ContactId, PatientId, PracticeId};
use crate::store::{
    parsed, At, ContactView, FanoutContact, FanoutPatient, PatientStore, PatientUpsert,
    PatientView, StoreResult, TimeColumn, UpsertSummary,
};

/// Splits a batch into runs in which no NHS number repeats: one statement cannot insert and
/// then update the same row, and a repeat must win over what came before it, as it would
/// one patient at a time.
fn runs_without_repeats(patients: &[PatientUpsert]) -> Vec<&[PatientUpsert]> {
    let mut runs = Vec::new();
    let mut seen = HashSet::new();
    let mut start = 0;
    for (i, p) in patients.iter().enumerate() {
        if !seen.insert(p.nhs_number.as_str()) {
            runs.push(&patients[start..i]);
            seen.clear();
            seen.insert(p.nhs_number.as_str());
            start = i;
        }
    }
    if start < patients.len() {
        runs.push(&patients[start..]);
    }
    runs
}

/// Upserts a run of patients with distinct NHS numbers and their contacts in three
/// set-based statements (patients, contacts dropped, contacts kept), whatever the run's
/// length: one statement per patient and contact made the JSON API wait on a round trip
/// for each (about 2,000 patients/s).
async fn upsert_run(
    conn: &mut sqlx::PgConnection,
    practice_id: PracticeId,
    patients: &[PatientUpsert],
    now: DateTime<Utc>,
) -> StoreResult<UpsertSummary> {
    let mut summary = UpsertSummary::default();
    if patients.is_empty() {
        return Ok(summary);
    }
    let nhs: Vec<&str> = patients.iter().map(|p| p.nhs_number.as_str()).collect();
    let given: Vec<Option<&str>> = patients.iter().map(|p| p.given_name.as_deref()).collect();
    let family: Vec<Option<&str>> = patients.iter().map(|p| p.family_name.as_deref()).collect();
    let preferred: Vec<Option<&str>> = patients
        .iter()
        .map(|p| p.preferred_channel.map(|c| c.as_str()))
        .collect();
    let language: Vec<&str> = patients.iter().map(|p| p.language.as_str()).collect();
    let active: Vec<bool> = patients.iter().map(|p| p.active).collect();
    // `xmax = 0` only on a freshly inserted row: an updated one carries our lock.
    let stored: Vec<(i64, String, bool)> = sqlx::query_as(
        "INSERT INTO patients (practice_id, nhs_number, given_name, family_name,
         preferred_channel, language, active, created_at, updated_at)
         SELECT $1, u.nhs, u.given, u.family, u.preferred, u.language, u.active, $2, $2
         FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[])
              AS u(nhs, given, family, preferred, language, active)
         ON CONFLICT (practice_id, nhs_number) DO UPDATE SET
            given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name,
            preferred_channel = EXCLUDED.preferred_channel, language = EXCLUDED.language,
            active = EXCLUDED.active, updated_at = EXCLUDED.updated_at
         RETURNING id, nhs_number, (xmax = 0) AS inserted",
    )
    .bind(practice_id)
    .bind(At(now))
    .bind(&nhs)
    .bind(&given)
    .bind(&family)
    .bind(&preferred)
    .bind(&language)
    .bind(&active)
    .fetch_all(&mut *conn)
    .await?;
    let mut ids: HashMap<String, i64> = HashMap::with_capacity(stored.len());
    for (id, nhs_number, inserted) in stored {
        if inserted {
            summary.created += 1;
        } else {
            summary.updated += 1;
        }
        ids.insert(nhs_number, id);
    }
    // Each patient's contacts, repeats folded (an opt-out on either copy counts).
    let mut listed: Vec<(i64, &str, &str, bool)> = Vec::new();
    for p in patients {
        let Some(&patient_id) = ids.get(p.nhs_number.as_str()) else {
            continue;
        };
        let first = listed.len();
        for c in &p.contacts {
            let repeat = listed[first..].iter_mut().find(|(_, channel, address, _)| {
                *channel == c.channel.as_str() && *address == c.address
            });
            match repeat {
                Some(kept) => kept.3 |= c.opted_out,
                None => listed.push((patient_id, c.channel.as_str(), &c.address, c.opted_out)),
            }
        }
    }
    if listed.is_empty() {
        return Ok(summary);
    }
    let patient_ids: Vec<i64> = listed.iter().map(|c| c.0).collect();
    let channels: Vec<&str> = listed.iter().map(|c| c.1).collect();
    let addresses: Vec<&str> = listed.iter().map(|c| c.2).collect();
    let opted_out: Vec<bool> = listed.iter().map(|c| c.3).collect();
    // For each patient and channel named, drop that channel's contacts not listed.
    sqlx::query(
        "DELETE FROM contacts c
         USING (SELECT DISTINCT patient_id, channel FROM UNNEST($1::bigint[], $2::text[]) AS n(patient_id, channel)) named
         WHERE c.patient_id = named.patient_id AND c.channel = named.channel
           AND NOT EXISTS (SELECT 1 FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS k(patient_id, channel, address)
                           WHERE k.patient_id = c.patient_id AND k.channel = c.channel AND k.address = c.address)",
    )
    .bind(&patient_ids)
    .bind(&channels)
    .bind(&addresses)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO contacts (patient_id, channel, address, opted_out_at, created_at)
         SELECT k.patient_id, k.channel, k.address, CASE WHEN k.opted_out THEN $5 END, $5
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bool[]) AS k(patient_id, channel, address, opted_out)
         ON CONFLICT (patient_id, channel, address)
         DO UPDATE SET opted_out_at = COALESCE(contacts.opted_out_at, EXCLUDED.opted_out_at)",
    )
    .bind(&patient_ids)
    .bind(&channels)
    .bind(&addresses)
    .bind(&opted_out)
    .bind(At(now))
    .execute(&mut *conn)
    .await?;
    Ok(summary)
}

#[async_trait]
impl PatientStore for PostgresStore {
    async fn upsert_patients(
        &self,
        practice_id: PracticeId,
        patients: &[PatientUpsert],
        now: DateTime<Utc>,
    ) -> StoreResult<UpsertSummary> {
        let mut summary = UpsertSummary::default();
        let mut tx = self.begin().await?;
        for run in runs_without_repeats(patients) {
            let done = upsert_run(&mut tx, practice_id, run, now).await?;
            summary.created += done.created;
            summary.updated += done.updated;
        }
        tx.commit().await?;
        Ok(summary)
    }

    async fn fanout_page(
        &self,
        practice_id: PracticeId,
        after_patient_id: PatientId,
        limit: usize,
    ) -> StoreResult<Vec<FanoutPatient>> {
        // LATERAL with OFFSET 0 (which PostgreSQL will not flatten) pins the plan to one index
        // lookup per patient: right after a bulk import, before ANALYZE has run, the planner
        // otherwise joins every page against a full scan of contacts.
        let rows = sqlx::query(
            "SELECT p.id, p.nhs_number, p.given_name, p.family_name, p.preferred_channel, p.language,
                    p.nhsapp_unreachable_at IS NULL AS in_nhs_app, c.id AS contact_id, c.channel, c.address
             FROM (SELECT id, nhs_number, given_name, family_name, preferred_channel, language,
                          nhsapp_unreachable_at
                   FROM patients WHERE practice_id = $1 AND active AND id > $2
                   ORDER BY id LIMIT $3) p
             LEFT JOIN LATERAL (
                 SELECT id, channel, address FROM contacts
                 WHERE patient_id = p.id AND opted_out_at IS NULL AND bad_recipient_at IS NULL
                 OFFSET 0) c ON TRUE
             ORDER BY p.id, c.id",
        )
        .bind(practice_id)
        .bind(after_patient_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut page: Vec<FanoutPatient> = Vec::with_capacity(limit);
        for row in &rows {
            let id: PatientId = row.try_get("id")?;
            if page.last().map(|p| p.id) != Some(id) {
                let preferred: Option<String> = row.try_get("preferred_channel")?;
                page.push(FanoutPatient {
                    id,
                    nhs_number: row.try_get("nhs_number")?,
                    given_name: row.try_get("given_name")?,
                    family_name: row.try_get("family_name")?,
                    preferred_channel: preferred.and_then(|c| c.parse().ok()),
                    language: row.try_get("language")?,
                    in_nhs_app: row.try_get("in_nhs_app")?,
                    contacts: Vec::new(),
                });
            }
            let contact_id: Option<ContactId> = row.try_get("contact_id")?;
            if let (Some(contact_id), Some(patient)) = (contact_id, page.last_mut()) {
                let channel: String = row.try_get("channel")?;
                patient.contacts.push(FanoutContact {
                    id: Some(contact_id),
                    channel: parsed("contacts.channel", &channel)?,
                    address: row.try_get("address")?,
                });
            }
        }
        Ok(page)
    }

    async fn patient_id_of(
        &self,
        practice_id: PracticeId,
        nhs_number: &str,
    ) -> StoreResult<Option<PatientId>> {
        Ok(
            sqlx::query_scalar(
                "SELECT id FROM patients WHERE practice_id = $1 AND nhs_number = $2",
            )
            .bind(practice_id)
            .bind(nhs_number)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    async fn nhs_number_of(
        &self,
        practice_id: PracticeId,
        patient_id: PatientId,
    ) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar(
                "SELECT nhs_number FROM patients WHERE practice_id = $1 AND id = $2",
            )
            .bind(practice_id)
            .bind(patient_id)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    async fn patient(
        &self,
        practice_id: PracticeId,
        nhs_number: &str,
    ) -> StoreResult<Option<PatientView>> {
        let Some(row) = sqlx::query(
            "SELECT id, nhs_number, given_name, family_name, preferred_channel, language, active
             FROM patients WHERE practice_id = $1 AND nhs_number = $2",
        )
        .bind(practice_id)
        .bind(nhs_number)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let id: PatientId = row.try_get("id")?;
        let contacts = sqlx::query(
            "SELECT channel, address, opted_out_at FROM contacts WHERE patient_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|c| {
            Ok(ContactView {
                channel: c.try_get("channel")?,
                address: c.try_get("address")?,
                opted_out_at: c.time_opt("opted_out_at")?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(PatientView {
            nhs_number: row.try_get("nhs_number")?,
            given_name: row.try_get("given_name")?,
            family_name: row.try_get("family_name")?,
            preferred_channel: row.try_get("preferred_channel")?,
            language: row.try_get("language")?,
            active: row.try_get("active")?,
            contacts,
        }))
    }
}
