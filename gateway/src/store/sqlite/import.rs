//! CSV imports on SQLite: each batch is one `BEGIN IMMEDIATE` transaction whose rows travel
//! as one JSON array per statement (`json_each`), so a statement's SQL never varies.
//!
//! Joins with a JSON array are written `CROSS JOIN` or `IN (...)`, which fixes the array as
//! the outer loop: without statistics the planner otherwise scans contacts by the
//! `(channel, address)` index for every batch.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::domain::{ImportRunId, PracticeId};
use crate::store::import::{
    group_listing, listing, plan_batch, stored_patient, with_contacts, ListingRow, PatientRow,
    PatientValues, StoredContact, ABANDON_AFTER,
};
use crate::store::{
    At, ImportCounts, ImportEnd, ImportFields, ImportRun, ImportStore, ImportedPatient,
    ListedPatient, StoreError, StoreResult,
};

/// An import run as read: id, checkpoint row and the created, updated and unchanged counts.
type RunRow = (ImportRunId, i64, i64, i64, i64);

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

/// A patient's columns as the JSON array the statements read by position.
fn values_json(id: Option<i64>, v: &PatientValues) -> impl serde::Serialize + '_ {
    (
        id,
        &v.nhs_number,
        &v.given_name,
        &v.family_name,
        v.date_of_birth,
        &v.landline,
        &v.preferred_channel,
        &v.language,
    )
}

/// Rows fetched as one JSON array in one row: sqlx hands SQLite rows between threads one
/// at a time, which costs more than the query.
fn from_json<T: serde::de::DeserializeOwned>(
    column: &'static str,
    text: &str,
) -> StoreResult<Vec<T>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        column,
        reason: e.to_string(),
    })
}

