//! Patients and their contacts on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PostgresStore;
use crate::domain::{ContactId, PatientId, PracticeId};
use crate::store::{
    parsed, At, ContactView, FanoutContact, FanoutPatient, PatientStore, PatientUpsert,
    PatientView, StoreResult, TimeColumn, UpsertSummary,
};

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
        for p in patients {
            // `xmax = 0` only on a freshly inserted row: an updated one carries our lock.
            let (patient_id, inserted): (i64, bool) = sqlx::query_as(
                "INSERT INTO patients (practice_id, nhs_number, given_name, family_name,
                 preferred_channel, language, active, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                 ON CONFLICT (practice_id, nhs_number) DO UPDATE SET
                    given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name,
                    preferred_channel = EXCLUDED.preferred_channel, language = EXCLUDED.language,
                    active = EXCLUDED.active, updated_at = EXCLUDED.updated_at
                 RETURNING id, (xmax = 0) AS inserted",
            )
            .bind(practice_id)
            .bind(p.nhs_number.as_str())
            .bind(&p.given_name)
            .bind(&p.family_name)
            .bind(p.preferred_channel.map(|c| c.as_str()))
            .bind(&p.language)
            .bind(p.active)
            .bind(At(now))
            .fetch_one(&mut *tx)
            .await?;
            if inserted {
                summary.created += 1;
            } else {
                summary.updated += 1;
            }
            if p.contacts.is_empty() {
                continue;
            }
            let channels: Vec<&str> = p.contacts.iter().map(|c| c.channel.as_str()).collect();
            let addresses: Vec<&str> = p.contacts.iter().map(|c| c.address.as_str()).collect();
            // For each channel named, drop that channel's contacts not listed.
            sqlx::query(
                "DELETE FROM contacts c
                 WHERE c.patient_id = $1 AND c.channel = ANY($2)
                   AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[]) AS k(channel, address)
                                   WHERE k.channel = c.channel AND k.address = c.address)",
            )
            .bind(patient_id)
            .bind(&channels)
            .bind(&addresses)
            .execute(&mut *tx)
            .await?;
            for c in &p.contacts {
                sqlx::query(
                    "INSERT INTO contacts (patient_id, channel, address, opted_out_at, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (patient_id, channel, address)
                     DO UPDATE SET opted_out_at = COALESCE(contacts.opted_out_at, EXCLUDED.opted_out_at)",
                )
                .bind(patient_id)
                .bind(c.channel.as_str())
                .bind(&c.address)
                .bind(c.opted_out.then_some(At(now)))
                .bind(At(now))
                .execute(&mut *tx)
                .await?;
            }
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
                    c.id AS contact_id, c.channel, c.address
             FROM (SELECT id, nhs_number, given_name, family_name, preferred_channel, language
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
                    contacts: Vec::new(),
                });
            }
            let contact_id: Option<ContactId> = row.try_get("contact_id")?;
            if let (Some(contact_id), Some(patient)) = (contact_id, page.last_mut()) {
                let channel: String = row.try_get("channel")?;
                patient.contacts.push(FanoutContact {
                    id: contact_id,
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
