//! Patients and their contacts on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::SqliteStore;
use crate::domain::{ContactId, PatientId, PracticeId};
use crate::store::{
    parsed, At, ContactView, FanoutContact, FanoutPatient, PatientStore, PatientUpsert,
    PatientView, StoreError, StoreResult, TimeColumn, UpsertSummary,
};

/// One patient-contact pair of a fan-out page, as the JSON array SQLite builds.
type FanoutRow = (
    PatientId,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<ContactId>,
    Option<String>,
    Option<String>,
);

#[async_trait]
impl PatientStore for SqliteStore {
    async fn upsert_patients(
        &self,
        practice_id: PracticeId,
        patients: &[PatientUpsert],
        now: DateTime<Utc>,
    ) -> StoreResult<UpsertSummary> {
        let mut summary = UpsertSummary::default();
        let mut tx = self.begin_write().await?;
        for p in patients {
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM patients WHERE practice_id = $1 AND nhs_number = $2",
            )
            .bind(practice_id)
            .bind(p.nhs_number.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let preferred = p.preferred_channel.map(|c| c.as_str());
            let patient_id = match existing {
                Some(id) => {
                    sqlx::query(
                        "UPDATE patients SET given_name = $1, family_name = $2, preferred_channel = $3,
                         language = $4, active = $5, updated_at = $6 WHERE id = $7",
                    )
                    .bind(&p.given_name)
                    .bind(&p.family_name)
                    .bind(preferred)
                    .bind(&p.language)
                    .bind(p.active)
                    .bind(At(now))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    summary.updated += 1;
                    id
                }
                None => {
                    summary.created += 1;
                    sqlx::query_scalar(
                        "INSERT INTO patients (practice_id, nhs_number, given_name, family_name,
                         preferred_channel, language, active, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
                    )
                    .bind(practice_id)
                    .bind(p.nhs_number.as_str())
                    .bind(&p.given_name)
                    .bind(&p.family_name)
                    .bind(preferred)
                    .bind(&p.language)
                    .bind(p.active)
                    .bind(At(now))
                    .fetch_one(&mut *tx)
                    .await?
                }
            };
            let existing_contacts: Vec<(i64, String, String)> =
                sqlx::query_as("SELECT id, channel, address FROM contacts WHERE patient_id = $1")
                    .bind(patient_id)
                    .fetch_all(&mut *tx)
                    .await?;
            for (id, channel, address) in existing_contacts {
                let channel_named = p.contacts.iter().any(|c| c.channel.as_str() == channel);
                let kept = p
                    .contacts
                    .iter()
                    .any(|c| c.channel.as_str() == channel && c.address == address);
                if channel_named && !kept {
                    sqlx::query("DELETE FROM contacts WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            for c in &p.contacts {
                sqlx::query(
                    "INSERT INTO contacts (patient_id, channel, address, opted_out_at, created_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (patient_id, channel, address)
                     DO UPDATE SET opted_out_at = COALESCE(contacts.opted_out_at, excluded.opted_out_at)",
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
        // The page comes back as one JSON array in one row: sqlx hands SQLite rows over
        // one at a time between threads, which cost more than the query itself.
        let page: Option<String> = sqlx::query_scalar(
            "SELECT json_group_array(json_array(id, nhs_number, given_name, family_name, preferred_channel,
                                                language, in_nhs_app, contact_id, channel, address))
             FROM (SELECT p.id, p.nhs_number, p.given_name, p.family_name, p.preferred_channel, p.language,
                          p.in_nhs_app, c.id AS contact_id, c.channel, c.address
                   FROM (SELECT id, nhs_number, given_name, family_name, preferred_channel, language,
                                nhsapp_unreachable_at IS NULL AS in_nhs_app
                         FROM patients WHERE practice_id = $1 AND active = 1 AND id > $2
                         ORDER BY id LIMIT $3) p
                   LEFT JOIN contacts c
                     ON c.patient_id = p.id AND c.opted_out_at IS NULL AND c.bad_recipient_at IS NULL)",
        )
        .bind(practice_id)
        .bind(after_patient_id)
        .bind(limit as i64)
        .fetch_one(&self.pool)
        .await?;
        let mut rows: Vec<FanoutRow> = serde_json::from_str(page.as_deref().unwrap_or("[]"))
            .map_err(|e| StoreError::Corrupt {
                column: "patients",
                reason: format!("fan-out page: {e}"),
            })?;
        rows.sort_by_key(|r| (r.0, r.7));
        let mut page: Vec<FanoutPatient> = Vec::with_capacity(limit);
        for (
            id,
            nhs_number,
            given_name,
            family_name,
            preferred,
            language,
            in_nhs_app,
            contact_id,
            channel,
            address,
        ) in rows
        {
            if page.last().map(|p| p.id) != Some(id) {
                page.push(FanoutPatient {
                    id,
                    nhs_number,
                    given_name,
                    family_name,
                    preferred_channel: preferred.and_then(|c| c.parse().ok()),
                    language,
                    in_nhs_app: in_nhs_app != 0,
                    contacts: Vec::new(),
                });
            }
            if let (Some(contact_id), Some(channel), Some(address), Some(patient)) =
                (contact_id, channel, address, page.last_mut())
            {
                patient.contacts.push(FanoutContact {
                    id: Some(contact_id),
                    channel: parsed("contacts.channel", &channel)?,
                    address,
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