#[async_trait]
impl ImportStore for SqliteStore {
    async fn open_import(
        &self,
        practice_id: PracticeId,
        fingerprint: Option<&str>,
        replace: bool,
        now: DateTime<Utc>,
    ) -> StoreResult<ImportRun> {
        let mode = if replace { "replace" } else { "merge" };
        let stale = now - ABANDON_AFTER;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "DELETE FROM import_seen WHERE run_id IN
               (SELECT id FROM import_runs WHERE state = 'running' AND updated_at < $1)",
        )
        .bind(At(stale))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE import_runs SET state = 'abandoned', finished_at = $1
             WHERE state = 'running' AND updated_at < $2",
        )
        .bind(At(now))
        .bind(At(stale))
        .execute(&mut *tx)
        .await?;
        let found: Option<RunRow> = match fingerprint {
            Some(fingerprint) => {
                sqlx::query_as(
                    "SELECT id, through_row, created, updated, unchanged FROM import_runs
                     WHERE practice_id = $1 AND fingerprint = $2 AND mode = $3 AND state = 'running'
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(practice_id)
                .bind(fingerprint)
                .bind(mode)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let run = match found {
            Some((id, through_row, created, updated, unchanged)) => ImportRun {
                id,
                practice_id,
                replace,
                through_row: through_row as u64,
                counts: ImportCounts {
                    created: created as u64,
                    updated: updated as u64,
                    unchanged: unchanged as u64,
                },
                resumed: true,
            },
            None => {
                let id = sqlx::query_scalar(
                    "INSERT INTO import_runs (practice_id, fingerprint, mode, state, started_at, updated_at)
                     VALUES ($1, $2, $3, 'running', $4, $4) RETURNING id",
                )
                .bind(practice_id)
                .bind(fingerprint)
                .bind(mode)
                .bind(At(now))
                .fetch_one(&mut *tx)
                .await?;
                ImportRun {
                    id,
                    practice_id,
                    replace,
                    through_row: 1,
                    counts: ImportCounts::default(),
                    resumed: false,
                }
            }
        };
        tx.commit().await?;
        Ok(run)
    }

    async fn note_seen(
        &self,
        run_id: ImportRunId,
        seen: &[(&str, u64)],
    ) -> StoreResult<Vec<(String, u64)>> {
        if seen.is_empty() {
            return Ok(Vec::new());
        }
        let entries = to_json(&seen);
        let mut tx = self.begin_write().await?;
        // `WHERE true` keeps SQLite from reading ON CONFLICT as part of the SELECT.
        sqlx::query(
            "INSERT INTO import_seen (run_id, nhs_number, first_row)
             SELECT $1, value ->> 0, value ->> 1 FROM json_each($2) WHERE true
             ON CONFLICT (run_id, nhs_number) DO NOTHING",
        )
        .bind(run_id)
        .bind(&entries)
        .execute(&mut *tx)
        .await?;
        let earlier: Vec<(String, i64)> = sqlx::query_as(
            "SELECT s.nhs_number, s.first_row FROM json_each($2) j CROSS JOIN import_seen s
             WHERE s.run_id = $1 AND s.nhs_number = j.value ->> 0 AND s.first_row < j.value ->> 1",
        )
        .bind(run_id)
        .bind(&entries)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(earlier.into_iter().map(|(n, r)| (n, r as u64)).collect())
    }

    async fn import_batch(
        &self,
        run: &ImportRun,
        fields: &ImportFields,
        patients: &[ImportedPatient],
        through_row: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<ImportCounts> {
        let numbers = to_json(
            &patients
                .iter()
                .map(|p| p.patient.nhs_number.as_str())
                .collect::<Vec<_>>(),
        );
        let mut tx = self.begin_write().await?;
        let rows: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(p.id, p.nhs_number, p.given_name, p.family_name,
                    p.date_of_birth, p.landline, p.preferred_channel, p.language,
                    CASE WHEN p.active THEN json('true') ELSE json('false') END))
             FROM patients p
             WHERE p.practice_id = $1 AND p.nhs_number IN (SELECT value FROM json_each($2))",
        )
        .bind(run.practice_id)
        .bind(&numbers)
        .fetch_one(&mut *tx)
        .await?;
        let rows: Vec<PatientRow> = from_json("patients", &rows)?;
        let contacts: Vec<(i64, i64, String, String, i64)> = if rows.is_empty() {
            Vec::new()
        } else {
            let text: String = sqlx::query_scalar(
                "SELECT json_group_array(json_array(c.id, c.patient_id, c.channel, c.address,
                        c.opted_out_at IS NOT NULL))
                 FROM json_each($2) j CROSS JOIN patients p CROSS JOIN contacts c
                 WHERE p.practice_id = $1 AND p.nhs_number = j.value AND c.patient_id = p.id
                   AND c.channel IN ('sms', 'email')",
            )
            .bind(run.practice_id)
            .bind(&numbers)
            .fetch_one(&mut *tx)
            .await?;
            from_json("contacts", &text)?
        };
        let stored = with_contacts(
            rows.into_iter().map(stored_patient).collect(),
            contacts
                .into_iter()
                .map(
                    |(id, patient_id, channel, address, opted_out)| StoredContact {
                        id,
                        patient_id,
                        channel,
                        address,
                        opted_out: opted_out != 0,
                    },
                )
                .collect(),
        );
        let plan = plan_batch(fields, patients, &stored);
        let at = At(now);
        if !plan.inserts.is_empty() {
            let values: Vec<_> = plan.inserts.iter().map(|v| values_json(None, v)).collect();
            sqlx::query(
                "INSERT INTO patients (practice_id, nhs_number, given_name, family_name, date_of_birth,
                                       landline, preferred_channel, language, active, created_at, updated_at)
                 SELECT $1, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
                        value ->> 7, 1, $2, $2
                 FROM json_each($3)",
            )
            .bind(run.practice_id)
            .bind(at)
            .bind(to_json(&values))
            .execute(&mut *tx)
            .await?;
        }
        if !plan.updates.is_empty() {
            let values: Vec<_> = plan
                .updates
                .iter()
                .map(|(id, v)| values_json(Some(*id), v))
                .collect();
            sqlx::query(
                "UPDATE patients SET given_name = u.value ->> 2, family_name = u.value ->> 3,
                        date_of_birth = u.value ->> 4, landline = u.value ->> 5,
                        preferred_channel = u.value ->> 6, language = u.value ->> 7, active = 1,
                        updated_at = $1
                 FROM json_each($2) AS u WHERE patients.id = u.value ->> 0",
            )
            .bind(at)
            .bind(to_json(&values))
            .execute(&mut *tx)
            .await?;
        }
        if !plan.new_contacts.is_empty() {
            let values: Vec<_> = plan
                .new_contacts
                .iter()
                .map(|c| (c.nhs_number, c.channel, c.address, c.opted_out))
                .collect();
            sqlx::query(
                "INSERT INTO contacts (patient_id, channel, address, opted_out_at, created_at)
                 SELECT p.id, j.value ->> 1, j.value ->> 2, CASE WHEN j.value ->> 3 THEN $2 END, $2
                 FROM json_each($3) j CROSS JOIN patients p
                 WHERE p.practice_id = $1 AND p.nhs_number = j.value ->> 0
                 ON CONFLICT (patient_id, channel, address)
                 DO UPDATE SET opted_out_at = COALESCE(contacts.opted_out_at, excluded.opted_out_at)",
            )
            .bind(run.practice_id)
            .bind(at)
            .bind(to_json(&values))
            .execute(&mut *tx)
            .await?;
        }
        if !plan.opt_outs.is_empty() {
            sqlx::query(
                "UPDATE contacts SET opted_out_at = COALESCE(opted_out_at, $1)
                 WHERE id IN (SELECT value FROM json_each($2))",
            )
            .bind(at)
            .bind(to_json(&plan.opt_outs))
            .execute(&mut *tx)
            .await?;
        }
        if !plan.removals.is_empty() {
            sqlx::query(
                "DELETE FROM contacts WHERE opted_out_at IS NULL
                   AND id IN (SELECT value FROM json_each($1))",
            )
            .bind(to_json(&plan.removals))
            .execute(&mut *tx)
            .await?;
        }
        let counts = plan.counts;
        sqlx::query(
            "UPDATE import_runs SET through_row = $1, created = created + $2, updated = updated + $3,
                    unchanged = unchanged + $4, updated_at = $5
             WHERE id = $6",
        )
        .bind(through_row as i64)
        .bind(counts.created as i64)
        .bind(counts.updated as i64)
        .bind(counts.unchanged as i64)
        .bind(at)
        .bind(run.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(counts)
    }

    async fn finish_import(
        &self,
        run: &ImportRun,
        end: ImportEnd,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let deactivated = if end == (ImportEnd::Completed { deactivate: true }) {
            sqlx::query(
                "UPDATE patients SET active = 0, updated_at = $1
                 WHERE practice_id = $2 AND active = 1
                   AND NOT EXISTS (SELECT 1 FROM import_seen s
                                   WHERE s.run_id = $3 AND s.nhs_number = patients.nhs_number)",
            )
            .bind(At(now))
            .bind(run.practice_id)
            .bind(run.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            0
        };
        sqlx::query("DELETE FROM import_seen WHERE run_id = $1")
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        let state = match end {
            ImportEnd::Completed { .. } => "completed",
            ImportEnd::Rejected => "rejected",
            ImportEnd::Abandoned => "abandoned",
        };
        sqlx::query(
            "UPDATE import_runs SET state = $1, deactivated = $2, finished_at = $3, updated_at = $3
             WHERE id = $4",
        )
        .bind(state)
        .bind(deactivated as i64)
        .bind(At(now))
        .bind(run.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deactivated)
    }

    async fn listed_patients(
        &self,
        practice_id: PracticeId,
        after_nhs: &str,
        limit: i64,
    ) -> StoreResult<Vec<ListedPatient>> {
        let rows: Vec<ListingRow> = sqlx::query_as(
            "SELECT p.nhs_number, p.given_name, p.family_name, p.date_of_birth, p.landline,
                    p.preferred_channel, p.language, p.active, c.channel, c.address,
                    c.opted_out_at IS NOT NULL
             FROM (SELECT * FROM patients WHERE practice_id = $1 AND nhs_number > $2
                   ORDER BY nhs_number LIMIT $3) p
             LEFT JOIN contacts c ON c.patient_id = p.id
             ORDER BY p.nhs_number, c.channel, c.address",
        )
        .bind(practice_id)
        .bind(after_nhs)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(group_listing(rows.into_iter().map(listing).collect()))
    }
}
